"""Trainables the tune tests run in trial actors (a module, so workers import it)."""

from __future__ import annotations

import json
import os
import tempfile
import time

from ember import tune


def quadratic(config: dict) -> None:
    """Reports (x - 3)^2 for a few iterations."""
    for step in range(config.get("steps", 1)):
        tune.report({"score": (config["x"] - 3) ** 2 + 0.01 * step, "x": config["x"]})


def learning_curve(config: dict) -> None:
    """A curve whose final level is config["quality"]; ASHA should cut the bad ones early."""
    for step in range(1, config.get("steps", 20) + 1):
        tune.report({"acc": config["quality"] * (1 - 1 / (step + 1))})


def counting_with_checkpoints(config: dict) -> None:
    """Counts up from its checkpoint; one checkpoint per step; optional slow steps."""
    start = 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "state.json")) as f:
                start = json.load(f)["step"]
    for step in range(start + 1, config["steps"] + 1):
        if config.get("sleep_s"):
            time.sleep(config["sleep_s"])  # simulated work, not synchronisation
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "state.json"), "w") as f:
                json.dump({"step": step, "lr": config.get("lr")}, f)
            tune.report({"step": step, "started_at": start,
                         "score": step * config.get("lr", 1.0)},
                        checkpoint=tune.Checkpoint.from_directory(d))


def fails_when_told(config: dict) -> None:
    tune.report({"score": config["x"]})
    if config.get("fail"):
        raise ValueError(f"trial with x={config['x']} fails on purpose")
    tune.report({"score": config["x"] + 1})


def fails_once_then_succeeds(config: dict) -> None:
    """Fails at step 2 on the first attempt (marker file), resumes from its checkpoint."""
    marker = os.path.join(config["dir"], "failed_once")
    checkpoint = tune.get_checkpoint()
    start = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = json.load(open(os.path.join(d, "s.json")))["step"]
    for step in range(start + 1, 4):
        with tempfile.TemporaryDirectory() as d:
            json.dump({"step": step}, open(os.path.join(d, "s.json"), "w"))
            tune.report({"step": step, "resumed_from": start},
                        checkpoint=tune.Checkpoint.from_directory(d))
        if step == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt dies at step 2")


def never_reports(config: dict) -> None:
    return None


def reports_other_keys(config: dict) -> None:
    tune.report({"accuracy": 0.5, "loss": 1.0})


def pbt_objective(config: dict) -> None:
    """score grows by lr per step, to step 12; at least one step per (re)start, so a trial
    that copied a finished trial's checkpoint still reports after the copy."""
    score, step = 0.0, 0
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = json.load(open(os.path.join(d, "s.json")))
            score, step = state["score"], state["step"]
    while True:
        step += 1
        score += config["lr"]
        with tempfile.TemporaryDirectory() as d:
            json.dump({"score": score, "step": step}, open(os.path.join(d, "s.json"), "w"))
            tune.report({"score": score, "step": step},
                        checkpoint=tune.Checkpoint.from_directory(d))
        if step >= 12:
            return


class Quadratic(tune.Trainable):
    """A class trainable with dict checkpoints."""

    def setup(self, config: dict) -> None:
        self.x = float(config["x"])
        self.value = 0.0

    def step(self) -> dict:
        self.value += (self.x - 3) ** 2
        return {"score": self.value}

    def save_checkpoint(self, checkpoint_dir: str) -> dict:
        return {"value": self.value}

    def load_checkpoint(self, checkpoint: dict) -> None:
        self.value = checkpoint["value"]

    def reset_config(self, new_config: dict) -> bool:
        self.x = float(new_config["x"])
        self.value = 0.0
        return True


def record_concurrency(config: dict) -> None:
    """Reports its start and end wall times so a test can check overlap."""
    start = time.time()
    time.sleep(config.get("sleep_s", 0.3))  # simulated work
    tune.report({"start": start, "end": time.time(), "pid": os.getpid()})


def logged_counter(config: dict) -> None:
    """Counts to config["steps"] with a checkpoint per step; logs each start to a file."""
    checkpoint = tune.get_checkpoint()
    start = 0
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            with open(os.path.join(d, "s.json")) as f:
                start = json.load(f)["step"]
    with open(config["log"], "a") as f:
        f.write(f"{config['i']} {start}\n")
    for step in range(start + 1, config["steps"] + 1):
        time.sleep(config["sleep_s"])  # simulated work, so the driver is killed mid-sweep
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "s.json"), "w") as f:
                json.dump({"step": step}, f)
            tune.report({"step": step, "started_at": start},
                        checkpoint=tune.Checkpoint.from_directory(d))


def torch_regression_loop(config: dict) -> None:
    """A data-parallel linear regression for a few epochs; reports the loss per epoch."""
    import torch

    import ember.train as train
    from ember.train.torch import prepare_model

    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64).unsqueeze(1)
    y = 3 * x + 1
    model = prepare_model(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for _ in range(config.get("epochs", 3)):
        for _ in range(10):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
        train.report({"loss": float(loss), "rank": train.get_context().get_world_rank()})


def computes_without_reporting(config: dict) -> None:
    """Works for a long time before its first report (for the time-budget test)."""
    deadline = time.monotonic() + config.get("work_s", 60)
    while time.monotonic() < deadline:
        time.sleep(0.05)  # simulated work
    tune.report({"done_working": 1})


def reports_gpus(config: dict) -> None:
    """Reports the GPUs ember gave this trial, and when it ran."""
    import ember

    start = time.time()
    time.sleep(0.2)  # simulated work, so that two trials on one GPU would overlap
    tune.report({"gpu_ids": [str(g) for g in ember.get_gpu_ids()], "start": start,
                 "end": time.time(),
                 "visible": os.environ.get("CUDA_VISIBLE_DEVICES", "")})

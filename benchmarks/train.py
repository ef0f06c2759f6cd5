"""ember.train vs torchrun vs Ray Train 2.60: the same 2-process DDP job, three launchers.

Usage::

    .venv/bin/python benchmarks/train.py                       # torchrun and ember
    .venv/bin/python benchmarks/train.py --ray-python /work/main/.ray-venv/bin/python

The job (identical code on every launcher): a small MLP (``--hidden`` wide, two hidden
layers) trained with DistributedDataParallel over gloo on 2 processes, ``--steps`` SGD
steps on a fixed synthetic batch per rank, one thread per process, a metrics report
every ``--report-every`` steps. Each launcher runs as a fresh script (a subprocess, as a
user would run it), ``--repeats`` times, interleaved; the table shows the best run of
each. Measured:

- ``step_ms``: steady-state step time, the median of rank 0's step times after the
  first ``--warmup`` steps.
- ``fit_to_first_step_s``: from the ``fit()`` call (ember, Ray) or the launch of the
  ``torchrun`` process to the end of rank 0's first training step.
- ``end_to_end_s``: the whole script, from process start to exit (imports, cluster
  start, the job, shutdown); ``fit_s`` is the ``fit()`` call alone.

Every launcher runs in a session of its own (``start_new_session``): with Linux's
autogroup scheduling the CPU is shared between sessions, and ember's node manager and
Ray's processes start sessions of their own, so torchrun gets the same treatment.

ember never imports Ray: Ray runs in a subprocess with the interpreter given by
``--ray-python``, as a single local instance on loopback (no dashboard, no usage stats,
a private HOME), with ``RAY_TRAIN_V2_ENABLED`` left as Ray ships it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Optional

from _runner import environment_for_ray

RESULT = "RESULT "


# -- the job (runs in the training processes of every launcher) -----------------------

def ddp_job(config: dict[str, Any], report: Callable[[dict[str, Any]], None],
            prepare: Callable[[Any], Any]) -> None:
    """The timed DDP loop; rank 0 writes its timings to ``config["out"]`` at the end.

    (A file, not the last report: Ray Train 2.60's ``Result.metrics`` only keeps
    metrics reported with a checkpoint.)
    """
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    torch.manual_seed(0)
    rank = dist.get_rank()
    width = config["hidden"]
    model = prepare(torch.nn.Sequential(
        torch.nn.Linear(config["inputs"], width), torch.nn.ReLU(),
        torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(rank)
    x = torch.randn(config["batch"], config["inputs"], generator=generator)
    y = torch.randint(0, 10, (config["batch"],), generator=generator)
    step_s: list[float] = []
    first_step_done_at = 0.0
    for step in range(config["steps"]):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        step_s.append(time.perf_counter() - start)
        if step == 0:
            first_step_done_at = time.time()
        last = step == config["steps"] - 1
        if (step + 1) % config["report_every"] == 0 or last:
            report({"step": step, "loss": float(loss)})
    if rank == 0:
        steady = step_s[config["warmup"]:] or step_s
        with open(config["out"], "w") as f:
            json.dump({"step_ms": statistics.median(steady) * 1e3,
                       "mean_step_ms": statistics.fmean(steady) * 1e3,
                       "first_step_done_at": first_step_done_at}, f)


def _job_config(args: argparse.Namespace) -> dict[str, Any]:
    return {"steps": args.steps, "warmup": args.warmup, "hidden": args.hidden,
            "inputs": args.inputs, "batch": args.batch, "report_every": args.report_every,
            "out": args.out}


def _ember_loop(config: dict[str, Any]) -> None:
    import ember.train
    from ember.train.torch import prepare_model
    ddp_job(config, ember.train.report, prepare_model)


def _ray_loop(config: dict[str, Any]) -> None:
    import ray.train
    from ray.train.torch import prepare_model
    ddp_job(config, ray.train.report, prepare_model)


# -- child side: one launcher, one run ---------------------------------------------------

def _child_trainer(args: argparse.Namespace) -> dict[str, Any]:
    storage = tempfile.mkdtemp(prefix=f"bench-train-{args.engine}-")
    try:
        if args.engine == "ember":
            import ember
            from ember.train import RunConfig, ScalingConfig
            from ember.train.torch import TorchTrainer
            ember.init(num_cpus=2)
            loop: Callable[[dict[str, Any]], None] = _ember_loop
        else:
            import ray
            from ray.train import RunConfig, ScalingConfig
            from ray.train.torch import TorchTrainer
            ray.init(address="local", num_cpus=2, include_dashboard=False,
                     _node_ip_address="127.0.0.1", log_to_driver=False)
            loop = _ray_loop
        trainer = TorchTrainer(loop, train_loop_config=_job_config(args),
                               scaling_config=ScalingConfig(num_workers=2),
                               run_config=RunConfig(name="bench", storage_path=storage))
        fit_called_at = time.time()
        trainer.fit()
        fit_s = time.time() - fit_called_at
        (ember if args.engine == "ember" else ray).shutdown()
        with open(args.out) as f:
            metrics = json.load(f)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return {"step_ms": metrics["step_ms"], "mean_step_ms": metrics["mean_step_ms"],
            "fit_to_first_step_s": metrics["first_step_done_at"] - fit_called_at,
            "fit_s": fit_s}


def _child_torchrun(args: argparse.Namespace) -> None:
    """One torchrun process (rank from the environment torchrun sets)."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel
    dist.init_process_group("gloo")
    ddp_job(_job_config(args), lambda metrics: None, DistributedDataParallel)
    dist.destroy_process_group()


# -- parent side ----------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _job_flags(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--warmup", str(args.warmup), "--hidden",
            str(args.hidden), "--inputs", str(args.inputs), "--batch", str(args.batch),
            "--report-every", str(args.report_every)]


def _run_torchrun(args: argparse.Namespace) -> Optional[dict[str, Any]]:
    out = tempfile.mktemp(prefix="bench-torchrun-", suffix=".json")
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1",
               "--nproc_per_node=2", "--master_addr=127.0.0.1",
               f"--master_port={_free_port()}", os.path.abspath(__file__), "--child",
               "--engine", "torchrun-rank", "--out", out] + _job_flags(args)
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    launched_at = time.time()
    done = subprocess.run(command, capture_output=True, text=True, env=env,
                          timeout=args.timeout_s, start_new_session=True)
    end_to_end_s = time.time() - launched_at
    try:
        with open(out) as f:
            final = json.load(f)
        os.unlink(out)
    except (OSError, ValueError):
        sys.stderr.write(f"torchrun failed (exit {done.returncode}):\n{done.stderr[-3000:]}\n")
        return None
    return {"step_ms": final["step_ms"], "mean_step_ms": final["mean_step_ms"],
            "fit_to_first_step_s": final["first_step_done_at"] - launched_at,
            "end_to_end_s": end_to_end_s}


def _run_trainer(python: str, engine: str, args: argparse.Namespace) -> Optional[dict[str, Any]]:
    out = tempfile.mktemp(prefix=f"bench-{engine}-", suffix=".json")
    command = [python, os.path.abspath(__file__), "--child", "--engine", engine,
               "--out", out] + _job_flags(args)
    env = dict(os.environ)
    home = None
    if engine == "ray":
        home = tempfile.mkdtemp(prefix="bench-ray-home-")
        env = environment_for_ray(home)
    started_at = time.time()
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env,
                              timeout=args.timeout_s, start_new_session=True)
    finally:
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)
        if os.path.exists(out):
            os.unlink(out)
    end_to_end_s = time.time() - started_at
    for line in done.stdout.splitlines():
        if line.startswith(RESULT):
            return dict(json.loads(line[len(RESULT):]), end_to_end_s=end_to_end_s)
    sys.stderr.write(f"{engine} failed (exit {done.returncode}):\n{done.stderr[-3000:]}\n")
    return None


def _best(runs: list[Optional[dict[str, Any]]]) -> Optional[dict[str, Any]]:
    """Per metric, the best (lowest) value over the runs that finished."""
    ok = [r for r in runs if r]
    if not ok:
        return None
    return {key: min(r[key] for r in ok if key in r) for key in ok[0]}


def _table(best: dict[str, Optional[dict[str, Any]]]) -> str:
    lines = ["| metric | torchrun | ember | Ray Train | ember vs torchrun | ember vs Ray |",
             "|---|---|---|---|---|---|"]

    def cell(engine: str, key: str) -> str:
        value = (best.get(engine) or {}).get(key)
        return "-" if value is None else f"{value:.3f}" if value < 10 else f"{value:.1f}"

    def ratio(a: str, b: str, key: str, as_overhead: bool) -> str:
        x, y = (best.get(a) or {}).get(key), (best.get(b) or {}).get(key)
        if x is None or y is None:
            return "-"
        return f"{(x / y - 1) * 100:+.1f}%" if as_overhead else f"{y / x:.2f}x faster"

    for key, label in (("step_ms", "steady-state step (ms, median)"),
                       ("fit_to_first_step_s", "fit() to first step done (s)"),
                       ("fit_s", "fit() call (s)"),
                       ("end_to_end_s", "script end to end (s)")):
        lines.append(f"| {label} | {cell('torchrun', key)} | {cell('ember', key)} | "
                     f"{cell('ray', key)} | {ratio('ember', 'torchrun', key, True)} | "
                     f"{ratio('ember', 'ray', key, False)} |")
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray-python", help="interpreter of a virtualenv with ray[train]")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--report-every", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout-s", type=int, default=600)
    parser.add_argument("--save", action="store_true",
                        help="write benchmarks/results/train-<date>-<commit>.{json,txt}")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="ember", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.engine == "torchrun-rank":
            _child_torchrun(args)
        else:
            sys.stdout.write(RESULT + json.dumps(_child_trainer(args)) + "\n")
        return

    runs: dict[str, list[Optional[dict[str, Any]]]] = {"torchrun": [], "ember": [], "ray": []}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):  # interleaved, so drifting load hits every launcher
        runs["torchrun"].append(_run_torchrun(args))
        runs["ember"].append(_run_trainer(sys.executable, "ember", args))
        if args.ray_python:
            runs["ray"].append(_run_trainer(args.ray_python, "ray", args))
    best = {engine: _best(r) for engine, r in runs.items()}
    header = (f"{args.steps} steps, MLP {args.inputs}-{args.hidden}-{args.hidden}-10, batch "
              f"{args.batch} per rank, 2 processes (gloo, 1 thread each), report every "
              f"{args.report_every} steps; best of {args.repeats} interleaved runs; "
              f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> "
              f"{os.getloadavg()[0]:.1f}")
    text = f"{header}\n\n{_table(best)}\n"
    sys.stdout.write(text + "\n" + json.dumps(runs, indent=1) + "\n")
    if args.save:
        stamp = f"{datetime.date.today():%Y-%m-%d}-{_commit()}"
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        with open(os.path.join(folder, f"train-{stamp}.txt"), "w") as f:
            f.write(text)
        with open(os.path.join(folder, f"train-{stamp}.json"), "w") as f:
            json.dump({"args": vars(args), "runs": runs, "best": best}, f, indent=1)


if __name__ == "__main__":
    main()

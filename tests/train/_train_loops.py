"""Training loops the ember.train tests run on workers (importable by the workers)."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from typing import Any

import torch.distributed as dist

import ember.train as train
from ember.train import Checkpoint


def epoch_from_checkpoint() -> int:
    """The epoch to start at: one after the checkpoint's, or 0."""
    checkpoint = train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        with open(os.path.join(folder, "state.json")) as f:
            return json.load(f)["epoch"] + 1


def report_epoch(epoch: int, metrics: dict[str, Any]) -> None:
    """Report ``metrics`` with a checkpoint holding ``epoch`` (rank 0 writes it)."""
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = None
        if train.get_context().get_world_rank() == 0:
            with open(os.path.join(folder, "state.json"), "w") as f:
                json.dump({"epoch": epoch}, f)
            checkpoint = Checkpoint.from_directory(folder)
        train.report(dict(metrics, epoch=epoch), checkpoint=checkpoint)


def epochs_loop(config: dict[str, Any]) -> None:
    """Count epochs, checkpointing each; optionally fail once on one rank.

    config: epochs, and optionally fail_rank, fail_epoch, fail_how ("kill" or "raise"),
    fail_always (fail on every attempt, not only the first).
    """
    start = epoch_from_checkpoint()
    rank = train.get_context().get_world_rank()
    first_attempt = train.get_checkpoint() is None
    for epoch in range(start, config["epochs"]):
        if rank == config.get("fail_rank") and epoch == config.get("fail_epoch") \
                and (first_attempt or config.get("fail_always")):
            if config.get("fail_how") == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError(f"boom on rank {rank} at epoch {epoch}")
        report_epoch(epoch, {"start": start, "rank": rank,
                             "trial": train.get_context().get_trial_name()})
        if dist.is_initialized():
            # Lockstep as in DDP: no rank starts epoch e+1 before every rank reported e.
            dist.barrier()

"""A rank that raises or dies stops the whole group; the group restarts from the latest
checkpoint up to max_failures; the final error names the rank and carries its traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from _train_loops import epochs_loop
from conftest import process_gone, wait_for
from ember.train import (DataParallelTrainer, FailureConfig, RunConfig, ScalingConfig,
                         TrainingFailedError, WorkerFailure)
from ember.train._run import _mark_root_cause
from ember.train.torch import TorchTrainer


def _run_config(tmp_path: Any, max_failures: int, name: str = "run") -> RunConfig:
    return RunConfig(name=name, storage_path=str(tmp_path),
                     failure_config=FailureConfig(max_failures=max_failures))


@pytest.mark.timeout(120)
def test_a_sigkilled_rank_restarts_the_group_from_its_checkpoint(ember_local: Any,
                                                                  tmp_path: Any) -> None:
    """Rank 1 is SIGKILLed in epoch 2; rank 0 was in a gloo collective with it."""
    config = {"epochs": 5, "fail_rank": 1, "fail_epoch": 2, "fail_how": "kill"}
    result = TorchTrainer(epochs_loop, train_loop_config=config,
                          scaling_config=ScalingConfig(num_workers=2),
                          run_config=_run_config(tmp_path, max_failures=1)).fit()
    frame = result.metrics_dataframe
    # Epochs 0-1 from the first attempt, 2-4 from the second, which resumed at epoch 2.
    assert list(frame["epoch"]) == [0, 1, 2, 3, 4]
    assert list(frame["start"]) == [0, 0, 2, 2, 2]
    assert result.metrics["epoch"] == 4
    with result.checkpoint.as_directory() as folder:
        assert open(os.path.join(folder, "state.json")).read() == '{"epoch": 4}'
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000004"


@pytest.mark.timeout(120)
def test_a_loop_raising_on_one_rank_fails_the_run_naming_that_rank(ember_local: Any,
                                                                   tmp_path: Any) -> None:
    config = {"epochs": 4, "fail_rank": 1, "fail_epoch": 1, "fail_how": "raise"}
    trainer = TorchTrainer(epochs_loop, train_loop_config=config,
                           scaling_config=ScalingConfig(num_workers=2),
                           run_config=_run_config(tmp_path, max_failures=0))
    with pytest.raises(TrainingFailedError) as info:
        trainer.fit()
    error = info.value
    root = error.root_cause
    assert root is not None and root.rank == 1 and root.kind == "raised"
    assert root.node_ip == "127.0.0.1" and root.pid > 0
    assert isinstance(error.__cause__, ValueError)
    message = str(error)
    assert "rank 1" in message and "[root cause]" in message
    assert "ValueError: boom on rank 1 at epoch 1" in message
    assert "Traceback (most recent call last)" in message and "epochs_loop" in message
    assert "max_failures=0" in message
    # The run kept what it had: epoch 0 is recorded and checkpointed.
    assert error.attempts == 1

    # The next fit works (same cluster, same storage).
    config = {"epochs": 2}
    result = TorchTrainer(epochs_loop, train_loop_config=config,
                          scaling_config=ScalingConfig(num_workers=2),
                          run_config=_run_config(tmp_path, max_failures=0, name="next")).fit()
    assert result.metrics["epoch"] == 1


@pytest.mark.timeout(120)
def test_a_failure_on_every_attempt_gives_up_after_max_failures(ember_local: Any,
                                                                tmp_path: Any) -> None:
    config = {"epochs": 3, "fail_rank": 0, "fail_epoch": 1, "fail_how": "raise",
              "fail_always": True}
    trainer = DataParallelTrainer(epochs_loop, train_loop_config=config,
                                  scaling_config=ScalingConfig(num_workers=2),
                                  run_config=_run_config(tmp_path, max_failures=2))
    with pytest.raises(TrainingFailedError) as info:
        trainer.fit()
    assert info.value.attempts == 3
    assert info.value.root_cause.rank == 0
    assert isinstance(info.value, RuntimeError)


def _failure(rank: int, kind: str, cause: str) -> WorkerFailure:
    return WorkerFailure(rank=rank, node_id="n", node_ip="127.0.0.1", pid=1, kind=kind,  # type: ignore[arg-type]
                         exit_cause=cause)


def test_a_peer_error_in_a_collective_is_not_taken_for_the_root_cause() -> None:
    peer = _failure(0, "raised", "raised DistBackendError: [gloo] Connection closed by peer")
    died = _failure(1, "died", "the worker process died: killed by signal SIGKILL")
    ordered = _mark_root_cause([peer, died])
    assert ordered[0] is died and died.root_cause and not peer.root_cause
    only = _mark_root_cause([_failure(0, "raised", "raised DistBackendError: gloo")])
    assert only[0].root_cause


DRIVER = textwrap.dedent("""
    import os, sys, time
    import ember, ember.train as train
    from ember.train import RunConfig, ScalingConfig, Checkpoint
    from ember.train.torch import TorchTrainer

    def loop(config):
        import json, tempfile
        with open(os.path.join(config["pids"], str(os.getpid())), "w"):
            pass
        start = 0
        if train.get_checkpoint():
            with train.get_checkpoint().as_directory() as d:
                start = json.load(open(os.path.join(d, "state.json")))["epoch"] + 1
        for epoch in range(start, config["epochs"]):
            with tempfile.TemporaryDirectory() as d:
                json.dump({"epoch": epoch}, open(os.path.join(d, "state.json"), "w"))
                train.report({"epoch": epoch, "start": start},
                             checkpoint=Checkpoint.from_directory(d))
            while epoch >= config["pause_after"] and not config.get("restored"):
                time.sleep(0.05)  # the interrupted run: wait here to be killed

    ember.init(num_cpus=2)
    TorchTrainer(loop, train_loop_config={"epochs": 4, "pause_after": 1, "pids": sys.argv[2]},
                 scaling_config=ScalingConfig(num_workers=2),
                 run_config=RunConfig(name="interrupted", storage_path=sys.argv[1])).fit()
""")


@pytest.mark.timeout(300)
def test_a_killed_driver_leaves_no_worker_and_its_run_can_be_restored(ember_local: Any,
                                                                       tmp_path: Any) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    pids_dir = tmp_path / "pids"
    pids_dir.mkdir()
    driver = subprocess.Popen([sys.executable, str(script), str(tmp_path), str(pids_dir)],
                              stdout=open(tmp_path / "driver.log", "w"), stderr=subprocess.STDOUT)
    run = tmp_path / "interrupted"
    try:
        wait_for(lambda: (run / "checkpoint_000001").is_dir() and len(os.listdir(pids_dir)) == 2,
                 timeout_s=180, what="the run's second checkpoint")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    worker_pids = [int(p) for p in os.listdir(pids_dir)]
    wait_for(lambda: all(process_gone(pid) for pid in worker_pids), timeout_s=30,
             what=f"the training workers {worker_pids} to exit after their driver died")

    assert TorchTrainer.can_restore(run)
    assert not TorchTrainer.can_restore(tmp_path)
    trainer = TorchTrainer.restore(str(run), train_loop_config={
        "epochs": 4, "pause_after": 1, "pids": str(pids_dir), "restored": True})
    result = trainer.fit()
    frame = result.metrics_dataframe
    assert list(frame["epoch"]) == [0, 1, 2, 3]
    assert list(frame["start"]) == [0, 0, 2, 2]
    assert result.path == str(run)
    assert os.path.basename(result.checkpoint.path) == "checkpoint_000003"


@pytest.mark.timeout(90)
def test_a_new_run_in_an_earlier_runs_folder_never_overwrites_its_checkpoints(
        ember_local: Any, tmp_path: Any) -> None:
    def fit() -> Any:
        return DataParallelTrainer(epochs_loop, train_loop_config={"epochs": 2},
                                   scaling_config=ScalingConfig(num_workers=1),
                                   run_config=_run_config(tmp_path, 0, name="same")).fit()

    first = fit()
    second = fit()
    assert list(second.metrics_dataframe["start"]) == [0, 0]  # a fresh run, not a resume
    assert os.path.basename(first.checkpoint.path) == "checkpoint_000001"
    assert os.path.basename(second.checkpoint.path) == "checkpoint_000003"
    assert os.path.isdir(first.checkpoint.path)

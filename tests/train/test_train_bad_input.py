"""Every bad input the issue lists gets a typed error naming the thing and the fix, and
the next fit on the same cluster still works."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import ember.train as train
from ember.train import (Checkpoint, CheckpointError, DataParallelTrainer, RunConfig,
                         ScalingConfig, SessionMisuseError, StorageError, TrainConfigError)
from ember.train.torch import TorchConfig, TorchTrainer


def report_once(config: dict[str, Any]) -> None:
    train.report({"value": config.get("value", 1)})


def _next_fit_works(tmp_path: Any) -> None:
    result = DataParallelTrainer(report_once, train_loop_config={"value": 7},
                                 scaling_config=ScalingConfig(num_workers=2),
                                 run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics == {"value": 7}


@pytest.mark.timeout(60)
def test_more_workers_than_the_cluster_can_ever_hold_is_an_error_not_a_hang(
        ember_local: Any, tmp_path: Any) -> None:
    trainer = TorchTrainer(report_once, train_loop_config={},
                           scaling_config=ScalingConfig(num_workers=3),
                           run_config=RunConfig(storage_path=str(tmp_path)))
    with pytest.raises(TrainConfigError) as info:
        trainer.fit()
    message = str(info.value)
    assert "num_workers=3" in message and "'CPU': 1.0" in message
    assert "at most 2" in message and "'CPU': 2.0" in message
    with pytest.raises(TrainConfigError, match="no node can hold even one worker"):
        DataParallelTrainer(report_once, train_loop_config={}, scaling_config=ScalingConfig(
            num_workers=1, resources_per_worker={"CPU": 4})).fit()
    with pytest.raises(TrainConfigError, match="STRICT_SPREAD"):
        DataParallelTrainer(report_once, train_loop_config={}, scaling_config=ScalingConfig(
            num_workers=2, placement_strategy="STRICT_SPREAD")).fit()
    _next_fit_works(tmp_path)


@pytest.mark.timeout(60)
def test_use_gpu_without_a_gpu_in_the_cluster_is_a_typed_error(ember_local: Any,
                                                                tmp_path: Any) -> None:
    trainer = TorchTrainer(report_once, train_loop_config={},
                           scaling_config=ScalingConfig(num_workers=1, use_gpu=True))
    with pytest.raises(TrainConfigError, match=r"use_gpu=True.*has none.*use_gpu=False"):
        trainer.fit()
    _next_fit_works(tmp_path)


@pytest.mark.timeout(60)
def test_a_train_loop_config_that_cannot_be_serialized_names_the_key(ember_local: Any,
                                                                      tmp_path: Any) -> None:
    with pytest.raises(TrainConfigError) as info:
        TorchTrainer(report_once, train_loop_config={"lr": 0.1, "lock": threading.Lock()})
    message = str(info.value)
    assert "train_loop_config['lock']" in message and "inside the training loop" in message
    lock = threading.Lock()
    with pytest.raises(TrainConfigError, match="train_loop_per_worker cannot be serialized"):
        TorchTrainer(lambda: lock.acquire())
    _next_fit_works(tmp_path)


def test_session_functions_outside_a_training_loop_raise() -> None:
    with pytest.raises(SessionMisuseError, match=r"report\(\) was called outside a training"):
        train.report({"loss": 1.0})
    with pytest.raises(SessionMisuseError, match="get_checkpoint"):
        train.get_checkpoint()
    with pytest.raises(SessionMisuseError, match="get_context"):
        train.get_context()
    with pytest.raises(SessionMisuseError, match="get_dataset_shard"):
        train.get_dataset_shard("train")


@pytest.mark.timeout(60)
def test_a_checkpoint_directory_that_does_not_exist(ember_local: Any, tmp_path: Any) -> None:
    missing = tmp_path / "no-such-checkpoint"
    with pytest.raises(CheckpointError, match="no such directory"):
        Checkpoint.from_directory(missing)
    trainer = DataParallelTrainer(report_once, train_loop_config={},
                                  resume_from_checkpoint=Checkpoint(str(missing)),
                                  run_config=RunConfig(storage_path=str(tmp_path)))
    with pytest.raises(CheckpointError, match="resume_from_checkpoint.*does not exist"):
        trainer.fit()
    with pytest.raises(CheckpointError, match="not the folder of an ember.train run"):
        TorchTrainer.restore(str(tmp_path))
    _next_fit_works(tmp_path)


@pytest.mark.timeout(60)
def test_a_storage_path_that_is_not_writable(ember_local: Any, tmp_path: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    trainer = DataParallelTrainer(report_once, train_loop_config={},
                                  run_config=RunConfig(storage_path=str(blocker / "results")))
    with pytest.raises(StorageError, match="is not writable.*RunConfig\\(storage_path"):
        trainer.fit()
    _next_fit_works(tmp_path)


def test_malformed_trainer_arguments_are_reported_at_construction() -> None:
    with pytest.raises(TrainConfigError, match="not callable"):
        TorchTrainer("train.py")  # type: ignore[arg-type]
    with pytest.raises(TrainConfigError, match="takes no argument"):
        TorchTrainer(lambda: None, train_loop_config={"lr": 1})
    with pytest.raises(TrainConfigError, match="must take none, or one"):
        TorchTrainer(lambda a, b: None)
    with pytest.raises(TrainConfigError, match="not an ember.data Dataset"):
        TorchTrainer(report_once, train_loop_config={}, datasets={"train": [1, 2, 3]})
    with pytest.raises(TrainConfigError, match="pass an ember.train ScalingConfig"):
        TorchTrainer(report_once, train_loop_config={},
                     scaling_config={"num_workers": 2})  # type: ignore[arg-type]
    with pytest.raises(TrainConfigError, match="num_workers must be an int >= 1"):
        ScalingConfig(num_workers=0)
    with pytest.raises(TrainConfigError, match="backend"):
        TorchConfig(backend="mpi")  # type: ignore[arg-type]

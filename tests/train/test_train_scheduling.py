"""Placement of the worker group, GPUs per worker, the rendezvous, the TrainContext."""

from __future__ import annotations

import datetime
import os
from typing import Any

import pytest
import torch.distributed as dist

import ember
import ember.train as train
from ember.train import (DataParallelTrainer, RendezvousTimeoutError, RunConfig, ScalingConfig,
                         TrainConfigError)
from ember.train._worker_group import WorkerGroup
from ember.train.torch import wait_for_ranks
from ember.util import placement_group, remove_placement_group


def context_loop(config: dict[str, Any]) -> None:
    context = train.get_context()
    train.report({
        "rank": context.get_world_rank(), "world_size": context.get_world_size(),
        "local_rank": context.get_local_rank(),
        "local_world_size": context.get_local_world_size(),
        "node_rank": context.get_node_rank(), "name": context.get_experiment_name(),
        "metadata": context.get_metadata(), "config": config, "gpu_ids": ember.get_gpu_ids()})


@pytest.fixture
def ember_with_gpus():
    """A one-node cluster that declares two GPUs (nothing CUDA runs: scheduling only)."""
    if ember.is_initialized():
        ember.shutdown()
    ember.init(num_cpus=2, num_gpus=2, object_store_memory=256 << 20)
    yield
    ember.shutdown()


def gpu_loop(config: dict[str, Any]) -> None:
    rank = train.get_context().get_world_rank()
    with open(os.path.join(config["out"], f"rank{rank}"), "w") as f:
        f.write(f"{os.environ.get('CUDA_VISIBLE_DEVICES')};{ember.get_gpu_ids()}")
    train.report({"rank": rank})


@pytest.mark.timeout(90)
def test_gpu_workers_are_placed_on_declared_gpus_and_an_extra_one_never_fits(
        ember_with_gpus: Any, tmp_path: Any) -> None:
    result = DataParallelTrainer(
        gpu_loop, train_loop_config={"out": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
        run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics == {"rank": 0}
    with pytest.raises(TrainConfigError, match="at most 2"):
        DataParallelTrainer(gpu_loop, train_loop_config={}, scaling_config=ScalingConfig(
            num_workers=3, use_gpu=True)).fit()


@pytest.mark.timeout(90)
def test_each_worker_sees_exactly_its_gpu(ember_with_gpus: Any, tmp_path: Any) -> None:
    DataParallelTrainer(gpu_loop, train_loop_config={"out": str(tmp_path)},
                        scaling_config=ScalingConfig(num_workers=2, use_gpu=True),
                        run_config=RunConfig(storage_path=str(tmp_path))).fit()
    seen = [(tmp_path / f"rank{r}").read_text().split(";") for r in (0, 1)]
    assert sorted(v for v, _ in seen) == ["0", "1"]
    for visible_ids, gpu_ids in seen:
        assert gpu_ids == f"[{visible_ids}]"


@pytest.mark.timeout(60)
def test_the_context_gives_ranks_sizes_run_name_and_metadata(ember_local: Any,
                                                             tmp_path: Any) -> None:
    result = DataParallelTrainer(
        context_loop, train_loop_config={"x": 1}, metadata={"owner": "tests"},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="ctx", storage_path=str(tmp_path))).fit()
    assert result.metrics == {"rank": 0, "world_size": 2, "local_rank": 0,
                              "local_world_size": 2, "node_rank": 0, "name": "ctx",
                              "metadata": {"owner": "tests"}, "config": {"x": 1},
                              "gpu_ids": []}
    assert result.config == {"x": 1}


@pytest.mark.timeout(60)
def test_a_group_that_fits_but_stays_unplaced_times_out_with_the_free_resources(
        ember_local: Any) -> None:
    holder = placement_group([{"CPU": 2}])
    assert holder.wait(10)
    try:
        with pytest.raises(TrainConfigError, match=r"not placed within 1 s.*free now"):
            WorkerGroup(ScalingConfig(num_workers=2), placement_timeout_s=1)
    finally:
        remove_placement_group(holder)
    group = WorkerGroup(ScalingConfig(num_workers=2), placement_timeout_s=30)
    try:
        assert [w.rank for w in group.workers] == [0, 1]
        assert all(w.pid > 0 and w.node_ip == "127.0.0.1" for w in group.workers)
    finally:
        group.shutdown()


def test_a_rendezvous_that_times_out_names_the_missing_ranks() -> None:
    store = dist.TCPStore("127.0.0.1", 0, 3, True, timeout=datetime.timedelta(seconds=5),
                          wait_for_workers=False)
    store.set("ember/joined/0", "1")
    store.set("ember/joined/2", "1")
    with pytest.raises(RendezvousTimeoutError) as info:
        wait_for_ranks(store, 3, 0.5, f"127.0.0.1:{store.port}")
    assert info.value.missing_ranks == [1]
    assert "rank(s) 1 of 3 never joined" in str(info.value)
    assert isinstance(info.value, TimeoutError)

"""A TorchTrainer across nodes: STRICT_SPREAD puts each rank on its own node, and DDP
over gloo works between them (a loopback cluster of CLI-started nodes)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

import ember
import ember.train as train
from ember.train import RunConfig, ScalingConfig
from ember.train.torch import TorchTrainer


def _cluster_helpers() -> Any:
    """tests/cluster/conftest.py's ``start_cluster`` (head 1 CPU, two nodes of 2 CPUs)."""
    path = Path(__file__).resolve().parents[1] / "cluster" / "conftest.py"
    spec = importlib.util.spec_from_file_location("ember_cluster_helpers", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  (its dataclasses need it)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def three_nodes() -> Iterator[Any]:
    with _cluster_helpers().start_cluster() as cluster:
        yield cluster


def spread_loop() -> None:
    context = train.get_context()
    total = torch.tensor([float(context.get_world_rank() + 1)])
    torch.distributed.all_reduce(total)
    model = train.torch.prepare_model(torch.nn.Linear(2, 1))
    model(torch.ones(4, 2)).sum().backward()
    node_ids: list[Any] = [None, None]
    torch.distributed.all_gather_object(node_ids, ember.get_runtime_context().get_node_id())
    train.report({"rank": context.get_world_rank(), "node_rank": context.get_node_rank(),
                  "local_rank": context.get_local_rank(),
                  "local_world_size": context.get_local_world_size(),
                  "node_ids": node_ids,
                  "sum": float(total), "master": os.environ["MASTER_ADDR"]})


@pytest.mark.timeout(240)
def test_strict_spread_puts_each_rank_on_its_own_node_and_ddp_spans_them(
        three_nodes: Any, tmp_path: Any) -> None:
    import ember.train.torch  # noqa: F401  (spread_loop reaches it as train.torch)
    result = TorchTrainer(spread_loop, scaling_config=ScalingConfig(
                              num_workers=2, placement_strategy="STRICT_SPREAD"),
                          run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics["sum"] == 3.0  # 1 + 2: both ranks joined one process group
    assert result.metrics["master"] == "127.0.0.1"
    assert result.metrics["node_rank"] == 0 and result.metrics["local_world_size"] == 1
    rank0_node, rank1_node = result.metrics["node_ids"]
    assert rank0_node != rank1_node
    assert {rank0_node, rank1_node} <= set(three_nodes.node_ids.values())
    with pytest.raises(train.TrainConfigError, match="STRICT_SPREAD"):
        TorchTrainer(spread_loop, scaling_config=ScalingConfig(
            num_workers=4, placement_strategy="STRICT_SPREAD")).fit()

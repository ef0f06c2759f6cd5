"""Dataset shards: equal in size across workers, every row exactly once per epoch."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import torch

import ember.data
import ember.train as train
from ember.train import DataParallelTrainer, RunConfig, ScalingConfig
from ember.train.torch import TorchTrainer


def record_shard_loop(config: dict[str, Any]) -> None:
    """Write the ids each rank reads, per epoch, into config["out"]."""
    rank = train.get_context().get_world_rank()
    shard = train.get_dataset_shard("train")
    for epoch in range(config["epochs"]):
        ids = [int(i) for batch in shard.iter_batches(batch_size=7) for i in batch["id"]]
        with open(os.path.join(config["out"], f"rank{rank}-epoch{epoch}.json"), "w") as f:
            json.dump(ids, f)
        train.report({"epoch": epoch, "rows": len(ids)})


def _shards(out: Any, rank: int, epoch: int) -> list[int]:
    return json.loads((out / f"rank{rank}-epoch{epoch}.json").read_text())


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lazy", [False, True], ids=["materialized", "lazy"])
def test_shards_cover_every_row_exactly_once_per_epoch(ember_local: Any, tmp_path: Any,
                                                       lazy: bool) -> None:
    """With both CPUs held by the workers, a lazy dataset is executed before they start."""
    out = tmp_path / "ids"
    out.mkdir()
    dataset = ember.data.range(60, override_num_blocks=4)
    dataset = dataset.map_batches(lambda b: b) if lazy else dataset.materialize()
    result = DataParallelTrainer(
        record_shard_loop, train_loop_config={"epochs": 2, "out": str(out)},
        datasets={"train": dataset}, scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert list(result.metrics_dataframe["rows"]) == [30, 30]
    for epoch in range(2):
        rank0, rank1 = _shards(out, 0, epoch), _shards(out, 1, epoch)
        assert len(rank0) == len(rank1) == 30
        assert sorted(rank0 + rank1) == list(range(60))


def torch_batches_loop() -> None:
    shard = train.get_dataset_shard("train")
    total, rows = 0.0, 0
    for batch in shard.iter_torch_batches(batch_size=8, dtypes=torch.float32):
        assert isinstance(batch["x"], torch.Tensor)
        total += float(batch["x"].sum())
        rows += len(batch["x"])
    total_t = torch.tensor([total, float(rows)])
    torch.distributed.all_reduce(total_t)
    train.report({"sum": float(total_t[0]), "rows": int(total_t[1])})


@pytest.mark.timeout(120)
def test_iter_torch_batches_over_shards_sums_to_the_whole_dataset(ember_local: Any,
                                                                   tmp_path: Any) -> None:
    dataset = ember.data.from_items([{"x": float(i)} for i in range(40)])
    result = TorchTrainer(torch_batches_loop, datasets={"train": dataset},
                          scaling_config=ScalingConfig(num_workers=2),
                          run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics == {"sum": float(sum(range(40))), "rows": 40}


def missing_shard_loop() -> None:
    train.get_dataset_shard("validation")


@pytest.mark.timeout(60)
def test_asking_for_a_dataset_that_was_not_given_names_the_ones_that_were(
        ember_local: Any, tmp_path: Any) -> None:
    trainer = DataParallelTrainer(missing_shard_loop,
                                  datasets={"train": ember.data.from_items([{"a": 1}] * 4)},
                                  scaling_config=ScalingConfig(num_workers=1),
                                  run_config=RunConfig(storage_path=str(tmp_path)))
    with pytest.raises(train.TrainingFailedError, match=r"no dataset named 'validation'.*'train'"):
        trainer.fit()

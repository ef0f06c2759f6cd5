"""TorchTrainer end to end: DDP over gloo on two real worker processes."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pandas as pd
import pytest
import torch

import ember.train as train
from ember.train import Checkpoint, Result, RunConfig, ScalingConfig
from ember.train.torch import (TorchConfig, TorchTrainer, get_device, prepare_data_loader,
                               prepare_model)


def linear_regression_loop(config: dict[str, Any]) -> None:
    """y = 3x + 1 with DDP; each rank sees different data, the gradients are averaged."""
    torch.manual_seed(0)  # same initial weights on every rank
    context = train.get_context()
    rank = context.get_world_rank()
    print(f"rank {rank} of {context.get_world_size()} starting")
    generator = torch.Generator().manual_seed(100 + rank)
    x = torch.randn(64, 1, generator=generator)
    dataset = torch.utils.data.TensorDataset(x, 3 * x + 1)
    loader = prepare_data_loader(torch.utils.data.DataLoader(dataset, batch_size=16,
                                                             shuffle=True))
    seen = sum(len(batch[0]) for batch in loader)
    model = prepare_model(torch.nn.Linear(1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for epoch in range(config["epochs"]):
        loader.sampler.set_epoch(epoch)
        for xb, yb in loader:
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            optimizer.step()
        with tempfile.TemporaryDirectory() as folder:
            # Every rank saves its own weights: the promoted checkpoint merges both files.
            torch.save(model.module.state_dict(), os.path.join(folder, f"weights_rank{rank}.pt"))
            train.report({"epoch": epoch, "loss": loss.item(), "rows_per_epoch": seen,
                          "device": str(get_device()), "is_ddp": type(model).__name__},
                         checkpoint=Checkpoint.from_directory(folder))


@pytest.mark.timeout(120)
def test_ddp_linear_regression_converges_with_identical_weights_on_both_ranks(
        ember_local: Any, tmp_path: Any, capfd: Any) -> None:
    epochs = 12
    trainer = TorchTrainer(
        linear_regression_loop, train_loop_config={"lr": 0.3, "epochs": epochs},
        torch_config=TorchConfig(timeout_s=60),
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(name="ddp", storage_path=str(tmp_path)))
    result = trainer.fit()

    assert result.error is None
    assert result.path == str(tmp_path / "ddp")
    assert result.metrics["epoch"] == epochs - 1
    assert result.metrics["loss"] < 1e-3
    assert result.metrics["is_ddp"] == "DistributedDataParallel"
    assert result.metrics["device"] == "cpu"
    # DistributedSampler: each rank reads half of its 64 rows per epoch.
    assert result.metrics["rows_per_epoch"] == 32
    frame = result.metrics_dataframe
    assert list(frame["epoch"]) == list(range(epochs))
    assert frame["loss"].iloc[-1] < frame["loss"].iloc[0]

    # The latest checkpoint is returned, holds both ranks' files, and they are identical.
    assert result.checkpoint.path == str(tmp_path / "ddp" / f"checkpoint_{epochs - 1:06d}")
    with result.checkpoint.as_directory() as folder:
        weights = [torch.load(os.path.join(folder, f"weights_rank{r}.pt")) for r in (0, 1)]
    assert torch.equal(weights[0]["weight"], weights[1]["weight"])
    assert torch.equal(weights[0]["bias"], weights[1]["bias"])
    assert weights[0]["weight"].item() == pytest.approx(3.0, abs=0.05)
    assert weights[0]["bias"].item() == pytest.approx(1.0, abs=0.05)

    # The run folder holds the metrics as CSV and JSON lines, and reloads as a Result.
    assert len(pd.read_csv(tmp_path / "ddp" / "progress.csv")) == epochs
    reloaded = Result.from_path(result.path)
    assert reloaded.metrics["epoch"] == epochs - 1
    assert reloaded.checkpoint == result.checkpoint
    assert not (tmp_path / "ddp" / ".staging").exists()

    # Each rank's output reached the driver prefixed with its rank.
    out = capfd.readouterr().out
    assert "(RayTrainWorker(rank=0) pid=" in out and "rank 0 of 2 starting" in out
    assert "(RayTrainWorker(rank=1) pid=" in out and "rank 1 of 2 starting" in out


def single_worker_loop() -> None:
    model = prepare_model(torch.nn.Linear(2, 1))
    train.report({"wrapped": type(model).__name__,
                  "world_size": torch.distributed.get_world_size()})


@pytest.mark.timeout(60)
def test_one_worker_gets_a_process_group_but_no_ddp_wrapper(ember_local: Any,
                                                            tmp_path: Any) -> None:
    result = TorchTrainer(single_worker_loop, scaling_config=ScalingConfig(num_workers=1),
                          run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert result.metrics == {"wrapped": "Linear", "world_size": 1}
    assert result.checkpoint is None
    assert os.path.basename(result.path).startswith("TorchTrainer_")

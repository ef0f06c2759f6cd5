"""A Tune sweep over an ember.train TorchTrainer: each trial is a data-parallel training run."""

from __future__ import annotations

import pytest

from ember import tune
from ember.train import ScalingConfig
from ember.train.torch import TorchTrainer

from _tune_trainables import torch_regression_loop


@pytest.mark.timeout(240)
def test_tuner_sweeps_a_torch_trainer(ember_local, tmp_path) -> None:
    trainer = TorchTrainer(torch_regression_loop, train_loop_config={"epochs": 3},
                           scaling_config=ScalingConfig(num_workers=2))
    grid = tune.Tuner(
        trainer, param_space={"train_loop_config": {"lr": tune.grid_search([0.001, 0.3])}},
        tune_config=tune.TuneConfig(metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="sweep", verbose=0)).fit()
    assert grid.num_errors == 0, grid.errors
    assert len(grid) == 2
    best = grid.get_best_result()
    assert best.config["train_loop_config"]["lr"] == 0.3
    assert best.metrics["training_iteration"] == 3
    assert best.metrics["rank"] == 0  # rank 0's results are the trial's
    frame = grid.get_dataframe()
    assert len(frame) == 2 and "config/train_loop_config/lr" in frame

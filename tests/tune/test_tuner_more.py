"""More sweeps through the real runtime: HyperBand pauses, placement groups, fresh actors,
callbacks, restarting errored trials."""

from __future__ import annotations

import os

import pytest

from ember import tune
from ember.tune.schedulers import HyperBandScheduler, MedianStoppingRule

from _tune_trainables import (counting_with_checkpoints, fails_when_told, quadratic,
                              record_concurrency)

pytestmark = pytest.mark.timeout(120)


def _config(tmp_path, name, **kwargs):
    return tune.RunConfig(name=name, storage_path=str(tmp_path), verbose=0, **kwargs)


def test_hyperband_pauses_and_resumes_trials_from_checkpoints(ember_local, tmp_path) -> None:
    hb = HyperBandScheduler(max_t=9, reduction_factor=3)
    grid = tune.Tuner(counting_with_checkpoints,
                      param_space={"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]),
                                   "steps": 9},
                      tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=hb),
                      run_config=_config(tmp_path, "hb")).fit()
    assert grid.num_errors == 0 and len(grid) == 6
    steps = {r.config["lr"]: r.metrics["step"] for r in grid}
    assert steps[0.6] == 9
    assert min(steps.values()) < 9
    # A paused trial resumed from its checkpoint, not from step 1.
    resumed = [r for r in grid if (r.metrics_dataframe["started_at"] > 0).any()]
    assert resumed
    assert grid.get_best_result().config["lr"] == 0.6


def test_median_stopping_rule_in_a_sweep(ember_local, tmp_path) -> None:
    rule = MedianStoppingRule(time_attr="training_iteration", grace_period=2,
                              min_samples_required=2)
    grid = tune.Tuner(counting_with_checkpoints,
                      param_space={"lr": tune.grid_search([1.0, 0.9, 0.01, 0.02]), "steps": 6},
                      # One at a time: the good trials set the median before the bad run.
                      tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=rule,
                                                  max_concurrent_trials=1),
                      run_config=_config(tmp_path, "median")).fit()
    steps = {r.config["lr"]: r.metrics["step"] for r in grid}
    assert steps[1.0] == 6 and steps[0.01] < 6


def test_placement_group_factory_reserves_every_bundle(ember_local, tmp_path) -> None:
    trainable = tune.with_resources(record_concurrency,
                                    tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 1}]))
    grid = tune.Tuner(trainable, param_space={"i": tune.grid_search([0, 1]), "sleep_s": 0.2},
                      run_config=_config(tmp_path, "pgf")).fit()
    assert grid.num_errors == 0
    (s0, e0), (s1, e1) = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    assert s1 >= e0 - 0.01, "two 2-bundle trials overlapped on a 2-CPU cluster"


def test_reuse_actors_false_gives_each_trial_a_fresh_process(ember_local, tmp_path) -> None:
    grid = tune.Tuner(quadratic, param_space={"x": tune.grid_search([1, 2, 3, 4])},
                      tune_config=tune.TuneConfig(reuse_actors=False, max_concurrent_trials=1),
                      run_config=_config(tmp_path, "fresh")).fit()
    assert len({r.metrics["pid"] for r in grid}) == 4


def test_callbacks_see_results_and_completions(ember_local, tmp_path) -> None:
    seen = {"result": 0, "complete": 0, "error": 0}

    class Counter(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            seen["result"] += 1

        def on_trial_complete(self, iteration, trials, trial, **info):
            seen["complete"] += 1

        def on_trial_error(self, iteration, trials, trial, **info):
            seen["error"] += 1

    tune.Tuner(fails_when_told, param_space={"x": tune.grid_search([1, 2]),
                                             "fail": tune.grid_search([False, True])},
               run_config=_config(tmp_path, "cb", callbacks=[Counter()])).fit()
    assert seen == {"result": 6, "complete": 2, "error": 2}


def test_restore_can_restart_errored_trials(ember_local, tmp_path) -> None:
    flag = tmp_path / "fail"
    flag.write_text("1")

    def flaky(config):
        tune.report({"score": config["x"]})
        if os.path.exists(config["flag"]) and config["x"] == 2:
            raise RuntimeError("flaky failure")
        tune.report({"score": config["x"] * 10})

    grid = tune.Tuner(flaky, param_space={"x": tune.grid_search([1, 2]), "flag": str(flag)},
                      run_config=_config(tmp_path, "errored")).fit()
    assert grid.num_errors == 1
    flag.unlink()
    path = str(tmp_path / "errored")
    kept = tune.Tuner.restore(path, flaky).fit()
    assert kept.num_errors == 1  # errored trials stay errored by default
    grid = tune.Tuner.restore(path, flaky, restart_errored=True).fit()
    assert grid.num_errors == 0
    assert sorted(r.metrics["score"] for r in grid) == [10, 20]


def test_time_budget_ends_a_trial_that_never_gets_to_report(ember_local, tmp_path) -> None:
    import time

    from _tune_trainables import computes_without_reporting

    start = time.monotonic()
    grid = tune.Tuner(computes_without_reporting, param_space={"work_s": 60},
                      tune_config=tune.TuneConfig(time_budget_s=1.0),
                      run_config=_config(tmp_path, "budget")).fit()
    assert time.monotonic() - start < 30
    assert len(grid) == 1 and grid[0].metrics is None and grid.num_errors == 0
    # The sweep after it still runs (its actor was replaced).
    assert len(tune.Tuner(quadratic, param_space={"x": 1},
                          run_config=_config(tmp_path, "after")).fit()) == 1


@pytest.mark.timeout(240)
def test_a_registered_rl_algorithm_name_is_a_trainable(ember_local, tmp_path) -> None:
    """``Tuner("PPO", ...)``: ember.rl's Algorithm is a Trainable whose config is the space;
    nested metrics are addressed as "a/b" paths, as in Ray."""
    pytest.importorskip("ember.rl.algorithms")
    grid = tune.Tuner("PPO", param_space={"env": "CartPole-v1", "num_env_runners": 0,
                                          "lr": tune.grid_search([1e-3])},
                      tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean",
                                                  mode="max"),
                      run_config=_config(tmp_path, "ppo", stop={"training_iteration": 1})).fit()
    assert grid.num_errors == 0, grid.errors
    best = grid.get_best_result()
    assert best.metrics["training_iteration"] == 1
    assert best.metrics["env_runners"]["episode_return_mean"] > 0

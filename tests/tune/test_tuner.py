"""Sweeps through the real runtime: trial actors, reports, schedulers, failures, bad input."""

from __future__ import annotations

import os

import pytest

import ember
from ember import tune
from ember.tune.schedulers import ASHAScheduler, PopulationBasedTraining
from ember.tune.search import BasicVariantGenerator
from ember.tune.search.optuna import OptunaSearch

from _tune_trainables import (Quadratic, counting_with_checkpoints, fails_once_then_succeeds,
                          fails_when_told, learning_curve, never_reports, pbt_objective,
                          quadratic, record_concurrency, reports_other_keys)

pytestmark = pytest.mark.timeout(120)


def _run(tmp_path, trainable, name="exp", verbose=0, stop=None, failure_config=None,
         checkpoint_config=None, **kwargs):
    return tune.Tuner(trainable, run_config=tune.RunConfig(
        name=name, storage_path=str(tmp_path), verbose=verbose, stop=stop,
        failure_config=failure_config, checkpoint_config=checkpoint_config), **kwargs)


def test_grid_search_finds_the_known_best_and_one_row_per_trial(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, quadratic, param_space={"x": tune.grid_search([0, 1, 2, 3, 4, 5]),
                                                  "steps": 2},
                tune_config=tune.TuneConfig(metric="score", mode="min")).fit()
    assert len(grid) == 6 and grid.num_errors == 0 and grid.num_terminated == 6
    best = grid.get_best_result()
    assert best.config["x"] == 3
    assert best.metrics["training_iteration"] == 2
    frame = grid.get_dataframe()
    assert len(frame) == 6
    assert sorted(frame["config/x"]) == [0, 1, 2, 3, 4, 5]
    trial_dir = best.path
    for name in ("params.json", "progress.csv", "result.json"):
        assert os.path.exists(os.path.join(trial_dir, name)), name
    assert len(best.metrics_dataframe) == 2
    assert grid.get_best_result("x", "max").config["x"] == 5


def test_random_sampling_respects_bounds(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, quadratic, param_space={"x": tune.uniform(10, 20)},
                tune_config=tune.TuneConfig(num_samples=15,
                                            search_alg=BasicVariantGenerator(random_state=0))
                ).fit()
    xs = [r.config["x"] for r in grid]
    assert len(xs) == 15 and all(10 <= x < 20 for x in xs)
    assert len(set(xs)) == 15


def test_asha_stops_bad_trials_early(ember_local, tmp_path) -> None:
    qualities = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    grid = _run(tmp_path, learning_curve,
                param_space={"quality": tune.grid_search(qualities[::-1]), "steps": 16},
                tune_config=tune.TuneConfig(
                    metric="acc", mode="max",
                    scheduler=ASHAScheduler(max_t=16, grace_period=1, reduction_factor=2))).fit()
    iterations = {r.config["quality"]: r.metrics["training_iteration"] for r in grid}
    assert iterations[1.0] == 16
    assert min(iterations.values()) < 16
    bad = [iterations[q] for q in qualities[:5]]
    good = [iterations[q] for q in qualities[5:]]
    assert sum(bad) < sum(good)
    assert grid.get_best_result().config["quality"] == 1.0


def test_optuna_search_beats_random_through_the_tuner(ember_local, tmp_path) -> None:
    import optuna
    space = {"x": tune.uniform(-10, 10), "steps": 1}
    common = dict(metric="score", mode="min", num_samples=40)
    tpe = _run(tmp_path, quadratic, name="tpe", param_space=space, tune_config=tune.TuneConfig(
        search_alg=OptunaSearch(sampler=optuna.samplers.TPESampler(seed=3)),
        max_concurrent_trials=1, **common)).fit()
    rnd = _run(tmp_path, quadratic, name="rnd", param_space=space, tune_config=tune.TuneConfig(
        search_alg=BasicVariantGenerator(random_state=3), **common)).fit()
    assert len(tpe) == len(rnd) == 40
    tpe_best = tpe.get_best_result().metrics["score"]
    rnd_best = rnd.get_best_result().metrics["score"]
    assert tpe_best <= rnd_best
    # Constants of param_space reach every trial.
    assert all(r.config["steps"] == 1 for r in tpe)


def test_pbt_exploits_a_better_trials_checkpoint(ember_local, tmp_path) -> None:
    pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=3,
                                  quantile_fraction=0.5, resample_probability=0.0,
                                  hyperparam_mutations={"lr": [0.01, 0.1, 1.0, 2.0]}, seed=0)
    # One trial at a time, the strong one first: the weak one meets a scored population
    # at its first perturbation point, whatever the machine's load.
    grid = _run(tmp_path, pbt_objective, param_space={"lr": tune.grid_search([1.0, 0.01])},
                tune_config=tune.TuneConfig(metric="score", mode="max", scheduler=pbt,
                                            max_concurrent_trials=1)).fit()
    assert grid.num_errors == 0
    assert pbt.num_perturbations >= 1
    lineages = []
    for result in grid:
        path = os.path.join(result.path, "lineage.json")
        if os.path.exists(path):
            import json
            lineages.extend(json.load(open(path)))
    assert lineages, "no trial recorded an exploit"
    copied = lineages[0]
    assert copied["old_config"]["lr"] == 0.01
    assert copied["checkpoint"].startswith(str(tmp_path))
    weak = next(r for r in grid if os.path.exists(os.path.join(r.path, "lineage.json")))
    strong = next(r for r in grid if r is not weak)
    assert copied["cloned_from"] == strong.metrics["trial_id"]
    assert copied["checkpoint"].startswith(strong.path)
    # After copying the strong trial's state, the weak one ends far above 12 * 0.01, and
    # its step count continued from the copy.
    assert weak.metrics["score"] > 10.0 and weak.metrics["step"] == 13


def test_a_failing_trial_is_reported_without_stopping_the_sweep(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, fails_when_told,
                param_space={"x": tune.grid_search([1, 2, 3]),
                             "fail": tune.sample_from(lambda spec: spec.config.x == 2)},
                tune_config=tune.TuneConfig(metric="score", mode="max")).fit()
    assert grid.num_errors == 1 and grid.num_terminated == 2
    error = grid.errors[0]
    assert isinstance(error, tune.TrialFailedError)
    assert "fails on purpose" in str(error) and "Traceback" in str(error)
    assert isinstance(error.__cause__, ValueError)
    failed = next(r for r in grid if r.error is not None)
    assert os.path.exists(os.path.join(failed.path, "error.txt"))
    assert grid.get_best_result().config["x"] == 3
    frame = grid.get_dataframe()
    assert len(frame) == 3


def test_failure_config_restarts_a_trial_from_its_checkpoint(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, fails_once_then_succeeds, param_space={"dir": str(tmp_path)},
                failure_config=tune.FailureConfig(max_failures=1)).fit()
    assert grid.num_errors == 0
    result = grid[0]
    assert result.metrics["step"] == 3 and result.metrics["resumed_from"] == 2
    assert result.checkpoint is not None


def test_class_trainable_with_stop_and_checkpoints(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, Quadratic, param_space={"x": tune.grid_search([1, 3, 5])},
                stop={"training_iteration": 4},
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=2,
                                                        checkpoint_at_end=True,
                                                        num_to_keep=2),
                tune_config=tune.TuneConfig(metric="score", mode="min")).fit()
    assert all(r.metrics["training_iteration"] == 4 for r in grid)
    assert grid.get_best_result().config["x"] == 3
    for result in grid:
        assert result.checkpoint is not None
        kept = [d for d in os.listdir(result.path) if d.startswith("checkpoint_")]
        assert 1 <= len(kept) <= 2
    restored = Quadratic({"x": 5})
    restored.restore(grid[2].checkpoint)
    assert restored.value == grid[2].metrics["score"]
    assert restored.iteration == 4


def test_stop_dict_and_function_stop_trials(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, counting_with_checkpoints, name="a", param_space={"steps": 10},
                stop={"step": 3}).fit()
    assert grid[0].metrics["step"] == 3
    grid = _run(tmp_path, counting_with_checkpoints, name="b", param_space={"steps": 10},
                stop=lambda trial_id, result: result["step"] >= 2).fit()
    assert grid[0].metrics["step"] == 2


def test_with_resources_queues_trials_instead_of_oversubscribing(ember_local, tmp_path) -> None:
    trainable = tune.with_resources(record_concurrency, {"cpu": 2})
    grid = _run(tmp_path, trainable, param_space={"i": tune.grid_search([0, 1, 2]),
                                                  "sleep_s": 0.2}).fit()
    spans = sorted((r.metrics["start"], r.metrics["end"]) for r in grid)
    assert len(spans) == 3
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end - 0.01, "two 2-CPU trials overlapped on a 2-CPU cluster"


def test_a_trial_larger_than_the_cluster_is_refused(ember_local, tmp_path) -> None:
    trainable = tune.with_resources(quadratic, {"cpu": 64})
    with pytest.raises(tune.TuneConfigError, match="cluster has"):
        _run(tmp_path, trainable, param_space={"x": 1}).fit()
    assert len(_run(tmp_path, quadratic, name="next", param_space={"x": 1}).fit()) == 1


def test_with_parameters_passes_objects_through_the_object_store(ember_local, tmp_path) -> None:
    import numpy as np

    def uses_data(config, data):
        tune.report({"total": float(data.sum()) * config["k"]})

    grid = _run(tmp_path, tune.with_parameters(uses_data, data=np.ones(1000)),
                param_space={"k": tune.grid_search([1, 2])}).fit()
    assert sorted(r.metrics["total"] for r in grid) == [1000.0, 2000.0]


def test_reused_actors_run_many_short_trials(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, quadratic, param_space={"x": tune.randint(0, 5)},
                tune_config=tune.TuneConfig(num_samples=30)).fit()
    assert len(grid) == 30 and grid.num_errors == 0
    assert len({r.metrics["pid"] for r in grid}) <= 2


def test_time_budget_stops_the_sweep(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, counting_with_checkpoints,
                param_space={"steps": 1000, "sleep_s": 0.05},
                tune_config=tune.TuneConfig(num_samples=4, time_budget_s=1.0)).fit()
    assert all(r.metrics is None or r.metrics["step"] < 1000 for r in grid)


def test_verbose_prints_a_status_table_and_zero_is_quiet(ember_local, tmp_path, capsys) -> None:
    _run(tmp_path, quadratic, name="loud", verbose=1, param_space={"x": 3},
         tune_config=tune.TuneConfig(metric="score", mode="min")).fit()
    out = capsys.readouterr().out
    assert "TERMINATED" in out and "score" in out
    _run(tmp_path, quadratic, name="quiet", verbose=0, param_space={"x": 3}).fit()
    assert capsys.readouterr().out == ""


# -- bad input -----------------------------------------------------------------------------
def test_metric_not_reported_names_the_reported_keys(ember_local, tmp_path) -> None:
    with pytest.raises(tune.TuneConfigError, match=r"'accuracy', 'loss'"):
        _run(tmp_path, reports_other_keys, param_space={"x": 1},
             tune_config=tune.TuneConfig(metric="acc", mode="max")).fit()
    assert len(_run(tmp_path, quadratic, name="next", param_space={"x": 1}).fit()) == 1


@pytest.mark.parametrize("kwargs, words", [
    ({"mode": "maximum"}, "mode must be 'min' or 'max'"),
    ({"num_samples": 0}, "num_samples"),
    ({"num_samples": -5}, "num_samples"),
    ({"max_concurrent_trials": 0}, "max_concurrent_trials"),
    ({"search_alg": "optuna"}, "Searcher"),
])
def test_bad_tune_config_raises_a_typed_error(kwargs: dict, words: str) -> None:
    with pytest.raises(tune.TuneConfigError, match=words):
        tune.TuneConfig(**kwargs)
    assert tune.TuneConfig(mode="min").mode == "min"


def test_a_trainable_that_never_reports_is_an_error(ember_local, tmp_path) -> None:
    grid = _run(tmp_path, never_reports, param_space={"x": 1}).fit()
    assert grid.num_errors == 1
    assert "without reporting" in str(grid.errors[0])
    assert isinstance(grid.errors[0], tune.TrialNeverReportedError)


def test_a_search_algorithm_given_a_grid_it_cannot_handle(ember_local, tmp_path) -> None:
    with pytest.raises(tune.TuneConfigError, match="cannot handle grid_search"):
        _run(tmp_path, quadratic, param_space={"x": tune.grid_search([1, 2])},
             tune_config=tune.TuneConfig(metric="score", mode="min",
                                         search_alg=OptunaSearch())).fit()


def test_restore_of_a_folder_without_an_experiment(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(tune.TuneRestoreError, match="holds no ember.tune experiment"):
        tune.Tuner.restore(str(tmp_path / "empty"), quadratic)
    with pytest.raises(tune.TuneRestoreError, match="no such folder"):
        tune.Tuner.restore(str(tmp_path / "missing"), quadratic)
    assert not tune.Tuner.can_restore(str(tmp_path / "empty"))


def test_unknown_trainable_name_and_get_best_result_errors(ember_local, tmp_path) -> None:
    with pytest.raises(tune.TuneConfigError, match="register_trainable"):
        tune.Tuner("no-such-trainable")
    grid = _run(tmp_path, quadratic, param_space={"x": 1}).fit()
    with pytest.raises(tune.TuneConfigError, match="no metric/mode"):
        grid.get_best_result()
    with pytest.raises(tune.TuneConfigError, match=r"reported keys are .*'score'"):
        grid.get_best_result("nope", "min")
    ember.get(ember.put(1))  # the cluster is still fine


@pytest.mark.parametrize("make, words", [
    (lambda: tune.with_resources(quadratic, "2 cpus"), "PlacementGroupFactory"),
    (lambda: tune.with_resources(quadratic, {"cpu": -1}), "must be a number >= 0"),
    (lambda: tune.PlacementGroupFactory([]), "non-empty list"),
    (lambda: tune.Tuner(quadratic, tune_config={"metric": "x"}), "pass a TuneConfig"),
    (lambda: tune.Tuner(quadratic, run_config=tune.RunConfig(stop=3)), "stop=3"),
    (lambda: tune.Tuner(42), "pass a function"),
])
def test_bad_resources_and_tuner_arguments_raise_typed_errors(make, words: str) -> None:
    with pytest.raises(tune.TuneConfigError, match=words):
        make()

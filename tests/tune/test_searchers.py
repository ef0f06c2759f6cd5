"""Search algorithms by plain calls, and Optuna against random search on a known function."""

from __future__ import annotations

import optuna
import pytest

from ember import tune
from ember.tune.search import ConcurrencyLimiter, Repeater, Searcher
from ember.tune.search.optuna import OptunaSearch

pytestmark = pytest.mark.timeout(60)


def _objective(config: dict) -> float:
    return (config["x"] - 2.0) ** 2 + (config["y"] + 1.0) ** 2


def _optimise(searcher: Searcher, budget: int) -> float:
    best = float("inf")
    for i in range(budget):
        config = searcher.suggest(f"t{i}")
        score = _objective(config)
        searcher.on_trial_complete(f"t{i}", {"loss": score})
        best = min(best, score)
    return best


def test_optuna_beats_random_search_at_equal_budget_with_fixed_seeds() -> None:
    space = {"x": tune.uniform(-10, 10), "y": tune.uniform(-10, 10)}
    optuna_best = []
    random_best = []
    for seed in (0, 1, 2):
        tpe = OptunaSearch(metric="loss", mode="min",
                           sampler=optuna.samplers.TPESampler(seed=seed))
        tpe.set_search_properties(None, None, space)
        optuna_best.append(_optimise(tpe, 60))
        rnd = OptunaSearch(metric="loss", mode="min",
                           sampler=optuna.samplers.RandomSampler(seed=seed))
        rnd.set_search_properties(None, None, space)
        random_best.append(_optimise(rnd, 60))
    assert sum(optuna_best) < sum(random_best)


def test_optuna_takes_points_to_evaluate_and_nested_spaces() -> None:
    search = OptunaSearch(metric="loss", mode="min", seed=0,
                          points_to_evaluate=[{"opt": {"lr": 0.5}, "n": 3}])
    search.set_search_properties(None, None, {"opt": {"lr": tune.loguniform(1e-3, 1.0)},
                                              "n": tune.randint(1, 5)})
    first = search.suggest("a")
    assert first == {"opt": {"lr": 0.5}, "n": 3}
    second = search.suggest("b")
    assert 1e-3 <= second["opt"]["lr"] <= 1.0 and second["n"] in (1, 2, 3, 4)


def test_optuna_define_by_run_function() -> None:
    def space(trial: optuna.Trial) -> dict:
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "a":
            trial.suggest_float("a_value", 0, 1)
        return {"constant": 7}

    search = OptunaSearch(space, metric="loss", mode="min", seed=0)
    search.set_search_properties(None, None, {})
    config = search.suggest("t")
    assert config["constant"] == 7 and config["kind"] in ("a", "b")


@pytest.mark.parametrize("space, words", [
    ({"x": tune.grid_search([1, 2])}, "cannot handle grid_search"),
    ({"x": tune.sample_from(lambda s: 1)}, "sample_from"),
    ({"x": 3}, "empty search space"),
])
def test_optuna_refuses_spaces_it_cannot_search(space: dict, words: str) -> None:
    with pytest.raises(tune.TuneConfigError, match=words):
        OptunaSearch(metric="m", mode="min").set_search_properties(None, None, space)
    with pytest.raises(tune.TuneConfigError, match=words):
        OptunaSearch(space, metric="m", mode="min")


def test_optuna_without_a_metric_says_so() -> None:
    search = OptunaSearch(space={"x": tune.uniform(0, 1)})
    with pytest.raises(tune.TuneConfigError, match="no metric"):
        search.suggest("t")


def test_concurrency_limiter_holds_back_suggestions_until_a_trial_ends() -> None:
    search = ConcurrencyLimiter(OptunaSearch(metric="m", mode="max", seed=0), max_concurrent=2)
    search.set_search_properties(None, None, {"x": tune.uniform(0, 1)})
    assert isinstance(search.suggest("a"), dict)
    assert isinstance(search.suggest("b"), dict)
    assert search.suggest("c") is None
    search.on_trial_complete("a", {"m": 1.0})
    assert isinstance(search.suggest("c"), dict)
    with pytest.raises(tune.TuneConfigError, match="max_concurrent"):
        ConcurrencyLimiter(search, max_concurrent=0)


def test_repeater_repeats_each_config_and_reports_the_mean() -> None:
    seen: list = []

    class Recording(Searcher):
        def suggest(self, trial_id: str):
            return {"x": len(seen)}

        def on_trial_complete(self, trial_id, result=None, error=False):
            seen.append((trial_id, result))

    search = Repeater(Recording(metric="m", mode="max"), repeat=3)
    configs = [search.suggest(f"t{i}") for i in range(3)]
    assert [c["__trial_index__"] for c in configs] == [0, 1, 2]
    assert len({c["x"] for c in configs}) == 1
    for i, value in enumerate((1.0, 2.0, 6.0)):
        search.on_trial_complete(f"t{i}", {"m": value})
    assert seen == [("t0", {"m": 3.0})]

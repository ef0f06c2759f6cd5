"""Search spaces and the default search algorithm, by plain calls (no cluster)."""

from __future__ import annotations

import numpy as np
import pytest

from ember import tune
from ember.tune.search import BasicVariantGenerator, Searcher
from ember.tune.search.variant_generator import generate_variants, parse_space

pytestmark = pytest.mark.timeout(30)


def _all(generator: BasicVariantGenerator) -> list[dict]:
    configs = []
    for i in range(10_000):
        config = generator.suggest(f"t{i}")
        if config == Searcher.FINISHED:
            return configs
        configs.append(config)
    raise AssertionError("generator never finished")


def test_grid_search_is_the_product_of_grids_times_num_samples() -> None:
    space = {"a": tune.grid_search([1, 2, 3]), "nested": {"b": tune.grid_search(["x", "y"])},
             "c": 7}
    generator = BasicVariantGenerator()
    generator.set_search_properties(None, None, space, num_samples=2)
    configs = _all(generator)
    assert len(configs) == 12
    assert {(c["a"], c["nested"]["b"]) for c in configs} == \
        {(a, b) for a in (1, 2, 3) for b in ("x", "y")}
    assert all(c["c"] == 7 for c in configs)


def test_random_samples_respect_their_bounds() -> None:
    rng = np.random.default_rng(0)
    space = {"u": tune.uniform(-1, 1), "q": tune.quniform(0, 10, 2.5),
             "log": tune.loguniform(1e-4, 1e-1), "i": tune.randint(3, 6),
             "qi": tune.qrandint(0, 20, 5), "c": tune.choice(["a", "b"]),
             "n": tune.randn(5, 0.1), "ql": tune.qloguniform(1, 100, 1),
             "list": [tune.uniform(10, 11), {"deep": tune.randint(0, 2)}]}
    for _ in range(300):
        config = next(generate_variants(space, rng))
        assert -1 <= config["u"] < 1
        assert config["q"] in (0, 2.5, 5, 7.5, 10)
        assert 1e-4 <= config["log"] <= 1e-1
        assert config["i"] in (3, 4, 5)
        assert config["qi"] in (0, 5, 10, 15, 20)
        assert config["c"] in ("a", "b")
        assert 4 < config["n"] < 6
        assert 1 <= config["ql"] <= 100 and config["ql"] == round(config["ql"])
        assert 10 <= config["list"][0] < 11 and config["list"][1]["deep"] in (0, 1)


def test_sample_from_reads_values_drawn_before_it() -> None:
    space = {"a": tune.uniform(1, 2), "b": tune.sample_from(lambda spec: spec.config.a * 10)}
    config = next(generate_variants(space, np.random.default_rng(1)))
    assert config["b"] == pytest.approx(config["a"] * 10)


def test_a_seeded_generator_draws_the_same_configs() -> None:
    space = {"x": tune.uniform(0, 1)}
    runs = []
    for _ in range(2):
        generator = BasicVariantGenerator(random_state=42)
        generator.set_search_properties(None, None, space, num_samples=5)
        runs.append(_all(generator))
    assert runs[0] == runs[1]


def test_points_to_evaluate_come_first() -> None:
    generator = BasicVariantGenerator(points_to_evaluate=[{"x": 0.5}])
    generator.set_search_properties(None, None, {"x": tune.uniform(0, 0.1)}, num_samples=2)
    configs = _all(generator)
    assert configs[0] == {"x": 0.5} and len(configs) == 3


@pytest.mark.parametrize("make, words", [
    (lambda: tune.uniform(2, 1), "lower must be smaller"),
    (lambda: tune.loguniform(0, 1), "lower > 0"),
    (lambda: tune.randint(0.5, 3), "must be ints"),
    (lambda: tune.choice([]), "non-empty list"),
    (lambda: tune.grid_search([]), "non-empty list"),
    (lambda: tune.quniform(0, 1, -1), "q must be a positive"),
    (lambda: tune.sample_from(3), "function"),
])
def test_invalid_domains_raise_a_typed_error_naming_the_fix(make, words: str) -> None:
    with pytest.raises(tune.TuneConfigError, match=words):
        make()
    assert 0 <= tune.uniform(0, 1).sample(np.random.default_rng(0)) < 1  # next call works


@pytest.mark.parametrize("space, words", [
    ({"a": {"grid_search": []}}, "non-empty list"),
    ({"a": {"grid_search": 3}}, "non-empty list"),
    ([1, 2], "must be a dict"),
])
def test_an_empty_or_invalid_search_space_is_refused(space, words: str) -> None:
    with pytest.raises(tune.TuneConfigError, match=words):
        parse_space(space)
    with pytest.raises(tune.TuneConfigError, match=words):
        tune.Tuner(lambda c: None, param_space=space)

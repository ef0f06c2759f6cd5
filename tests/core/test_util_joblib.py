"""The "ember" joblib backend: joblib.Parallel (and scikit-learn's n_jobs) on ember."""

from __future__ import annotations

import os
from typing import Any

import pytest

joblib = pytest.importorskip("joblib")

from ember.util.joblib import EmberBackend, register_ember  # noqa: E402

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def cluster(ember_local: dict) -> dict:
    """The shared 2-CPU ember, with the "ember" joblib backend registered."""
    register_ember()
    return ember_local


def square(x: int) -> int:
    return x * x


def pid(_: Any) -> int:
    return os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise KeyError(f"no key {x}")
    return x


def test_parallel_returns_results_in_order(cluster: dict) -> None:
    with joblib.parallel_backend("ember"):
        out = joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(20))
    assert out == [i * i for i in range(20)]


def test_calls_run_in_ember_workers_not_the_driver(cluster: dict) -> None:
    with joblib.parallel_config(backend="ember", n_jobs=2):
        pids = joblib.Parallel(batch_size=1)(joblib.delayed(pid)(i) for i in range(6))
    assert os.getpid() not in set(pids)


def test_many_tiny_calls_are_batched_and_all_return(cluster: dict) -> None:
    with joblib.parallel_backend("ember", n_jobs=2):
        out = joblib.Parallel()(joblib.delayed(square)(i) for i in range(500))
    assert out == [i * i for i in range(500)]


def test_results_can_be_consumed_as_a_generator(cluster: dict) -> None:
    with joblib.parallel_backend("ember"):
        gen = joblib.Parallel(n_jobs=2, return_as="generator")(
            joblib.delayed(square)(i) for i in range(10))
        assert list(gen) == [i * i for i in range(10)]


def test_an_error_is_reraised_as_its_type_and_the_backend_keeps_working(
        cluster: dict) -> None:
    with joblib.parallel_backend("ember"):
        with pytest.raises(KeyError, match="no key 3"):
            joblib.Parallel(n_jobs=2)(joblib.delayed(fail_on_three)(i) for i in range(8))
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(3)) == \
            [0, 1, 4]


def test_n_jobs_counts_cluster_cpus_and_is_capped_there(cluster: dict) -> None:
    backend = EmberBackend()
    assert backend.effective_n_jobs(-1) == 2
    assert backend.effective_n_jobs(-2) == 1
    assert backend.effective_n_jobs(64) == 2
    assert EmberBackend(ember_remote_args={"num_cpus": 0.5}).effective_n_jobs(-1) == 4


def test_n_jobs_one_runs_inline_in_the_driver(cluster: dict) -> None:
    with joblib.parallel_backend("ember"):
        pids = joblib.Parallel(n_jobs=1)(joblib.delayed(pid)(i) for i in range(3))
    assert set(pids) == {os.getpid()}


def test_n_jobs_zero_is_a_value_error_and_the_backend_still_works(cluster: dict) -> None:
    with joblib.parallel_backend("ember"):
        with pytest.raises(ValueError, match="n_jobs == 0"):
            joblib.Parallel(n_jobs=0)(joblib.delayed(square)(i) for i in range(3))
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(square)(i) for i in range(3)) == \
            [0, 1, 4]


def test_remote_args_pass_through_parallel_backend(cluster: dict) -> None:
    with joblib.parallel_backend("ember", n_jobs=4, ember_remote_args={"num_cpus": 0.5}):
        out = joblib.Parallel(batch_size=1)(joblib.delayed(pid)(i) for i in range(8))
    assert os.getpid() not in set(out)


def test_scikit_learn_n_jobs_runs_on_ember(cluster: dict) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    linear_model = pytest.importorskip("sklearn.linear_model")
    X, y = datasets.make_classification(n_samples=120, n_features=6, random_state=0)
    with joblib.parallel_backend("ember"):
        scores = model_selection.cross_val_score(
            linear_model.LogisticRegression(max_iter=200), X, y, cv=4, n_jobs=2)
    assert len(scores) == 4 and all(0.0 <= s <= 1.0 for s in scores)

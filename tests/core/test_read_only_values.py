"""numpy arrays from ``get`` (and task arguments) are read-only, as in Ray: the same for
small values that travel inline and large ones mapped from the store, in the driver and
in tasks, so code that works on small data does not change behaviour when it grows."""

from __future__ import annotations

import numpy as np
import pytest

import ember

pytestmark = pytest.mark.timeout(60)

_SMALL, _LARGE = 10, 1 << 18  # float64s: 80 bytes inline, 2 MiB in the store


@ember.remote
def write_first(values: list) -> str:
    array = ember.get(values[0])
    try:
        array[0] = 1
    except ValueError as e:
        return str(e)
    return "written"


@ember.remote
def write_argument(array: np.ndarray) -> str:
    try:
        array[0] = 1
    except ValueError as e:
        return str(e)
    return "written"


@ember.remote
def make(n: int) -> np.ndarray:
    return np.zeros(n)


@pytest.mark.parametrize("n", [_SMALL, _LARGE], ids=["inline", "stored"])
def test_get_in_the_driver_gives_a_read_only_array(ember_local, n: int) -> None:
    for ref in (ember.put(np.zeros(n)), make.remote(n)):
        array = ember.get(ref, timeout=30)
        with pytest.raises(ValueError, match="read-only"):
            array[0] = 1
        copy = array.copy()
        copy[0] = 1  # the way to mutate: a copy
        assert copy[0] == 1


@pytest.mark.parametrize("n", [_SMALL, _LARGE], ids=["inline", "stored"])
def test_get_inside_a_task_gives_a_read_only_array(ember_local, n: int) -> None:
    assert "read-only" in ember.get(write_first.remote([ember.put(np.zeros(n))]), timeout=30)


@pytest.mark.parametrize("n", [_SMALL, _LARGE], ids=["inline", "stored"])
def test_array_arguments_are_read_only(ember_local, n: int) -> None:
    assert "read-only" in ember.get(write_argument.remote(np.zeros(n)), timeout=30)
    assert "read-only" in ember.get(write_argument.remote(ember.put(np.zeros(n))), timeout=30)

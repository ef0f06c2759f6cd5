"""Objects beyond the store's capacity spill to disk and come back on access."""

from __future__ import annotations

import time

import numpy as np
import pytest

import ember
from ember.exceptions import ObjectStoreFullError


@ember.remote
def first_byte(a: np.ndarray) -> int:
    return int(a[0])


@pytest.mark.timeout(90)
def test_workload_three_times_the_store_spills_and_completes(fresh_ember):
    """256 MiB store, 768 MiB of objects: every value is still correct, read by tasks and driver."""
    refs = [ember.put(np.full(8 << 20, i % 251, dtype=np.uint8)) for i in range(96)]
    stats = ember.object_store_stats()
    assert stats["used_bytes"] <= stats["capacity_bytes"]
    assert stats["spilled_bytes"] > 0
    assert ember.get([first_byte.remote(r) for r in refs]) == [i % 251 for i in range(96)]
    assert all(int(ember.get(r)[-1]) == i % 251 for i, r in enumerate(refs))


@pytest.mark.timeout(60)
def test_dropping_refs_frees_spilled_objects(fresh_ember):
    refs = [ember.put(np.zeros(16 << 20, dtype=np.uint8)) for _ in range(24)]
    assert ember.object_store_stats()["spilled_bytes"] > 0
    del refs
    deadline = time.monotonic() + 10
    while True:
        stats = ember.object_store_stats()
        if stats["used_bytes"] == 0 and stats["spilled_bytes"] == 0:
            break
        assert time.monotonic() < deadline, f"objects were not freed: {stats}"
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_object_larger_than_the_store_is_refused_and_runtime_keeps_working(fresh_ember):
    kept = ember.put(np.arange(1000))
    with pytest.raises(ObjectStoreFullError, match="object_store_memory"):
        ember.put(np.zeros(300 << 20, dtype=np.uint8))
    assert ember.get(first_byte.remote(kept)) == 0
    assert int(ember.get(kept)[999]) == 999

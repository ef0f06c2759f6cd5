"""Fair leases: submitters with more work than the node has CPUs take turns."""

from __future__ import annotations

import time

import pytest

import ember


@ember.remote(num_cpus=2)
def stamp(sleep_s: float) -> float:
    """Takes the whole node (2 CPUs), so only one submitter's task runs at a time."""
    time.sleep(sleep_s)
    return time.time()


@ember.remote(num_cpus=0)
class Submitter:
    def ready(self) -> bool:
        return True

    def run(self, n: int, sleep_s: float) -> list[float]:
        return ember.get([stamp.remote(sleep_s) for _ in range(n)])


@pytest.mark.timeout(120)
def test_two_submitters_with_queued_work_take_turns_on_a_full_node(fresh_ember) -> None:
    """Each submitter has 25 tasks queued; a lease kept while its holder has work would run
    one submitter's tasks all before the other's. With turns, their spans overlap."""
    a, b = Submitter.remote(), Submitter.remote()
    assert ember.get([a.ready.remote(), b.ready.remote()], timeout=60) == [True, True]
    done_a, done_b = ember.get([a.run.remote(25, 0.02), b.run.remote(25, 0.02)], timeout=100)
    first_done = min(max(done_a), max(done_b))
    last_started = max(min(done_a), min(done_b))
    assert first_done > last_started, "one submitter ran all of its tasks before the other ran one"
    # Several turns each, not one hand-over: each submitter's tasks are split in runs.
    merged = sorted([(t, "a") for t in done_a] + [(t, "b") for t in done_b])
    switches = sum(1 for x, y in zip(merged, merged[1:]) if x[1] != y[1])
    assert switches >= 3, f"the lease changed hands only {switches} time(s)"
    for actor in (a, b):
        ember.kill(actor)

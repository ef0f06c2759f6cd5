"""ember.util.ActorPool: Ray's ordering, queuing and timeout rules on real actors."""

from __future__ import annotations

import os
from typing import Any

import pytest

import ember
from ember.exceptions import GetTimeoutError
from ember.util import ActorPool
from ember.util.queue import Queue

pytestmark = pytest.mark.timeout(60)


class Worker:
    """Pool actors; ``wait_for`` blocks on a queue so tests control when a call ends."""

    def double(self, v: int) -> int:
        return 2 * v

    def pid(self, _: Any) -> int:
        return os.getpid()

    def fail(self, v: int) -> int:
        raise ValueError(f"bad value {v}")

    def wait_for(self, gate: Queue) -> Any:
        return gate.get(timeout=50)

    @ember.method(num_returns=2)
    def pair(self, v: int) -> tuple[int, int]:
        return v, -v


RemoteWorker = ember.remote(num_cpus=0)(Worker)


def make_pool(n: int) -> ActorPool:
    return ActorPool([RemoteWorker.remote() for _ in range(n)])


def gate() -> Queue:
    return Queue(actor_options={"num_cpus": 0})


def double(a: Any, v: int) -> Any:
    return a.double.remote(v)


def test_map_returns_results_in_submission_order(ember_local: dict) -> None:
    pool = make_pool(2)
    assert list(pool.map(double, range(10))) == [2 * i for i in range(10)]


def test_map_unordered_returns_every_result(ember_local: dict) -> None:
    pool = make_pool(3)
    assert sorted(pool.map_unordered(double, range(10))) == [2 * i for i in range(10)]


def test_calls_with_several_returns_give_a_list_per_value(ember_local: dict) -> None:
    pool = make_pool(2)
    assert list(pool.map(lambda a, v: a.pair.remote(v), [1, 2])) == [[1, -1], [2, -2]]
    assert sorted(pool.map_unordered(lambda a, v: a.pair.remote(v), [3])) == [[3, -3]]


def test_work_is_spread_over_all_actors(ember_local: dict) -> None:
    pool = make_pool(2)
    pids = set(pool.map(lambda a, v: a.pid.remote(v), range(8)))
    assert len(pids) == 2 and os.getpid() not in pids


def test_submit_waits_for_a_free_actor_and_runs_when_one_returns(ember_local: dict) -> None:
    pool = make_pool(1)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    pool.submit(double, 21)
    assert not pool.has_free() and pool.pop_idle() is None
    g.put("first")
    assert pool.get_next() == "first"
    assert pool.get_next() == 42
    assert not pool.has_next() and pool.has_free()


def test_get_next_unordered_returns_the_finished_call_first(ember_local: dict) -> None:
    pool = make_pool(2)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    pool.submit(double, 5)
    assert pool.get_next_unordered(timeout=30) == 10
    g.put("slow")
    assert pool.get_next_unordered(timeout=30) == "slow"


def test_get_next_times_out_with_a_timeout_error_and_keeps_the_task(ember_local: dict) -> None:
    pool = make_pool(1)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    with pytest.raises(GetTimeoutError) as info:
        pool.get_next(timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    assert pool.has_next()
    g.put("done")
    assert pool.get_next(timeout=30) == "done"


def test_get_next_ignore_if_timedout_drops_the_task_and_frees_its_actor(ember_local: dict) -> None:
    pool = make_pool(1)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    with pytest.raises(TimeoutError):
        pool.get_next(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    g.put("release")  # the dropped call ends; the actor then serves the next one
    pool.submit(double, 3)
    assert pool.get_next(timeout=30) == 6


def test_get_next_unordered_times_out_and_can_drop_the_oldest_task(ember_local: dict) -> None:
    pool = make_pool(1)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    with pytest.raises(GetTimeoutError):
        pool.get_next_unordered(timeout=0.1)
    assert pool.has_next()
    with pytest.raises(GetTimeoutError):
        pool.get_next_unordered(timeout=0.1, ignore_if_timedout=True)
    assert not pool.has_next() and pool.has_free()
    g.put("release")


def test_get_next_after_get_next_unordered_skipped_ahead_is_a_value_error(
        ember_local: dict) -> None:
    pool = make_pool(2)
    g = gate()
    pool.submit(lambda a, q: a.wait_for.remote(q), g)
    pool.submit(double, 1)
    assert pool.get_next_unordered(timeout=30) == 2
    with pytest.raises(ValueError, match="get_next_unordered"):
        pool.get_next()
    g.put("x")
    assert pool.get_next_unordered(timeout=30) == "x"


def test_get_next_with_nothing_submitted_raises_stop_iteration(ember_local: dict) -> None:
    pool = make_pool(1)
    with pytest.raises(StopIteration):
        pool.get_next()
    with pytest.raises(StopIteration):
        pool.get_next_unordered()


def test_map_drops_results_nobody_collected_from_earlier_submits(ember_local: dict) -> None:
    pool = make_pool(2)
    pool.submit(double, 100)
    pool.submit(double, 200)
    assert list(pool.map(double, [1, 2])) == [2, 4]


def test_pop_idle_and_push_move_actors_out_and_back(ember_local: dict) -> None:
    pool = make_pool(2)
    a = pool.pop_idle()
    b = pool.pop_idle()
    assert a is not None and b is not None and pool.pop_idle() is None
    pool.submit(double, 4)  # no actor: waits in the pool
    assert pool.has_next() is False
    pool.push(a)  # the pending submit starts on it
    assert pool.has_next()
    assert pool.get_next(timeout=30) == 8
    pool.push(b)
    assert list(pool.map(double, [1, 2, 3])) == [2, 4, 6]


def test_push_of_an_actor_already_in_the_pool_is_a_value_error(ember_local: dict) -> None:
    pool = make_pool(1)
    actor = pool.pop_idle()
    pool.push(actor)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(actor)
    pool.submit(double, 1)
    with pytest.raises(ValueError, match="already belongs"):
        pool.push(actor)  # busy actors count too
    assert pool.get_next(timeout=30) == 2


def test_a_failing_call_raises_its_error_and_the_pool_keeps_working(ember_local: dict) -> None:
    pool = make_pool(2)
    pool.submit(lambda a, v: a.fail.remote(v), 7)
    with pytest.raises(ValueError, match="bad value 7"):
        pool.get_next(timeout=30)
    assert list(pool.map(double, [5, 6])) == [10, 12]


def test_submit_of_a_non_callable_is_a_type_error(ember_local: dict) -> None:
    pool = make_pool(1)
    with pytest.raises(TypeError, match="fn\\(actor, value\\)"):
        pool.submit("double", 1)  # type: ignore[arg-type]
    assert list(pool.map(double, [1])) == [2]


def test_fn_that_forgets_remote_is_a_type_error_and_the_actor_stays(ember_local: dict) -> None:
    pool = make_pool(1)
    with pytest.raises(TypeError, match="forget `.remote`"):
        pool.submit(lambda a, v: v, 1)
    assert pool.has_free()
    assert list(pool.map(double, [3])) == [6]


def test_constructor_rejects_something_that_is_not_a_list_of_actors(ember_local: dict) -> None:
    with pytest.raises(TypeError, match="list of actor handles"):
        ActorPool(None)  # type: ignore[arg-type]
    assert list(make_pool(1).map(double, [1])) == [2]

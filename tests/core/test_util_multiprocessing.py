"""ember.util.multiprocessing.Pool behaves like multiprocessing.Pool, on ember actors."""

from __future__ import annotations

import multiprocessing
import os
import threading
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback
from typing import Any, Iterator

import pytest

import ember
from ember.exceptions import ActorDiedError, EmberError
from ember.util.multiprocessing import Pool
from ember.util.queue import Queue

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def pool(ember_local: dict) -> Iterator[Pool]:
    with Pool(2) as p:
        yield p


def square(x: int) -> int:
    return x * x


def pid(_: Any = None) -> int:
    return os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"three is not allowed (got {x})")
    return x


def wait_for(gate: Queue) -> Any:
    return gate.get(timeout=50)


_initialized_with: Any = None


def remember(value: Any) -> None:
    global _initialized_with
    _initialized_with = value


def initialized_with(_: Any = None) -> Any:
    return _initialized_with


def broken_initializer() -> None:
    raise RuntimeError("initializer failed")


def die(_: Any = None) -> None:
    os._exit(3)


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt from its args: the stdlib's MaybeEncodingError case."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def make_error(x: int) -> ValueError:
    return ValueError(x)


def raise_unrebuildable(_: Any = None) -> None:
    raise NeedsTwoArgs(1, 2)


def gate() -> Queue:
    return Queue(actor_options={"num_cpus": 0})


def test_map_returns_results_in_input_order(pool: Pool) -> None:
    assert pool.map(square, range(20)) == [x * x for x in range(20)]
    assert pool.map(square, range(7), chunksize=3) == [x * x for x in range(7)]
    assert pool.map(square, []) == []


def test_work_runs_in_worker_processes_not_the_driver(pool: Pool) -> None:
    pids = set(pool.map(pid, range(8), chunksize=1))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_starmap_unpacks_argument_tuples(pool: Pool) -> None:
    assert pool.starmap(pow, [(2, 3), (3, 2), (10, 0)]) == [8, 9, 1]
    assert pool.starmap_async(pow, [(2, 5)]).get(timeout=30) == [32]


def test_apply_passes_args_and_kwargs(pool: Pool) -> None:
    assert pool.apply(int, ("ff",), {"base": 16}) == 255
    assert pool.apply_async(square, (9,)).get(timeout=30) == 81


def test_callbacks_get_the_result_or_the_error(pool: Pool) -> None:
    got: list = []
    done = threading.Event()

    def on_result(value: Any) -> None:
        got.append(value)
        done.set()

    pool.map_async(square, [1, 2, 3], callback=on_result)
    assert done.wait(30) and got == [[1, 4, 9]]

    errors: list = []
    failed = threading.Event()

    def on_error(error: BaseException) -> None:
        errors.append(error)
        failed.set()

    result = pool.apply_async(fail_on_three, (3,), error_callback=on_error)
    assert failed.wait(30) and isinstance(errors[0], ValueError)
    assert result.ready() and not result.successful()


def test_imap_yields_in_order_and_imap_unordered_yields_everything(pool: Pool) -> None:
    assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
    assert list(pool.imap(square, iter(range(10)), chunksize=4)) == [x * x for x in range(10)]
    assert sorted(pool.imap_unordered(square, range(10), chunksize=3)) == \
        [x * x for x in range(10)]


def test_a_task_error_is_reraised_as_the_original_exception_type(pool: Pool) -> None:
    with pytest.raises(ValueError, match="three is not allowed") as info:
        pool.map(fail_on_three, range(6), chunksize=1)
    assert type(info.value) is ValueError
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on_three" in str(info.value.__cause__)
    with pytest.raises(ValueError):
        pool.apply(fail_on_three, (3,))
    assert pool.map(square, [4]) == [16]


def test_imap_raises_the_error_at_its_position_and_goes_on(pool: Pool) -> None:
    it = pool.imap(fail_on_three, range(5))
    assert [next(it), next(it), next(it)] == [0, 1, 2]
    with pytest.raises(ValueError):
        next(it)
    assert list(it) == [4]


def test_an_exception_returned_as_a_value_is_not_raised(pool: Pool) -> None:
    returned = list(pool.imap(make_error, [1, 2])) + pool.map(make_error, [3])
    assert [type(e) for e in returned] == [ValueError] * 3
    assert [e.args for e in returned] == [(1,), (2,), (3,)]


def test_an_exception_that_cannot_be_rebuilt_becomes_maybe_encoding_error(
        pool: Pool) -> None:
    with pytest.raises(MaybeEncodingError, match="NeedsTwoArgs"):
        pool.apply(raise_unrebuildable)


def test_get_with_a_timeout_raises_multiprocessing_timeout_error(pool: Pool) -> None:
    g = gate()
    result = pool.apply_async(wait_for, (g,))
    with pytest.raises(multiprocessing.TimeoutError):
        result.get(timeout=0.2)
    assert not result.ready()
    with pytest.raises(ValueError, match="not ready"):
        result.successful()
    it = pool.imap(wait_for, [g])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.2)
    g.put("a")
    g.put("b")
    assert sorted([result.get(timeout=30), it.next(timeout=30)]) == ["a", "b"]
    assert result.successful()
    g.shutdown()


def test_initializer_runs_once_in_every_worker(ember_local: dict) -> None:
    with Pool(2, initializer=remember, initargs=("ready",)) as p:
        assert set(p.map(initialized_with, range(6), chunksize=1)) == {"ready"}


def test_a_failing_initializer_fails_every_task_with_its_error(ember_local: dict) -> None:
    with Pool(1, initializer=broken_initializer) as p:
        with pytest.raises(RuntimeError, match="initializer failed"):
            p.apply(square, (2,))


def test_maxtasksperchild_replaces_workers_after_that_many_tasks(ember_local: dict) -> None:
    with Pool(1, maxtasksperchild=1) as p:
        pids = [p.apply(pid) for _ in range(3)]
    assert len(set(pids)) == 3


def test_a_worker_that_dies_fails_its_task_and_the_pool_recovers(pool: Pool) -> None:
    with pytest.raises(EmberError):
        pool.apply(die)
    assert pool.map(square, range(6)) == [x * x for x in range(6)]


def test_close_then_join_finishes_queued_work(ember_local: dict) -> None:
    p = Pool(2)
    result = p.map_async(square, range(10), chunksize=1)
    p.close()
    p.join()
    assert result.get(timeout=0) == [x * x for x in range(10)]
    with pytest.raises(ValueError, match="Pool not running"):
        p.map(square, [1])


def test_terminate_fails_unfinished_work_instead_of_hanging(ember_local: dict) -> None:
    g = gate()
    p = Pool(1)
    running = p.apply_async(wait_for, (g,))
    queued = p.apply_async(square, (3,))
    p.terminate()
    for result in (running, queued):
        with pytest.raises(ActorDiedError):
            result.get(timeout=30)
    p.terminate()  # twice is fine
    g.shutdown()


def test_the_context_manager_terminates_the_pool(ember_local: dict) -> None:
    with Pool(1) as p:
        assert p.apply(square, (5,)) == 25
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply(square, (5,))


def test_join_of_a_running_pool_is_a_value_error(pool: Pool) -> None:
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    assert pool.apply(square, (2,)) == 4


@pytest.mark.parametrize("kwargs, error, message", [
    ({"processes": 0}, ValueError, "at least 1"),
    ({"processes": "2"}, TypeError, "processes"),
    ({"processes": 64}, ValueError, "needs 64 CPUs"),
    ({"initializer": 5}, TypeError, "initializer"),
    ({"maxtasksperchild": 0}, ValueError, "maxtasksperchild"),
])
def test_bad_pool_arguments_raise_typed_errors(ember_local: dict, kwargs: dict, error: type,
                                               message: str) -> None:
    with pytest.raises(error, match=message):
        Pool(**kwargs)
    with Pool(2) as p:
        assert p.map(square, [3]) == [9]


def test_bad_call_arguments_raise_typed_errors_and_the_pool_still_works(pool: Pool) -> None:
    with pytest.raises(ValueError, match="Chunksize"):
        pool.map(square, [1, 2], chunksize=0)
    with pytest.raises(ValueError, match="Chunksize"):
        pool.imap(square, [1, 2], chunksize=-1)
    with pytest.raises(TypeError, match="callable"):
        pool.map("square", [1])  # type: ignore[arg-type]
    assert pool.map(square, [1, 2]) == [1, 4]


def test_fractional_cpus_let_more_workers_than_cpus_share_them(ember_local: dict) -> None:
    with Pool(4, ember_remote_args={"num_cpus": 0.5}) as p:
        assert p.map(square, range(8), chunksize=1) == [x * x for x in range(8)]


# Keep last: fresh_ember replaces the module's shared cluster.
def test_ember_shutdown_under_a_running_pool_fails_its_work_and_starts_nothing(
        fresh_ember: dict) -> None:
    """A pool must not bring ember back: replacing its dead workers after
    ember.shutdown() would quietly start a new local cluster."""
    g = gate()
    p = Pool(2)
    running = p.apply_async(wait_for, (g,))
    ember.shutdown()
    with pytest.raises(ActorDiedError):
        running.get(timeout=30)
    with pytest.raises(ValueError, match="Pool not running"):
        p.apply_async(square, (2,))
    p.terminate()
    g.shutdown()
    assert not ember.is_initialized()

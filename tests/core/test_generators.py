"""Generator tasks and actor methods: ObjectRefGenerator (streaming) and dynamic returns.

Written from Ray's documented behaviour: values come as they are yielded, in order; an
exception comes after the values yielded before it; back-pressure pauses the producer;
cancel stops it; ``wait`` counts a generator ready when its next value is there; a
retried generator continues where the caller is, without repeating values.
"""

from __future__ import annotations

import asyncio
import os
import pickle

import numpy as np
import pytest

import ember
from conftest import wait_for
from ember.exceptions import (GetTimeoutError, InvalidOptionError, SerializationError, TaskCancelledError,
                              TaskError)

pytestmark = pytest.mark.timeout(60)

_T = 30  # seconds any single get/next may take on a loaded 2-core machine


def _wait_file(path: str, timeout_s: float = 30.0) -> None:
    """Inside a task: wait (polling) until the test creates ``path``."""
    import time
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)


@ember.remote
def count_to(n: int):
    for i in range(n):
        yield i


@ember.remote
def fail_after(n: int):
    for i in range(n):
        yield i
    raise ValueError(f"failed after {n}")


@ember.remote
def yield_then_wait(path: str):
    yield "first"
    _wait_file(path)
    yield "second"


@ember.remote
def logged(n: int, log: str):
    for i in range(n):
        with open(log, "a") as f:
            f.write(f"{i}\n")
        yield i


@ember.remote
def endless(log: str):
    import time
    i = 0
    while True:
        with open(log, "a") as f:
            f.write(f"{i}\n")
        yield i
        i += 1
        time.sleep(0.01)


@ember.remote
def arrays(n: int, size: int):
    for i in range(n):
        yield np.full(size, i, dtype=np.uint8)


@ember.remote
class Source:
    def count(self, n: int):
        for i in range(n):
            yield i

    @ember.method(num_returns="streaming")
    def explicit(self, n: int):
        yield from range(n)

    def pid(self) -> int:
        return os.getpid()


@ember.remote
class AsyncSource:
    async def count(self, n: int):
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    def sync_count(self, n: int):
        yield from range(n)

    async def endless(self):
        i = 0
        while True:
            await asyncio.sleep(0.01)
            yield i
            i += 1

    async def ping(self) -> str:
        return "pong"


def _lines(path: str) -> int:
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


# --- iterating ---------------------------------------------------------------------------


def test_a_generator_task_gives_its_values_in_order_as_refs(ember_local) -> None:
    gen = count_to.remote(5)
    assert isinstance(gen, ember.ObjectRefGenerator)
    refs = list(gen)
    assert all(isinstance(r, ember.ObjectRef) for r in refs)
    assert ember.get(refs, timeout=_T) == [0, 1, 2, 3, 4]
    assert gen.is_finished()
    assert ember.get(gen.completed(), timeout=_T) is None


def test_next_raises_stop_iteration_at_the_end_and_after(ember_local) -> None:
    gen = count_to.options(num_returns="streaming").remote(1)
    assert ember.get(next(gen), timeout=_T) == 0
    for _ in range(2):
        with pytest.raises(StopIteration):
            next(gen)


def test_a_generator_that_yields_nothing_stops_at_once(ember_local) -> None:
    assert list(count_to.remote(0)) == []


def test_values_arrive_while_the_generator_is_still_running(ember_local, tmp_path) -> None:
    go = str(tmp_path / "go")
    gen = yield_then_wait.remote(go)
    first = next(gen)  # the task is blocked until `go` exists: this came by streaming
    assert ember.get(first, timeout=_T) == "first"
    assert not gen.is_finished()
    open(go, "w").close()
    assert ember.get(next(gen), timeout=_T) == "second"
    with pytest.raises(StopIteration):
        next(gen)


def test_async_for_and_anext_iterate_a_generator(ember_local) -> None:
    async def main() -> tuple[list[int], int]:
        out = [await ref async for ref in count_to.remote(4)]
        gen = count_to.remote(2)
        first = await (await gen.__anext__())
        return out, first

    assert asyncio.run(main()) == ([0, 1, 2, 3], 0)


def test_large_values_travel_through_the_store_and_are_read_only(ember_local) -> None:
    size = 1 << 20
    values = [ember.get(ref, timeout=_T) for ref in arrays.remote(3, size)]
    assert [int(v[0]) for v in values] == [0, 1, 2] and all(v.nbytes == size for v in values)
    with pytest.raises(ValueError, match="read-only"):
        values[0][0] = 9


def test_a_task_can_consume_a_generator_it_called(ember_local) -> None:
    @ember.remote
    def total(n: int) -> int:
        return sum(ember.get(ref) for ref in count_to.remote(n))

    assert ember.get(total.remote(10), timeout=_T) == 45


def test_static_num_returns_take_a_generators_values_as_the_returns(ember_local) -> None:
    @ember.remote(num_returns=3)
    def three():
        yield from ("a", "b", "c")

    @ember.remote(num_returns=2)
    def too_many():
        yield from range(3)

    assert ember.get(three.remote(), timeout=_T) == ["a", "b", "c"]
    with pytest.raises(TaskError, match="num_returns=2"):
        ember.get(too_many.remote(), timeout=_T)


# --- errors, cancellation, retries ----------------------------------------------------------


def test_an_exception_comes_after_the_values_yielded_before_it(ember_local) -> None:
    gen = fail_after.remote(2)
    assert ember.get(next(gen), timeout=_T) == 0
    assert ember.get(next(gen), timeout=_T) == 1
    error_ref = next(gen)
    with pytest.raises(ValueError, match="failed after 2"):
        ember.get(error_ref, timeout=_T)
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(ValueError):
        ember.get(gen.completed(), timeout=_T)


def test_cancel_stops_a_running_generator_task(ember_local, tmp_path) -> None:
    log = str(tmp_path / "log")
    gen = endless.remote(log)
    assert ember.get(next(gen), timeout=_T) == 0
    ember.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            ember.get(ref, timeout=_T)
    with pytest.raises(StopIteration):
        next(gen)
    assert ember.get(count_to.remote(1).completed(), timeout=_T) is None  # still works


def test_cancel_stops_an_async_actors_generator(ember_local) -> None:
    source = AsyncSource.remote()
    gen = source.endless.remote()
    assert ember.get(next(gen), timeout=_T) == 0
    ember.cancel(gen)
    with pytest.raises(TaskCancelledError):
        for ref in gen:
            ember.get(ref, timeout=_T)
    assert ember.get(source.ping.remote(), timeout=_T) == "pong"
    ember.kill(source)


def test_a_retried_generator_continues_without_repeating_values(ember_local, tmp_path) -> None:
    """The first attempt's worker dies after three values; the retry runs the generator
    again and the caller sees each value once, in order."""
    marker = str(tmp_path / "died-once")

    @ember.remote(max_retries=1)
    def dies_once(n: int, marker: str):
        for i in range(n):
            if i == 3 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            yield i

    assert [ember.get(r, timeout=_T) for r in dies_once.remote(6, marker)] == list(range(6))


@ember.remote(max_restarts=1, max_task_retries=1)
class DiesOnce:
    def count(self, n: int, marker: str):
        for i in range(n):
            if i == 2 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            yield i


def test_an_actor_generator_replayed_after_a_restart_continues_without_repeating(ember_local,
                                                                                 tmp_path) -> None:
    actor = DiesOnce.remote()
    marker = str(tmp_path / "died-once")
    assert [ember.get(r, timeout=_T) for r in actor.count.remote(5, marker)] == list(range(5))
    ember.kill(actor)


def test_retry_exceptions_reruns_a_generator_that_raised(ember_local, tmp_path) -> None:
    marker = str(tmp_path / "raised-once")

    @ember.remote(max_retries=1, retry_exceptions=[OSError])
    def raises_once(marker: str):
        yield "a"
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise OSError("transient")
        yield "b"

    assert [ember.get(r, timeout=_T) for r in raises_once.remote(marker)] == ["a", "b"]


def test_a_generator_without_retries_reports_its_worker_crash(ember_local, tmp_path) -> None:
    go = str(tmp_path / "go")

    @ember.remote(max_retries=0)
    def crashes(go: str):
        yield 1
        _wait_file(go)
        os._exit(1)

    gen = crashes.remote(go)
    assert ember.get(next(gen), timeout=_T) == 1
    open(go, "w").close()
    with pytest.raises(ember.exceptions.WorkerCrashedError):
        ember.get(next(gen), timeout=_T)


# --- back-pressure and wait ------------------------------------------------------------------


def test_back_pressure_keeps_the_producer_at_most_n_values_ahead(ember_local, tmp_path) -> None:
    log = str(tmp_path / "log")
    n, ahead = 8, 2
    gen = logged.options(_generator_backpressure_num_objects=ahead).remote(n, log)
    for taken in range(n):
        # A slow consumer: the producer gets as far as it may before each value is taken.
        wait_for(lambda: _lines(log) >= min(taken + ahead, n), what=f"{taken + ahead} values produced")
        assert _lines(log) <= taken + ahead
        assert ember.get(next(gen), timeout=_T) == taken
    with pytest.raises(StopIteration):
        next(gen)


def test_wait_counts_a_generator_ready_when_its_next_value_is_there(ember_local, tmp_path) -> None:
    go = str(tmp_path / "go")
    gen = yield_then_wait.remote(go)
    ready, not_ready = ember.wait([gen], timeout=_T)
    assert ready == [gen] and not_ready == []
    assert ember.get(next(gen), timeout=_T) == "first"
    ready, not_ready = ember.wait([gen], timeout=0.2)
    assert ready == [] and not_ready == [gen]
    open(go, "w").close()
    ready, _ = ember.wait([gen], timeout=_T)
    assert ready == [gen] and ember.get(next(gen), timeout=_T) == "second"
    ready, _ = ember.wait([gen], timeout=_T)  # the end counts as ready: next() will not block
    assert ready == [gen]
    with pytest.raises(StopIteration):
        next(gen)


def test_wait_mixes_generators_and_refs(ember_local) -> None:
    ref = ember.put(1)
    gen = count_to.remote(1)
    ready, _ = ember.wait([ref, gen], num_returns=2, timeout=_T)
    assert ready == [ref, gen]


def test_next_sync_with_a_timeout_raises_get_timeout_error(ember_local, tmp_path) -> None:
    go = str(tmp_path / "go")
    gen = yield_then_wait.remote(go)
    next(gen)
    with pytest.raises(GetTimeoutError, match="yield_then_wait"):
        gen._next_sync(timeout_s=0.1)
    open(go, "w").close()
    assert ember.get(gen._next_sync(timeout_s=_T), timeout=_T) == "second"


# --- actors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [{}, {"max_concurrency": 2}], ids=["sync", "threaded"])
def test_an_actor_methods_generator_streams_its_values(ember_local, options) -> None:
    source = Source.options(**options).remote()
    assert [ember.get(r, timeout=_T) for r in source.count.remote(4)] == [0, 1, 2, 3]
    assert [ember.get(r, timeout=_T) for r in source.explicit.remote(2)] == [0, 1]
    assert isinstance(source.pid.remote(), ember.ObjectRef)
    ember.kill(source)


def test_an_async_actor_streams_from_async_and_sync_generators(ember_local) -> None:
    source = AsyncSource.remote()
    assert [ember.get(r, timeout=_T) for r in source.count.remote(3)] == [0, 1, 2]
    assert [ember.get(r, timeout=_T) for r in source.sync_count.remote(2)] == [0, 1]
    ember.kill(source)


def test_back_pressure_on_an_async_actor_generator(ember_local) -> None:
    source = AsyncSource.remote()
    gen = source.count.options(_generator_backpressure_num_objects=1).remote(5)
    assert [ember.get(r, timeout=_T) for r in gen] == list(range(5))
    ember.kill(source)


# --- dynamic ---------------------------------------------------------------------------------


def test_dynamic_num_returns_gives_one_ref_to_a_generator_of_refs(ember_local) -> None:
    @ember.remote(num_returns="dynamic")
    def dynamic(n: int):
        for i in range(n):
            yield np.full(4, i) if i % 2 else i

    ref = dynamic.remote(4)
    assert isinstance(ref, ember.ObjectRef)
    refs = ember.get(ref, timeout=_T)
    assert isinstance(refs, ember.DynamicObjectRefGenerator) and len(refs) == 4
    values = [ember.get(r, timeout=_T) for r in refs]
    assert values[0] == 0 and values[2] == 2 and list(values[1]) == [1] * 4


# --- releasing -------------------------------------------------------------------------------


def test_dropping_a_generator_releases_the_values_it_still_held(ember_local) -> None:
    before = ember.object_store_stats()["used_bytes"]
    gen = arrays.remote(4, 2 << 20)
    wait_for(gen.next_ready, what="the first value")
    del gen
    wait_for(lambda: ember.object_store_stats()["used_bytes"] <= before,
             what="the dropped generator's values to be freed")


# --- bad input -------------------------------------------------------------------------------


def _plain() -> int:
    return 1


@ember.remote
def identity(x: object) -> object:
    return x


@pytest.mark.parametrize("num_returns", ["streaming", "dynamic"])
def test_streaming_on_a_function_that_does_not_yield_is_refused(ember_local, num_returns) -> None:
    with pytest.raises(InvalidOptionError, match="yield"):
        ember.remote(num_returns=num_returns)(_plain)
    with pytest.raises(InvalidOptionError, match="yield"):
        ember.remote(_plain).options(num_returns=num_returns)
    assert ember.get(ember.remote(_plain).remote(), timeout=_T) == 1


@pytest.mark.parametrize("value", ["stream", -1, 1.5, None.__class__])
def test_an_unknown_num_returns_is_refused(ember_local, value) -> None:
    with pytest.raises(InvalidOptionError, match="num_returns"):
        count_to.options(num_returns=value)


@pytest.mark.parametrize("value", [0, -2, 1.5, "2", True])
def test_invalid_back_pressure_values_are_refused(ember_local, value) -> None:
    with pytest.raises(InvalidOptionError, match="_generator_backpressure_num_objects"):
        count_to.options(_generator_backpressure_num_objects=value)
    assert [ember.get(r, timeout=_T) for r in count_to.remote(2)] == [0, 1]


def test_back_pressure_on_a_task_that_is_not_a_generator_is_refused(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="streaming"):
        ember.remote(_plain).options(_generator_backpressure_num_objects=2)
    with pytest.raises(InvalidOptionError, match="streaming"):
        count_to.options(num_returns=2, _generator_backpressure_num_objects=2)


def test_get_of_a_generator_says_to_iterate_it(ember_local) -> None:
    gen = count_to.remote(1)
    with pytest.raises(TypeError, match="for ref in"):
        ember.get(gen)
    with pytest.raises(TypeError, match="for ref in"):
        ember.get([gen])
    assert [ember.get(r, timeout=_T) for r in gen] == [0]


def test_a_generator_cannot_be_passed_to_a_task(ember_local) -> None:
    gen = count_to.remote(1)
    with pytest.raises(SerializationError, match="refs it yields"):
        identity.remote(gen)
    with pytest.raises(TypeError, match="refs it yields"):
        pickle.dumps(gen)
    assert [ember.get(r, timeout=_T) for r in gen] == [0]


def test_force_cancel_of_an_actor_generator_is_refused(ember_local) -> None:
    source = Source.remote()
    gen = source.count.remote(2)
    with pytest.raises(ValueError, match="force"):
        ember.cancel(gen, force=True)
    assert [ember.get(r, timeout=_T) for r in gen] == [0, 1]
    ember.kill(source)


def test_a_method_that_does_not_yield_refuses_streaming(ember_local) -> None:
    with pytest.raises(InvalidOptionError, match="yield"):
        ember.method(num_returns="streaming")(_plain)
    with pytest.raises(InvalidOptionError, match="_generator_backpressure_num_objects"):
        ember.method(_generator_backpressure_num_objects=0)
    # A handle cannot tell which methods yield: the call itself says so.
    source = Source.remote()
    gen = source.pid.options(num_returns="streaming").remote()
    with pytest.raises(TypeError, match="not a generator.*yield"):
        ember.get(next(gen), timeout=_T)
    assert ember.get(source.pid.remote(), timeout=_T) > 0
    ember.kill(source)

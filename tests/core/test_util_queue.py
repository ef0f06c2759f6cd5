"""ember.util.queue.Queue: an actor-held FIFO shared by the driver, tasks and actors."""

from __future__ import annotations

import asyncio
import queue as stdlib_queue
from typing import Any, Iterator

import pytest

import ember
from ember.exceptions import ActorDiedError
from ember.util.queue import Empty, Full, Queue

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def q(ember_local: dict) -> Iterator[Queue]:
    queue = Queue(actor_options={"num_cpus": 0})
    yield queue
    queue.shutdown()


@ember.remote
def take(queue: Queue, timeout: float) -> Any:
    return queue.get(timeout=timeout)


@ember.remote
def produce(queue: Queue, items: list) -> None:
    for item in items:
        queue.put(item)


@ember.remote(num_cpus=0)
class Consumer:
    def drain(self, queue: Queue, n: int) -> list:
        return [queue.get(timeout=30) for _ in range(n)]


def test_items_come_out_in_the_order_they_went_in(q: Queue) -> None:
    for i in range(5):
        q.put(i)
    assert [q.get() for _ in range(5)] == [0, 1, 2, 3, 4]


def test_get_nowait_on_an_empty_queue_raises_empty(q: Queue) -> None:
    with pytest.raises(Empty) as info:
        q.get_nowait()
    assert isinstance(info.value, stdlib_queue.Empty)
    with pytest.raises(Empty):
        q.get(block=False)


def test_put_nowait_on_a_full_queue_raises_full(ember_local: dict) -> None:
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    queue.put_nowait("a")
    with pytest.raises(Full) as info:
        queue.put_nowait("b")
    assert isinstance(info.value, stdlib_queue.Full)
    assert queue.get_nowait() == "a"
    queue.shutdown()


def test_get_with_a_timeout_raises_empty_when_nothing_arrives(q: Queue) -> None:
    with pytest.raises(Empty):
        q.get(timeout=0.2)
    q.put(1)
    assert q.get(timeout=0) == 1  # a zero timeout still takes an item that is there


def test_put_with_a_timeout_raises_full_when_no_room_frees(ember_local: dict) -> None:
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    queue.put(1, timeout=0)
    with pytest.raises(Full):
        queue.put(2, timeout=0.2)
    assert queue.size() == 1
    queue.shutdown()


def test_a_waiting_get_does_not_block_puts_from_other_callers(q: Queue) -> None:
    ref = take.remote(q, 50)
    q.put("hello")  # would hang if the waiting get held the actor
    assert ember.get(ref, timeout=30) == "hello"


def test_tasks_and_actors_share_one_queue(q: Queue) -> None:
    ember.get([produce.remote(q, [1, 2, 3]), produce.remote(q, [4, 5, 6])], timeout=30)
    consumer = Consumer.remote()
    assert sorted(ember.get(consumer.drain.remote(q, 6), timeout=30)) == [1, 2, 3, 4, 5, 6]
    assert q.empty()


def test_a_blocked_put_resumes_when_a_consumer_takes_an_item(ember_local: dict) -> None:
    queue = Queue(maxsize=1, actor_options={"num_cpus": 0})
    queue.put("first")
    ref = produce.remote(queue, ["second"])  # waits for room
    assert queue.get(timeout=30) == "first"
    ember.get(ref, timeout=30)
    assert queue.get(timeout=30) == "second"
    queue.shutdown()


def test_size_empty_full_and_len_describe_the_contents(ember_local: dict) -> None:
    queue = Queue(maxsize=2, actor_options={"num_cpus": 0})
    assert queue.empty() and not queue.full() and len(queue) == 0
    queue.put(1)
    queue.put(2)
    assert queue.full() and queue.qsize() == queue.size() == len(queue) == 2
    queue.shutdown()


def test_put_nowait_batch_adds_all_items_or_none(ember_local: dict) -> None:
    queue = Queue(maxsize=3, actor_options={"num_cpus": 0})
    queue.put_nowait_batch(x for x in [1, 2])  # a generator is fine
    with pytest.raises(Full, match="Cannot add 2 items"):
        queue.put_nowait_batch([3, 4])
    assert queue.size() == 2
    assert queue.get_nowait_batch(2) == [1, 2]
    queue.shutdown()


def test_get_nowait_batch_takes_nothing_when_too_few_items(q: Queue) -> None:
    q.put_nowait_batch([1, 2])
    with pytest.raises(Empty, match="Cannot get 3 items"):
        q.get_nowait_batch(3)
    assert q.get_nowait_batch(0) == []
    assert q.get_nowait_batch(2) == [1, 2]


def test_async_put_and_get_work_from_an_event_loop(q: Queue) -> None:
    async def roundtrip() -> Any:
        await q.put_async("x")
        return await q.get_async(timeout=10)

    assert asyncio.run(roundtrip()) == "x"


@pytest.mark.parametrize("call, error", [
    (lambda q: q.get(timeout=-1), ValueError),
    (lambda q: q.put(1, timeout=-1), ValueError),
    (lambda q: q.get(timeout="1"), TypeError),
    (lambda q: q.get_nowait_batch("2"), TypeError),
    (lambda q: q.get_nowait_batch(-1), ValueError),
    (lambda q: q.put_nowait_batch(5), TypeError),
])
def test_bad_arguments_raise_typed_errors_and_the_queue_still_works(
        q: Queue, call: Any, error: type) -> None:
    with pytest.raises(error):
        call(q)
    q.put(1)
    assert q.get(timeout=10) == 1


def test_a_non_integer_maxsize_is_a_type_error(ember_local: dict) -> None:
    with pytest.raises(TypeError, match="maxsize"):
        Queue(maxsize="3")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="actor_options"):
        Queue(actor_options=["num_cpus"])  # type: ignore[arg-type]


def test_a_shut_down_queue_raises_actor_died_and_shutdown_is_idempotent(
        ember_local: dict) -> None:
    queue = Queue(actor_options={"num_cpus": 0})
    queue.put(1)
    queue.shutdown()
    queue.shutdown()
    with pytest.raises(ActorDiedError):
        queue.get_nowait()


# Keep last: fresh_ember replaces the module's shared cluster.
def test_queue_shutdown_after_ember_shutdown_does_not_start_ember_again(
        fresh_ember: dict) -> None:
    queue = Queue(actor_options={"num_cpus": 0})
    queue.put(1)
    ember.shutdown()
    queue.shutdown()
    assert not ember.is_initialized()

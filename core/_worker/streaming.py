"""The worker's side of generator tasks: send each yielded value as it comes.

    generator thread: for value in gen -> encode item i (inline, or sealed in the store)
                      -> ItemSender.put(conn, item) -> [wait while too many unconsumed]
    sender thread:    everything queued -> one GeneratorItems per connection -> submitter
    end of the task:  ItemSender.flush() (the rest, now), then the TaskReply

A busy generator outruns the sender thread, so items leave in batches (one message for
hundreds of small values); a slow one sends each value the moment it is yielded. The
final flush happens before the task's reply on the same connection, so the caller has
every item before it learns that the generator ended.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any, Iterator

from .._client.local_objects import LocalObjectTable
from .._client.object_entry import Completion
from .._types import TaskID
from .._wire import protocol as p
from .._wire.ids import object_id
from .._wire.serialization import serialize
from .._wire.transport import Connection, ConnectionClosed


class StreamCancelled(Exception):
    """``ember.cancel`` reached a generator between two of its values (or while it waited
    for its consumer): the task ends as cancelled."""


class ItemSender:
    """Sends the items of this worker's generators, batched per connection, on one thread.

    ``put`` never blocks on the socket; ``flush`` sends what is queued from the calling
    thread, and returns once it is on the wire (the lock orders it after a batch the
    sender thread is writing).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        #: Queued items: (connection, (task id, index, completion)).
        self._queue: list[tuple[Connection, tuple[TaskID, int, Completion]]] = []
        #: Held while a batch is taken and written, so batches leave in order.
        self._send_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def put(self, conn: Connection, item: tuple[TaskID, int, Completion]) -> None:
        with self._cond:
            self._queue.append((conn, item))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="ember-item-sender")
                self._thread.start()
            self._cond.notify()

    def flush(self) -> None:
        """Send everything queued now (before a generator task's reply)."""
        with self._send_lock:
            with self._cond:
                batch, self._queue = self._queue, []
            _send(batch)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
            with self._send_lock:
                with self._cond:
                    batch, self._queue = self._queue, []
                _send(batch)


def _send(batch: list[tuple[Connection, tuple[TaskID, int, Completion]]]) -> None:
    by_conn: dict[Connection, list[tuple[TaskID, int, Completion]]] = {}
    for conn, item in batch:
        by_conn.setdefault(conn, []).append(item)
    for conn, items in by_conn.items():
        try:
            conn.send(p.GeneratorItems(items))
        except ConnectionClosed:  # the caller is gone: nobody wants these values
            pass


class Producer:
    """One running generator task: numbers, encodes and sends its values, and pauses
    while ``backpressure`` of them are not yet consumed by the caller.

    ``consumed`` and ``cancelled`` change on connection threads (``on_consumed``,
    ``cancel``); the generator's thread (or event loop) waits on them.
    """

    def __init__(self, spec: p.TaskSpec, conn: Connection, objects: LocalObjectTable,
                 sender: ItemSender) -> None:
        self.spec = spec
        self.conn = conn
        self.objects = objects
        self.sender = sender
        self.index = 0
        #: The caller already holds items 1..resume (this is a retry): not sent again.
        self.resume = spec.generator_resume
        self.consumed = spec.generator_consumed
        self.backpressure = spec.backpressure_num_objects
        self.cancelled = False
        self._cond = threading.Condition(threading.Lock())
        #: Set by the async path: wakes its waiting coroutine (called on any thread).
        self._wake_async: Any = None

    # --- called from connection threads --------------------------------------------------

    def on_consumed(self, consumed: int) -> None:
        with self._cond:
            self.consumed = max(self.consumed, consumed)
            self._cond.notify_all()
        if self._wake_async is not None:
            self._wake_async()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
        if self._wake_async is not None:
            self._wake_async()

    # --- the generator's side ------------------------------------------------------------

    def emit(self, value: Any) -> None:
        """Send one yielded value (unless the caller has it from an earlier attempt)."""
        if self.cancelled:
            raise StreamCancelled()
        self.index += 1
        if self.index <= self.resume:
            return
        spec = self.spec
        oid = object_id(spec.task_id, self.index)
        ser = serialize(value, what=f"value {self.index} yielded by `{spec.name}`")
        completion = self.objects.encode_value(oid, ser, spec.owner_id)
        self.sender.put(self.conn, (spec.task_id, self.index, completion))

    def _must_wait(self) -> bool:
        return 0 < self.backpressure <= self.index - self.consumed and not self.cancelled

    def wait_for_consumer(self) -> None:
        """Block while ``backpressure`` values are unconsumed (sync generators)."""
        if not self._must_wait():
            return
        with self._cond:
            while self._must_wait():
                self._cond.wait()
        if self.cancelled:
            raise StreamCancelled()

    def run(self, gen: Iterator[Any]) -> None:
        """Drive a sync generator to its end, sending each value."""
        for value in gen:
            self.emit(value)
            self.wait_for_consumer()

    async def run_async(self, gen: Any) -> None:
        """Drive an async (or sync) generator on the actor's event loop."""
        if inspect.isasyncgen(gen):
            async for value in gen:
                self.emit(value)
                await self._wait_async()
        else:
            for value in gen:
                self.emit(value)
                await self._wait_async()

    async def _wait_async(self) -> None:
        if not self._must_wait():
            return
        loop = asyncio.get_running_loop()
        while self._must_wait():
            fut = loop.create_future()
            self._wake_async = lambda: loop.call_soon_threadsafe(_settle, fut)
            if self._must_wait():
                await fut
            self._wake_async = None
        if self.cancelled:
            raise StreamCancelled()


def _settle(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)

"""The caller's side of generator tasks: items arriving as the generator yields them.

    worker --GeneratorItems--> [WorkerChannel reader] --GeneratorTable.on_items--> Stream
        each item: an owned entry in the object table (inline, or stored on its node;
        the next PREFETCH_AHEAD stored ones are mapped here before the consumer asks)
    ObjectRefGenerator.__next__ --Stream.next_id / take--> ObjectRef of item i
        back-pressure: --GeneratorConsumed(consumed)--> the worker running the generator
    TaskReply (the task's completion ref) --Stream._finished--> [error item] + end marker

Item ``i`` (1-based) of task ``t`` has the object id ``object_id(t, i)``; index 0 is the
task's own return, which completes when the generator ends (None, or its error). When
the stream ends, the index after the last item (after the error item, if the generator
raised) holds an end marker: ``next`` waits for the entry at ``consumed + 1`` and stops
there, so ``get``-style waiting (timeouts, releasing the CPU in workers, ``ember.wait``)
serves generators unchanged.

Invariants: every Stream field changes under the object table's lock; each arrived,
not yet handed out item (and the end marker) holds one count in the table, which
``take`` hands to the ObjectRef it makes, and ``drop`` (the generator was collected)
releases. Items that arrive again from a retried task (index <= received) are ignored.
"""

from __future__ import annotations

import collections
from typing import Any

from .._types import ActorID, ObjectID, TaskID
from .._wire import protocol as p
from .._wire.ids import object_id
from .._wire.serialization import serialize
from .local_objects import LocalObjectTable
from .object_entry import Completion, LocalObject
from .worker_channel import WorkerChannel

#: What the end marker's entry holds (never handed to user code).
_END = serialize(None).to_bytes()
#: Sent when a stream with back-pressure is dropped: its producer must not wait forever.
_UNBLOCK = 1 << 62
#: Stored values mapped ahead of the consumer: each ``get`` then finds its value mapped,
#: while a slow consumer pins at most this many blocks (pinned blocks cannot be spilled).
PREFETCH_AHEAD = 4


def _index(oid: ObjectID) -> int:
    """An item's index within its generator (the object id's return index)."""
    return int.from_bytes(oid[-4:], "little")


class Stream:
    """One generator task's items as seen by the process that called it."""

    __slots__ = ("task_id", "name", "actor_id", "backpressure", "received", "consumed", "end",
                 "channel", "dropped", "table", "__weakref__")

    def __init__(self, table: "GeneratorTable", task_id: TaskID, name: str, actor_id: ActorID | None,
                 backpressure: int) -> None:
        self.table = table
        self.task_id = task_id
        self.name = name
        #: Set for an actor method's generator (cancelled through the actor submitter).
        self.actor_id = actor_id
        #: Unconsumed items at which the producer pauses (-1: never).
        self.backpressure = backpressure
        #: Highest item index arrived; items 1..received are (or were) in the table.
        self.received = 0
        #: Items handed out by ``take``.
        self.consumed = 0
        #: Index of the end marker, once the task finished (None while it runs).
        self.end: int | None = None
        #: Where the generator runs now (for GeneratorConsumed); None before it is pushed.
        self.channel: WorkerChannel | None = None
        self.dropped = False

    @property
    def completion_id(self) -> ObjectID:
        """The task's own return: None once the generator ended, or its error."""
        return object_id(self.task_id, 0)

    def next_id(self) -> ObjectID:
        """The id of the entry ``next`` waits for: the next item, or the end marker."""
        objects = self.table.objects
        with objects.lock:
            oid = object_id(self.task_id, self.consumed + 1)
            if oid not in objects.objects:
                objects.objects[oid] = LocalObject(owned=True)
            return oid

    def is_ready(self) -> bool:
        """Whether ``take`` would not wait: the next item (or the end) has arrived."""
        objects = self.table.objects
        with objects.lock:
            entry = objects.objects.get(object_id(self.task_id, self.consumed + 1))
            return entry is not None and entry.ready

    def take(self) -> ObjectID | None:
        """Hand out the next item (its table count goes to the caller's ObjectRef).

        Returns None at the end of the stream. Raises LookupError if the next item has
        not arrived yet (the caller waits for ``next_id()`` and tries again; with several
        consumers, another one may have taken the item it waited for).
        """
        objects = self.table.objects
        with objects.lock:
            index = self.consumed + 1
            if self.end is not None and index >= self.end:
                return None
            oid = object_id(self.task_id, index)
            entry = objects.objects.get(oid)
            if entry is None or not entry.ready or index > self.received:
                raise LookupError(oid)
            self.consumed = index
            channel = self.channel if self.backpressure > 0 and self.end is None else None
            ahead = index + PREFETCH_AHEAD
            prefetch = [object_id(self.task_id, ahead)] if ahead <= self.received else []
        if channel is not None:
            channel.send(p.GeneratorConsumed(self.task_id, index))
        if prefetch:  # keep the window of mapped values ahead of the consumer full
            objects.prefetch(prefetch)
        return oid


class GeneratorTable:
    """This process's generator tasks in flight: routes arriving items to their Stream.

    One per runtime, shared by both submitters (the worker channels they open hand it
    every GeneratorItems message). Shares the object table's lock.
    """

    def __init__(self, objects: LocalObjectTable) -> None:
        self.objects = objects
        self.streams: dict[TaskID, Stream] = {}
        #: Streams whose ObjectRefGenerator was collected: released at the next safe
        #: point (``drain_drops``), never from ``__del__`` (which must not take the lock).
        self.drops: collections.deque[Stream] = collections.deque()

    def open(self, task_id: TaskID, name: str, actor_id: ActorID | None, backpressure: int) -> Stream:
        """A generator task is about to be submitted: expect its items."""
        stream = Stream(self, task_id, name, actor_id, backpressure)
        with self.objects.lock:
            self.streams[task_id] = stream
        return stream

    def forget(self, stream: Stream) -> None:
        """The submission failed (nothing will arrive): stop expecting its items."""
        with self.objects.lock:
            self.streams.pop(stream.task_id, None)

    def watch(self, stream: Stream) -> None:
        """Finish ``stream`` when its task's own return completes (after submission)."""
        if not self.objects.on_ready(stream.completion_id, self._finished):
            self._finished(stream.completion_id)

    def before_push(self, spec: p.TaskSpec, channel: WorkerChannel) -> None:
        """A generator task is pushed (again, after a retry): tell the worker what the
        caller already has, so it neither resends those items nor waits on them."""
        with self.objects.lock:
            stream = self.streams.get(spec.task_id)
            if stream is None:
                return
            stream.channel = channel
            spec.generator_resume = stream.received
            spec.generator_consumed = _UNBLOCK if stream.dropped else stream.consumed

    # --- arrivals (a worker channel's reader thread) -----------------------------------

    def streams_consumed(self, oid: ObjectID) -> int:
        """How many values of the generator that made ``oid`` were taken (0 if it ended)."""
        stream = self.streams.get(oid[:-4])
        return stream.consumed if stream is not None else 0

    def on_items(self, msg: p.GeneratorItems) -> None:
        """Items a generator yielded: own them in the table and wake their consumers."""
        objects = self.objects
        fresh: list[tuple[ObjectID, Completion]] = []
        unwanted: list[tuple[ObjectID, Completion]] = []
        with objects.lock:
            for task_id, index, completion in msg.items:
                oid = object_id(task_id, index)
                stream = self.streams.get(task_id)
                if stream is None or index <= stream.received or stream.end is not None:
                    unwanted.append((oid, completion))
                    continue
                if stream.dropped:
                    stream.received = index
                    unwanted.append((oid, completion))
                    continue
                if oid not in objects.objects:
                    objects.objects[oid] = LocalObject(owned=True)
                objects.counts[oid] = objects.counts.get(oid, 0) + 1
                stream.received = index
                fresh.append((oid, completion))
        ahead = []
        for oid, (kind, value) in fresh:
            objects.complete(oid, kind, value)
            if kind == "stored" and _index(oid) <= self.streams_consumed(oid) + PREFETCH_AHEAD:
                ahead.append(oid)
        if ahead:  # mapped while the consumer works on earlier values
            objects.prefetch(ahead)
        for oid, (kind, value) in unwanted:
            if kind == "stored":  # sealed for us: the node holds a reference nobody takes up
                home = value[2] if value[2] != objects.node_tcp_address else None
                objects.link.send(p.RemoveRefs([oid], home))

    def _finished(self, completion_id: ObjectID) -> None:
        """The task ended: add its error as one more item (if it raised), then the end."""
        objects = self.objects
        task_id = completion_id[:-4]
        with objects.lock:
            stream = self.streams.pop(task_id, None)
            if stream is None:
                return
            error = objects.error_payload(completion_id)
            last = stream.received
            marks: list[tuple[ObjectID, Any]] = []
            if error is not None:
                last += 1
                marks.append((object_id(task_id, last), error))
            stream.end = last + 1
            marks.append((object_id(task_id, stream.end), _END))
            if stream.dropped:
                return
            for oid, _payload in marks:
                if oid not in objects.objects:
                    objects.objects[oid] = LocalObject(owned=True)
                objects.counts[oid] = objects.counts.get(oid, 0) + 1
            stream.received = last
        for oid, payload in marks:
            objects.complete(oid, "inline", payload)

    # --- the consumer went away ----------------------------------------------------------

    def drop(self, stream: Stream) -> None:
        """The ObjectRefGenerator was collected (safe from ``__del__``: no lock)."""
        self.drops.append(stream)

    def drain_drops(self) -> None:
        """Release what collected generators still held (housekeeping; a safe point)."""
        drops = self.drops
        if not drops:
            return
        objects = self.objects
        unblock: list[tuple[WorkerChannel, TaskID]] = []
        with objects.lock:
            while drops:
                stream = drops.popleft()
                if stream.dropped:
                    continue
                stream.dropped = True
                last = stream.received if stream.end is None else stream.end
                for index in range(stream.consumed + 1, last + 1):
                    objects.release(object_id(stream.task_id, index))
                # An entry ``next`` made for a value that has not come: nobody waits now.
                waited = object_id(stream.task_id, last + 1)
                entry = objects.objects.get(waited)
                if entry is not None and not entry.ready and not objects.counts.get(waited):
                    del objects.objects[waited]
                if stream.end is None and stream.backpressure > 0 and stream.channel is not None:
                    unblock.append((stream.channel, stream.task_id))
        for channel, task_id in unblock:
            channel.send(p.GeneratorConsumed(task_id, _UNBLOCK))
        objects.drain_releases()

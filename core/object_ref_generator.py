"""Generators of refs: what a remote generator function or actor method returns.

    g = f.remote()            # f yields: an ObjectRefGenerator (num_returns="streaming")
    for ref in g:             # each ref as soon as the task has yielded its value
        ember.get(ref)
    async for ref in g: ...   # the same in asyncio code (drivers, async actors)

    r = f.options(num_returns="dynamic").remote()
    ember.get(r)              # a DynamicObjectRefGenerator of every yielded value's ref

An exception raised by the generator comes after the values it yielded first: the next
ref raises it from ``get`` and the iteration stops after it (as in Ray).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator

from ._client import context
from ._client.generators import Stream
from ._types import ObjectID
from .exceptions import EmberSystemError, GetTimeoutError
from .object_ref import ObjectRef

if TYPE_CHECKING:
    import asyncio


class ObjectRefGenerator:
    """The refs of a generator task's values, in the order they are yielded.

    Iterate it (``for``, ``next``, ``async for``, ``await g.__anext__()``) to get each
    value's ObjectRef as soon as the task has yielded it; ``ember.wait([g])`` counts it
    ready when the next ref (or the end) is there; ``ember.cancel(g)`` stops the task.
    With ``_generator_backpressure_num_objects=n`` the task pauses while n of its
    values are not yet taken from here. It belongs to the process that called the task
    and cannot be passed to other tasks (pass the refs instead).
    """

    __slots__ = ("_stream", "_completed", "__weakref__")

    def __init__(self, stream: Stream, completed: ObjectRef) -> None:
        self._stream = stream
        self._completed = completed

    def __iter__(self) -> Iterator[ObjectRef]:
        return self

    def __next__(self) -> ObjectRef:
        return self._next_sync(None)

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef:
        """The next ref, waiting up to ``timeout_s`` (None: as long as it takes).

        Raises:
            StopIteration: the generator ended (after its error ref, if it raised).
            GetTimeoutError: nothing came within ``timeout_s``.
            EmberSystemError: the connection to the node manager was lost.
        """
        stream = self._stream
        while True:
            try:
                taken = stream.take()
            except LookupError:  # not here yet: wait for it (releasing the CPU in a task)
                objects = context.runtime().objects
                if not objects.wait_ready([stream.next_id()], 1, timeout_s, fetch=False):
                    if objects.closed:
                        raise EmberSystemError(f"lost the connection to the node manager while "
                                               f"waiting for generator task `{stream.name}`")
                    raise GetTimeoutError(f"the next value of generator task `{stream.name}` did "
                                          f"not come within {timeout_s} s")
                continue
            if taken is None:
                raise StopIteration
            return ObjectRef(taken, _counted=True)

    def __aiter__(self) -> "ObjectRefGenerator":
        return self

    async def __anext__(self) -> ObjectRef:
        """The next ref, awaited without blocking the event loop (StopAsyncIteration at the end)."""
        stream = self._stream
        while True:
            try:
                taken = stream.take()
            except LookupError:  # not here yet: wait on the loop, then take it
                await _ready(stream.next_id())
                continue
            if taken is None:
                raise StopAsyncIteration
            return ObjectRef(taken, _counted=True)

    def next_ready(self) -> bool:
        """Whether ``next`` would return at once (the next ref, or the end, is here)."""
        return self._stream.is_ready()

    def is_finished(self) -> bool:
        """Whether every ref has been taken (``next`` would raise StopIteration)."""
        stream = self._stream
        return stream.end is not None and stream.consumed + 1 >= stream.end

    def completed(self) -> ObjectRef:
        """A ref that is ready once the task has ended: None, or its error from ``get``."""
        return self._completed

    def task_id(self) -> bytes:
        return self._stream.task_id

    def _next_id(self) -> ObjectID:
        """What ``ember.wait`` waits on for this generator: the next item or the end."""
        return self._stream.next_id()

    def __reduce__(self) -> Any:
        raise TypeError(f"an ObjectRefGenerator (of `{self._stream.name}`) cannot be passed to "
                        "other tasks or pickled: it belongs to the process that called the task. "
                        "Pass the refs it yields instead (e.g. a list of them)")

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._stream.name}, {self._stream.task_id.hex()})"

    def __del__(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.table.drop(stream)


async def _ready(oid: ObjectID) -> None:
    """Wait on the running loop until the table entry ``oid`` is ready."""
    # Imported here: asyncio costs ~10 ms, and ``import ember`` must not pay it for the
    # drivers that never iterate a generator asynchronously.
    import asyncio
    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()

    def ready(_oid: ObjectID) -> None:
        loop.call_soon_threadsafe(_settle, fut)

    if context.runtime().objects.on_ready(oid, ready):
        await fut


def _settle(fut: "asyncio.Future") -> None:
    if not fut.done():
        fut.set_result(None)


class DynamicObjectRefGenerator:
    """What ``get`` returns for a ``num_returns="dynamic"`` task: the refs of every
    value its generator yielded, iterable (and sized) once the task has finished."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"

"""ObjectRef: a handle to a value that exists (or will) somewhere in the cluster."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import context
from ._wire import serialization
from ._types import ObjectID, Owner
from ._wire.ids import task_of
from ._client.local_objects import LocalObjectTable

if TYPE_CHECKING:
    import asyncio


class ObjectRef:
    """A reference to an object, as returned by ``f.remote()`` and ``ember.put``.

    Refs are cheap to copy and to pass to tasks. While any ref to an object exists
    anywhere in the cluster, the object stays alive: each ref counts itself in the object
    table of the runtime current when it was made (``_table``) and releases itself there.
    """

    __slots__ = ("id", "_table", "__weakref__")

    def __init__(self, object_id: ObjectID, _counted: bool = False) -> None:
        self.id = object_id
        self._table: LocalObjectTable | None = context.objects
        if self._table is not None and not _counted:
            self._table.incref(object_id)

    def __del__(self) -> None:
        table = self._table
        if table is not None:
            table.release(self.id)

    def __reduce__(self) -> Any:
        table = self._table
        if not serialization.note_contained(self) and table is not None:
            # Pickled outside ember's serialization (the user's own cloudpickle.dumps): no
            # value holds the object for these bytes, so it is pinned for as long as this
            # process lives, and stored where any process can fetch it (Ray does the same
            # for refs serialized out of band).
            table.incref(self.id)
            table.share([self])
        if table is None:
            return (_rebuild_ref, (self.id,))
        return (_rebuild_ref, (self.id, table.home_of(self.id), table.owner_of(self.id)))

    def __copy__(self) -> "ObjectRef":
        # Not through __reduce__: copying a structure that holds refs (copy.deepcopy of a
        # config, say) is no out-of-band pickling and must not pin the object.
        return ObjectRef(self.id)

    def __deepcopy__(self, _memo: dict) -> "ObjectRef":
        return ObjectRef(self.id)

    def hex(self) -> str:
        return self.id.hex()

    def binary(self) -> bytes:
        return self.id

    def task_id(self) -> bytes:
        return task_of(self.id)

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __repr__(self) -> str:
        return f"ObjectRef({self.id.hex()})"

    def __await__(self) -> Any:
        return self.future().__await__()

    def future(self) -> "asyncio.Future":
        """An asyncio future resolving to the value (for ``await ref`` in async actors).

        The runtime's readiness callback resolves it on the loop: awaiting costs no thread
        and no blocked/unblocked messages to the node manager, so an async actor can have
        any number of awaits pending. Only a value that still has to be mapped from the
        store (or rebuilt) is read on the default executor, where that may block.
        """
        # Imported here: asyncio costs ~10 ms, and ``import ember`` must not pay it for the
        # drivers that never await a ref.
        import asyncio
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        objects = context.runtime().objects

        def ready(_oid: ObjectID) -> None:
            loop.call_soon_threadsafe(_resolve, fut, self, loop)

        if not objects.on_ready(self.id, ready):
            _resolve(fut, self, loop)
        return fut


def _resolve(fut: "asyncio.Future", ref: ObjectRef, loop: "asyncio.AbstractEventLoop") -> None:
    """Settle ``fut`` with the ready ``ref``'s value (on the loop's thread)."""
    if fut.done():  # cancelled while waiting
        return
    objects = context.runtime().objects
    entry = objects.objects.get(ref.id)
    local = entry is not None and entry.ready and (
        entry.error is not None or entry.inline is not None or entry.segment is not None)
    if not local:
        _chain(loop.run_in_executor(None, _get_one, ref), fut)
        return
    try:
        # Ready and held here: read it without ``values``' locking (the lock is shared
        # with the connection threads that complete results; contention showed in profiles).
        fut.set_result(objects._value(ref.id))
    except BaseException as e:  # the task's error (or a lost object) is the await's
        fut.set_exception(e)


def _chain(source: "asyncio.Future", fut: "asyncio.Future") -> None:
    def copy(src: "asyncio.Future") -> None:
        if fut.done():
            return
        if src.cancelled():
            fut.cancel()
        elif src.exception() is not None:
            fut.set_exception(src.exception())
        else:
            fut.set_result(src.result())
    source.add_done_callback(copy)


def _get_one(ref: ObjectRef) -> Any:
    return context.runtime().objects.values([ref.id], None)[0]


def _rebuild_ref(object_id: ObjectID, home: str | None = None, owner: Owner | None = None) -> ObjectRef:
    table = context.objects
    if table is not None:
        table.borrow(object_id, home, owner)
        return ObjectRef(object_id, _counted=True)
    return ObjectRef(object_id)

"""What a process knows of one object (``LocalObject``), and the vocabulary the object
table's parts share: how a ready value travels (``Completion``), who brings a lost object
back (``Lineage``), and how a failed call's returns carry its error (``error_returns``)."""

from __future__ import annotations

import weakref
from typing import Any, Callable, Protocol

from .._types import ObjectID, Owner
from ..exceptions import ObjectLostError, TaskError
from .._wire.serialization import FLAG_ERROR, deserialize, serialize

#: Values up to this size travel inside messages; larger ones go to shared memory.
INLINE_MAX_BYTES = 100 * 1024

#: A ready value as it travels: ("inline", serialized bytes) or ("stored", details).
Completion = tuple[str, Any]


class Contained(Protocol):
    """An ObjectRef (``id``) or an ActorHandle (``_actor_id``) pickled inside a value."""

    id: ObjectID


class Lineage(Protocol):
    """Who brings back an object whose every copy was lost: this process re-runs the task
    that made it if it owns it, else asks its owner to (``_client/rebuilds.py``)."""

    def recover(self, oid: ObjectID, lost: ObjectLostError, timeout_s: float | None = None) -> None:
        """Return once ``oid`` is back (readable again here); raise why not, typed
        (GetTimeoutError: not back within ``timeout_s``; the rebuild goes on)."""

    def recover_async(self, oid: ObjectID, on_done: Callable[[BaseException | None], None]) -> bool:
        """``recover`` without blocking: ``on_done(None)`` once back, or with the error.
        False: nothing to ask (no owner known), ``on_done`` is not called."""

    def keep(self, record: Any, returns: list[Completion], resend: Callable[[Any], None]) -> None:
        """A call (a submitter's record) finished with ``returns``: keep it, to ``resend`` it
        if a result it stored on another node is lost, or let its arguments go. Called
        before its results complete (one nobody refers to is dropped right there)."""

    def forget(self, oid: ObjectID, shared: bool) -> None:
        """This process dropped its last ref to an object it owns (``shared``: its ref went
        to other processes inside values, which may still ask for a rebuild)."""


class NoLineage:
    """The lineage of a table whose submitter is not attached yet: nothing can be rebuilt."""

    def recover(self, oid: ObjectID, lost: ObjectLostError, timeout_s: float | None = None) -> None:
        raise lost

    def recover_async(self, oid: ObjectID, on_done: Callable[[BaseException | None], None]) -> bool:
        return False

    def keep(self, record: Any, returns: list[Completion], resend: Callable[[Any], None]) -> None:
        record.held = []

    def forget(self, oid: ObjectID, shared: bool) -> None:
        pass


class LocalObject:
    """What this process knows about one object (an entry of ``LocalObjectTable``)."""

    __slots__ = ("ready", "inline", "stored", "flags", "segment", "mapped", "nm_hold", "owned",
                 "shared_pending", "dropped", "callbacks", "fetching", "error", "home", "size",
                 "owner", "shared")

    def __init__(self, owned: bool) -> None:
        self.ready = False
        #: The serialized layout, when the value is held in this process.
        self.inline: bytes | bytearray | None = None
        #: Sealed in the node's store.
        self.stored = False
        self.flags = 0
        #: Read-only view of the stored object, fetched ahead of a get (``wait``); the get
        #: that uses it drops it, so the mapping (and the node's pin) lives only as long as
        #: the values that view it.
        self.segment: memoryview | None = None
        #: The mapping behind the last view handed out, while values still use it.
        self.mapped: weakref.ref | None = None
        #: This process holds a reference at the node manager.
        self.nm_hold = False
        self.owned = owned
        #: Declared to the node manager while pending: seal it there when it arrives.
        self.shared_pending = False
        #: Local refs are gone but the result is still awaited (owned, pending).
        self.dropped = False
        self.callbacks: list[Callable[[ObjectID], None]] | None = None
        self.fetching = False
        #: A failure learnt from the node manager (lost, owner died).
        self.error: BaseException | None = None
        #: TCP address of the node that holds (and counts references to) the stored value,
        #: when that is not this process's node.
        self.home: str | None = None
        #: Bytes of the stored value, when known (for locality).
        self.size = 0
        #: Borrowed: the process that owns it, when the ref said (it can rebuild it).
        self.owner: Owner | None = None
        #: Owned: a ref to it went to another process inside a value.
        self.shared = False


def error_returns(error: BaseException, num_returns: int) -> list[Completion]:
    """Every return of a failed call carries the same serialized error (at least one: a
    call with num_returns=0 still reports its failure). Written once for tasks, actor calls
    and failures the submitter itself decides (cancelled, crashed, actor died)."""
    try:
        payload = serialize(error, FLAG_ERROR, what="an error").to_bytes()
        # The caller must be able to rebuild it too: an exception whose __init__ takes
        # other arguments than its args pickles but fails to unpickle.
        deserialize(payload)
    except Exception:
        if not isinstance(error, TaskError):
            raise
        error = TaskError(error.function_name, error.traceback_str, None, error.pid)
        payload = serialize(error, FLAG_ERROR, what="an error").to_bytes()
    return [("inline", payload)] * max(1, num_returns)

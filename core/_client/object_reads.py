"""Reading objects: waiting until they are ready, fetching borrowed ones from their home
node (asking their owner to rebuild one whose every copy was lost), and turning a ready
entry into a value. The read half of ``LocalObjectTable``, which mixes it in.

    get(refs) -> values -> wait_ready: owned entries wait for their TaskReply; borrowed
                 ones GetObject at their home (_fetch_async) -> _value: inline bytes, or
                 the store block mapped read-only (_segment) -> deserialize
    a fetch finds the object lost -> Lineage.recover_async (its owner re-runs its task)
"""

from __future__ import annotations

import itertools
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, Callable

from .._wire import protocol as p
from .._types import ObjectID
from ..exceptions import EmberSystemError, GetTimeoutError, ObjectLostError, OwnerDiedError, TaskError
from .._wire.node_link import NodeLink
from .._wire.segments import StoreMapping
from .object_entry import LocalObject, Lineage
from .object_stream import OnFetched, StreamedObjects
from .._wire.serialization import FLAG_ERROR, serialize


class ObjectReads:
    """Waiting for objects and reading their values (mixed into ``LocalObjectTable``, whose
    state it shares: the attributes below are the table's)."""

    lock: threading.RLock
    objects: dict[ObjectID, LocalObject]
    link: NodeLink
    lineage: Lineage
    closed: bool
    store: StoreMapping | None
    streamed: StreamedObjects | None
    _is_worker: bool
    _waiters: set[threading.Event]

    if TYPE_CHECKING:  # the table's own methods (declared for type checkers only)
        def drain_releases(self) -> None: ...

        def deserialize(self, data: Any) -> Any: ...

        def _store(self) -> StoreMapping: ...

        def _local_or(self, address: str) -> str | None: ...

    # --- waiting ----------------------------------------------------------------------

    def on_ready(self, oid: ObjectID, callback: Callable[[ObjectID], None]) -> bool:
        """Call ``callback(oid)`` once the object is ready; returns False if it already is."""
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None:
                entry = self.objects[oid] = LocalObject(owned=False)
            if entry.ready:
                return False
            if entry.callbacks is None:
                entry.callbacks = []
            entry.callbacks.append(callback)
            if not entry.owned:
                self._fetch_async(oid, entry, fetch=True)
            return True

    def when_ready(self, oids: list[ObjectID], callback: Callable[[ObjectID], None]) -> int:
        """Register ``callback`` for each of ``oids`` not ready yet; returns how many.

        A call (task or actor method) waits for its top-level ref arguments this way and
        is sent once the count its callback keeps reaches zero.
        """
        return sum(1 for oid in oids if self.on_ready(oid, callback))

    def _fetch_async(self, oid: ObjectID, entry: LocalObject, fetch: bool) -> None:
        """Ask the node manager for a borrowed object (lock held)."""
        if entry.fetching or entry.ready:
            return
        entry.fetching = True

        def on_reply(reply: p.Reply, view: memoryview | None) -> None:
            if not reply.ok and _rebuildable(reply.value) and self.lineage.recover_async(
                    oid, lambda error: self._recovered(oid, entry, error)):
                return  # its owner rebuilds it; the waiters wait on
            with self.lock:
                entry.fetching = False
                if reply.ok:
                    size, flags, offset = reply.value
                    if fetch:
                        self._hold_view(entry, view if view is not None
                                        else self._store().map_object(offset, size))
                    entry.stored, entry.flags = True, flags
                else:
                    entry.error = reply.value if isinstance(reply.value, BaseException) else \
                        ObjectLostError(oid.hex())
                entry.ready = True
                callbacks, entry.callbacks = entry.callbacks, None
            for cb in callbacks or ():
                cb(oid)

        self._get_object_async(lambda rid: p.GetObject(rid, oid, fetch, entry.home), on_reply)

    def _recovered(self, oid: ObjectID, entry: LocalObject, error: BaseException | None) -> None:
        """A borrowed object its home lost is back (relocated), or ``error`` says why not."""
        with self.lock:
            entry.fetching = False
            if error is not None:
                entry.error = error
            entry.ready = True
            callbacks, entry.callbacks = entry.callbacks, None
        for cb in callbacks or ():
            cb(oid)

    def _get_object_async(self, make: Callable[[int], p.GetObject], on_reply: OnFetched) -> None:
        """Send a GetObject; ``on_reply`` gets the answer, and the object's bytes when they
        were streamed here (None: map them from the store at the answer's offset)."""
        if self.streamed is not None:
            self.streamed.fetch_async(make, on_reply)
        else:
            self.link.call_async(make, lambda reply, _fds: on_reply(reply, None))

    def connection_lost(self) -> None:
        """The node manager is gone: nothing will become ready; wake every waiter."""
        with self.lock:
            self.closed = True
            for waiter in list(self._waiters):
                waiter.set()

    def wait_ready(self, oids: list[ObjectID], num: int, timeout_s: float | None,
                   fetch: bool) -> list[ObjectID]:
        """Block until ``num`` of ``oids`` are ready (or the timeout); returns the ready ones.

        Each pending object gets a callback that counts down, so waiting on n refs
        costs O(n) in total however they complete.
        """
        with self.lock:
            pending = []
            for oid in oids:
                entry = self.objects.get(oid)
                if entry is None:
                    entry = self.objects[oid] = LocalObject(owned=False)
                if not entry.ready:
                    pending.append((oid, entry))
            need = num - (len(oids) - len(pending))
            waiting = need > 0 and not self.closed
            if waiting:
                # Made only when there is something to wait for: an Event (a Condition and
                # a lock) cost more than the rest of a get of a ready value.
                done = threading.Event()
                arrivals = itertools.count(1)

                def arrived(_oid: ObjectID) -> None:
                    if next(arrivals) >= need:
                        done.set()

                for oid, entry in pending:
                    if entry.callbacks is None:
                        entry.callbacks = []
                    entry.callbacks.append(arrived)
                    if not entry.owned:
                        self._fetch_async(oid, entry, fetch)
                self._waiters.add(done)
        if waiting:
            blocked = self._is_worker
            if blocked:
                self.link.send(p.SetBlocked(True))
            try:
                done.wait(timeout_s)
            finally:
                self._waiters.discard(done)
                if blocked:
                    self.link.send(p.SetBlocked(False))
        with self.lock:
            return [oid for oid in oids if self.objects[oid].ready]

    def first_ready(self, oids: list[ObjectID], num: int) -> list[ObjectID] | None:
        """The first ``num`` ready ids in order, or None if fewer are ready now."""
        found: list[ObjectID] = []
        if num == 0:
            return found
        objects = self.objects
        with self.lock:
            for oid in oids:
                entry = objects.get(oid)
                if entry is not None and entry.ready:
                    found.append(oid)
                    if len(found) == num:
                        return found
        return None

    def fetch_local(self, oids: list[ObjectID]) -> None:
        """Map ready stored objects here (``wait(fetch_local=True)``): the next ``get`` of
        them needs no round trip. The requests go out together; one wait for all."""
        todo = []
        with self.lock:
            for oid in oids:
                entry = self.objects.get(oid)
                if entry is not None and entry.ready and entry.stored and entry.segment is None \
                        and entry.inline is None and entry.error is None and not self._alive(entry):
                    todo.append((oid, entry))
        if not todo:
            return
        left = [len(todo)]
        done = threading.Event()

        def mapped(entry: LocalObject) -> OnFetched:
            def on_reply(reply: p.Reply, view: memoryview | None) -> None:
                if reply.ok:
                    size, _flags, offset = reply.value
                    self._hold_view(entry, view if view is not None
                                    else self._store().map_object(offset, size))
                with self.lock:
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
            return on_reply

        for oid, entry in todo:
            self._get_object_async(lambda rid, oid=oid, entry=entry: p.GetObject(rid, oid, True, entry.home),
                                   mapped(entry))
        done.wait()

    def prefetch(self, oids: list[ObjectID]) -> None:
        """Map stored objects here ahead of their ``get``, without waiting (the values a
        generator streams: the next ``get`` then needs no round trip to the node)."""
        for oid in oids:
            with self.lock:
                entry = self.objects.get(oid)
                if entry is None or not entry.ready or not entry.stored or entry.segment is not None \
                        or entry.inline is not None or entry.error is not None or entry.fetching:
                    continue
                entry.fetching = True

            def on_reply(reply: p.Reply, view: memoryview | None, entry: LocalObject = entry) -> None:
                with self.lock:
                    entry.fetching = False
                    if reply.ok and not self._alive(entry):
                        size, _flags, offset = reply.value
                        self._hold_view(entry, view if view is not None
                                        else self._store().map_object(offset, size))

            self._get_object_async(lambda rid, oid=oid, entry=entry: p.GetObject(rid, oid, True, entry.home),
                                   on_reply)

    # --- values -----------------------------------------------------------------------

    def values(self, oids: list[ObjectID], timeout_s: float | None) -> list[Any]:
        """The values of ``oids`` (in order, duplicates allowed), waiting for them.

        Raises:
            GetTimeoutError: ``timeout_s`` passed first.
            EmberSystemError: the node manager went away.
            TaskError (and the user's exception class): a task failed.
        """
        self.drain_releases()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        unique = list(dict.fromkeys(oids))
        ready = self.wait_ready(unique, len(unique), timeout_s, fetch=True)
        if len(ready) < len(unique):
            if self.closed:
                raise EmberSystemError("lost the connection to the node manager")
            missing = next(o for o in unique if o not in set(ready))
            raise GetTimeoutError(f"ember.get timed out after {timeout_s} s waiting for "
                                  f"{len(unique) - len(ready)} of {len(unique)} object(s), "
                                  f"e.g. {missing.hex()}")
        values = {oid: self._value(oid, deadline) for oid in unique}
        return [values[oid] for oid in oids]

    def _value(self, oid: ObjectID, deadline: float | None = None) -> Any:
        """``oid``'s value (it is ready); a stored copy found lost is rebuilt first, waiting
        until ``deadline`` (time.monotonic()) at most."""
        entry = self.objects[oid]
        if entry.error is not None:
            raise entry.error
        if entry.inline is not None:
            data = entry.inline
        else:
            try:
                data = self._segment(oid, entry)
                entry.segment = None  # from now on the values hold the mapping, not the entry
            except ObjectLostError as lost:
                self.lineage.recover(oid, lost, None if deadline is None else
                                     max(0.0, deadline - time.monotonic()))
                return self._value(oid, deadline)
        value = self.deserialize(data)
        if entry.flags & FLAG_ERROR:
            if isinstance(value, TaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def resolved_arg(self, oid: ObjectID) -> tuple[str, Any] | None:
        """How a ready top-level argument travels to a worker; None if not ready."""
        entry = self.objects.get(oid)
        if entry is None or not entry.ready:
            return None
        if entry.inline is not None:
            return ("inline", entry.inline)
        return ("stored", (oid, entry.home or self.node_tcp_address))

    def resolve_deps(self, dep_ids: list[ObjectID]) -> tuple[list[tuple[str, Any]], bytes | bytearray | None]:
        """How a call's ready top-level arguments travel, or the error payload of the first
        argument that failed (the call then fails with it without running)."""
        deps = []
        for oid in dep_ids:
            error = self.error_payload(oid)
            if error is not None:
                return [], error
            deps.append(self.resolved_arg(oid))
        return deps, None

    def error_payload(self, oid: ObjectID) -> bytes | bytearray | None:
        """The serialized error a ready object holds, if it is one."""
        entry = self.objects.get(oid)
        if entry is None or not entry.ready:
            return None
        if entry.error is not None:
            return serialize(entry.error, FLAG_ERROR).to_bytes()
        if entry.flags & FLAG_ERROR:
            if entry.inline is not None:
                return entry.inline
            return bytes(self._segment(oid, entry))
        return None

    def _segment(self, oid: ObjectID, entry: LocalObject) -> memoryview:
        """The entry's stored object: the view fetched ahead, the mapping an earlier value
        still uses, or a new mapping (copied to this node first if remote)."""
        if entry.segment is not None:
            return entry.segment
        mapping = entry.mapped() if entry.mapped is not None else None
        if mapping is not None:
            return memoryview(mapping)[:entry.size]
        view = self._map(oid, entry.home)
        entry.mapped, entry.size = weakref.ref(view.obj), len(view)
        return view

    @staticmethod
    def _hold_view(entry: LocalObject, view: memoryview) -> None:
        """Keep a view fetched ahead of its get (the get drops it)."""
        entry.segment, entry.mapped, entry.size = view, weakref.ref(view.obj), len(view)

    @staticmethod
    def _alive(entry: LocalObject) -> bool:
        """A value from an earlier get still maps the object here."""
        return entry.mapped is not None and entry.mapped() is not None

    def fetch_stored(self, oid: ObjectID, home: str | None = None) -> memoryview:
        """A stored object's segment (workers fetching arguments), copied here if remote."""
        return self._map(oid, self._local_or(home) if home else None)

    def _map(self, oid: ObjectID, home: str | None) -> memoryview:
        """Map a stored object read-only; the node pins it until the mapping is collected.
        (Streamed here instead when this process has no mapping of the store.)"""
        if self.streamed is not None:
            return self.streamed.fetch(lambda rid: p.GetObject(rid, oid, True, home))
        (size, _flags, offset), _ = self.link.call(lambda rid: p.GetObject(rid, oid, True, home))
        return self._store().map_object(offset, size)


def _rebuildable(error: object) -> bool:
    """A fetch failed because every copy is gone, and the owner may still be there."""
    return isinstance(error, ObjectLostError) and not isinstance(error, OwnerDiedError)

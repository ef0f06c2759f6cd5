"""The owner's object table: what this process knows of each object, and who refers to it.

One per driver and per worker. It counts the local refs (``ObjectRef``/``ActorHandle``
objects), holds owned results until they arrive, registers borrowed refs with the node
that stores them, and stores values; its read half (``object_reads``: wake the threads
waiting in ``get``/``wait``, turn a ready entry into a value) is mixed in. It talks to
the node manager only through its ``NodeLink``.

    submitter --add_owned(ids)--> [pending entries] <--complete(id, ...)-- TaskReply
    get(ref)  --values(ids)-----> wait_ready -> inline bytes | mapped segment -> deserialize
    ref.__del__ --release(id)--> releases deque --drain_releases (safe point)--> RemoveRefs
    put       --CreateObject--> offset -> write into the store mapping --PutObject--> sealed
    a get's mapping collected --> StoreMapping.unpins --drain_releases--> Unpin

Invariants: every entry changes under ``lock``; ``__del__`` never takes it (it only
appends to ``releases``, drained at safe points); an owned entry stays until its
result arrived and no local ref is left.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable

from .._wire import protocol as p
from .._types import ActorID, ObjectID, Owner
from ..exceptions import EmberSystemError
from .._wire.node_link import NodeLink
from .._wire.segments import StoreMapping
from .object_entry import INLINE_MAX_BYTES, Completion, Contained, Lineage, LocalObject, NoLineage, error_returns
from .object_reads import ObjectReads
from .object_stream import StreamedObjects
from .._wire.serialization import Serialized, deserialize, read_flags, serialize

#: How long a borrowed ref's hold outlives its last local use.
BORROW_LINGER_S = 1.0

_borrowing = threading.local()


class LocalObjectTable(ObjectReads):
    """The objects and actor handles this process refers to, and their reference counts.

    Submitters add owned entries for the results they expect and complete them from
    replies; ``ObjectRef`` and ``ActorHandle`` count themselves here; ``get``/``wait`` block
    here. Borrowed refs (arrived inside values) are held at their home node while used.
    The table rebuilds a lost owned object through its ``lineage`` (the task submitter).
    """

    def __init__(self, link: NodeLink, worker_id: bytes, node_tcp_address: str,
                 head_tcp_address: str, is_worker: bool) -> None:
        self.link = link
        self.worker_id = worker_id
        self.node_tcp_address = node_tcp_address
        self.head_tcp_address = head_tcp_address
        #: This process as the owner its refs name.
        self.me: Owner = (node_tcp_address, worker_id, os.getpid())
        #: Workers tell their node manager when they block, so it lends their CPUs.
        self._is_worker = is_worker
        self.lock = threading.RLock()
        self.objects: dict[ObjectID, LocalObject] = {}
        self.counts: dict[bytes, int] = {}
        #: ObjectRef/ActorHandle.__del__ append here; drained at safe points, never
        #: under a lock taken by __del__'s arbitrary thread.
        self.releases: collections.deque[bytes] = collections.deque()
        #: One local reference is gone: ``release(ref_id)``, safe from ``__del__`` (a bound
        #: deque append: no lock, no Python frame; refs call it once each).
        self.release: Callable[[bytes], None] = self.releases.append
        #: Actors this process holds a reference to at the head.
        self.actor_ids: set[ActorID] = set()
        self.lineage: Lineage = NoLineage()
        self.closed = False
        #: Events of threads blocked in wait_ready, woken if the node manager goes away.
        self._waiters: set[threading.Event] = set()
        #: Borrowed refs no longer used here -> when to release their hold (BORROW_LINGER_S).
        self._lingering: dict[ObjectID, float] = {}
        #: This process's mapping of the node's store. Mapped now, not on first use: a
        #: reply callback on the link's reader thread may need it, and that thread must
        #: never wait for a reply. Links that cannot carry fds (TCP) have none.
        self.store: StoreMapping | None = None
        if link.address.startswith("unix:"):
            capacity, fds = link.call(lambda rid: p.MapStore(rid))
            self.store = StoreMapping(fds[0], capacity)
        #: Without a mapping (a driver on another machine) stored objects are streamed.
        self.streamed = StreamedObjects(link) if self.store is None else None

    # --- reference counts -------------------------------------------------------------

    def incref(self, ref_id: bytes) -> None:
        with self.lock:
            self.counts[ref_id] = self.counts.get(ref_id, 0) + 1

    def add_owned(self, oids: list[ObjectID]) -> None:
        """Entries for results this process will receive (lock held by the caller or not)."""
        with self.lock:
            for oid in oids:
                self.objects[oid] = LocalObject(owned=True)

    def add_actor(self, actor_id: ActorID) -> None:
        """The head holds a reference to ``actor_id`` for this process (created or looked up)."""
        with self.lock:
            self.actor_ids.add(actor_id)

    def has_releases(self) -> bool:
        """Refs or mappings were dropped since the last ``drain_releases``."""
        return bool(self.releases) or (self.store is not None and bool(self.store.unpins))

    def drain_releases(self) -> None:
        store = self.store
        if store is not None and store.unpins:
            self.link.send(p.Unpin(store.drain()))
        releases = self.releases
        if not releases:
            return
        remove: dict[str | None, list[bytes]] = collections.defaultdict(list)
        with self.lock:
            while releases:
                ref_id = releases.popleft()
                n = self.counts.get(ref_id, 0) - 1
                if n > 0:
                    self.counts[ref_id] = n
                    continue
                self.counts.pop(ref_id, None)
                if ref_id in self.actor_ids:
                    self.actor_ids.discard(ref_id)
                    remove[self._local_or(self.head_tcp_address)].append(ref_id)
                    continue
                entry = self.objects.get(ref_id)
                if entry is None:
                    continue
                if entry.owned and not entry.ready:
                    entry.dropped = True
                    continue
                if not entry.owned and entry.nm_hold:
                    # Keep a borrowed ref's hold a moment: code that gets a value holding many
                    # refs over and over re-borrows them without a round trip each time.
                    self._lingering[ref_id] = time.monotonic() + BORROW_LINGER_S
                    continue
                del self.objects[ref_id]
                if entry.owned:
                    self.lineage.forget(ref_id, entry.shared)
                if entry.nm_hold:
                    remove[entry.home].append(ref_id)
        for home, ids in remove.items():
            self.link.send(p.RemoveRefs(ids, home))

    def flush_lingering(self) -> None:
        """Release the holds of borrowed refs unused for BORROW_LINGER_S."""
        if not self._lingering:
            return
        now = time.monotonic()
        remove: dict[str | None, list[bytes]] = collections.defaultdict(list)
        with self.lock:
            expired = [oid for oid, deadline in self._lingering.items() if deadline <= now]
            for oid in expired:
                del self._lingering[oid]
                if self.counts.get(oid, 0) > 0:
                    continue
                entry = self.objects.pop(oid, None)
                if entry is not None and entry.owned:
                    self.lineage.forget(oid, entry.shared)
                if entry is not None and entry.nm_hold:
                    remove[entry.home].append(oid)
        for home, ids in remove.items():
            self.link.send(p.RemoveRefs(ids, home))

    def linger(self, oid: ObjectID, seconds: float) -> None:
        """Keep ``oid`` (and this process's hold on it) ``seconds`` longer although no local
        ref uses it: the borrowers it was rebuilt for take their own holds meanwhile."""
        with self.lock:
            if self.counts.get(oid, 0) == 0 and oid in self.objects:
                self._lingering[oid] = time.monotonic() + seconds

    def _local_or(self, address: str) -> str | None:
        """None for this process's own node, else the address (how homes are stored)."""
        return None if address == self.node_tcp_address else address

    def home_of(self, ref_id: bytes) -> str:
        """TCP address of the node that holds ``ref_id`` (actors: the head)."""
        if ref_id in self.actor_ids:
            return self.head_tcp_address
        entry = self.objects.get(ref_id)
        return (entry.home if entry is not None and entry.home else None) or self.node_tcp_address

    def owner_of(self, ref_id: ObjectID) -> Owner | None:
        """The process that can rebuild ``ref_id``: this one if it owns it, else the owner
        its ref named (None: unknown)."""
        entry = self.objects.get(ref_id)
        if entry is None:
            return None
        return self.me if entry.owned else entry.owner

    def home_bytes(self, oids: list[ObjectID]) -> dict[str, int]:
        """Bytes of the stored, not yet mapped objects among ``oids`` per other node that
        holds them (for locality)."""
        by_home: dict[str, int] = {}
        for oid in oids:
            entry = self.objects.get(oid)
            if entry is not None and entry.home is not None and entry.segment is None \
                    and entry.mapped is None:
                by_home[entry.home] = by_home.get(entry.home, 0) + entry.size
        return by_home

    # --- borrowing --------------------------------------------------------------------

    def borrow(self, ref_id: ObjectID, home: str | None = None, owner: Owner | None = None) -> None:
        """A ref arrived inside a value: count it; hold it at its home node if new here."""
        home = self._local_or(home) if home else None
        with self.lock:
            self._lingering.pop(ref_id, None)
            self.counts[ref_id] = self.counts.get(ref_id, 0) + 1
            entry = self.objects.get(ref_id)
            if entry is None:
                entry = self.objects[ref_id] = LocalObject(owned=False)
                entry.home = home
            if entry.owner is None and not entry.owned:
                entry.owner = owner
            if entry.nm_hold:
                return
            entry.nm_hold = True
            home = entry.home
        pending = getattr(_borrowing, "ids", None)
        if pending is not None:  # inside deserialize: one AddRefs for the whole value
            pending.append((ref_id, home))
        else:
            self.link.call(lambda rid: p.AddRefs(rid, [ref_id], home))

    def borrow_actor(self, actor_id: ActorID) -> None:
        """An actor handle arrived inside a value: count it; hold the actor at the head."""
        with self.lock:
            self.counts[actor_id] = self.counts.get(actor_id, 0) + 1
            if actor_id in self.actor_ids:
                return
            self.actor_ids.add(actor_id)
        self._hold(actor_id, self._local_or(self.head_tcp_address))

    def _hold(self, ref_id: bytes, home: str | None) -> None:
        pending = getattr(_borrowing, "ids", None)
        if pending is not None:  # inside deserialize: one AddRefs for the whole value
            pending.append((ref_id, home))
        else:
            self.link.call(lambda rid: p.AddRefs(rid, [ref_id], home))

    def deserialize(self, data: Any) -> Any:
        """Deserialize, registering every borrowed ref with one round trip."""
        outer = getattr(_borrowing, "ids", None)
        _borrowing.ids = ids = []
        try:
            value = deserialize(data)
        finally:
            _borrowing.ids = outer
        by_home: dict[str | None, list[bytes]] = collections.defaultdict(list)
        for ref_id, home in ids:
            by_home[home].append(ref_id)
        for home, group in by_home.items():
            self.link.call(lambda rid: p.AddRefs(rid, group, home))
        return value

    def share(self, contained: list[Contained]) -> list[bytes]:
        """Make refs inside an outgoing value reachable from other processes.

        ``contained`` holds the ObjectRefs and ActorHandles pickled in the value (see
        serialization.note_contained). Returns the ids the receiving value keeps alive.
        """
        ids: list[bytes] = []
        declare: list[ObjectID] = []
        promote: list[tuple[ObjectID, LocalObject]] = []
        with self.lock:
            for obj in contained:
                actor_id = getattr(obj, "_actor_id", None)  # an ActorHandle
                if actor_id is not None:
                    ids.append(actor_id)
                    continue
                ids.append(obj.id)
                entry = self.objects.get(obj.id)
                if entry is None:
                    continue
                entry.shared = True
                if entry.nm_hold:
                    continue
                entry.nm_hold = True
                if not entry.ready:
                    entry.shared_pending = True
                    declare.append(obj.id)
                elif not entry.stored:
                    promote.append((obj.id, entry))
        if declare:
            self.link.call(lambda rid: p.DeclareShared(rid, declare))
        for oid, entry in promote:
            self._seal(oid, entry.inline, read_flags(entry.inline), [])
            entry.stored = True
        return ids

    # --- storing ----------------------------------------------------------------------

    def put_serialized(self, oid: ObjectID, ser: Serialized, counted: bool = False) -> None:
        """A value this process owns, ready now (``ember.put``, large arguments).

        ``counted``: take the reference of the ``ObjectRef`` the caller is about to make
        (``ObjectRef(oid, _counted=True)``) under the same lock acquisition — ``put`` is
        called in tight loops and this halves its locking."""
        entry = LocalObject(owned=True)
        entry.ready = True
        entry.flags = ser.flags
        contained_ids = self.share(ser.contained) if ser.contained else []
        if ser.total_bytes <= INLINE_MAX_BYTES and not contained_ids:
            entry.inline = ser.to_bytes()
        else:
            self._seal(oid, ser, ser.flags, contained_ids)
            entry.stored = True
            entry.nm_hold = True
        with self.lock:
            self.objects[oid] = entry
            if counted:
                self.counts[oid] = self.counts.get(oid, 0) + 1

    def _seal(self, oid: ObjectID, value: Serialized | bytes | bytearray, flags: int,
              contained: list[bytes], holder: bytes | None = None) -> None:
        """Write ``value`` into a block of the store and seal it there.

        Raises:
            ObjectStoreFullError: no room even after spilling (with the sizes).
        """
        # The putter keeps no mapping of the object: the store may spill it at once.
        size = value.total_bytes if isinstance(value, Serialized) else len(value)
        holder = holder or self.worker_id
        if self.streamed is not None:
            self.streamed.put(oid, value, flags, holder, contained)
            return
        store = self._store()
        # Refs and views this process dropped free room: say so before asking for some, so
        # `put(x); del ref; put(y)` reuses the same (resident, already mapped) block.
        self.drain_releases()
        offset, _ = self.link.call(lambda rid: p.CreateObject(rid, oid, size, holder))
        if offset is None:
            return  # sealed already (a retried task): the holder now holds that copy
        store.write(offset, value)
        # No answer awaited: the object exists (pending) since CreateObject, so a reader
        # that hears of it first waits at the node until this seal arrives.
        self.link.send(p.PutObject(None, oid, size, flags, holder, contained, offset))

    def _store(self) -> StoreMapping:
        if self.store is None:
            raise EmberSystemError("this process has no shared-memory store (its node manager "
                                   "is on another machine)")
        return self.store

    def seal_for(self, oid: ObjectID, ser: Serialized, owner: bytes) -> None:
        """Seal a task's return in the store on behalf of its owner."""
        contained = self.share(ser.contained) if ser.contained else []
        self._seal(oid, ser, ser.flags, contained, holder=owner)

    def encode_value(self, oid: ObjectID, ser: Serialized, owner: bytes) -> Completion:
        """How a task's return travels to its owner: inline if small, else sealed here."""
        if ser.total_bytes <= INLINE_MAX_BYTES and not ser.contained:
            return ("inline", ser.to_bytes())
        self.seal_for(oid, ser, owner)
        return ("stored", (ser.total_bytes, ser.flags, self.node_tcp_address))

    # --- completing owned objects -----------------------------------------------------

    def complete(self, oid: ObjectID, kind: str, value: Any) -> None:
        """An owned pending object got its value: ("inline", payload) or
        ("stored", (size, flags, home node's TCP address))."""
        home = self._local_or(value[2]) if kind == "stored" and len(value) > 2 else None
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None or entry.ready:
                if entry is None and kind == "stored":
                    self.link.send(p.RemoveRefs([oid], home))
                return
            if kind == "inline":
                entry.inline = value
                entry.flags = read_flags(value)
            else:
                entry.stored = True
                entry.flags = value[1]
                entry.nm_hold = True
                entry.home = home
                entry.size = value[0]
            entry.ready = True
            callbacks, entry.callbacks = entry.callbacks, None
            seal_inline = entry.shared_pending and kind == "inline"
        if seal_inline:
            if self.link.on_reader_thread():
                # This thread reads the node manager's replies: sealing must wait for one.
                threading.Thread(target=self._seal_late, args=(oid, entry, value), daemon=True).start()
            else:
                self._seal_late(oid, entry, value)
        elif entry.shared_pending and home is not None:
            # Borrowers wait at this node, where the ref said the object lives: copy it here.
            self.link.call_async(lambda rid: p.GetObject(rid, oid, False, home), lambda _r, _f: None)
        if entry.dropped:
            with self.lock:
                self.objects.pop(oid, None)
                self.lineage.forget(oid, entry.shared)
            if entry.nm_hold:
                self.link.send(p.RemoveRefs([oid], entry.home))
        for cb in callbacks or ():
            cb(oid)

    def complete_all(self, oids: list[ObjectID], returns: list[Completion]) -> None:
        """Complete a task's returns from its reply."""
        for oid, (kind, value) in zip(oids, returns):
            self.complete(oid, kind, value)

    def complete_error(self, oids: list[ObjectID], error: BaseException) -> None:
        """Every one of ``oids`` raises ``error`` from ``get``."""
        self.complete_all(oids, error_returns(error, len(oids)))

    def reset_pending(self, oid: ObjectID, keep: bool) -> None:
        """An owned result is being rebuilt: back to pending (lock held). One this process
        had dropped comes back as ``keep`` says: kept (a borrower asked for it) or dropped
        again once it arrives."""
        entry = self.objects.get(oid)
        if entry is None:
            entry = self.objects[oid] = LocalObject(owned=True)
            entry.shared, entry.dropped = True, not keep
        entry.ready, entry.stored, entry.segment, entry.home, entry.inline = False, False, None, None, None
        entry.mapped = None

    def relocate(self, oid: ObjectID, where: Completion) -> None:
        """A borrowed object lost with its home was rebuilt by its owner: read it where it
        is now, ("stored", (size, flags, home)) or ("inline", payload), holding it there
        as the lost copy was held. Never waits (called on reply threads)."""
        kind, value = where
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None:
                return
            entry.error, entry.segment, entry.mapped, entry.ready = None, None, None, True
            hold = False
            if kind == "inline":
                entry.inline, entry.flags, entry.stored, entry.nm_hold = value, read_flags(value), False, False
            else:
                entry.size, entry.flags, home = value
                entry.home, entry.stored, entry.inline = self._local_or(home), True, None
                hold = entry.nm_hold
        if hold:
            self.link.send(p.AddRefs(None, [oid], entry.home))

    def _seal_late(self, oid: ObjectID, entry: LocalObject, value: Any) -> None:
        self._seal(oid, value, entry.flags, [])
        entry.stored = True

    def complete_from_request(self, oid: ObjectID, make: Callable[[int], Any]) -> None:
        """Own ``oid`` and resolve it with the node manager's reply to a request (its value,
        or its error raised by get)."""
        self.add_owned([oid])

        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            if reply.ok:
                self.complete(oid, "inline", serialize(reply.value).to_bytes())
            else:
                error = reply.value if isinstance(reply.value, BaseException) else \
                    EmberSystemError(str(reply.value))
                self.complete_error([oid], error)

        self.link.call_async(make, on_reply)

"""The per-process core: one per driver and per worker.

It owns the connection to the node manager, the table of objects this process knows
(owned results and borrowed refs), local reference counts, and the submitters that
push tasks and actor calls straight to workers.

    f.remote(x) -> submitter: lease a worker, push the task ----> worker runs it
    get(ref)    <- object table <- TaskReply (inline value, or "stored": map the memfd)
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
import warnings
from typing import Any, Callable

from . import object_ref as object_ref_module
from . import protocol as p
from .exceptions import (EmberSystemError, GetTimeoutError, ObjectLostError, TaskError)
from .object_ref import ObjectRef
from .segments import create_segment, map_segment
from .serialization import FLAG_ERROR, Serialized, deserialize, read_flags, serialize
from .node_link import NodeLink

#: How long a borrowed ref's hold outlives its last local use.
BORROW_LINGER_S = 1.0

#: Values up to this size travel inside messages; larger ones go to shared memory.
INLINE_MAX_BYTES = 100 * 1024

_borrowing = threading.local()


class LocalObject:
    """What this process knows about one object."""

    __slots__ = ("ready", "inline", "stored", "flags", "segment", "nm_hold", "owned",
                 "shared_pending", "dropped", "callbacks", "fetching", "error", "home", "size")

    def __init__(self, owned: bool) -> None:
        self.ready = False
        #: The serialized layout, when the value is held in this process.
        self.inline: bytes | bytearray | None = None
        #: Sealed in the node's store.
        self.stored = False
        self.flags = 0
        #: Read-only mapping of the stored segment, once fetched.
        self.segment: memoryview | None = None
        #: This process holds a reference at the node manager.
        self.nm_hold = False
        self.owned = owned
        #: Declared to the node manager while pending: seal it there when it arrives.
        self.shared_pending = False
        #: Local refs are gone but the result is still awaited (owned, pending).
        self.dropped = False
        self.callbacks: list[Callable[[bytes], None]] | None = None
        self.fetching = False
        #: A failure learnt from the node manager (lost, owner died).
        self.error: BaseException | None = None
        #: TCP address of the node that holds (and counts references to) the stored value,
        #: when that is not this process's node.
        self.home: str | None = None
        #: Bytes of the stored value, when known (for locality).
        self.size = 0


class Runtime:
    def __init__(self, node_address: str, token: bytes, kind: str, worker_id: bytes | None = None,
                 address: str | None = None, namespace: str | None = None,
                 on_message: Callable[[Any, list[int]], None] | None = None,
                 runtime_env: dict[str, Any] | None = None, tcp_address: str | None = None) -> None:
        self.kind = kind
        self.token = token
        self.worker_id = worker_id or os.urandom(16)
        self.lock = threading.RLock()
        self.objects: dict[bytes, LocalObject] = {}
        self.counts: dict[bytes, int] = {}
        #: ObjectRef/ActorHandle.__del__ append here; drained at safe points, never
        #: under a lock taken by __del__'s arbitrary thread.
        self.releases: collections.deque[bytes] = collections.deque()
        self._task_prefix = os.urandom(8)
        self._task_counter = itertools.count(1)
        self._on_message = on_message
        self.closed = False
        self.registered_functions: set[bytes] = set()
        self.actor_ids: set[bytes] = set()
        #: Events of threads blocked in wait_ready, woken if the node manager goes away.
        self._waiters: set[threading.Event] = set()
        #: Borrowed refs no longer used here -> when to release their hold (BORROW_LINGER_S).
        self._lingering: dict[bytes, float] = {}
        #: Links to other nodes' managers, opened by spillbacks.
        self._remote_nodes: dict[str, NodeLink] = {}
        working_dir = (runtime_env or {}).get("working_dir")
        sys_path = _shippable_sys_path() if kind == "driver" else None
        if working_dir is not None and sys_path is not None:
            sys_path.insert(0, working_dir)
        self.register_msg = p.Register(kind, self.worker_id, os.getpid(), address, namespace,
                                       (working_dir or os.getcwd()) if kind == "driver" else None,
                                       sys_path, (runtime_env or {}).get("env_vars") or None,
                                       tcp_address=tcp_address)
        self.link = NodeLink(node_address, token, self.register_msg, on_message=self._on_node_message,
                             on_lost=self._connection_lost, name="ember-nm-reader")
        self.conn = self.link.conn
        reg = self.link.registered
        self.node_id: bytes = reg.node_id
        self.job_id: bytes = reg.job_id
        self.namespace: str = reg.namespace
        self.session_dir: str = reg.session_dir
        self.node_tcp_address: str = reg.node_tcp_address
        self.head_tcp_address: str = reg.head_tcp_address
        self.job_env_vars: dict[str, str] | None = reg.env_vars
        from .actor_submitter import ActorSubmitter
        from .submitter import TaskSubmitter
        self.submitter = TaskSubmitter(self)
        self.actor_submitter = ActorSubmitter(self)
        self._stop = threading.Event()
        self._housekeeper = threading.Thread(target=self._housekeeping, daemon=True,
                                             name="ember-housekeeping")
        self._housekeeper.start()
        object_ref_module._runtime_hooks = self

    # --- talking to the node manager --------------------------------------------------

    def _on_node_message(self, msg: Any, fds: list[int]) -> None:
        if isinstance(msg, p.LogLines):
            _print_remote_lines(msg)
        elif isinstance(msg, p.LeaseInfeasible):
            warnings.warn(msg.message, RuntimeWarning, stacklevel=1)
        elif self._on_message is not None:
            self._on_message(msg, fds)

    def _connection_lost(self) -> None:
        with self.lock:
            self.closed = True
            for waiter in list(self._waiters):
                waiter.set()
        if self.kind == "worker":
            os._exit(1)

    def call_async(self, make: Callable[[int], Any], on_reply: Callable[[p.Reply, list[int]], None]) -> None:
        self.link.call_async(make, on_reply)

    def remote_node(self, address: str) -> NodeLink:
        """A link to another node's manager, registered as a submitter of this job."""
        with self.lock:
            link = self._remote_nodes.get(address)
            if link is not None and not link.closed:
                return link
        import sys
        link = NodeLink(address, self.token, p.Register(
            "submitter", self.worker_id, os.getpid(), namespace=self.namespace, cwd=os.getcwd(),
            sys_path=_shippable_sys_path() if self.kind == "driver" else list(sys.path),
            env_vars=self.job_env_vars, job_id=self.job_id), name="ember-remote-node")
        with self.lock:
            self._remote_nodes[address] = link
        return link

    def call(self, make: Callable[[int], Any], timeout_s: float | None = None,
             fds: tuple[int, ...] = ()) -> tuple[Any, list[int]]:
        """Send a request to this process's node manager and wait for its reply."""
        return self.link.call(make, timeout_s, fds)

    def send(self, msg: Any) -> None:
        self.link.send(msg)

    # --- ids and reference counts -----------------------------------------------------

    def next_task_id(self) -> bytes:
        return self._task_prefix + next(self._task_counter).to_bytes(4, "little")

    def incref(self, ref_id: bytes) -> None:
        with self.lock:
            self.counts[ref_id] = self.counts.get(ref_id, 0) + 1

    def drain_releases(self) -> None:
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
                self.submitter.forget(ref_id)
                if entry.nm_hold:
                    remove[entry.home].append(ref_id)
        for home, ids in remove.items():
            self.send(p.RemoveRefs(ids, home))

    def _flush_lingering(self) -> None:
        now = time.monotonic()
        remove: dict[str | None, list[bytes]] = collections.defaultdict(list)
        with self.lock:
            expired = [oid for oid, deadline in self._lingering.items() if deadline <= now]
            for oid in expired:
                del self._lingering[oid]
                if self.counts.get(oid, 0) > 0:
                    continue
                entry = self.objects.pop(oid, None)
                if entry is not None and entry.nm_hold:
                    remove[entry.home].append(oid)
        for home, ids in remove.items():
            self.send(p.RemoveRefs(ids, home))

    def _local_or(self, address: str) -> str | None:
        """None for this process's own node, else the address (how homes are stored)."""
        return None if address == self.node_tcp_address else address

    def home_of(self, ref_id: bytes) -> str:
        """TCP address of the node that holds ``ref_id`` (actors: the head)."""
        if ref_id in self.actor_ids:
            return self.head_tcp_address
        entry = self.objects.get(ref_id)
        return (entry.home if entry is not None and entry.home else None) or self.node_tcp_address

    def borrow(self, ref_id: bytes, home: str | None = None) -> None:
        """A ref arrived inside a value: count it; hold it at its home node if new here."""
        home = self._local_or(home) if home else None
        with self.lock:
            self._lingering.pop(ref_id, None)
            self.counts[ref_id] = self.counts.get(ref_id, 0) + 1
            entry = self.objects.get(ref_id)
            if entry is None:
                entry = self.objects[ref_id] = LocalObject(owned=False)
                entry.home = home
            if entry.nm_hold:
                return
            entry.nm_hold = True
            home = entry.home
        pending = getattr(_borrowing, "ids", None)
        if pending is not None:
            pending.append((ref_id, home))
        else:
            self.call(lambda rid: p.AddRefs(rid, [ref_id], home))

    def borrow_actor(self, actor_id: bytes) -> None:
        with self.lock:
            self.counts[actor_id] = self.counts.get(actor_id, 0) + 1
            if actor_id in self.actor_ids:
                return
            self.actor_ids.add(actor_id)
        home = self._local_or(self.head_tcp_address)
        pending = getattr(_borrowing, "ids", None)
        if pending is not None:
            pending.append((actor_id, home))
        else:
            self.call(lambda rid: p.AddRefs(rid, [actor_id], home))

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
            self.call(lambda rid: p.AddRefs(rid, group, home))
        return value

    def share(self, contained: list[Any]) -> list[bytes]:
        """Make refs inside an outgoing value reachable from other processes.

        Returns the ids the receiving value must keep alive.
        """
        ids: list[bytes] = []
        declare: list[bytes] = []
        promote: list[tuple[bytes, LocalObject]] = []
        with self.lock:
            for obj in contained:
                if not isinstance(obj, ObjectRef):
                    ids.append(obj._actor_id)
                    continue
                ids.append(obj.id)
                entry = self.objects.get(obj.id)
                if entry is None or entry.nm_hold:
                    continue
                entry.nm_hold = True
                if not entry.ready:
                    entry.shared_pending = True
                    declare.append(obj.id)
                elif not entry.stored:
                    promote.append((obj.id, entry))
        if declare:
            self.call(lambda rid: p.DeclareShared(rid, declare))
        for oid, entry in promote:
            self._seal(oid, entry.inline, read_flags(entry.inline), [])
            entry.stored = True
        return ids

    # --- objects ----------------------------------------------------------------------

    def put(self, value: Any) -> ObjectRef:
        ser = serialize(value, what="the value passed to ember.put")
        oid = self.next_task_id() + b"\xff\xff\xff\xff"
        return self.put_serialized(oid, ser)

    def put_serialized(self, oid: bytes, ser: Serialized) -> ObjectRef:
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
            return ObjectRef(oid)

    def _seal(self, oid: bytes, value: Serialized | bytes | bytearray, flags: int,
              contained: list[bytes], holder: bytes | None = None) -> None:
        # The putter keeps no mapping: the store may spill the object, and a mapping held
        # here would keep its memory in use all the same.
        fd = create_segment(value)
        size = value.total_bytes if isinstance(value, Serialized) else len(value)
        try:
            self.call(lambda rid: p.PutObject(rid, oid, size, flags, holder or self.worker_id, contained),
                      fds=(fd,))
        finally:
            os.close(fd)

    def seal_for(self, oid: bytes, ser: Serialized, owner: bytes) -> None:
        """Seal a task's return in the store on behalf of its owner."""
        contained = self.share(ser.contained) if ser.contained else []
        self._seal(oid, ser, ser.flags, contained, holder=owner)

    def complete(self, oid: bytes, kind: str, value: Any) -> None:
        """An owned pending object got its value: ("inline", payload) or
        ("stored", (size, flags, home node's TCP address))."""
        home = self._local_or(value[2]) if kind == "stored" and len(value) > 2 else None
        with self.lock:
            entry = self.objects.get(oid)
            if entry is None or entry.ready:
                if entry is None and kind == "stored":
                    self.send(p.RemoveRefs([oid], home))
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
            if threading.current_thread() is self.link._reader:
                # This thread reads the node manager's replies: sealing must wait for one.
                threading.Thread(target=self._seal_late, args=(oid, entry, value), daemon=True).start()
            else:
                self._seal_late(oid, entry, value)
        elif entry.shared_pending and home is not None:
            # Borrowers wait at this node, where the ref said the object lives: copy it here.
            self.call_async(lambda rid: p.GetObject(rid, oid, False, home), lambda _r, _f: None)
        if entry.dropped:
            with self.lock:
                self.objects.pop(oid, None)
            if entry.nm_hold:
                self.send(p.RemoveRefs([oid], entry.home))
        for cb in callbacks or ():
            cb(oid)

    def reset_pending(self, oid: bytes) -> None:
        """An owned result is being rebuilt: back to pending (lock held)."""
        entry = self.objects.get(oid)
        if entry is not None:
            entry.ready, entry.stored, entry.segment, entry.home, entry.inline = False, False, None, None, None

    def _seal_late(self, oid: bytes, entry: LocalObject, value: Any) -> None:
        self._seal(oid, value, entry.flags, [])
        entry.stored = True

    def ref_from_request(self, make: Callable[[int], Any]) -> ObjectRef:
        """An ObjectRef resolved by the node manager's reply to a request (its value, or
        its error raised by get)."""
        oid = self.next_task_id() + b"\xfd\xff\xff\xff"
        with self.lock:
            self.objects[oid] = LocalObject(owned=True)
            ref = ObjectRef(oid)

        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            if reply.ok:
                self.complete(oid, "inline", serialize(reply.value).to_bytes())
            else:
                error = reply.value if isinstance(reply.value, BaseException) else \
                    EmberSystemError(str(reply.value))
                self.complete_error([oid], error)

        self.call_async(make, on_reply)
        return ref

    def complete_error(self, oids: list[bytes], error: BaseException) -> None:
        payload = serialize(error, FLAG_ERROR, what="an error").to_bytes()
        for oid in oids:
            self.complete(oid, "inline", payload)

    def on_ready(self, oid: bytes, callback: Callable[[bytes], None]) -> bool:
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

    def _fetch_async(self, oid: bytes, entry: LocalObject, fetch: bool) -> None:
        """Ask the node manager for a borrowed object (lock held)."""
        if entry.fetching or entry.ready:
            return
        entry.fetching = True

        def on_reply(reply: p.Reply, fds: list[int]) -> None:
            with self.lock:
                entry.fetching = False
                if reply.ok:
                    size, flags = reply.value
                    if fds:
                        entry.segment = map_segment(fds[0], size)
                    entry.stored, entry.flags = True, flags
                else:
                    entry.error = reply.value if isinstance(reply.value, BaseException) else \
                        ObjectLostError(oid.hex())
                entry.ready = True
                callbacks, entry.callbacks = entry.callbacks, None
            for cb in callbacks or ():
                cb(oid)

        self.call_async(lambda rid: p.GetObject(rid, oid, fetch, entry.home), on_reply)

    def wait_ready(self, oids: list[bytes], num: int, timeout_s: float | None, fetch: bool) -> list[bytes]:
        """Block until ``num`` of ``oids`` are ready (or the timeout); returns the ready ones.

        Each pending object gets a callback that counts down, so waiting on n refs
        costs O(n) in total however they complete.
        """
        done = threading.Event()
        with self.lock:
            pending = []
            for oid in oids:
                entry = self.objects.get(oid)
                if entry is None:
                    entry = self.objects[oid] = LocalObject(owned=False)
                if not entry.ready:
                    pending.append((oid, entry))
            need = num - (len(oids) - len(pending))
            if need > 0 and not self.closed:
                arrivals = itertools.count(1)

                def arrived(_oid: bytes) -> None:
                    if next(arrivals) >= need:
                        done.set()

                for oid, entry in pending:
                    if entry.callbacks is None:
                        entry.callbacks = []
                    entry.callbacks.append(arrived)
                    if not entry.owned:
                        self._fetch_async(oid, entry, fetch)
                self._waiters.add(done)
        if need > 0 and not self.closed:
            blocked = self.kind == "worker"
            if blocked:
                self.send(p.SetBlocked(True))
            try:
                done.wait(timeout_s)
            finally:
                self._waiters.discard(done)
                if blocked:
                    self.send(p.SetBlocked(False))
        with self.lock:
            return [oid for oid in oids if self.objects[oid].ready]

    def first_ready(self, oids: list[bytes], num: int) -> list[bytes] | None:
        """The first ``num`` ready ids in order, or None if fewer are ready now."""
        found: list[bytes] = []
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

    def fetch_local(self, oids: list[bytes]) -> None:
        """Map ready stored objects here (``wait(fetch_local=True)``): the next ``get`` of
        them needs no round trip. The requests go out together; one wait for all."""
        todo = []
        with self.lock:
            for oid in oids:
                entry = self.objects.get(oid)
                if entry is not None and entry.ready and entry.stored and entry.segment is None \
                        and entry.inline is None and entry.error is None:
                    todo.append((oid, entry))
        if not todo:
            return
        left = [len(todo)]
        done = threading.Event()

        def mapped(entry: LocalObject) -> Callable[[p.Reply, list[int]], None]:
            def on_reply(reply: p.Reply, fds: list[int]) -> None:
                if reply.ok and fds:
                    entry.segment = map_segment(fds[0], reply.value[0])
                with self.lock:
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()
            return on_reply

        for oid, entry in todo:
            self.call_async(lambda rid, oid=oid, entry=entry: p.GetObject(rid, oid, True, entry.home),
                            mapped(entry))
        done.wait()

    def get_values(self, refs: list[ObjectRef], timeout_s: float | None) -> list[Any]:
        self.drain_releases()
        oids = [r.id for r in refs]
        unique = list(dict.fromkeys(oids))
        ready = self.wait_ready(unique, len(unique), timeout_s, fetch=True)
        if len(ready) < len(unique):
            if self.closed:
                raise EmberSystemError("lost the connection to the node manager")
            missing = next(o for o in unique if o not in set(ready))
            raise GetTimeoutError(f"ember.get timed out after {timeout_s} s waiting for "
                                  f"{len(unique) - len(ready)} of {len(unique)} object(s), "
                                  f"e.g. {missing.hex()}")
        values = {oid: self._value(oid) for oid in unique}
        return [values[oid] for oid in oids]

    def _value(self, oid: bytes) -> Any:
        entry = self.objects[oid]
        if entry.error is not None:
            raise entry.error
        if entry.inline is not None:
            data = entry.inline
        else:
            try:
                data = self._segment(oid, entry)
            except ObjectLostError:
                if not (entry.owned and self.submitter.reconstruct(oid)):
                    raise
                self.wait_ready([oid], 1, None, True)  # rebuilt by re-running its task
                return self._value(oid)
        value = self.deserialize(data)
        if entry.flags & FLAG_ERROR:
            if isinstance(value, TaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def resolved_arg(self, oid: bytes) -> tuple[str, Any] | None:
        """How a ready top-level argument travels to a worker; None if not ready."""
        entry = self.objects.get(oid)
        if entry is None or not entry.ready:
            return None
        if entry.inline is not None:
            return ("inline", entry.inline)
        return ("stored", (oid, entry.home or self.node_tcp_address))

    def error_payload(self, oid: bytes) -> bytes | bytearray | None:
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

    def _segment(self, oid: bytes, entry: LocalObject) -> memoryview:
        """The entry's stored segment, mapped here once (copied here first if remote)."""
        if entry.segment is None:
            entry.segment = self._map(oid, entry.home)
        return entry.segment

    def fetch_stored(self, oid: bytes, home: str | None = None) -> memoryview:
        """A stored object's segment (workers fetching arguments), copied here if remote."""
        return self._map(oid, self._local_or(home) if home else None)

    def _map(self, oid: bytes, home: str | None) -> memoryview:
        (size, _flags), fds = self.call(lambda rid: p.GetObject(rid, oid, True, home))
        return map_segment(fds[0], size)

    # --- housekeeping -----------------------------------------------------------------

    def _housekeeping(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.drain_releases()
                self.submitter.return_idle_leases()
                if self._lingering:
                    self._flush_lingering()
            except Exception:  # a bug here must not kill the process's housekeeping
                if self.closed:
                    return
                raise

    def close(self) -> None:
        self._stop.set()
        object_ref_module._runtime_hooks = None
        self.submitter.close()
        self.actor_submitter.close()
        for link in list(self._remote_nodes.values()):
            link.close()
        self.link.close()
        if threading.current_thread() is not self._housekeeper:
            self._housekeeper.join(5)


def _shippable_sys_path() -> list[str]:
    return [os.path.abspath(x) if x else os.getcwd() for x in __import__("sys").path]


def _print_remote_lines(msg: p.LogLines) -> None:
    import sys
    stream = sys.stderr if msg.is_err else sys.stdout
    try:
        stream.write("".join(f"{msg.prefix} {line}\n" for line in msg.lines))
        stream.flush()
    except (ValueError, OSError):
        pass

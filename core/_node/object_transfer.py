"""Moving objects between nodes, and references to their home node.

    node B (needs X)                                   node A (holds X)
    GetObject(X, home=A) -> pull(X, A) --PullObject--> serve_pull: wait until sealed,
                         <--ObjectChunk x N, Reply--   stream pread() chunks of a dup'd fd
    pwrite chunks into a new memfd, seal it as a cached copy, answer local waiters

Cached copies belong to no process: they are evicted first when the store needs room.
References to an object live at its home node, so a node forwards AddRefs/RemoveRefs
for remote homes there, naming the process that holds them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

from .._wire import protocol as p
from ..exceptions import ObjectLostError
from .._wire.node_link import CHUNK_BYTES, NodeLink
from .server import NodeLock
from .object_store import CACHE_HOLDER, ObjectEntry, ObjectTable



@dataclass
class _Pull:
    """An object being copied here from another node, with who waits for it."""
    object_id: bytes
    fd: int = -1
    received: int = 0
    waiters: list[Callable[[str, Any], None]] = field(default_factory=list)


class ObjectTransfer:
    """Copies objects between node managers: pulls in chunks over links to peers, serves others' pulls."""

    def __init__(self, lock: NodeLock, objects: ObjectTable, token: bytes, node_id: bytes,
                 tcp_address: str) -> None:
        self.lock = lock
        self.objects = objects
        self.token = token
        self.node_id = node_id
        self.tcp_address = tcp_address
        self._links: dict[str, NodeLink] = {}
        self._pulls: dict[bytes, _Pull] = {}
        self._by_rid: dict[tuple[str, int], _Pull] = {}

    # --- links to other node managers -------------------------------------------------

    def link(self, address: str) -> NodeLink:
        """A connection to another node manager (lock held; connecting is local-fast)."""
        link = self._links.get(address)
        if link is None or link.closed:
            link = NodeLink(address, self.token, p.Register("peer", self.node_id, os.getpid()),
                            on_message=lambda msg, _fds, a=address: self._on_message(a, msg),
                            name="ember-peer-link")
            self._links[address] = link
        return link

    def forward_refs(self, msg: p.AddRefs | p.RemoveRefs, holder: bytes,
                     on_done: Callable[[], None] | None = None) -> None:
        """Send a process's reference changes to the ids' home node (none if it is gone:
        its objects went with it)."""
        try:
            link = self.link(msg.home)
        except OSError:
            if on_done is not None:
                on_done()
            return
        if isinstance(msg, p.RemoveRefs):
            link.send(p.RemoveRefs(msg.ids, None, holder))
        elif on_done is None:
            link.send(p.AddRefs(None, msg.ids, None, holder))
        else:
            link.call_async(lambda rid: p.AddRefs(rid, msg.ids, None, holder),
                            lambda _reply, _fds: on_done())

    # --- receiving --------------------------------------------------------------------

    def pull(self, object_id: bytes, home: str, waiter: Callable[[str, Any], None]) -> None:
        """Copy ``object_id`` from ``home`` into this store, then call ``waiter`` (lock held)."""
        pull = self._pulls.get(object_id)
        if pull is not None:
            pull.waiters.append(waiter)
            return
        pull = self._pulls[object_id] = _Pull(object_id, waiters=[waiter])
        try:
            link = self.link(home)
        except OSError as e:
            self._finish(pull, None, ObjectLostError(object_id.hex(), f"its node {home} is unreachable: {e}"))
            return

        def on_reply(reply: p.Reply, _fds: list[int]) -> None:
            with self.lock:
                self._by_rid.pop((home, rid_box[0]), None)
                if reply.ok:
                    self._finish(pull, reply.value, None)
                else:
                    error = reply.value if isinstance(reply.value, ObjectLostError) else \
                        ObjectLostError(object_id.hex(), f"its node {home} is gone ({reply.value})")
                    self._finish(pull, None, error)

        rid_box: list[int] = []

        def make(rid: int) -> p.PullObject:
            rid_box.append(rid)
            self._by_rid[(home, rid)] = pull
            return p.PullObject(rid, object_id)

        link.call_async(make, on_reply)

    def _on_message(self, address: str, msg: Any) -> None:
        if not isinstance(msg, p.ObjectChunk):
            return
        with self.lock:
            pull = self._by_rid.get((address, msg.rid))
            if pull is None:
                return
            if pull.fd < 0:
                pull.fd = os.memfd_create("ember-object", os.MFD_CLOEXEC)
                os.ftruncate(pull.fd, max(msg.total, 1))
            fd = pull.fd
        offset, view = msg.offset, memoryview(msg.data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written

    def _finish(self, pull: _Pull, meta: tuple[int, int] | None, error: BaseException | None) -> None:
        del self._pulls[pull.object_id]
        fired: list[tuple[Callable, str, Any]] = []
        if error is None:
            size, flags = meta
            if pull.fd < 0:  # an empty object sends no chunks
                pull.fd = os.memfd_create("ember-object", os.MFD_CLOEXEC)
                os.ftruncate(pull.fd, 1)
            try:
                self.objects.seal(pull.object_id, pull.fd, size, flags, CACHE_HOLDER, [])
                entry = self.objects.objects[pull.object_id]
                fired = [(w, "sealed", entry) for w in pull.waiters]
            except Exception as e:  # the store cannot make room: every waiter learns why
                fired = [(w, "failed", ObjectEntry(pull.object_id, state="failed", error=e))
                         for w in pull.waiters]
        else:
            if pull.fd >= 0:
                os.close(pull.fd)
            failed = ObjectEntry(pull.object_id, state="failed", error=error)
            fired = [(w, "failed", failed) for w in pull.waiters]
        for waiter, state, entry in fired:
            waiter(state, entry)

    # --- sending ----------------------------------------------------------------------

    def serve_pull(self, conn: Any, msg: p.PullObject) -> None:
        """Stream an object to a peer once it is sealed here (lock held)."""
        def answer(state: str, entry: ObjectEntry) -> None:
            if state == "failed":
                conn.send(p.Reply(msg.rid, False, entry.error))
                return
            # Every chunk is queued at once as a file range: the event loop writes them
            # with sendfile as the peer reads (no thread, no copy through Python).
            fd = os.dup(entry.fd)  # the entry may be freed while we stream
            size, offset = entry.size, 0
            while offset < size:
                count = min(CHUNK_BYTES, size - offset)
                conn.send_with_file(p.ObjectChunk(msg.rid, offset, size, None), fd, offset, count,
                                    last=offset + count >= size)
                offset += count
            if size == 0:
                os.close(fd)
            conn.send(p.Reply(msg.rid, True, (size, entry.flags)))

        entry = self.objects.wait(msg.object_id, answer)
        if entry is not None:
            answer(entry.state, entry)

    def close(self) -> None:
        for link in list(self._links.values()):
            link.close()
        self._links.clear()

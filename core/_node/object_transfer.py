"""Moving objects between nodes, and references to their home node.

    node B (needs X)                                   node A (holds X)
    GetObject(X, home=A) -> pull(X, A) --PullObject--> serve_pull: wait until sealed (or
                                                       restored), pin it for B, queue
                                                       every chunk as a range of the arena
                         <--ObjectChunk x N, Reply--   (sendfile straight from the memfd)
    first chunk: reserve a block of X's size; every chunk is recv_into'd straight into
    it (NodeLink.chunk_target: no buffer in between, no second write); Reply: seal it
    as a cached copy, Unpin X at A, answer every waiter

A second GetObject of X while it is being pulled joins the first pull: an object is
transferred once per node however many tasks ask for it. Cached copies belong to no
process: they are evicted first when the store needs room. References to an object
live at its home node, so a node forwards AddRefs/RemoveRefs for remote homes there,
naming the process that holds them.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .._wire import protocol as p
from ..exceptions import ObjectLostError
from .._wire.node_link import CHUNK_BYTES, NodeLink
from .peer import NodeLock
from .object_store import ObjectTable
from .store_entries import CACHE_HOLDER, Block, ObjectEntry

#: How long a receiving link waits for room in the store before it drops the object.
ROOM_WAIT_S = 60.0

@dataclass
class _Pull:
    """An object being copied here from another node, with who waits for it."""
    object_id: bytes
    #: Where the chunks land; reserved when the first one arrives (its size is known then).
    block: Block | None = None
    #: The store had no room for it: the waiters get this instead of the object.
    error: BaseException | None = None
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
        #: Objects pulled from here -> the peers that hold a cached copy of them.
        self._copied_to: dict[bytes, dict[bytes, Any]] = {}
        #: Objects and bytes copied here from other nodes (``ember memory``).
        self.pulled_objects = 0
        self.pulled_bytes = 0

    # --- links to other node managers -------------------------------------------------

    def link(self, address: str) -> NodeLink:
        """A connection to another node manager (lock held; connecting is local-fast)."""
        link = self._links.get(address)
        if link is None or link.closed:
            link = NodeLink(address, self.token, p.Register("peer", self.node_id, os.getpid()),
                            on_message=lambda msg, _fds: self._on_peer_message(msg),
                            chunk_target=lambda msg, a=address: self._chunk_target(a, msg),
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
                    self._finish(pull, reply.value, None, home)
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

    def _on_peer_message(self, msg: Any) -> None:
        """The home of an object we copied freed it: our cached copy goes too (link thread)."""
        if isinstance(msg, p.RemoveRefs) and msg.holder == CACHE_HOLDER:
            with self.lock:
                for object_id in msg.ids:
                    self.objects.remove_ref(object_id, CACHE_HOLDER)

    def object_freed(self, object_id: bytes) -> None:
        """An object freed here: the peers that copied it drop their copies (lock held).

        Without this a copy lingered until its node ran out of room, and every later pull
        landed in fresh pages the kernel had to allocate and zero.
        """
        for client in self._copied_to.pop(object_id, {}).values():
            client.conn.send(p.RemoveRefs([object_id], None, CACHE_HOLDER))

    def forget_peer(self, client: Any) -> None:
        """A peer's link closed: it will not be told about frees any more (lock held)."""
        for object_id in [oid for oid, peers in self._copied_to.items() if client.worker_id in peers]:
            peers = self._copied_to[object_id]
            if peers.get(client.worker_id) is client:
                del peers[client.worker_id]
            if not peers:
                del self._copied_to[object_id]

    def _chunk_target(self, address: str, msg: p.ObjectChunk) -> memoryview | None:
        """Where a chunk's bytes go: the pull's block in the arena (the link's reader thread).

        None: the pull is unknown, or the store had no room; the link discards the bytes.
        The first chunk reserves the block; if the store must spill first, this reader
        waits for it (outside the lock): only this peer's link waits.
        """
        reserved = threading.Event()
        with self.lock:
            pull = self._by_rid.get((address, msg.rid))
            if pull is None or pull.error is not None:
                return None
            if pull.block is None:
                def got(block: Block | None, error: BaseException | None) -> None:
                    if self._pulls.get(pull.object_id) is not pull:  # gave up meanwhile
                        if block is not None:
                            self.objects.release_block(block)
                        return
                    pull.block, pull.error = block, error
                    reserved.set()

                self.objects.reserve(msg.total, got)
            else:
                reserved.set()
        if not reserved.wait(ROOM_WAIT_S):
            return None
        with self.lock:
            if pull.block is None:
                return None
            return self.objects.arena.block(pull.block.offset + msg.offset, msg.total - msg.offset)

    def _finish(self, pull: _Pull, meta: tuple[int, int, int] | None, error: BaseException | None,
                home: str | None = None) -> None:
        del self._pulls[pull.object_id]
        if meta is not None and home is not None:
            try:  # the sender pinned its copy for us while streaming it
                self.link(home).send(p.Unpin([meta[2]]))
            except OSError:
                pass  # gone: its pins went with it
        if error is None and pull.error is not None:
            error = pull.error
        if error is None:
            size, flags, _offset = meta
            if pull.block is None:  # an empty object sends no chunks
                self.objects.reserve(size, lambda block, err: self._seal(pull, block, err, size, flags))
            else:
                self._seal(pull, pull.block, None, size, flags)
            return
        if pull.block is not None:
            self.objects.release_block(pull.block)
        failed = ObjectEntry(pull.object_id, state="failed", error=error)
        for waiter in pull.waiters:
            waiter("failed", failed)

    def _seal(self, pull: _Pull, block: Block | None, error: BaseException | None, size: int,
              flags: int) -> None:
        if block is None:
            failed = ObjectEntry(pull.object_id, state="failed", error=error)
            for waiter in pull.waiters:
                waiter("failed", failed)
            return
        self.pulled_objects += 1
        self.pulled_bytes += size
        self.objects.seal_block(pull.object_id, block, size, flags, CACHE_HOLDER, [])
        entry = self.objects.objects[pull.object_id]
        for waiter in pull.waiters:
            waiter("sealed", entry)

    # --- sending ----------------------------------------------------------------------

    def serve_pull(self, client: Any, msg: p.PullObject) -> None:
        """Stream an object to a peer once it is sealed (and in memory) here (lock held).

        The block is pinned for the peer until it says Unpin (or its connection closes),
        so it cannot be reused while the event loop still sendfile()s from it.
        """
        holder = peer_holder(client.worker_id)

        def answer(state: str, entry: ObjectEntry) -> None:
            if state == "failed":
                client.conn.send(p.Reply(msg.rid, False, entry.error))
                return
            pinned = self.objects.pin(holder, entry)
            self._copied_to.setdefault(entry.object_id, {})[client.worker_id] = client
            fd = os.dup(self.objects.arena.fd)  # closed by the queue after the last chunk
            size, offset = entry.size, 0
            while offset < size:
                count = min(CHUNK_BYTES, size - offset)
                client.conn.send_with_file(p.ObjectChunk(msg.rid, offset, size, None), fd,
                                           pinned + offset, count, last=offset + count >= size)
                offset += count
            if size == 0:
                os.close(fd)
            client.conn.send(p.Reply(msg.rid, True, (size, entry.flags, pinned)))

        entry = self.objects.wait(msg.object_id, answer)
        if entry is not None:
            answer(entry.state, entry)

    def stats(self) -> dict[str, int]:
        return {"pulled_objects": self.pulled_objects, "pulled_bytes": self.pulled_bytes}

    def close(self) -> None:
        for link in list(self._links.values()):
            link.close()
        self._links.clear()


def peer_holder(node_id: bytes) -> bytes:
    """Whom a peer node's pins are counted for (apart from that node's own processes)."""
    return b"peer:" + node_id

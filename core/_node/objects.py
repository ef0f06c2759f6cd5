"""The node's objects and references as seen by its clients (a node service).

    MapStore        -> the arena's memfd (once per process: it maps all of it)
    CreateObject    -> ObjectTable.create: a block now, or once spilling made room
    PutObject       -> ObjectTable.seal -> waiters fire
    GetObject       -> here: sealed (restored if spilled) now or later, pinned for the
                       client; elsewhere: ObjectTransfer.pull into a block here first
    Unpin           -> the client's read mapping of a block was collected
    AddRefs/RemoveRefs -> here, or forwarded to the ids' home node, naming the holder
    RebuildObject (a borrower) -> pushed to the owner, once per object however many ask;
                  ObjectRebuilt (the owner) answers them all; the owner gone: OwnerDiedError
    PullObject (a peer node) -> ObjectTransfer.serve_pull streams it back
    store full -> ObjectTable picks victims (lock held) -> the spill thread writes them
                  to the spill file and reads restores back (no lock) -> their finish
                  (lock held) frees blocks and answers waiting puts and gets

The spill thread is the store's only thread: it also fails requests for room that
waited too long (``ObjectTable.expire``), on the same queue's idle timeout.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from typing import Callable

from .._wire import protocol as p
from ..exceptions import EmberError, OwnerDiedError
from .memory_monitor import MemoryPolicy, read_usage
from .context import Client, Handlers, NodeContext
from .store_entries import ObjectEntry
from .object_stream import can_map, send_object
from .object_transfer import ObjectTransfer, peer_holder


log = logging.getLogger("ember.node_manager")

#: How often the spill thread, when idle, fails requests for room that waited too long.
_EXPIRE_EVERY_S = 0.5


class ObjectService:
    """Args:
        ctx: the shared node context.
        transfer: moves objects and reference changes between nodes.
        memory_policy, monitor_on: shown by ``ember memory`` (StoreStats).
    """

    def __init__(self, ctx: NodeContext, transfer: ObjectTransfer, memory_policy: MemoryPolicy,
                 monitor_on: Callable[[], bool]) -> None:
        self.ctx = ctx
        self.transfer = transfer
        self._memory_policy = memory_policy
        self._monitor_on = monitor_on
        #: Process -> home nodes its references were forwarded to (released when it exits).
        self.forwarded: dict[bytes, set[str]] = defaultdict(set)
        #: Lost objects their owner (a process here) is rebuilding -> (owner, borrowers asking).
        self.rebuilds: dict[bytes, tuple[bytes, list[tuple[Client, int]]]] = {}
        # Disk I/O of spills and restores: never under the node lock, never on the event loop.
        self._io: queue.SimpleQueue[tuple[Callable[[], None], Callable[[bool], None]] | None] = \
            queue.SimpleQueue()
        self._spiller = threading.Thread(target=self._io_loop, daemon=True, name="ember-spill")
        self._spiller.start()
        ctx.objects.run_io = lambda io, finish: self._io.put((io, finish))

    def _io_loop(self) -> None:
        """The spill thread (owned by this service, joined by ``stop``)."""
        while True:
            try:
                job = self._io.get(timeout=_EXPIRE_EVERY_S)
            except queue.Empty:
                with self.ctx.lock:
                    self.ctx.objects.expire(time.monotonic())
                continue
            if job is None:
                return
            io, finish = job
            ok = True
            try:
                io()
            except (OSError, ValueError) as e:  # disk full, or the store closed under us
                log.warning("object store disk I/O failed: %s", e)
                ok = False
            with self.ctx.lock:
                if not self.ctx.stopped.is_set():
                    finish(ok)
                    self.ctx.objects.expire(time.monotonic())

    def stop(self) -> None:
        self._io.put(None)
        if self._spiller is not threading.current_thread():
            self._spiller.join(5)

    def handlers(self) -> Handlers:
        return {p.MapStore: self.on_map_store, p.CreateObject: self.on_create_object,
                p.PutObject: self.on_put_object, p.GetObject: self.on_get_object,
                p.Unpin: self.on_unpin, p.PullObject: self.on_pull_object,
                p.DeclareShared: self.on_declare_shared, p.AddRefs: self.on_add_refs,
                p.RemoveRefs: self.on_remove_refs, p.ReleaseHolder: self.on_release_holder,
                p.StoreStats: self.on_store_stats, p.RebuildObject: self.on_rebuild_object,
                p.ObjectRebuilt: self.on_object_rebuilt}

    def on_map_store(self, client: Client, msg: p.MapStore) -> None:
        objects = self.ctx.objects
        self.ctx.reply(client, msg.rid, True, objects.capacity_bytes, (objects.arena.fd,))

    def on_create_object(self, client: Client, msg: p.CreateObject) -> None:
        ctx = self.ctx

        def done(offset: int | None, error: BaseException | None) -> None:
            if error is not None:
                ctx.reply(client, msg.rid, False, error)
            else:
                ctx.reply(client, msg.rid, True, offset)

        ctx.objects.create(msg.object_id, msg.size, client.worker_id, msg.holder, done)

    def on_put_object(self, client: Client, msg: p.PutObject) -> None:
        try:
            fired = self.ctx.objects.seal(msg.object_id, msg.offset, msg.size, msg.flags,
                                          client.worker_id, msg.holder, msg.contained)
        except ValueError as e:
            if msg.rid is None:
                log.warning("a seal from %s pid %s was refused: %s", client.kind, client.pid, e)
            else:
                self.ctx.reply(client, msg.rid, False, EmberError(str(e)))
            return
        if msg.rid is not None:
            self.ctx.reply(client, msg.rid, True)
        for waiter, entry in fired:
            waiter("sealed", entry)

    def on_unpin(self, client: Client, msg: p.Unpin) -> None:
        holder = peer_holder(client.worker_id) if client.kind == "peer" else client.worker_id
        self.ctx.objects.unpin(holder, msg.offsets)

    def release_peer(self, client: Client) -> None:
        """A peer node's link closed: the pins it held while pulling go (lock held)."""
        self.ctx.objects.release_pins(peer_holder(client.worker_id))
        self.transfer.forget_peer(client)

    def on_pull_object(self, client: Client, msg: p.PullObject) -> None:
        self.transfer.serve_pull(client, msg)

    def on_get_object(self, client: Client, msg: p.GetObject) -> None:
        ctx = self.ctx

        def answer(state: str, entry: ObjectEntry) -> None:
            if state == "failed":
                ctx.reply(client, msg.rid, False, entry.error)
            elif msg.fetch and not can_map(client):  # a driver on another machine: streamed
                offset = ctx.objects.pin(client.worker_id, entry)
                send_object(client.conn, msg.rid, ctx.objects.arena.fd, offset, entry.size,
                            (entry.size, entry.flags, offset))
            elif msg.fetch:
                offset = ctx.objects.pin(client.worker_id, entry)
                ctx.reply(client, msg.rid, True, (entry.size, entry.flags, offset))
            else:
                ctx.reply(client, msg.rid, True, (entry.size, entry.flags, -1))

        local = ctx.objects.objects.get(msg.object_id)
        if msg.home not in (None, ctx.tcp_address) and (local is None or local.state == "pending"):
            self.transfer.pull(msg.object_id, msg.home, answer)
            return
        entry = ctx.objects.wait(msg.object_id, answer, in_memory=msg.fetch)
        if entry is not None:
            answer(entry.state, entry)

    def on_declare_shared(self, client: Client, msg: p.DeclareShared) -> None:
        for oid in msg.object_ids:
            self.ctx.objects.declare(oid, client.worker_id)
        self.ctx.reply(client, msg.rid, True)

    def on_add_refs(self, client: Client, msg: p.AddRefs) -> None:
        ctx = self.ctx
        holder = msg.holder or client.worker_id
        if msg.home not in (None, ctx.tcp_address):
            self.forwarded[holder].add(msg.home)
            if msg.rid is None:
                self.transfer.forward_refs(msg, holder)
            else:
                self.transfer.forward_refs(msg, holder, lambda: ctx.reply(client, msg.rid, True))
            return
        for ref_id in msg.ids:
            ctx.objects.add_ref(ref_id, holder)
        if msg.rid is not None:
            ctx.reply(client, msg.rid, True)

    def on_remove_refs(self, client: Client, msg: p.RemoveRefs) -> None:
        holder = msg.holder or client.worker_id
        if msg.home not in (None, self.ctx.tcp_address):
            self.transfer.forward_refs(msg, holder)
        for ref_id in msg.ids:  # also drops a local cached copy the process held
            self.ctx.objects.remove_ref(ref_id, holder)

    def on_rebuild_object(self, client: Client, msg: p.RebuildObject) -> None:
        """A borrower lost every copy of an object: its owner, a process of this node,
        runs the task that made it again (asked once, however many borrowers ask)."""
        node, owner_id, pid = msg.owner
        owner = self.ctx.clients.get(owner_id)
        if owner is None or owner.kind not in ("driver", "worker"):
            self.ctx.reply(client, msg.rid, False, OwnerDiedError(
                msg.object_id.hex(), f"its only copy was on node {msg.lost_home}, which is gone, "
                f"and its owner (pid {pid} on node {node}), which could have rebuilt it, exited"))
            return
        asking = self.rebuilds.setdefault(msg.object_id, (owner_id, []))[1]
        asking.append((client, msg.rid))
        if len(asking) == 1:
            owner.conn.send(p.RebuildObject(None, msg.object_id, msg.owner, msg.lost_home))

    def on_object_rebuilt(self, client: Client, msg: p.ObjectRebuilt) -> None:
        _owner, asking = self.rebuilds.pop(msg.object_id, (b"", []))
        for borrower, rid in asking:
            self.ctx.reply(borrower, rid, msg.ok, msg.value)

    def _owner_exited(self, client: Client) -> None:
        """Borrowers waiting for a rebuild by ``client``, which exited, learn it died."""
        for oid in [oid for oid, (owner, _) in self.rebuilds.items() if owner == client.worker_id]:
            for borrower, rid in self.rebuilds.pop(oid)[1]:
                self.ctx.reply(borrower, rid, False, OwnerDiedError(
                    oid.hex(), f"its owner (pid {client.pid} on node {self.ctx.tcp_address}) "
                    "exited while it was rebuilding it"))

    def on_release_holder(self, client: Client, msg: p.ReleaseHolder) -> None:
        self.ctx.objects.release_holder(msg.holder)

    def release_process(self, client: Client) -> None:
        """A process exited: its references go, here and on the nodes they were forwarded
        to, and objects it owned that will never be sealed fail for their waiters."""
        ctx = self.ctx
        ctx.objects.release_holder(client.worker_id)
        ctx.objects.release_pins(client.worker_id)
        ctx.objects.release_creating(client.worker_id)
        for home in self.forwarded.pop(client.worker_id, ()):
            try:
                self.transfer.link(home).send(p.ReleaseHolder(client.worker_id))
            except OSError:
                pass  # that node is gone, and its references with it
        for waiter, entry in ctx.objects.fail_owned_by(
                client.worker_id, lambda oid: OwnerDiedError(oid.hex(), f"owner pid {client.pid} exited")):
            waiter("failed", entry)
        if self.rebuilds:
            self._owner_exited(client)

    def on_store_stats(self, client: Client, msg: p.StoreStats) -> None:
        stats = self.ctx.objects.stats()
        for item in stats["largest_objects"]:
            item["holders"] = [self.describe_holder(bytes.fromhex(h)) for h in item["holders"]]
        stats.update(self.transfer.stats())
        usage = read_usage()
        stats["node_memory"] = {"used_bytes": usage.used_bytes, "total_bytes": usage.total_bytes,
                                "threshold": self._memory_policy.threshold,
                                "monitor_on": self._monitor_on()}
        self.ctx.reply(client, msg.rid, True, stats)

    def describe_holder(self, holder: bytes) -> str:
        """Who a holder id is, for people: a process, an object that contains the ref, an actor."""
        ctx = self.ctx
        client = ctx.clients.get(holder)
        if client is not None:
            if client.kind == "driver":
                return f"driver pid {client.pid}"
            record = ctx.pool.workers.get(holder)
            actor = ctx.control.actors.get(record.actor_id) if record and record.actor_id else None
            if actor is not None:
                return f"actor {actor.spec.class_name} pid {client.pid}"
            return f"worker pid {client.pid}"
        if holder in ctx.objects.objects:
            return f"object {holder.hex()[:12]}… (contains it)"
        actor = ctx.control.actors.get(holder)
        if actor is not None:
            return f"actor {actor.spec.class_name} (its constructor arguments)"
        return f"{holder.hex()[:12]}… (gone)"


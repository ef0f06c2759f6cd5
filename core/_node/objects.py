"""The node's objects and references as seen by its clients (a node service).

    PutObject(fd)   -> ObjectTable.seal -> waiters fire
    GetObject       -> here: sealed now or when it seals; elsewhere: ObjectTransfer.pull
    AddRefs/RemoveRefs -> here, or forwarded to the ids' home node, naming the holder
    PullObject (a peer node) -> ObjectTransfer.serve_pull streams it back
    store full -> ObjectTable picks victims (lock held) -> spill thread writes them to disk
                  (no lock) -> finish_spill (lock held) closes their memfds
"""

from __future__ import annotations

import os
import queue
import threading
from collections import defaultdict
from typing import Callable

from .._wire import protocol as p
from ..exceptions import ObjectStoreFullError, OwnerDiedError
from .memory_monitor import MemoryPolicy, read_usage
from .context import Client, Handlers, NodeContext
from .object_store import ObjectEntry
from .object_transfer import ObjectTransfer


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
        # Spilling writes to disk: never under the node lock, never on the event loop.
        self._spills: queue.SimpleQueue[tuple[ObjectEntry, int, str] | None] = queue.SimpleQueue()
        self._spiller = threading.Thread(target=self._spill_loop, daemon=True, name="ember-spill")
        self._spiller.start()
        ctx.objects.spill_later = lambda entry, fd, path: self._spills.put((entry, fd, path))

    def _spill_loop(self) -> None:
        """The spill thread (owned by this service, joined by ``stop``)."""
        while (job := self._spills.get()) is not None:
            entry, fd, path = job
            ok = _write_file(fd, path, entry.size)
            os.close(fd)
            with self.ctx.lock:
                self.ctx.objects.finish_spill(entry, path, ok)

    def stop(self) -> None:
        self._spills.put(None)
        if self._spiller is not threading.current_thread():
            self._spiller.join(5)

    def handlers(self) -> Handlers:
        return {p.PutObject: self.on_put_object, p.GetObject: self.on_get_object,
                p.PullObject: self.on_pull_object, p.DeclareShared: self.on_declare_shared,
                p.AddRefs: self.on_add_refs, p.RemoveRefs: self.on_remove_refs,
                p.ReleaseHolder: self.on_release_holder, p.StoreStats: self.on_store_stats}

    def on_put_object(self, client: Client, msg: p.PutObject, fds: list[int]) -> None:
        try:
            fired = self.ctx.objects.seal(msg.object_id, fds[0], msg.size, msg.flags, msg.holder,
                                          msg.contained)
        except ObjectStoreFullError as e:
            self.ctx.reply(client, msg.rid, False, e)
            return
        self.ctx.reply(client, msg.rid, True)
        for waiter, entry in fired:
            waiter("sealed", entry)

    def on_pull_object(self, client: Client, msg: p.PullObject) -> None:
        self.transfer.serve_pull(client.conn, msg)

    def on_get_object(self, client: Client, msg: p.GetObject) -> None:
        ctx = self.ctx

        def answer(state: str, entry: ObjectEntry) -> None:
            if state == "failed":
                ctx.reply(client, msg.rid, False, entry.error)
            elif msg.fetch:
                ctx.reply(client, msg.rid, True, (entry.size, entry.flags), (entry.fd,))
            else:
                ctx.reply(client, msg.rid, True, (entry.size, entry.flags))

        local = ctx.objects.objects.get(msg.object_id)
        if msg.home not in (None, ctx.tcp_address) and (local is None or local.state == "pending"):
            self.transfer.pull(msg.object_id, msg.home, answer)
            return
        entry = ctx.objects.wait(msg.object_id, answer)
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

    def on_release_holder(self, client: Client, msg: p.ReleaseHolder) -> None:
        self.ctx.objects.release_holder(msg.holder)

    def release_process(self, client: Client) -> None:
        """A process exited: its references go, here and on the nodes they were forwarded
        to, and objects it owned that will never be sealed fail for their waiters."""
        ctx = self.ctx
        ctx.objects.release_holder(client.worker_id)
        for home in self.forwarded.pop(client.worker_id, ()):
            try:
                self.transfer.link(home).send(p.ReleaseHolder(client.worker_id))
            except OSError:
                pass  # that node is gone, and its references with it
        for waiter, entry in ctx.objects.fail_owned_by(
                client.worker_id, lambda oid: OwnerDiedError(oid.hex(), f"owner pid {client.pid} exited")):
            waiter("failed", entry)

    def on_store_stats(self, client: Client, msg: p.StoreStats) -> None:
        stats = self.ctx.objects.stats()
        for item in stats["largest_objects"]:
            item["holders"] = [self.describe_holder(bytes.fromhex(h)) for h in item["holders"]]
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


def _write_file(fd: int, path: str, size: int) -> bool:
    """Copy ``size`` bytes of ``fd`` to a new file at ``path`` (sendfile); False on failure."""
    try:
        with open(path, "wb") as out:
            offset = 0
            while offset < size:
                sent = os.sendfile(out.fileno(), fd, offset, size - offset)
                if sent == 0:
                    raise OSError("the object's segment ended early")
                offset += sent
        return True
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        return False

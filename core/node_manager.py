"""The node manager: leases workers, keeps the resource ledger, holds the node's
objects, and (on the head) hosts the control store.

One thread per connection reads messages and handles them under one lock; handlers
are short and never wait on another process, so the lock is never held across a
blocking call except to write a reply.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import signal
import socket
import sys
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from . import protocol as p
from ._types import JobID, ResourceShape, WorkerID
from .control_store import ControlStore, JobRecord
from .decisions import Refuse, There, choose_node
from .exceptions import EmberError, ObjectStoreFullError, OwnerDiedError
from .membership import DEFAULT_NODE_TIMEOUT_S, ClusterView, HeadLink, NodeInfo
from .memory_monitor import (MemoryMonitor, MemoryPolicy, read_usage,
                             refresh_s_from_env, threshold_from_env)
from .object_store import ObjectEntry, ObjectTable
from .object_transfer import ObjectTransfer
from .node_actors import ActorsMixin
from .node_cluster import _CONTROL_MESSAGES, ClusterMixin
from .node_placement import PlacementGroupRecord, PlacementMixin
from .node_workers import WorkersMixin
from .scheduler import Allocation, LeaseQueue, PendingLease, ResourceLedger, normalize_shape
from .transport import (Connection, ConnectionClosed, ProtocolViolation, accept, expect_hello,
                        listen)
from .worker_pool import WorkerPool, WorkerRecord

log = logging.getLogger("ember.node_manager")


@dataclass
class Client:
    """One registered connection: a driver, worker, submitter or node, and the leases it holds."""
    conn: Connection
    kind: str
    worker_id: WorkerID
    job_id: JobID
    pid: int
    #: Leases this client holds as a submitter.
    leases: set[int] = field(default_factory=set)


@dataclass
class Lease:
    """A worker granted to a submitter (or an actor) with the resources it holds."""
    lease_id: int
    holder: Client | None
    worker: WorkerRecord
    alloc: Allocation
    #: False once a task with no retries left ran on it (MarkLeaseNonRetriable): the
    #: memory monitor spares it while retriable work is running.
    retriable: bool = True


@dataclass
class LeaseWant:
    """A granted allocation waiting for a worker of the right job to start."""
    pending: PendingLease
    alloc: Allocation


class NodeManager(ClusterMixin, WorkersMixin, PlacementMixin, ActorsMixin):
    """One node's manager: the resource ledger and lease queue, the worker pool, the object
    store, and (on the head) the control store, cluster membership and placement groups.

    Every client (driver, worker, remote submitter, other node) talks to it over one
    connection; handlers run under ``lock`` and carry out what the pure decisions
    (scheduler, decisions) return.
    """

    def __init__(self, session_dir: str, token: bytes, resources: ResourceShape,
                 gpu_ids: list[int], object_store_memory: int, exit_with_first_driver: bool,
                 memory_usage_threshold: float | None = None,
                 memory_monitor_refresh_s: float | None = None, host: str = "127.0.0.1",
                 port: int = 0, head_address: str | None = None,
                 node_timeout_s: float = DEFAULT_NODE_TIMEOUT_S) -> None:
        self.session_dir = session_dir
        self.token = token
        self.node_id = os.urandom(16)
        self.lock = threading.RLock()
        self.ledger = ResourceLedger(resources)
        self.queue = LeaseQueue(self.ledger)
        self.gpu_ids = gpu_ids
        spill_dir = os.path.join(session_dir, "spill")
        os.makedirs(spill_dir, mode=0o700, exist_ok=True)
        self.objects = ObjectTable(object_store_memory, spill_dir)
        self.objects.on_unreferenced = self._on_unreferenced
        self.control = ControlStore()
        self.clients: dict[WorkerID, Client] = {}
        self.leases: dict[int, Lease] = {}
        self._lease_ids = itertools.count(1)
        self._rids = itertools.count(1)
        self._wants: dict[JobID, deque[LeaseWant]] = defaultdict(deque)
        self._idle: dict[JobID, list[WorkerRecord]] = defaultdict(list)
        self._actor_starts: dict[int, bytes] = {}
        self._lease_requesters: dict[Any, tuple[Client, int]] = {}
        self.placement_groups: dict[bytes, PlacementGroupRecord] = {}
        #: Bundles reserved on this node: pg id -> ((index, bundle) pairs, allocations).
        self._bundles: dict[bytes, tuple[list[tuple[int, ResourceShape]], list[Allocation]]] = {}
        self._exit_with_first_driver = exit_with_first_driver
        self._first_driver: WorkerID | None = None
        self.stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._stop_done = False
        env = dict(os.environ)
        env["EMBER_TOKEN"] = token.hex()
        self.pool = WorkerPool(session_dir, env, self._on_worker_exit)
        self.address = f"unix:{os.path.join(session_dir, 'sockets', 'node.sock')}"
        self._listener, _ = listen(self.address)
        # TCP for other nodes and remote submitters; loopback unless a node address is given.
        self._tcp_listener, self.tcp_address = listen(f"tcp:{host}:{port}")
        self.view = ClusterView()
        #: Advanced per placement decision: SPREAD rotates over the nodes by it.
        self._spread_turn = 0
        self.is_head = head_address is None
        self.node_timeout_s = node_timeout_s
        self.head: HeadLink | None = None
        self.head_tcp_address = head_address or self.tcp_address
        self.transfer = ObjectTransfer(self.lock, self.objects, token, self.node_id, self.tcp_address)
        #: Process -> home nodes its references were forwarded to (released when it exits).
        self._forwarded: dict[bytes, set[str]] = defaultdict(set)
        self.max_idle_workers = max(2, int(resources.get("CPU", 1)) * 2)
        self.memory_policy = MemoryPolicy(threshold_from_env() if memory_usage_threshold is None
                                          else memory_usage_threshold)
        refresh_s = refresh_s_from_env() if memory_monitor_refresh_s is None else memory_monitor_refresh_s
        self.memory_monitor: MemoryMonitor | None = None
        if refresh_s > 0:
            self.memory_monitor = MemoryMonitor(refresh_s, self._check_memory)
            self.memory_monitor.start()

    # --- serving ---------------------------------------------------------------------

    def join(self, head_address: str) -> None:
        """A worker node: register with the head (raises if it refuses or is unreachable)."""
        self.head = HeadLink(head_address, self.token, self.node_id, self.tcp_address,
                             self.address, self._resources_now, self._on_head_message,
                             on_lost=self._head_lost)

    def serve_forever(self) -> None:
        """Serve the Unix and TCP listeners (and, on the head, membership)."""
        self.view.upsert(self._self_info())
        if self.is_head:
            threading.Thread(target=self._membership_loop, daemon=True,
                             name="ember-membership").start()
        threading.Thread(target=self._accept_loop, args=(self._tcp_listener,), daemon=True,
                         name="ember-nm-accept-tcp").start()
        self._accept_loop(self._listener)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self.stopped.is_set():
            try:
                conn = accept(listener)
            except OSError:
                return
            threading.Thread(target=self._serve_conn, args=(conn,), daemon=True,
                             name="ember-nm-conn").start()

    def _serve_conn(self, conn: Connection) -> None:
        client = None
        try:
            expect_hello(conn, self.token)
            msg, _ = conn.recv()
            if not isinstance(msg, p.Register):
                raise ProtocolViolation("expected Register")
            client = self._register(conn, msg)
            while True:
                msg, fds = conn.recv()
                self._dispatch(client, msg, fds)
        except (ConnectionClosed, ProtocolViolation, OSError):
            pass
        finally:
            conn.close()
            if client is not None:
                self._disconnect(client)

    def _dispatch(self, client: Client, msg: Any, fds: list[int]) -> None:
        if self.head is not None and type(msg) in _CONTROL_MESSAGES:
            self._proxy(client, msg)
            return
        name = self._handlers.get(type(msg))
        handler = getattr(self, name) if name is not None else None
        if handler is None:
            for fd in fds:
                os.close(fd)
            raise ProtocolViolation(f"unexpected message {type(msg).__name__}")
        with self.lock:
            try:
                if fds:
                    handler(client, msg, fds)
                else:
                    handler(client, msg)
            except Exception as e:  # a bug or a dead peer must not cut this client off
                log.exception("handling %s from %s failed", type(msg).__name__, client.kind)
                rid = getattr(msg, "rid", None)
                if rid is not None:
                    self._reply(client, rid, False, EmberError(f"the node manager failed to handle "
                                                               f"{type(msg).__name__}: {e}"))

    def _reply(self, client: Client, rid: int, ok: bool, value: Any = None,
               fds: tuple[int, ...] = ()) -> None:
        try:
            client.conn.send(p.Reply(rid, ok, value), fds)
        except ConnectionClosed:
            pass

    # --- sessions --------------------------------------------------------------------

    def _register(self, conn: Connection, msg: p.Register) -> Client:
        with self.lock:
            if msg.kind == "node":
                client = Client(conn, "node", msg.worker_id, b"", msg.pid)
                self.clients[msg.worker_id] = client
                self.view.upsert(NodeInfo(msg.worker_id, msg.address, msg.node_unix_address or "",
                                          {}, {}))
                conn.send(p.Registered(self.node_id, b"", "", self.session_dir, self.address))
                log.info("node %s joined from %s", msg.worker_id.hex()[:12], msg.address)
                return client
            if msg.kind == "peer":
                client = Client(conn, "peer", msg.worker_id, b"", msg.pid)
                conn.send(p.Registered(self.node_id, b"", "", self.session_dir, self.address,
                                       self.tcp_address))
                return client
            if msg.kind == "submitter":
                job = self.control.jobs.get(msg.job_id)
                if job is None:
                    job = self.control.jobs[msg.job_id] = JobRecord(
                        msg.job_id, b"", msg.namespace or "", msg.cwd, msg.sys_path, msg.env_vars)
                client = Client(conn, "submitter", msg.worker_id, msg.job_id, msg.pid)
                self.clients[msg.worker_id] = client
                conn.send(p.Registered(self.node_id, msg.job_id, job.namespace, self.session_dir,
                                       self.address, self.tcp_address, job.env_vars,
                                       self.head_tcp_address))
                return client
            if msg.kind == "driver":
                job_id = os.urandom(4)
                namespace = msg.namespace or f"anonymous-{job_id.hex()}"
                self.control.jobs[job_id] = JobRecord(job_id, msg.worker_id, namespace, msg.cwd,
                                                      msg.sys_path, msg.env_vars)
                if self._first_driver is None:
                    self._first_driver = msg.worker_id
                client = Client(conn, "driver", msg.worker_id, job_id, msg.pid)
            else:
                record = self.pool.workers.get(msg.worker_id)
                if record is None:
                    raise ProtocolViolation("unknown worker")
                record.conn, record.address, record.pid = conn, msg.address, msg.pid
                record.tcp_address = msg.tcp_address
                self.pool.by_pid[msg.pid] = record
                client = Client(conn, "worker", msg.worker_id, record.job_id, msg.pid)
                namespace = self.control.jobs[record.job_id].namespace
            self.clients[msg.worker_id] = client
            conn.send(p.Registered(self.node_id, client.job_id, namespace, self.session_dir,
                                   self.address, self.tcp_address,
                                   self.control.jobs[client.job_id].env_vars, self.head_tcp_address))
            if msg.kind == "worker":
                self._worker_ready(record)
            return client

    def _disconnect(self, client: Client) -> None:
        if client.kind == "node":
            with self.lock:
                self.clients.pop(client.worker_id, None)
                if self.view.mark_dead(client.worker_id):
                    log.warning("node %s disconnected: marked dead", client.worker_id.hex()[:12])
                    self._node_died(client.worker_id)
            return
        if client.kind == "peer":
            return
        with self.lock:
            if self.clients.get(client.worker_id) is client:
                del self.clients[client.worker_id]
            for lease_id in list(client.leases):
                lease = self.leases.pop(lease_id, None)
                if lease is not None:
                    self._release(lease.alloc)
                    self.pool.kill(lease.worker)
            for key in self.queue.remove_where(lambda key: key[0] == client.worker_id):
                self._lease_requesters.pop(key, None)
            if client.kind == "worker":
                record = self.pool.workers.get(client.worker_id)
                if record is not None:
                    self._worker_gone(record)
            elif client.kind == "driver":
                self._job_finished(client)
            self.objects.release_holder(client.worker_id)
            for home in self._forwarded.pop(client.worker_id, ()):
                try:
                    self.transfer.link(home).send(p.ReleaseHolder(client.worker_id))
                except OSError:
                    pass  # that node is gone, and its references with it
            for waiter, entry in self.objects.fail_owned_by(
                    client.worker_id, lambda oid: OwnerDiedError(oid.hex(), f"owner pid {client.pid} exited")):
                waiter("failed", entry)
            self._schedule()
        if client.kind == "driver" and self._exit_with_first_driver and client.worker_id == self._first_driver:
            self.stop()

    def _job_finished(self, client: Client) -> None:
        for node in [c for c in self.clients.values() if c.kind == "node"]:
            try:
                node.conn.send(p.JobFinished(client.job_id))
            except ConnectionClosed:
                pass
        job = self.control.jobs.get(client.job_id)
        if job is not None:
            job.alive = False
        for record in list(self.control.actors.values()):
            if record.spec.job_id == client.job_id and not record.spec.detached and record.state != "dead":
                self._kill_actor(record, "its owner (the driver) exited", no_restart=True)
        self._remove_job_groups(client.job_id)
        self._stop_job_workers(client.job_id)
        self._wants.pop(client.job_id, None)

    # --- leases ----------------------------------------------------------------------

    def _on_request_lease(self, client: Client, msg: p.RequestLease) -> None:
        key = (client.worker_id, msg.rid)
        req = msg.request
        shape = normalize_shape(req.shape)
        # A request sent here by another node's submitter stays, unless it can never fit
        # here (e.g. it came for its arguments' locality but asks for resources we lack).
        if client.kind != "submitter" or not self.ledger.fits_ever(shape):
            target = self._spill_target(shape, req.strategy)
            if isinstance(target, BaseException):
                self._reply(client, msg.rid, False, target)
                return
            if target is not None:
                self._reply(client, msg.rid, True, p.Spillback(target))
                return
        self._lease_requesters[key] = (client, msg.rid)
        self.queue.add(key, normalize_shape(req.shape), normalize_shape(req.hold) if req.hold is not None else None)
        self._schedule()

    def _spill_target(self, shape: ResourceShape, strategy: Any) -> str | BaseException | None:
        """Another node's TCP address when the request should run there; None: here; an
        error when no node ever can (the rule: decisions.choose_node)."""
        self._spread_turn += 1
        choice = choose_node(shape, strategy, self.node_id, self.ledger.available, self.view.nodes,
                             totals_here=self.ledger.totals, spread_turn=self._spread_turn)
        if isinstance(choice, Refuse):
            return choice.error
        if isinstance(choice, There):
            self.view.reserve(choice.address, shape)
            return choice.address
        return None

    def _on_return_lease(self, client: Client, msg: p.ReturnLease) -> None:
        lease = self.leases.pop(msg.lease_id, None)
        if lease is None:
            return
        client.leases.discard(msg.lease_id)
        self._release(lease.alloc)
        worker = lease.worker
        if worker.state == "leased":
            worker.lease_id = None
            idle = self._idle[worker.job_id]
            if msg.kill_worker or len(idle) >= self.max_idle_workers:
                worker.state = "exiting"
                self.pool.kill(worker)
            else:
                self._worker_ready(worker)
        self._schedule()

    def _release(self, alloc: Allocation) -> None:
        self.ledger.release(alloc)

    def _schedule(self) -> None:
        self._place_groups()
        again = True
        while again:  # a grant whose requester is gone frees its resources for another pass
            again = False
            for pending, alloc in self.queue.grantable():
                want = LeaseWant(pending, alloc)
                job_id = self._job_of(pending.key)
                if job_id is None:
                    self._release(alloc)
                    again = True
                    continue
                self._grant(want, job_id)
        for pending in self.queue.infeasible():
            if not self.view.fits_anywhere(pending.shape):  # else it moves there (respill)
                self._warn_infeasible(pending)

    def _grant(self, want: LeaseWant, job_id: JobID) -> None:
        idle = self._idle.get(job_id)
        if idle:
            self._assign(want, idle.pop())
        else:
            self._wants[job_id].append(want)
            self._ensure_workers(job_id)

    def _job_of(self, key: Any) -> JobID | None:
        if key[0] == "actor":
            actor = self.control.actors.get(key[1])
            return actor.spec.job_id if actor is not None and actor.state != "dead" else None
        requester = self._lease_requesters.get(key)
        return requester[0].job_id if requester is not None and requester[0].worker_id in self.clients else None

    def _warn_infeasible(self, pending: PendingLease) -> None:
        message = (f"a request for {pending.shape} cannot be scheduled: this cluster has "
                   f"{self.ledger.totals} in total. It waits until a node that fits joins; "
                   "lower the request or add such a node.")
        if pending.key[0] == "actor":
            actor = self.control.actors[pending.key[1]]
            owner = self.clients.get(actor.spec.owner_id)
            if owner is not None:
                owner.conn.send(p.LeaseInfeasible(0, f"actor {actor.spec.class_name}: {message}"))
            return
        client, rid = self._lease_requesters[pending.key]
        client.conn.send(p.LeaseInfeasible(rid, message))

    def _assign(self, want: LeaseWant, worker: WorkerRecord) -> None:
        key = want.pending.key
        gpu_ids = [self.gpu_ids[i] for i in want.alloc.gpu_ids]
        if key[0] == "actor":
            actor = self.control.actors.get(key[1])
            if actor is None or actor.state == "dead":
                self._release(want.alloc)
                self._worker_ready(worker)
                return
            worker.state, worker.actor_id = "actor", actor.spec.actor_id
            actor.worker_id = worker.worker_id
            lease_id = next(self._lease_ids)
            self.leases[lease_id] = Lease(lease_id, None, worker, want.alloc)
            worker.lease_id = lease_id
            rid = next(self._rids)
            self._actor_starts[rid] = actor.spec.actor_id
            worker.conn.send(p.StartActor(rid, actor.spec, gpu_ids))
            return
        client, rid = self._lease_requesters.pop(key)
        if client.worker_id not in self.clients:
            self._release(want.alloc)
            self._worker_ready(worker)
            return
        lease_id = next(self._lease_ids)
        lease = Lease(lease_id, client, worker, want.alloc)
        self.leases[lease_id] = lease
        client.leases.add(lease_id)
        worker.state, worker.lease_id = "leased", lease_id
        address = worker.tcp_address if client.kind == "submitter" else worker.address
        self._reply(client, rid, True, p.LeaseGrant(lease_id, worker.worker_id, address, gpu_ids))

    def _on_set_blocked(self, client: Client, msg: p.SetBlocked) -> None:
        record = self.pool.workers.get(client.worker_id)
        if record is None or record.lease_id not in self.leases:
            return
        alloc = self.leases[record.lease_id].alloc
        if msg.blocked:
            self.ledger.lend_cpus(alloc)
            self._schedule()
        else:
            self.ledger.reclaim_cpus(alloc)

    # --- functions -------------------------------------------------------------------

    def _on_register_function(self, client: Client, msg: p.RegisterFunction) -> None:
        self.control.functions[msg.function_id] = msg.blob
        self._reply(client, msg.rid, True)

    def _on_get_function(self, client: Client, msg: p.GetFunction) -> None:
        blob = self.control.functions.get(msg.function_id)
        self._reply(client, msg.rid, blob is not None, blob)

    # --- objects ---------------------------------------------------------------------

    def _on_put_object(self, client: Client, msg: p.PutObject, fds: list[int]) -> None:
        try:
            fired = self.objects.seal(msg.object_id, fds[0], msg.size, msg.flags, msg.holder,
                                      msg.contained)
        except ObjectStoreFullError as e:
            self._reply(client, msg.rid, False, e)
            return
        self._reply(client, msg.rid, True)
        for waiter, entry in fired:
            waiter("sealed", entry)

    def _on_pull_object(self, client: Client, msg: p.PullObject) -> None:
        self.transfer.serve_pull(client.conn, msg)

    def _on_get_object(self, client: Client, msg: p.GetObject) -> None:
        def answer(state: str, entry: ObjectEntry) -> None:
            if state == "failed":
                self._reply(client, msg.rid, False, entry.error)
            elif msg.fetch:
                self._reply(client, msg.rid, True, (entry.size, entry.flags), (entry.fd,))
            else:
                self._reply(client, msg.rid, True, (entry.size, entry.flags))

        local = self.objects.objects.get(msg.object_id)
        if msg.home not in (None, self.tcp_address) and (local is None or local.state == "pending"):
            self.transfer.pull(msg.object_id, msg.home, answer)
            return
        entry = self.objects.wait(msg.object_id, answer)
        if entry is not None:
            answer(entry.state, entry)

    def _on_declare_shared(self, client: Client, msg: p.DeclareShared) -> None:
        for oid in msg.object_ids:
            self.objects.declare(oid, client.worker_id)
        self._reply(client, msg.rid, True)

    def _on_add_refs(self, client: Client, msg: p.AddRefs) -> None:
        holder = msg.holder or client.worker_id
        if msg.home not in (None, self.tcp_address):
            self._forwarded[holder].add(msg.home)
            if msg.rid is None:
                self.transfer.forward_refs(msg, holder)
            else:
                self.transfer.forward_refs(msg, holder, lambda: self._reply(client, msg.rid, True))
            return
        for ref_id in msg.ids:
            self.objects.add_ref(ref_id, holder)
        if msg.rid is not None:
            self._reply(client, msg.rid, True)

    def _on_remove_refs(self, client: Client, msg: p.RemoveRefs) -> None:
        holder = msg.holder or client.worker_id
        if msg.home not in (None, self.tcp_address):
            self.transfer.forward_refs(msg, holder)
        for ref_id in msg.ids:  # also drops a local cached copy the process held
            self.objects.remove_ref(ref_id, holder)

    def _on_release_holder(self, client: Client, msg: p.ReleaseHolder) -> None:
        self.objects.release_holder(msg.holder)

    def _on_store_stats(self, client: Client, msg: p.StoreStats) -> None:
        stats = self.objects.stats()
        for item in stats["largest_objects"]:
            item["holders"] = [self._describe_holder(bytes.fromhex(h)) for h in item["holders"]]
        usage = read_usage()
        stats["node_memory"] = {"used_bytes": usage.used_bytes, "total_bytes": usage.total_bytes,
                                "threshold": self.memory_policy.threshold,
                                "monitor_on": self.memory_monitor is not None}
        self._reply(client, msg.rid, True, stats)

    def _describe_holder(self, holder: bytes) -> str:
        """Who a holder id is, for people: a process, an object that contains the ref, an actor."""
        client = self.clients.get(holder)
        if client is not None:
            if client.kind == "driver":
                return f"driver pid {client.pid}"
            record = self.pool.workers.get(holder)
            actor = self.control.actors.get(record.actor_id) if record and record.actor_id else None
            if actor is not None:
                return f"actor {actor.spec.class_name} pid {client.pid}"
            return f"worker pid {client.pid}"
        if holder in self.objects.objects:
            return f"object {holder.hex()[:12]}… (contains it)"
        actor = self.control.actors.get(holder)
        if actor is not None:
            return f"actor {actor.spec.class_name} (its constructor arguments)"
        return f"{holder.hex()[:12]}… (gone)"

    def _on_unreferenced(self, ref_id: bytes) -> None:
        actor = self.control.actors.get(ref_id)
        if actor is not None and not actor.spec.detached and actor.state != "dead":
            self._kill_actor(actor, "every handle to it went out of scope", no_restart=True)

    # --- cluster ---------------------------------------------------------------------

    def _on_kill_worker(self, client: Client, msg: p.KillWorker) -> None:
        record = self.pool.workers.get(msg.worker_id)
        if record is not None:
            self.pool.kill(record)

    def _on_cluster_state(self, client: Client, msg: p.ClusterState) -> None:
        self.view.upsert(self._self_info())
        nodes = []
        for info in sorted(self.view.nodes.values(), key=lambda n: (not n.is_head, n.node_id)):
            node = info.as_dict()
            if info.node_id == self.node_id:
                node["ObjectStore"] = self.objects.stats()
            nodes.append(node)
        self._reply(client, msg.rid, True, nodes)

    def _on_log_lines(self, client: Client, msg: p.LogLines) -> None:
        job_id = msg.job_id or client.job_id
        job = self.control.jobs.get(job_id)
        driver = self.clients.get(job.driver_id) if job is not None else None
        if driver is None and self.head is not None:
            msg.job_id = job_id  # the driver is attached to the head
            self.head.link.send(msg)
        elif driver is not None:
            try:
                driver.conn.send(msg)
            except ConnectionClosed:
                pass

    _handlers = {
        p.RequestLease: "_on_request_lease", p.ReturnLease: "_on_return_lease",
        p.SetBlocked: "_on_set_blocked", p.RegisterFunction: "_on_register_function",
        p.GetFunction: "_on_get_function", p.PutObject: "_on_put_object",
        p.GetObject: "_on_get_object", p.DeclareShared: "_on_declare_shared",
        p.AddRefs: "_on_add_refs", p.RemoveRefs: "_on_remove_refs", p.StoreStats: "_on_store_stats",
        p.CreateActor: "_on_create_actor", p.Reply: "_on_actor_started",
        p.GetActorInfo: "_on_get_actor_info", p.GetNamedActor: "_on_get_named_actor",
        p.KillActor: "_on_kill_actor", p.ExitActor: "_on_exit_actor", p.KillWorker: "_on_kill_worker",
        p.ClusterState: "_on_cluster_state", p.LogLines: "_on_log_lines",
        p.CreatePlacementGroup: "_on_create_placement_group",
        p.RemovePlacementGroup: "_on_remove_placement_group",
        p.PlacementGroupTable: "_on_placement_group_table",
        p.GetWorkerExit: "_on_get_worker_exit",
        p.MarkLeaseNonRetriable: "_on_mark_lease_non_retriable",
        p.Heartbeat: "_on_heartbeat", p.PullObject: "_on_pull_object",
        p.ReleaseHolder: "_on_release_holder", p.Forwarded: "_on_forwarded",
        p.ActorPlaced: "_on_actor_placed", p.ActorWorkerDied: "_on_actor_worker_died",
        p.BundlesReserved: "_on_bundles_reserved", p.WaitPlacementGroup: "_on_wait_placement_group",
    }

    def stop(self) -> None:
        """Stop serving, kill the workers, free the objects. Returns once all of that is done,
        also when another thread is already stopping (main() removes the session after)."""
        with self._stop_lock:
            if self._stop_done:
                return
            self.stopped.set()
            if self.memory_monitor is not None:
                self.memory_monitor.stop()
            for listener in (self._listener, self._tcp_listener):
                try:
                    listener.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                listener.close()
            if self.head is not None:
                self.head.close()
            self.transfer.close()
            with self.lock:
                for client in list(self.clients.values()):
                    client.conn.close()
            self.pool.shutdown()
            with self.lock:
                self.objects.close()
            self._stop_done = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="ember-node-manager")
    parser.add_argument("--session-dir", required=True)
    parser.add_argument("--resources", required=True, help="JSON resource totals")
    parser.add_argument("--gpu-ids", default="[]")
    parser.add_argument("--object-store-memory", type=int, required=True)
    parser.add_argument("--exit-with-first-driver", action="store_true")
    parser.add_argument("--node-ip-address", default="127.0.0.1",
                        help="address to bind the TCP port to (default: loopback only)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--head-address", help="tcp:HOST:PORT of the head; absent: this is the head")
    parser.add_argument("--memory-usage-threshold", type=float,
                        help="fraction of node memory in use above which the memory monitor kills "
                        "a worker (default: $EMBER_MEMORY_USAGE_THRESHOLD or 0.95)")
    parser.add_argument("--memory-monitor-refresh-ms", type=float,
                        help="how often the memory monitor reads memory; 0 turns it off "
                        "(default: $EMBER_MEMORY_MONITOR_REFRESH_MS or 250)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = bytes.fromhex(os.environ.pop("EMBER_TOKEN"))
    nm = NodeManager(args.session_dir, token, json.loads(args.resources), json.loads(args.gpu_ids),
                     args.object_store_memory, args.exit_with_first_driver,
                     memory_usage_threshold=args.memory_usage_threshold,
                     memory_monitor_refresh_s=None if args.memory_monitor_refresh_ms is None
                     else args.memory_monitor_refresh_ms / 1000.0,
                     host=args.node_ip_address, port=args.port, head_address=args.head_address)
    if args.head_address is not None:
        try:
            nm.join(args.head_address)
        except (OSError, EOFError) as e:
            nm.stop()
            sys.stderr.write(f"could not join the head at {args.head_address}: {e}. Check the address "
                             "and the cluster token (--token-file or EMBER_TOKEN).\n")
            sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=nm.stop, daemon=True).start())
    threading.Thread(target=nm.serve_forever, daemon=True, name="ember-nm-accept").start()
    sys.stdout.write(f"ready {nm.address} {nm.tcp_address}\n")
    sys.stdout.flush()
    # Wake up now and then: Python runs signal handlers on the main thread between
    # bytecodes, so a SIGTERM the kernel hands to another thread would otherwise wait
    # forever behind an untimed wait (seen: `ember stop` had to SIGKILL us after 10 s).
    driver_pid = os.getppid()
    while not nm.stopped.wait(0.25):
        if args.exit_with_first_driver and os.getppid() != driver_pid:
            # The driver that started us died before (or without) registering, so no
            # disconnect will ever tell us: being re-parented is the signal.
            log.warning("the driver that started this node (pid %d) is gone: stopping", driver_pid)
            break
    nm.stop()
    if args.exit_with_first_driver:
        # The session belongs to the driver that started us. Its shutdown() removes the
        # directory too, but a driver killed with SIGKILL cannot: without this its
        # sockets, logs and spilled objects would stay behind.
        shutil.rmtree(args.session_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

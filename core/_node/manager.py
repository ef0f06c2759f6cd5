"""The node manager: leases workers, keeps the resource ledger, holds the node's
objects, and (on the head) hosts the control store.

    Server (node_server.py, one event loop) --frames--> NodeManager._dispatch
        -> under the node lock: HANDLERS[type(msg)](client, msg)  (one table, merged from
           the services below; a type claimed twice is an error at start-up)
    services, composed (each owns its state, gets its collaborators explicitly):
        LeaseService      the queue, grants waiting for workers, leases
        WorkerService     worker starts and exits, the memory monitor
        ActorService      the actor directory's life cycle (placement, restarts, death)
        StateService      task events and the state API's queries (the head's tables, this node's)
        PlacementService  placement groups and this node's reserved bundles
        ObjectService     objects, references, transfers between nodes
        StreamService     objects streamed to and from drivers reached over TCP
        ClusterService    membership, forwarding to the head, what the head tells us
        JobService        submitted jobs, each under a supervisor process (head)
        DebugService      failed tasks kept for replay, tasks waiting at breakpoint() (head)
        TelemetryService  node stats for the head's dashboard, users' metrics, the HTTP ports
    this module: sessions (register, disconnect, job end), functions, log lines

Handlers are short and never wait on another process; what they send is queued per
peer and written after the lock is released, so a slow or stopped peer cannot stall
the others.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shutil
import signal
import sys
import threading
from typing import Any

from .._wire import protocol as p
from .._types import ResourceShape, WorkerID
from .control_store import ControlStore, JobRecord
from ..exceptions import AuthenticationError, EmberError
from .. import __version__
from .membership import (DEFAULT_HEAD_RECONNECT_TIMEOUT_S, DEFAULT_NODE_TIMEOUT_S, HEARTBEAT_S,
                         ClusterView, HeadLink, NodeInfo)
from .recovery import RESTORED_HOLDER, Restored, check_owner, head_meta, install_encoders, restore
from .storage import Persistence, StorageWriter, open_backend
from .memory_monitor import MemoryMonitor, MemoryPolicy, refresh_s_from_env, threshold_from_env
from .actors import ActorService
from .cluster import CONTROL_MESSAGES, ClusterService
from .context import Client, Handlers, NodeContext, merge_handlers
from .debug import DebugService
from .jobs import JobService
from .leases import LeaseService
from .objects import ObjectService
from .object_stream import StreamService
from .placement import PlacementService
from .state import StateService
from .peer import NodeLock, Peer
from .server import Server
from .telemetry import DEFAULT_DASHBOARD_PORT, TelemetryService
from .workers import WorkerService
from .object_store import ObjectTable
from .object_transfer import ObjectTransfer
from .scheduler import ResourceLedger
from .._wire.transport import ProtocolViolation
from .worker_pool import WorkerPool

log = logging.getLogger("ember._node.manager")

#: Check the resource ledger's invariant after every message (tests turn this on).
_DEBUG_LEDGER = os.environ.get("EMBER_DEBUG_LEDGER", "") not in ("", "0")


class NodeManager:
    """One node's manager: composes the node services around a shared context and serves
    every connection from one event loop. ``stop()`` is safe to call twice and from any
    thread; ``main()`` runs it as a process."""

    def __init__(self, session_dir: str, token: bytes, resources: ResourceShape,
                 gpu_ids: list[int], object_store_memory: int, exit_with_first_driver: bool,
                 memory_usage_threshold: float | None = None,
                 memory_monitor_refresh_s: float | None = None, host: str = "127.0.0.1",
                 port: int = 0, head_address: str | None = None,
                 node_timeout_s: float = DEFAULT_NODE_TIMEOUT_S, heartbeat_s: float = HEARTBEAT_S,
                 metrics_export_port: int = 0,
                 dashboard: tuple[str, int] | None = None,
                 storage: str | None = None) -> None:
        spill_dir = os.path.join(session_dir, "spill")
        os.makedirs(spill_dir, mode=0o700, exist_ok=True)
        lock = NodeLock()
        env = dict(os.environ)
        env["EMBER_TOKEN"] = token.decode()
        pool = WorkerPool(session_dir, env, lambda pid, detail: self.workers.on_worker_exit(pid, detail))
        persist = Persistence(None)
        self.ctx = ctx = NodeContext(
            node_id=os.urandom(16), session_dir=session_dir, token=token, lock=lock,
            control=ControlStore(changed=persist.mark), ledger=ResourceLedger(resources),
            objects=ObjectTable(object_store_memory, spill_dir), pool=pool, view=ClusterView(),
            gpu_ids=gpu_ids, is_head=head_address is None, persist=persist)
        self.heartbeat_s = heartbeat_s
        self.server = Server(token, self._on_register, self._on_message, self._on_close, lock)
        ctx.address = f"unix:{os.path.join(session_dir, 'sockets', 'node.sock')}"
        self.server.listen(ctx.address)
        # TCP for other nodes and remote submitters; loopback unless a node address is given.
        try:
            _, ctx.tcp_address = self.server.listen(f"tcp:{host}:{port}")
        except OSError as e:
            pool.shutdown()
            if e.errno != errno.EADDRINUSE:
                raise
            raise EmberError(f"port {port} on {host} is already in use: another ember head or node "
                             "listens there (`ember status` shows this machine's), or another program "
                             "does. Stop it, or start this node on another port with --port") from e
        ctx.head_tcp_address = head_address or ctx.tcp_address
        self._exit_with_first_driver = exit_with_first_driver
        self._first_driver: WorkerID | None = None
        self._stop_lock = threading.Lock()
        self._stop_done = False
        #: Jobs that ended with an earlier head (restart): nodes that reconnect hear of it.
        self._ended_jobs: list[bytes] = []

        memory_policy = MemoryPolicy(threshold_from_env() if memory_usage_threshold is None
                                     else memory_usage_threshold)
        self.transfer = ObjectTransfer(lock, ctx.objects, token, ctx.node_id, ctx.tcp_address)
        # Composition: collaborators are passed in; back-edges are callbacks.
        self.leases = LeaseService(
            ctx, ensure_workers=lambda job: self.workers.ensure_workers(job),
            start_actor=lambda actor_id, worker, alloc: self.actors.start_actor(actor_id, worker, alloc),
            before_schedule=lambda: self.placement.place_groups(),
            max_idle_workers=max(2, int(resources.get("CPU", 1)) * 2))
        self.actors = ActorService(ctx, self.leases, node_client=lambda addr: self.cluster.node_client(addr))
        self.workers = WorkerService(ctx, self.leases, on_actor_worker_died=self.actors.worker_died,
                                     on_actor_start_failed=self.actors.start_failed,
                                     memory_policy=memory_policy)
        self.placement = PlacementService(ctx, self.leases, kill_actor=self.actors.kill_actor,
                                          schedule=self.leases.schedule)
        self.objects = ObjectService(ctx, self.transfer, memory_policy,
                                     monitor_on=lambda: self.workers.memory_monitor is not None)
        self.streams = StreamService(ctx)
        self.cluster = ClusterService(ctx, self.leases, self.workers, self.actors, self.placement,
                                      self.objects, dispatch=self._handle, stop=self.stop,
                                      node_timeout_s=node_timeout_s, heartbeat_s=heartbeat_s)
        self.jobs = JobService(ctx)
        self.debug = DebugService(ctx)
        self.state = StateService(ctx, placement_groups=lambda: self.placement.groups,
                                  submitted_jobs=lambda: self.jobs.jobs)
        ctx.objects.on_unreferenced = self.actors.on_unreferenced
        ctx.objects.on_freed = self.transfer.object_freed
        self.telemetry = TelemetryService(ctx, self.leases, state=self.state,
                                          submitted_jobs=lambda: list(self.jobs.jobs.values()))
        #: One dispatch table, message type -> handler.
        self.handlers: Handlers = merge_handlers(
            self.leases.handlers(), self.workers.handlers(), self.actors.handlers(),
            self.placement.handlers(), self.objects.handlers(), self.cluster.handlers(),
            self.jobs.handlers(), self.debug.handlers(),
            self.state.handlers(),
            self.telemetry.handlers(),
            self.streams.handlers(),
            {p.RegisterFunction: self._on_register_function, p.GetFunction: self._on_get_function,
             p.LogLines: self._on_log_lines})

        if storage is not None and ctx.is_head:
            self._open_storage(storage, node_timeout_s)
        refresh_s = refresh_s_from_env() if memory_monitor_refresh_s is None else memory_monitor_refresh_s
        if refresh_s > 0:
            self.workers.memory_monitor = MemoryMonitor(refresh_s, self.workers.check_memory)
            self.workers.memory_monitor.start()
        # The metrics port (and the head's dashboard): bound now, served when first asked.
        self.telemetry.start(host, metrics_export_port, dashboard)

    def _open_storage(self, url: str, node_timeout_s: float) -> None:
        """The head: read what an earlier head of this cluster stored, then persist every change.

        Raises:
            StorageError: the storage cannot be opened, or belongs to another cluster.
        """
        ctx = self.ctx
        backend = open_backend(url)
        try:
            tables = backend.load()
            check_owner(tables, ctx.token, __version__, backend.description)
        except Exception:
            backend.close()
            raise
        install_encoders(ctx.persist, ctx.control, self.placement.groups, ctx.view)
        ctx.persist.encoder("submissions", self.jobs.stored)
        ctx.persist.writer = StorageWriter(backend)
        with ctx.lock:
            # The nodes get twice the heartbeat timeout to reconnect (they retry every
            # RECONNECT_PERIOD_S); a node that does not is dead, as after any loss.
            restored = restore(tables, ctx.control, self.placement.groups, ctx.view,
                               grace_s=2 * node_timeout_s)
            self.placement.restored()
            ended_submissions = self.jobs.restore(tables["submissions"])
            if restored.old_head_id is not None:
                log.warning("restarted from %s: %s; %d submitted job(s), %d of them ended by the "
                            "restart", backend.description, restored.summary(), len(self.jobs.jobs),
                            len(ended_submissions))
                self._resume(restored)
            ctx.persist.put_now("meta", b"head", head_meta(ctx.node_id, ctx.token, __version__))
            ctx.persist.mark("nodes", ctx.node_id)
            ctx.persist.flush()

    def _resume(self, restored: Restored) -> None:
        """What the old head's death ended: its workers' actors, its drivers' jobs, its
        share of placement groups (reserved again here)."""
        ctx = self.ctx
        for pg, share in restored.head_shares:
            if self.placement.reserve_bundles(pg.pg_id, share):
                pg.placement[ctx.node_id] = share
            else:
                log.warning("placement group %s: its bundles %s on the old head do not fit on this "
                            "one", pg.name or pg.pg_id.hex(), [i for i, _ in share])
            ctx.persist.mark("groups", pg.pg_id)
        for actor in ctx.control.actors.values():
            if not actor.spec.detached and actor.state != "dead":
                # Its users' handles were counted by the old head: only its job's end frees it.
                ctx.objects.add_ref(actor.spec.actor_id, RESTORED_HOLDER)
        if restored.old_head_id is not None:
            ctx.persist.mark("nodes", restored.old_head_id)
            self.actors.node_died(restored.old_head_id)
        for job_id in restored.ended_jobs:
            ctx.persist.mark("jobs", job_id)
            self.actors.kill_job_actors(job_id, "its driver was attached to the head, which died")
            self.placement.remove_job_groups(job_id)
        self._ended_jobs = restored.ended_jobs

    # Read by main(), the CLI and tests.
    @property
    def address(self) -> str:
        return self.ctx.address

    @property
    def tcp_address(self) -> str:
        return self.ctx.tcp_address

    @property
    def stopped(self) -> threading.Event:
        return self.ctx.stopped

    # --- serving ---------------------------------------------------------------------

    def join(self, head_address: str,
             reconnect_timeout_s: float = DEFAULT_HEAD_RECONNECT_TIMEOUT_S) -> None:
        """A worker node: register with the head (raises if it refuses or is unreachable).
        A head lost later is waited for up to ``reconnect_timeout_s`` (HeadLink)."""
        ctx = self.ctx
        ctx.head = HeadLink(head_address, ctx.token, ctx.node_id, ctx.tcp_address, ctx.address,
                            self.cluster.resources_now, self.cluster.on_head_message,
                            on_lost=self.cluster.head_lost, heartbeat_s=self.heartbeat_s,
                            reconnect_timeout_s=reconnect_timeout_s, on_down=self.cluster.head_down)

    def serve_forever(self) -> None:
        """Serve the Unix and TCP listeners (and, on the head, membership) until stopped."""
        self.ctx.view.upsert(self.cluster.self_info())
        if self.ctx.is_head:
            threading.Thread(target=self.cluster.membership_loop, daemon=True,
                             name="ember-membership").start()
        self.server.start()
        self.ctx.stopped.wait()

    def _on_register(self, peer: Peer, msg: p.Register) -> Client:
        """The event loop: a peer proved the token and registered."""
        return self._register(peer, msg)

    def _on_message(self, peer: Peer, msg: Any, fds: list[int]) -> None:
        self._dispatch(peer.client, msg, fds)

    def _on_close(self, peer: Peer) -> None:
        self._disconnect(peer.client)

    def _dispatch(self, client: Client, msg: Any, fds: list[int]) -> None:
        ctx = self.ctx
        if ctx.head is not None and type(msg) in CONTROL_MESSAGES:
            self.cluster.proxy(client, msg)
            return
        handler = self.handlers.get(type(msg))
        if handler is None:
            for fd in fds:
                os.close(fd)
            raise ProtocolViolation(f"unexpected message {type(msg).__name__}")
        with ctx.lock:
            try:
                if fds:
                    handler(client, msg, fds)
                else:
                    handler(client, msg)
            except Exception as e:  # a bug or a dead peer must not cut this client off
                log.exception("handling %s from %s failed", type(msg).__name__, client.kind)
                rid = getattr(msg, "rid", None)
                if rid is not None:
                    ctx.reply(client, rid, False, EmberError(f"the node manager failed to handle "
                                                             f"{type(msg).__name__}: {e}"))
            ctx.persist.flush()
            if _DEBUG_LEDGER:
                self._check_ledger(type(msg).__name__)

    def _handle(self, client: Client, msg: Any) -> None:
        """A request another node forwarded (the lock is held)."""
        self.handlers[type(msg)](client, msg)

    def _check_ledger(self, after: str) -> None:
        self.leases.check_ledger(after, self.placement.bundle_allocations())

    # --- sessions --------------------------------------------------------------------

    def _register(self, conn: Peer, msg: p.Register) -> Client:
        ctx = self.ctx
        with ctx.lock:
            if msg.kind == "node":
                client = Client(conn, "node", msg.worker_id, b"", msg.pid)
                ctx.clients[msg.worker_id] = client
                ctx.view.upsert(NodeInfo(msg.worker_id, msg.address, msg.node_unix_address or "", {}, {}))
                ctx.persist.mark("nodes", msg.worker_id)
                ctx.persist.flush()
                conn.send(p.Registered(ctx.node_id, b"", "", ctx.session_dir, ctx.address))
                for job_id in self._ended_jobs:  # their workers there have no driver left
                    conn.send(p.JobFinished(job_id))
                log.info("node %s joined from %s", msg.worker_id.hex()[:12], msg.address)
                return client
            if msg.kind == "peer":
                client = Client(conn, "peer", msg.worker_id, b"", msg.pid)
                conn.send(p.Registered(ctx.node_id, b"", "", ctx.session_dir, ctx.address, ctx.tcp_address))
                return client
            if msg.kind == "submitter":
                job = ctx.control.jobs.get(msg.job_id)
                if job is None:
                    job = ctx.control.add_job(JobRecord(
                        msg.job_id, b"", msg.namespace or "", msg.cwd, msg.sys_path, msg.env_vars))
                client = Client(conn, "submitter", msg.worker_id, msg.job_id, msg.pid)
                ctx.clients[msg.worker_id] = client
                conn.send(p.Registered(ctx.node_id, msg.job_id, job.namespace, ctx.session_dir,
                                       ctx.address, ctx.tcp_address, job.env_vars, ctx.head_tcp_address))
                return client
            record = None
            if msg.kind == "driver":
                job_id = os.urandom(4)
                namespace = msg.namespace or f"anonymous-{job_id.hex()}"
                ctx.control.add_job(JobRecord(job_id, msg.worker_id, namespace, msg.cwd,
                                              msg.sys_path, msg.env_vars))
                if self._first_driver is None:
                    self._first_driver = msg.worker_id
                self.state.job_started(job_id)
                if msg.submission_id is not None:
                    self.jobs.driver_registered(msg.submission_id, job_id)
                client = Client(conn, "driver", msg.worker_id, job_id, msg.pid)
            elif msg.kind == "worker":
                record = ctx.pool.workers.get(msg.worker_id)
                if record is None:
                    raise ProtocolViolation("unknown worker")
                record.conn, record.address, record.pid = conn, msg.address, msg.pid
                record.tcp_address = msg.tcp_address
                ctx.pool.by_pid[msg.pid] = record
                client = Client(conn, "worker", msg.worker_id, record.job_id, msg.pid)
                namespace = ctx.control.jobs[record.job_id].namespace
            else:
                raise ProtocolViolation(f"unknown client kind {msg.kind!r}")
            ctx.clients[msg.worker_id] = client
            conn.send(p.Registered(ctx.node_id, client.job_id, namespace, ctx.session_dir,
                                   ctx.address, ctx.tcp_address,
                                   ctx.control.jobs[client.job_id].env_vars, ctx.head_tcp_address))
            if record is not None:
                self.workers.registered(record)
            ctx.persist.flush()
            return client

    def _disconnect(self, client: Client) -> None:
        """Every path that ends a connection returns what it took (leases, grants, refs)."""
        ctx = self.ctx
        if client.kind == "node":
            with ctx.lock:
                if ctx.clients.get(client.worker_id) is not client:
                    return  # an old connection of a node that already registered again
                del ctx.clients[client.worker_id]
                if ctx.view.mark_dead(client.worker_id):
                    log.warning("node %s disconnected: marked dead", client.worker_id.hex()[:12])
                    ctx.persist.mark("nodes", client.worker_id)
                    self.actors.node_died(client.worker_id)
                    self.cluster.announce_dead(client.worker_id)
                ctx.persist.flush()
            return
        if client.kind == "peer":
            with ctx.lock:  # blocks it was streaming from here are free to go
                self.objects.release_peer(client)
            return
        with ctx.lock:
            if ctx.clients.get(client.worker_id) is client:
                del ctx.clients[client.worker_id]
            self.leases.drop_requester(client)
            if client.kind == "worker":
                record = ctx.pool.workers.get(client.worker_id)
                if record is not None:
                    self.workers.worker_gone(record)
            elif client.kind == "driver":
                self._job_finished(client)
            self.objects.release_process(client)
            self.telemetry.process_gone(client)
            self.leases.schedule()
            ctx.persist.flush()
            if _DEBUG_LEDGER:
                self._check_ledger(f"{client.kind} disconnect")
        if client.kind == "driver" and self._exit_with_first_driver and client.worker_id == self._first_driver:
            # Not on this (the loop's) thread: a SIGTERM's stop may already hold the stop
            # lock and be joining this thread; waiting for that lock here cost each
            # embedded cluster's shutdown the 5-s join timeout.
            threading.Thread(target=self.stop, daemon=True, name="ember-nm-stop").start()

    def _job_finished(self, client: Client) -> None:
        ctx = self.ctx
        for node in [c for c in ctx.clients.values() if c.kind == "node"]:
            node.conn.send(p.JobFinished(client.job_id))
        ctx.control.end_job(client.job_id)
        self.actors.kill_job_actors(client.job_id, "its owner (the driver) exited")
        self.workers.stop_job_workers(client.job_id)
        self.leases.drop_wants(job_id=client.job_id)
        self.placement.remove_job_groups(client.job_id)
        self.state.job_finished(client.job_id)

    # --- functions and output ----------------------------------------------------------

    def _on_register_function(self, client: Client, msg: p.RegisterFunction) -> None:
        self.ctx.control.add_function(msg.function_id, msg.blob)
        self.ctx.reply(client, msg.rid, True)

    def _on_get_function(self, client: Client, msg: p.GetFunction) -> None:
        blob = self.ctx.control.functions.get(msg.function_id)
        self.ctx.reply(client, msg.rid, blob is not None, blob)

    def _on_log_lines(self, client: Client, msg: p.LogLines) -> None:
        ctx = self.ctx
        job_id = msg.job_id or client.job_id
        job = ctx.control.jobs.get(job_id)
        driver = ctx.clients.get(job.driver_id) if job is not None else None
        if driver is None and ctx.head is not None:
            msg.job_id = job_id  # the driver is attached to the head
            ctx.head.send(msg)
        elif driver is not None:
            # Dropped (and counted) rather than queued without bound when the driver is
            # not reading: a stopped driver must cost only its own output.
            driver.conn.send(msg, droppable=True)

    def stop(self) -> None:
        """Stop serving, kill the workers, free the objects. Returns once all of that is done,
        also when another thread is already stopping (main() removes the session after)."""
        ctx = self.ctx
        with self._stop_lock:
            if self._stop_done:
                return
            ctx.stopped.set()
            self.jobs.stop()
            self.telemetry.stop()
            self.workers.runtime_envs.stop()
            if self.workers.memory_monitor is not None:
                self.workers.memory_monitor.stop()
            self.server.stop()
            # Stopped on purpose (SIGTERM, `ember stop`): the cluster ends, so its storage
            # is cleared; only a head that died leaves its tables for the next one.
            ctx.persist.close(clear=True)
            if ctx.head is not None:
                ctx.head.close()
            self.transfer.close()
            self.objects.stop()
            ctx.pool.shutdown()
            with ctx.lock:
                ctx.objects.close()
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
    parser.add_argument("--metrics-export-port", type=int, default=0,
                        help="TCP port of this node's Prometheus endpoint (0: any free port)")
    parser.add_argument("--dashboard-host", default="127.0.0.1",
                        help="address the head's dashboard binds to (default: loopback only)")
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT,
                        help=f"the head's dashboard port (default {DEFAULT_DASHBOARD_PORT}, or any free "
                        "port when it is taken)")
    parser.add_argument("--no-dashboard", action="store_true", help="serve no dashboard on the head")
    parser.add_argument("--storage", help="the head: where the control store persists "
                        "(sqlite:///PATH or redis://HOST:PORT[/DB]); absent: memory only")
    parser.add_argument("--heartbeat-period-s", type=float, default=HEARTBEAT_S,
                        help="seconds between heartbeats (worker nodes) and membership rounds (head)")
    parser.add_argument("--node-timeout-s", type=float, default=DEFAULT_NODE_TIMEOUT_S,
                        help="the head: a node silent this long is dead (default: "
                        "$EMBER_NODE_TIMEOUT_S or 2)")
    parser.add_argument("--head-reconnect-timeout-s", type=float, default=DEFAULT_HEAD_RECONNECT_TIMEOUT_S,
                        help="worker nodes: how long to wait for a lost head to come back before "
                        "stopping (default: $EMBER_HEAD_RECONNECT_TIMEOUT_S or 60)")
    args = parser.parse_args(argv)
    # Read first: a driver that dies while we start up re-parents us before "ready" is
    # even read, and a later getppid() would already name the new parent (seen under load:
    # an orphan that never noticed and ran forever).
    driver_pid = os.getppid()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The token, and where the process that started us got it (for messages): neither
    # is left in the environment our workers inherit.
    token = os.environ.pop("EMBER_TOKEN").encode()
    token_source = os.environ.pop("EMBER_TOKEN_SOURCE", None)
    try:
        nm = NodeManager(args.session_dir, token, json.loads(args.resources), json.loads(args.gpu_ids),
                         args.object_store_memory, args.exit_with_first_driver,
                         memory_usage_threshold=args.memory_usage_threshold,
                         memory_monitor_refresh_s=None if args.memory_monitor_refresh_ms is None
                         else args.memory_monitor_refresh_ms / 1000.0,
                         host=args.node_ip_address, port=args.port, head_address=args.head_address,
                         node_timeout_s=args.node_timeout_s, heartbeat_s=args.heartbeat_period_s,
                         storage=args.storage, metrics_export_port=args.metrics_export_port,
                         dashboard=None if args.no_dashboard else (args.dashboard_host, args.dashboard_port))
    except EmberError as e:  # storage refused, or the port is taken: said on the last line,
                             # which start_node reports
        sys.stderr.write(f"{e}\n")
        sys.exit(1)
    if args.head_address is not None:
        head = args.head_address.removeprefix("tcp:")
        try:
            nm.join(args.head_address, args.head_reconnect_timeout_s)
        except AuthenticationError as e:
            nm.stop()
            sys.stderr.write(f"could not join the head: {AuthenticationError(e.address, token_source)}\n")
            sys.exit(1)
        except EmberError as e:  # not an ember head, no answer, another version
            nm.stop()
            sys.stderr.write(f"could not join the head at {head}: {e}\n")
            sys.exit(1)
        except (OSError, EOFError) as e:
            nm.stop()
            sys.stderr.write(f"could not join the head at {head}: {e}. Check the address "
                             "and the cluster token (--token-file or EMBER_TOKEN).\n")
            sys.exit(1)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=nm.stop, daemon=True).start())
    threading.Thread(target=nm.serve_forever, daemon=True, name="ember-nm-accept").start()
    sys.stdout.write(f"ready {nm.address} {nm.tcp_address}\n")
    sys.stdout.flush()
    # Wake up now and then: Python runs signal handlers on the main thread between
    # bytecodes, so a SIGTERM the kernel hands to another thread would otherwise wait
    # forever behind an untimed wait (seen: `ember stop` had to SIGKILL us after 10 s).
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

"""How this node relates to the others: membership, control forwarding, job-wide
messages (a node service).

On the head it expires silent nodes and sends every node the view; on a worker node it
forwards control requests to the head and carries out what the head tells it.

    worker node: control request -> proxy() -> Forwarded -> head: on_forwarded -> handler
    head, every heartbeat period: expire silent nodes -> node_died; respill; ClusterViewUpdate
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Any, Callable

from .._wire import protocol as p
from .._types import ResourceShape
from .control_store import ActorRecord, JobRecord
from ..exceptions import EmberSystemError
from .membership import HEARTBEAT_S, NodeInfo
from .actors import ActorService
from .context import Client, Handlers, NodeContext
from .decisions import respill_target
from .leases import LeaseService
from .objects import ObjectService
from .placement import PlacementService
from .peer import frame_of
from .workers import WorkerService

log = logging.getLogger("ember._node.manager")

#: Requests a worker node does not answer itself: the head's control store does.
CONTROL_MESSAGES = (p.RegisterFunction, p.GetFunction, p.CreateActor, p.GetActorInfo, p.GetNamedActor,
                    p.KillActor, p.ExitActor, p.CreatePlacementGroup, p.RemovePlacementGroup,
                    p.PlacementGroupTable, p.WaitPlacementGroup, p.SubmitJob, p.GetJobInfo, p.StopJob,
                    p.DeleteJob, p.GetJobLogs, p.RecordFailedTask, p.GetFailedTask, p.RegisterBreakpoint,
                    p.ClearBreakpoint, p.GetBreakpoint,
                    p.TaskEvents, p.StateQuery)


class ClusterService:
    """Args:
        ctx: the shared node context.
        leases, workers, actors, placement, objects: the services whose state the
            cluster's events change (a node died, the head placed an actor here, ...).
        dispatch: the node manager's handler table, for requests forwarded to the head.
        stop: back-edge: stop this node (it lost the head).
    """

    def __init__(self, ctx: NodeContext, leases: LeaseService, workers: WorkerService,
                 actors: ActorService, placement: PlacementService, objects: ObjectService,
                 dispatch: Callable[[Client, Any], None], stop: Callable[[], None],
                 node_timeout_s: float, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.ctx = ctx
        self.leases = leases
        self.workers = workers
        self.actors = actors
        self.placement = placement
        self.objects = objects
        self._dispatch = dispatch
        self._stop = stop
        self.node_timeout_s = node_timeout_s
        self.heartbeat_s = heartbeat_s

    def handlers(self) -> Handlers:
        return {p.Heartbeat: self.on_heartbeat, p.Forwarded: self.on_forwarded,
                p.ClusterState: self.on_cluster_state}

    # --- membership -------------------------------------------------------------------

    def self_info(self) -> NodeInfo:
        ctx = self.ctx
        return NodeInfo(ctx.node_id, ctx.tcp_address, ctx.address, dict(ctx.ledger.totals),
                        dict(ctx.ledger.available), is_head=ctx.is_head,
                        pending=[dict(w.shape) for w in self.leases.queue.waiting()],
                        pending_groups=[(pg.strategy, [dict(b) for b in pg.bundles])
                                        for pg in self.placement.groups.values() if pg.state == "PENDING"])

    def resources_now(self) -> tuple[ResourceShape, ResourceShape, list[ResourceShape]]:
        with self.ctx.lock:
            return (dict(self.ctx.ledger.totals), dict(self.ctx.ledger.available),
                    [dict(w.shape) for w in self.leases.queue.waiting()])

    def membership_loop(self) -> None:
        """Head only: expire silent nodes and send everyone the view."""
        ctx = self.ctx
        last_round = time.monotonic()
        while not ctx.stopped.wait(self.heartbeat_s):
            now = time.monotonic()
            # A round this late means the head itself did not run (a saturated machine, a
            # paused process): the nodes' heartbeats may be queued unread, so silence is not
            # theirs. Give every node the time the head lost before judging anyone.
            stalled_s = now - last_round - self.heartbeat_s
            last_round = now
            with ctx.lock:
                if stalled_s > self.heartbeat_s:
                    log.warning("the membership round ran %.2f s late: extending every node's "
                                "heartbeat deadline by as much", stalled_s)
                    ctx.view.extend(stalled_s)
                ctx.view.upsert(self.self_info())
                for node_id in ctx.view.expire(self.node_timeout_s, keep=ctx.node_id):
                    log.warning("node %s missed heartbeats for %.1f s: marked dead",
                                node_id.hex()[:12], self.node_timeout_s)
                    ctx.persist.mark("nodes", node_id)
                    self.actors.node_died(node_id)
                    self.announce_dead(node_id)
                self.respill_waiting()
                if any(pg.state == "PENDING" for pg in self.placement.groups.values()):
                    self.leases.schedule()
                nodes = [c for c in ctx.clients.values() if c.kind == "node"]
                if nodes:
                    # Pickled once for all: ~3.7 s of CPU per round at 1,000 nodes otherwise.
                    frame = frame_of(p.ClusterViewUpdate(list(ctx.view.nodes.values())))
                    for client in nodes:
                        client.conn.send_frame(frame)  # leaves when the lock is released
                ctx.persist.flush()

    def announce_dead(self, node_id: bytes) -> None:
        """Tell this node's drivers and workers that a node is dead (lock held)."""
        info = self.ctx.view.nodes.get(node_id)
        if info is None:
            return
        msg = p.NodeDead(node_id, info.tcp_address)
        for client in self.ctx.clients.values():
            if client.kind in ("driver", "worker"):
                client.conn.send(msg)

    def node_client(self, tcp_address: str) -> Client | None:
        for info in self.ctx.view.alive():
            if info.tcp_address == tcp_address:
                client = self.ctx.clients.get(info.node_id)
                return client if client is not None and client.kind == "node" else None
        return None

    def on_heartbeat(self, client: Client, msg: p.Heartbeat) -> None:
        self.ctx.view.heartbeat(client.worker_id, msg.totals, msg.available, msg.pending)

    def on_cluster_state(self, client: Client, msg: p.ClusterState) -> None:
        ctx = self.ctx
        ctx.view.upsert(self.self_info())
        nodes = []
        for info in sorted(ctx.view.nodes.values(), key=lambda n: (not n.is_head, n.node_id)):
            node = info.as_dict()
            if info.node_id == ctx.node_id:
                node["ObjectStore"] = ctx.objects.stats()
            nodes.append(node)
        ctx.reply(client, msg.rid, True, nodes)

    def respill_waiting(self) -> None:
        """Requests queued here that do not fit here now go where they fit now (resources
        free up elsewhere, nodes join, placement groups are reserved): the rule is
        decisions.respill_target."""
        ctx = self.ctx
        if len(ctx.view.alive()) <= 1:
            return
        for pending in self.leases.queue.waiting():
            key = pending.key
            actor = ctx.control.actors.get(key[1]) if key[0] == "actor" else None
            requester = self.leases.requesters.get(key) if actor is None else None
            if actor is not None and not ctx.is_head:
                continue  # the head places actors
            if actor is None and requester is None:
                continue  # its requester is gone
            if requester is not None and requester[0].kind == "submitter" \
                    and ctx.ledger.fits_ever(pending.shape):
                continue  # sent here for its arguments' locality: it waits for room here
            self.leases.spread_turn += 1
            target = respill_target(pending.shape, pending.strategy,
                                    ctx.node_id, ctx.ledger.available, ctx.view.nodes,
                                    totals_here=ctx.ledger.totals, spread_turn=self.leases.spread_turn)
            if target is None:
                continue
            if actor is not None:
                if self.node_client(target) is not None:
                    self.leases.queue.remove(key)
                    self.actors.request_lease(actor)
            else:
                self.leases.queue.remove(key)
                ctx.view.reserve(target, pending.shape)
                client, rid = self.leases.pop_requester(key)
                ctx.reply(client, rid, True, p.Spillback(target))

    # --- forwarding (worker nodes -> head) ----------------------------------------------

    def proxy(self, client: Client, msg: Any) -> None:
        """A worker node hands control requests to the head and relays the answer."""
        ctx = self.ctx
        head = ctx.head
        with ctx.lock:
            if isinstance(msg, (p.CreateActor, p.GetNamedActor)):
                # The head will hold actor references for this process: release them if it exits.
                self.objects.forwarded[client.worker_id].add(ctx.head_tcp_address)
        rid = getattr(msg, "rid", None)
        job = ctx.control.jobs.get(client.job_id) if isinstance(msg, p.CreateActor) else None
        if rid is None:
            head.send(p.Forwarded(client.worker_id, client.job_id, msg))
            return

        def relay(reply: p.Reply, _fds: list[int]) -> None:
            value = reply.value
            # Only a request in flight when the link dropped (NodeLink._lost answers rid 0)
            # may or may not have run; HeadLink's own answer (NEVER_SENT_RID) says why it
            # never left, and passes through as it is.
            if not reply.ok and reply.rid == 0:
                value = EmberSystemError(
                    f"the head at {head.address} went away while it handled {type(msg).__name__}: "
                    "the request may or may not have taken effect. This node reconnects on its "
                    "own once the head is started again (same port and storage); retry then")
            ctx.reply(client, rid, reply.ok, value)

        head.call_async(lambda new_rid: p.Forwarded(client.worker_id, client.job_id,
                                                    dataclasses.replace(msg, rid=new_rid), job), relay)

    def on_forwarded(self, client: Client, msg: p.Forwarded) -> None:
        if msg.job is not None and msg.job.job_id not in self.ctx.control.jobs:
            # driver_id b"": the driver is not attached here (the head ends only the jobs
            # of its own drivers, when they disconnect or when it restarts).
            self.ctx.control.add_job(dataclasses.replace(msg.job, driver_id=b""))
        origin = Client(client.conn, "remote", msg.holder, msg.job_id, 0)
        self._dispatch(origin, msg.msg)

    # --- what the head tells a worker node ----------------------------------------------

    def on_head_message(self, msg: Any) -> None:
        try:
            self._on_head_message(msg)
        except Exception:  # a bug here must not cut this node off the head (it reads this link)
            log.exception("handling %s from the head failed", type(msg).__name__)

    def _on_head_message(self, msg: Any) -> None:
        ctx = self.ctx
        with ctx.lock:
            if isinstance(msg, p.JobFinished):
                self.workers.stop_job_workers(msg.job_id)
                self.leases.drop_wants(job_id=msg.job_id)
            elif isinstance(msg, p.ReserveBundles):
                ok = self.placement.reserve_bundles(msg.pg_id, msg.bundles)
                ctx.head.send(p.BundlesReserved(msg.pg_id, ok))
                self.leases.schedule()
            elif isinstance(msg, p.ReleaseBundles):
                self.placement.release_bundles(msg.pg_id)
                self.leases.schedule()
            elif isinstance(msg, p.PlaceActor):
                spec = msg.spec
                # The head may not know the job (an older head, a restored one): the spec's
                # namespace and env_vars still make a worker able to run it.
                ctx.control.jobs.setdefault(spec.job_id, msg.job if msg.job is not None else JobRecord(
                    spec.job_id, b"", spec.namespace or "", None, None, spec.env_vars))
                record = ctx.control.actors[msg.spec.actor_id] = ActorRecord(msg.spec)
                self.actors.request_lease(record)
            elif isinstance(msg, p.KillActor):
                record = ctx.control.actors.get(msg.actor_id)
                if record is not None and record.state != "dead":
                    if record.state == "pending":
                        self.leases.queue.remove(("actor", msg.actor_id))
                        ctx.head.send(p.ActorWorkerDied(msg.actor_id, "it was killed"))
                        ctx.control.set_dead(record, "it was killed")
                    else:
                        self.actors.kill_actor(record, "it was killed", no_restart=True)
            elif isinstance(msg, p.ClusterViewUpdate):
                for info in msg.nodes:
                    if info.node_id != ctx.node_id:
                        old = ctx.view.nodes.get(info.node_id)
                        ctx.view.nodes[info.node_id] = info
                        if old is not None and old.alive and not info.alive:
                            self.announce_dead(info.node_id)
                ctx.view.upsert(self.self_info())
                self.respill_waiting()

    def head_down(self) -> None:
        """The head went away (it may come back): spill nothing to its old address."""
        with self.ctx.lock:
            for node in self.ctx.view.nodes.values():
                if node.tcp_address == self.ctx.head_tcp_address:
                    node.alive = False

    def head_lost(self) -> None:
        log.error("lost the connection to the head node: stopping this node")
        threading.Thread(target=self._stop, daemon=True, name="ember-nm-stop").start()

"""The node manager's cluster side: membership, control forwarding, job-wide messages.

A mixin of NodeManager (one idea: how this node relates to the others). On the head it
expires silent nodes and broadcasts the view; on a worker node it forwards control
requests to the head and carries out what the head tells it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any

from . import protocol as p
from ._types import ResourceShape
from .control_store import ActorRecord
from .decisions import respill_target
from .membership import HEARTBEAT_S, NodeInfo
from .transport import ConnectionClosed

if TYPE_CHECKING:
    from .node_manager import Client

log = logging.getLogger("ember.node_manager")


class ClusterMixin:
    # --- membership ------------------------------------------------------------------

    def _self_info(self) -> NodeInfo:
        return NodeInfo(self.node_id, self.tcp_address, self.address, dict(self.ledger.totals),
                        dict(self.ledger.available), is_head=self.is_head,
                        pending=[dict(w.shape) for w in self.queue.waiting()],
                        pending_groups=[(pg.strategy, [dict(b) for b in pg.bundles])
                                        for pg in self.placement_groups.values() if pg.state == "PENDING"])

    def _resources_now(self) -> tuple[ResourceShape, ResourceShape, list[ResourceShape]]:
        with self.lock:
            return (dict(self.ledger.totals), dict(self.ledger.available),
                    [dict(w.shape) for w in self.queue.waiting()])

    def _membership_loop(self) -> None:
        """Head only: expire silent nodes and send everyone the view."""
        while not self.stopped.wait(HEARTBEAT_S):
            with self.lock:
                self.view.upsert(self._self_info())
                for node_id in self.view.expire(self.node_timeout_s, keep=self.node_id):
                    log.warning("node %s missed heartbeats for %.1f s: marked dead",
                                node_id.hex()[:12], self.node_timeout_s)
                    self._node_died(node_id)
                self._respill_waiting()
                if any(pg.state == "PENDING" for pg in self.placement_groups.values()):
                    self._schedule()
                update = p.ClusterViewUpdate(list(self.view.nodes.values()))
                nodes = [c for c in self.clients.values() if c.kind == "node"]
            for client in nodes:
                try:
                    client.conn.send(update)
                except ConnectionClosed:
                    pass

    def _proxy(self, client: Client, msg: Any) -> None:
        """A worker node hands control requests to the head and relays the answer."""
        link = self.head.link
        with self.lock:
            if isinstance(msg, (p.CreateActor, p.GetNamedActor)):
                # The head will hold actor references for this process: release them if it exits.
                self._forwarded[client.worker_id].add(self.head_tcp_address)
        rid = getattr(msg, "rid", None)
        if rid is None:
            link.send(p.Forwarded(client.worker_id, client.job_id, msg))
            return
        link.call_async(lambda new_rid: p.Forwarded(client.worker_id, client.job_id,
                                                    dataclasses.replace(msg, rid=new_rid)),
                        lambda reply, _fds: self._reply(client, rid, reply.ok, reply.value))

    def _on_forwarded(self, client: Client, msg: p.Forwarded) -> None:
        from .node_manager import Client  # the mixin's host module (imported late: a cycle)
        origin = Client(client.conn, "remote", msg.holder, msg.job_id, 0)
        getattr(self, self._handlers[type(msg.msg)])(origin, msg.msg)

    def _node_died(self, node_id: bytes) -> None:
        """Head: actors that lived on a dead node restart elsewhere or die."""
        for actor in list(self.control.actors.values()):
            if actor.node_id == node_id and actor.state != "dead":
                self._restart_or_bury(actor, f"its node {node_id.hex()[:12]} died")

    def _respill_waiting(self) -> None:
        """Requests queued here that do not fit here now go where they fit now (resources
        free up elsewhere, nodes join, placement groups are reserved): the rule is
        decisions.respill_target."""
        if len(self.view.alive()) <= 1:
            return
        for pending in self.queue.waiting():
            key = pending.key
            actor = self.control.actors.get(key[1]) if key[0] == "actor" else None
            requester = self._lease_requesters.get(key) if actor is None else None
            if actor is not None and not self.is_head:
                continue  # the head places actors
            if actor is None and requester is None:
                continue  # its requester is gone
            self._spread_turn += 1
            target = respill_target(pending.shape, actor.spec.request.strategy if actor else None,
                                    self.node_id, self.ledger.available, self.view.nodes,
                                    totals_here=self.ledger.totals, spread_turn=self._spread_turn)
            if target is None:
                continue
            if actor is not None:
                if self._node_client(target) is not None:
                    self.queue.remove(key)
                    self._request_actor_lease(actor)
            else:
                self.queue.remove(key)
                self.view.reserve(target, pending.shape)
                client, rid = self._lease_requesters.pop(key)
                self._reply(client, rid, True, p.Spillback(target))

    def _on_heartbeat(self, client: Client, msg: p.Heartbeat) -> None:
        self.view.heartbeat(client.worker_id, msg.totals, msg.available, msg.pending)

    def _stop_job_workers(self, job_id: bytes) -> None:
        """Kill the job's workers here, except those hosting detached actors."""
        detached = {r.worker_id for r in self.control.actors.values()
                    if r.spec.detached and r.state != "dead"}
        for record in list(self.pool.workers.values()):
            if record.job_id == job_id and record.state != "dead" and record.worker_id not in detached:
                self.pool.kill(record)

    def _on_head_message(self, msg: Any) -> None:
        with self.lock:
            if isinstance(msg, p.JobFinished):
                self._stop_job_workers(msg.job_id)
                self._wants.pop(msg.job_id, None)
            elif isinstance(msg, p.ReserveBundles):
                ok = self._reserve_bundles(msg.pg_id, msg.bundles)
                self.head.link.send(p.BundlesReserved(msg.pg_id, ok))
                self._schedule()
            elif isinstance(msg, p.ReleaseBundles):
                self._release_bundles(msg.pg_id)
                self._schedule()
            elif isinstance(msg, p.PlaceActor):
                if msg.job is not None:
                    self.control.jobs.setdefault(msg.job.job_id, msg.job)
                record = self.control.actors[msg.spec.actor_id] = ActorRecord(msg.spec)
                self._request_actor_lease(record)
            elif isinstance(msg, p.KillActor):
                record = self.control.actors.get(msg.actor_id)
                if record is not None and record.state != "dead":
                    if record.state == "pending":
                        self.queue.remove(("actor", msg.actor_id))
                        self.head.link.send(p.ActorWorkerDied(msg.actor_id, "it was killed"))
                        self.control.set_dead(record, "it was killed")
                    else:
                        self._kill_actor(record, "it was killed", no_restart=True)
            elif isinstance(msg, p.ClusterViewUpdate):
                for info in msg.nodes:
                    if info.node_id != self.node_id:
                        self.view.nodes[info.node_id] = info
                self.view.upsert(self._self_info())
                self._respill_waiting()

    def _head_lost(self) -> None:
        log.error("lost the connection to the head node: stopping this node")
        threading.Thread(target=self.stop, daemon=True).start()


#: Requests a worker node does not answer itself: the head's control store does.
_CONTROL_MESSAGES = (p.RegisterFunction, p.GetFunction, p.CreateActor, p.GetActorInfo, p.GetNamedActor,
                     p.KillActor, p.ExitActor, p.CreatePlacementGroup, p.RemovePlacementGroup,
                     p.PlacementGroupTable, p.WaitPlacementGroup)


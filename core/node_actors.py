"""The node manager's actors: creation, placement on a node, restarts and death.

The head keeps the directory and decides; the node an actor is placed on starts it and
reports back (a mixin of NodeManager).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import protocol as p
from .control_store import ActorRecord, NameTakenError
from .decisions import actor_may_restart
from .scheduler import normalize_shape
from .worker_pool import WorkerRecord

if TYPE_CHECKING:
    from .node_manager import Client


class ActorsMixin:
    # --- actors ----------------------------------------------------------------------

    def _on_create_actor(self, client: Client, msg: p.CreateActor) -> None:
        spec = msg.spec
        try:
            record, created = self.control.register_actor(spec)
        except NameTakenError as e:
            self._reply(client, msg.rid, False, ValueError(str(e)))
            return
        self.objects.add_ref(record.spec.actor_id, client.worker_id)
        if created:
            for oid in _stored_inputs(spec):
                self.objects.add_ref(oid, spec.actor_id)
            self._request_actor_lease(record)
        self._reply(client, msg.rid, True, record.info())

    def _request_actor_lease(self, record: ActorRecord) -> None:
        req = record.spec.request
        if self.is_head:
            target = self._spill_target(normalize_shape(req.shape), req.strategy)
            node = self._node_client(target) if isinstance(target, str) else None
            if node is not None:
                record.node_id = node.worker_id
                node.conn.send(p.PlaceActor(record.spec, self.control.jobs.get(record.spec.job_id)))
                return
        record.node_id = self.node_id
        self.queue.add(("actor", record.spec.actor_id), normalize_shape(req.shape),
                       normalize_shape(req.hold) if req.hold is not None else None)
        self._schedule()

    def _on_actor_started(self, client: Client, msg: p.Reply) -> None:
        actor_id = self._actor_starts.pop(msg.rid, None)
        actor = self.control.actors.get(actor_id) if actor_id else None
        if actor is None or actor.state == "dead":
            return
        worker = self.pool.workers[client.worker_id]
        if self.head is not None:  # placed here by the head, which keeps the directory
            self.head.link.send(p.ActorPlaced(actor.spec.actor_id, worker.worker_id, worker.address,
                                              worker.tcp_address, None if msg.ok else str(msg.value)))
        if msg.ok:
            actor.tcp_address, actor.node_id = worker.tcp_address, self.node_id
            fired = self.control.set_alive(actor, worker.address, worker.worker_id)
        else:
            actor.no_restart = True
            fired = self.control.set_dead(actor, f"its __init__ raised:\n{msg.value}")
            worker.state = "exiting"
            self.pool.kill(worker)
        for waiter, info in fired:
            waiter(info)

    def _on_get_actor_info(self, client: Client, msg: p.GetActorInfo) -> None:
        actor = self.control.actors.get(msg.actor_id)
        if actor is None:
            self._reply(client, msg.rid, False, ValueError("unknown actor"))
            return
        if not msg.wait_alive:
            self._reply(client, msg.rid, True, actor.info())
            return
        info = self.control.wait_actor(actor, msg.min_incarnation,
                                       lambda info: self._reply(client, msg.rid, True, info))
        if info is not None:
            self._reply(client, msg.rid, True, info)

    def _on_get_named_actor(self, client: Client, msg: p.GetNamedActor) -> None:
        actor = self.control.lookup_named(msg.name, msg.namespace)
        if actor is None:
            self._reply(client, msg.rid, True, None)
            return
        self.objects.add_ref(actor.spec.actor_id, client.worker_id)
        self._reply(client, msg.rid, True, actor.info())

    def _on_kill_actor(self, client: Client, msg: p.KillActor) -> None:
        actor = self.control.actors.get(msg.actor_id)
        if actor is not None and actor.state != "dead":
            self._kill_actor(actor, "it was killed with ember.kill()", msg.no_restart)

    def _on_exit_actor(self, client: Client, msg: p.ExitActor) -> None:
        actor = self.control.actors.get(msg.actor_id)
        if actor is not None:
            actor.no_restart = True
            actor.death_cause = "it called exit_actor()"

    def _kill_actor(self, actor: ActorRecord, cause: str, no_restart: bool) -> None:
        if no_restart:
            actor.no_restart = True
            actor.death_cause = actor.death_cause or cause
        if self.is_head and actor.node_id not in (None, self.node_id):
            node = self.clients.get(actor.node_id)
            if node is not None:
                node.conn.send(p.KillActor(actor.spec.actor_id, True))
            elif actor.state != "dead":  # its node is gone
                self._actor_dead(actor, cause)
            return
        worker = self.pool.workers.get(actor.worker_id) if actor.worker_id else None
        if worker is not None and worker.state != "dead":
            self.pool.kill(worker)
        elif actor.state in ("pending", "restarting") and no_restart:
            self.queue.remove(("actor", actor.spec.actor_id))
            self._actor_dead(actor, cause)

    def _actor_worker_died(self, actor: ActorRecord, worker: WorkerRecord) -> None:
        lease = self.leases.pop(worker.lease_id, None) if worker.lease_id else None
        if lease is not None:
            self._release(lease.alloc)
        if self.head is not None:
            # The head decides restarts; tell it how the process ended once that is known.
            def report(w: WorkerRecord) -> None:
                self.head.link.send(p.ActorWorkerDied(actor.spec.actor_id, _death_cause(w)))
                self.control.set_dead(actor, _death_cause(w))

            if not worker.exit_detail and worker.pid:
                worker.exit_waiters.append(report)
                self.pool.kill(worker)
            else:
                report(worker)
            return
        if not self._may_restart(actor):
            if not worker.exit_detail and worker.pid:
                # The connection closes before the fork server reaps the process; wait
                # for its exit (a few hundred ms at most) so the cause says how it died.
                worker.exit_waiters.append(lambda w: self._actor_dead(actor, _death_cause(w)))
                self.pool.kill(worker)
                return
            self._actor_dead(actor, _death_cause(worker))
            return
        self.control.set_restarting(actor)
        self._request_actor_lease(actor)

    def _may_restart(self, actor: ActorRecord) -> bool:
        job = self.control.jobs.get(actor.spec.job_id)
        return actor_may_restart(actor.spec.max_restarts, actor.num_restarts, actor.no_restart,
                                 owner_alive=job is None or job.alive, detached=actor.spec.detached)

    def _restart_or_bury(self, actor: ActorRecord, cause: str) -> None:
        """Head: an actor's process is gone (on any node): restart it if allowed."""
        if not self._may_restart(actor):
            self._actor_dead(actor, cause)
            return
        self.control.set_restarting(actor)
        self._request_actor_lease(actor)

    def _on_actor_placed(self, client: Client, msg: p.ActorPlaced) -> None:
        actor = self.control.actors.get(msg.actor_id)
        if actor is None or actor.state == "dead":
            return
        if msg.error is None:
            actor.tcp_address, actor.node_id = msg.tcp_address, client.worker_id
            fired = self.control.set_alive(actor, msg.address, msg.worker_id)
        else:
            actor.no_restart = True
            fired = self.control.set_dead(actor, f"its __init__ raised:\n{msg.error}")
        for waiter, info in fired:
            waiter(info)

    def _on_actor_worker_died(self, client: Client, msg: p.ActorWorkerDied) -> None:
        actor = self.control.actors.get(msg.actor_id)
        if actor is not None and actor.state != "dead" and actor.node_id == client.worker_id:
            self._restart_or_bury(actor, msg.cause)

    def _node_client(self, tcp_address: str) -> Client | None:
        for info in self.view.alive():
            if info.tcp_address == tcp_address:
                client = self.clients.get(info.node_id)
                return client if client is not None and client.kind == "node" else None
        return None

    def _actor_dead(self, actor: ActorRecord, cause: str) -> None:
        if actor.state == "dead":
            return
        for waiter, info in self.control.set_dead(actor, cause):
            waiter(info)
        for oid in _stored_inputs(actor.spec):
            self.objects.remove_ref(oid, actor.spec.actor_id)


def _death_cause(worker: WorkerRecord) -> str:
    """Why an actor whose worker exited is dead, for ActorDiedError."""
    if worker.oom is not None:
        used, total, threshold = worker.oom
        return (f"the memory monitor killed its worker process (pid {worker.pid}) because the node's "
                f"memory use ({used / (1 << 30):.1f} of {total / (1 << 30):.1f} GiB) was over the "
                f"threshold ({threshold:.0%}); run fewer tasks and actors at once, or request memory= "
                "so fewer are packed per node")
    return (f"its worker process (pid {worker.pid}) died"
            f"{' (' + worker.exit_detail + ')' if worker.exit_detail else ''}")


def _stored_inputs(spec: p.ActorSpec) -> list[bytes]:
    """Stored objects the constructor reads; held for the actor's life (restarts re-read them).

    That includes the arguments payload itself when it was too big (or held refs or
    handles) to travel inline: the creating driver drops its ref right after creation.
    """
    oids = [value[0] for kind, value in spec.deps if kind == "stored"]
    if isinstance(spec.payload, tuple):
        oids.append(spec.payload[1][0])
    return oids


"""The node's actors: creation, placement on a node, restarts and death (a node service).

The head keeps the directory and decides; the node an actor is placed on starts it and
reports back.

    CreateActor -> directory -> request_lease: head places it (here, or PlaceActor there)
    granted worker -> start_actor -> StartActor -> Reply -> alive | dead (its __init__ raised)
    worker gone -> actor_worker_died -> actor_restarts()? request again : dead
"""

from __future__ import annotations

import itertools
from typing import Callable

from .._wire import protocol as p
from .._types import ActorID
from .control_store import ActorRecord, NameTakenError
from .context import Client, Handlers, NodeContext
from .control_store import JobRecord
from .decisions import actor_may_restart
from .leases import LeaseService
from .scheduler import Allocation, normalize_shape
from .worker_pool import WorkerRecord


class ActorService:
    """Args:
        ctx: the shared node context.
        leases: where actors' resource requests queue and their leases live.
        node_client: the registered node whose TCP address this is (the head places
            actors on other nodes through it).
    """

    def __init__(self, ctx: NodeContext, leases: LeaseService,
                 node_client: Callable[[str], Client | None]) -> None:
        self.ctx = ctx
        self.leases = leases
        self._node_client = node_client
        self._rids = itertools.count(1)
        #: StartActor rid -> the actor being started (answered by the worker's Reply).
        self._starts: dict[int, ActorID] = {}

    def handlers(self) -> Handlers:
        return {p.CreateActor: self.on_create_actor, p.Reply: self.on_actor_started,
                p.GetActorInfo: self.on_get_actor_info, p.GetNamedActor: self.on_get_named_actor,
                p.KillActor: self.on_kill_actor, p.ExitActor: self.on_exit_actor,
                p.ActorPlaced: self.on_actor_placed, p.ActorWorkerDied: self.on_actor_worker_died}

    # --- creation ---------------------------------------------------------------------

    def on_create_actor(self, client: Client, msg: p.CreateActor) -> None:
        ctx = self.ctx
        spec = msg.spec
        try:
            record, created = ctx.control.register_actor(spec)
        except NameTakenError as e:
            ctx.reply(client, msg.rid, False, ValueError(str(e)))
            return
        ctx.objects.add_ref(record.spec.actor_id, client.worker_id)
        if created:
            for oid in stored_inputs(spec):
                ctx.objects.add_ref(oid, spec.actor_id)
            self.request_lease(record)
        ctx.reply(client, msg.rid, True, record.info())

    def request_lease(self, record: ActorRecord) -> None:
        ctx = self.ctx
        req = record.spec.request
        if ctx.is_head:
            target = self.leases.spill_target(normalize_shape(req.shape), req.strategy)
            node = self._node_client(target) if isinstance(target, str) else None
            if node is not None:
                record.node_id = node.worker_id
                ctx.control.actor_changed(record)
                node.conn.send(p.PlaceActor(record.spec, ctx.control.jobs.get(record.spec.job_id)))
                return
        record.node_id = ctx.node_id
        ctx.control.actor_changed(record)
        self.leases.add_actor_request(record.spec.actor_id, req)

    def start_actor(self, actor_id: ActorID, worker: WorkerRecord, alloc: Allocation) -> bool:
        """A granted worker becomes the actor's process; False if the actor is gone."""
        ctx = self.ctx
        actor = ctx.control.actors.get(actor_id)
        if actor is None or actor.state == "dead":
            return False
        worker.state, worker.actor_id = "actor", actor.spec.actor_id
        actor.worker_id = worker.worker_id
        worker.lease_id = self.leases.new_lease(None, worker, alloc).lease_id
        rid = next(self._rids)
        self._starts[rid] = actor.spec.actor_id
        worker.conn.send(p.StartActor(rid, actor.spec, [ctx.gpu_ids[i] for i in alloc.gpu_ids]))
        return True

    def on_actor_started(self, client: Client, msg: p.Reply) -> None:
        ctx = self.ctx
        actor_id = self._starts.pop(msg.rid, None)
        actor = ctx.control.actors.get(actor_id) if actor_id else None
        if actor is None or actor.state == "dead":
            return
        worker = ctx.pool.workers[client.worker_id]
        if ctx.head is not None:  # placed here by the head, which keeps the directory
            ctx.head.send(p.ActorPlaced(actor.spec.actor_id, worker.worker_id, worker.address,
                                        worker.tcp_address,
                                        None if msg.ok else f"its __init__ raised:\n{msg.value}"))
        if msg.ok:
            actor.tcp_address, actor.node_id = worker.tcp_address, ctx.node_id
            fired = ctx.control.set_alive(actor, worker.address, worker.worker_id)
        else:
            actor.no_restart = True
            fired = ctx.control.set_dead(actor, f"its __init__ raised:\n{msg.value}")
            worker.state = "exiting"
            ctx.pool.kill(worker)
        for waiter, info in fired:
            waiter(info)

    # --- lookups ----------------------------------------------------------------------

    def on_get_actor_info(self, client: Client, msg: p.GetActorInfo) -> None:
        ctx = self.ctx
        actor = ctx.control.actors.get(msg.actor_id)
        if actor is None:
            ctx.reply(client, msg.rid, False, ValueError("unknown actor"))
            return
        if not msg.wait_alive:
            ctx.reply(client, msg.rid, True, actor.info())
            return
        info = ctx.control.wait_actor(actor, msg.min_incarnation,
                                      lambda info: ctx.reply(client, msg.rid, True, info))
        if info is not None:
            ctx.reply(client, msg.rid, True, info)

    def on_get_named_actor(self, client: Client, msg: p.GetNamedActor) -> None:
        ctx = self.ctx
        actor = ctx.control.lookup_named(msg.name, msg.namespace)
        if actor is None:
            ctx.reply(client, msg.rid, True, None)
            return
        ctx.objects.add_ref(actor.spec.actor_id, client.worker_id)
        ctx.reply(client, msg.rid, True, actor.info())

    # --- death ------------------------------------------------------------------------

    def on_kill_actor(self, client: Client, msg: p.KillActor) -> None:
        actor = self.ctx.control.actors.get(msg.actor_id)
        if actor is not None and actor.state != "dead":
            self.kill_actor(actor, "it was killed with ember.kill()", msg.no_restart)

    def on_exit_actor(self, client: Client, msg: p.ExitActor) -> None:
        actor = self.ctx.control.actors.get(msg.actor_id)
        if actor is not None:
            actor.no_restart = True
            actor.death_cause = f"it called {msg.how}"
            self.ctx.control.actor_changed(actor)

    def kill_actor(self, actor: ActorRecord, cause: str, no_restart: bool) -> None:
        ctx = self.ctx
        if no_restart:
            actor.no_restart = True
            actor.death_cause = actor.death_cause or cause
            ctx.control.actor_changed(actor)
        if ctx.is_head and actor.node_id not in (None, ctx.node_id):
            node = ctx.clients.get(actor.node_id)
            if node is not None:
                node.conn.send(p.KillActor(actor.spec.actor_id, True))
            elif actor.state != "dead":  # its node is gone
                self.actor_dead(actor, cause)
            return
        worker = ctx.pool.workers.get(actor.worker_id) if actor.worker_id else None
        if worker is not None and worker.state != "dead":
            ctx.pool.kill(worker)
        elif actor.state in ("pending", "restarting") and no_restart:
            self.leases.queue.remove(("actor", actor.spec.actor_id))
            self.actor_dead(actor, cause)

    def kill_job_actors(self, job_id: bytes, cause: str) -> None:
        for record in list(self.ctx.control.actors.values()):
            if record.spec.job_id == job_id and not record.spec.detached and record.state != "dead":
                self.kill_actor(record, cause, no_restart=True)

    def worker_died(self, worker: WorkerRecord) -> None:
        """Back-edge from the worker service: the process hosting a live actor is gone."""
        ctx = self.ctx
        actor = ctx.control.actors[worker.actor_id]
        self.leases.end_lease(worker.lease_id)
        if ctx.head is not None:
            # The head decides restarts; tell it how the process ended once that is known.
            def report(w: WorkerRecord) -> None:
                ctx.head.send(p.ActorWorkerDied(actor.spec.actor_id, death_cause(w)))
                ctx.control.set_dead(actor, death_cause(w))

            if not worker.exit_detail and worker.pid:
                worker.exit_waiters.append(report)
                ctx.pool.kill(worker)
            else:
                report(worker)
            return
        if not may_restart(actor, ctx.control.jobs.get(actor.spec.job_id)):
            if not worker.exit_detail and worker.pid:
                # The connection closes before the fork server reaps the process; wait
                # for its exit (a few hundred ms at most) so the cause says how it died.
                worker.exit_waiters.append(lambda w: self.actor_dead(actor, death_cause(w)))
                ctx.pool.kill(worker)
                return
            self.actor_dead(actor, death_cause(worker))
            return
        ctx.control.set_restarting(actor)
        self.request_lease(actor)

    def restart_or_bury(self, actor: ActorRecord, cause: str) -> None:
        """Head: an actor's process is gone (on any node): restart it if allowed."""
        if not may_restart(actor, self.ctx.control.jobs.get(actor.spec.job_id)):
            self.actor_dead(actor, cause)
            return
        self.ctx.control.set_restarting(actor)
        self.request_lease(actor)

    def on_actor_placed(self, client: Client, msg: p.ActorPlaced) -> None:
        actor = self.ctx.control.actors.get(msg.actor_id)
        if actor is None or actor.state == "dead":
            return
        if msg.error is None:
            actor.tcp_address, actor.node_id = msg.tcp_address, client.worker_id
            fired = self.ctx.control.set_alive(actor, msg.address, msg.worker_id)
        else:
            actor.no_restart = True
            fired = self.ctx.control.set_dead(actor, msg.error)
        for waiter, info in fired:
            waiter(info)

    def start_failed(self, actor_id: ActorID, cause: str) -> None:
        """Back-edge from the worker service: no worker of the actor's job can start here,
        so it dies without restarts (each would fail the same way)."""
        actor = self.ctx.control.actors.get(actor_id)
        if actor is None or actor.state == "dead":
            return
        actor.no_restart = True
        if self.ctx.head is not None:  # the head keeps the directory and tells the callers
            self.ctx.head.send(p.ActorPlaced(actor_id, b"", "", "", cause))
            self.ctx.control.set_dead(actor, cause)
            return
        self.actor_dead(actor, cause)

    def on_actor_worker_died(self, client: Client, msg: p.ActorWorkerDied) -> None:
        actor = self.ctx.control.actors.get(msg.actor_id)
        if actor is not None and actor.state != "dead" and actor.node_id == client.worker_id:
            self.restart_or_bury(actor, msg.cause)

    def node_died(self, node_id: bytes) -> None:
        """Head: actors that lived on a dead node restart elsewhere or die."""
        for actor in list(self.ctx.control.actors.values()):
            if actor.node_id == node_id and actor.state != "dead":
                self.restart_or_bury(actor, f"its node {node_id.hex()[:12]} died")

    def on_unreferenced(self, ref_id: bytes) -> None:
        """Back-edge from the object table: the last handle to an actor is gone."""
        actor = self.ctx.control.actors.get(ref_id)
        if actor is not None and not actor.spec.detached and actor.state != "dead":
            self.kill_actor(actor, "every handle to it went out of scope", no_restart=True)

    def actor_dead(self, actor: ActorRecord, cause: str) -> None:
        if actor.state == "dead":
            return
        for waiter, info in self.ctx.control.set_dead(actor, cause):
            waiter(info)
        for oid in stored_inputs(actor.spec):
            self.ctx.objects.remove_ref(oid, actor.spec.actor_id)


def may_restart(actor: ActorRecord, job: JobRecord | None) -> bool:
    """The restart rule (decisions.actor_may_restart) applied to an actor's record."""
    return actor_may_restart(actor.spec.max_restarts, actor.num_restarts, actor.no_restart,
                             owner_alive=job is None or job.alive, detached=actor.spec.detached)


def death_cause(worker: WorkerRecord) -> str:
    """Why an actor whose worker exited is dead, for ActorDiedError."""
    if worker.oom is not None:
        used, total, threshold = worker.oom
        return (f"the memory monitor killed its worker process (pid {worker.pid}) because the node's "
                f"memory use ({used / (1 << 30):.1f} of {total / (1 << 30):.1f} GiB) was over the "
                f"threshold ({threshold:.0%}); run fewer tasks and actors at once, or request memory= "
                "so fewer are packed per node")
    return (f"its worker process (pid {worker.pid}) died"
            f"{' (' + worker.exit_detail + ')' if worker.exit_detail else ''}")


def stored_inputs(spec: p.ActorSpec) -> list[bytes]:
    """Stored objects the constructor reads; held for the actor's life (restarts re-read them).

    That includes the arguments payload itself when it was too big (or held refs or
    handles) to travel inline: the creating driver drops its ref right after creation.
    """
    oids = [value[0] for kind, value in spec.deps if kind == "stored"]
    if isinstance(spec.payload, tuple):
        oids.append(spec.payload[1][0])
    return oids

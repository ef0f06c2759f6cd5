"""Leases: the node's queue of resource requests, the grants waiting for a worker, and the
workers handed out to submitters (a node service).

    RequestLease -> choose_node: there -> Spillback(address)
                               here  -> LeaseQueue.add -> schedule():
                                        grantable -> idle worker of the pool -> LeaseGrant
                                                  -> none idle: a LeaseWant until one starts
    ReturnLease / requester gone / job ended / worker died -> release the allocation once

Workers come in pools keyed by (job, runtime_env key): a worker runs one job's code, in
one process env (working_dir, py_modules, pip); "" is the job's plain env.

Invariant (checked after every message with EMBER_DEBUG_LEDGER=1): every allocation the
ledger handed out is held by exactly one of a lease, a waiting grant or a reserved
bundle, so free + held == total.
"""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Any, Callable

from .._wire import protocol as p
from .._types import ActorID, JobID, PoolKey, WorkerID
from .context import Client, Handlers, NodeContext
from .decisions import Refuse, There, choose_node
from ..exceptions import EmberError
from .._resources import belongs_to_group, fits
from .._types import ResourceShape
from .scheduler import Allocation, LeaseQueue, PendingLease, ledger_discrepancy, normalize_shape
from .worker_pool import WorkerRecord

log = logging.getLogger("ember._node.manager")

#: How many of the oldest waiting requests a grant looks at for another submitter (fair leases).
_TURN_SCAN = 64


@dataclass(eq=False)
class Lease:
    """A worker handed to one holder (a process, or None for an actor's own lease) with
    the allocation it holds until the lease is returned or its worker dies."""

    lease_id: int
    holder: Client | None
    worker: WorkerRecord
    alloc: Allocation
    #: False once a task with no retries left ran on it (MarkLeaseNonRetriable): the
    #: memory monitor spares it while retriable work is running.
    retriable: bool = True
    #: Its holder was asked to give it back for a submitter that waits (LeaseWanted).
    wanted: bool = False


@dataclass(eq=False)
class LeaseWant:
    """A granted allocation waiting for a worker of the right pool to start."""
    pending: PendingLease
    alloc: Allocation


class LeaseService:
    """The lease queue and the leases of one node.

    Args:
        ctx: the shared node context.
        ensure_workers: start workers for a pool's waiting grants (the worker service).
        start_actor: hand a granted worker to an actor; False if the actor is gone.
        before_schedule: called first in every scheduling pass (the head places pending
            placement groups there, so their bundles exist before requests for them).
    """

    def __init__(self, ctx: NodeContext, ensure_workers: Callable[[PoolKey], None],
                 start_actor: Callable[[ActorID, WorkerRecord, Allocation], bool],
                 before_schedule: Callable[[], None], max_idle_workers: int) -> None:
        self.ctx = ctx
        self.queue = LeaseQueue(ctx.ledger)
        self.leases: dict[int, Lease] = {}
        self._lease_ids = itertools.count(1)
        #: Grants waiting for a worker of their pool, per pool, in grant order.
        self.wants: dict[PoolKey, deque[LeaseWant]] = defaultdict(deque)
        #: Idle workers per pool (a worker runs one job's code, in one process env).
        self.idle: dict[PoolKey, list[WorkerRecord]] = defaultdict(list)
        #: Process envs by key, as requests carried them (the worker service starts
        #: workers of a pool from here); and the env key of each queued request.
        self.envs: dict[str, dict[str, Any]] = {}
        self._request_env: dict[Any, str] = {}
        #: Queued or waiting request key -> who asked, and the rid to answer.
        self.requesters: dict[Any, tuple[Client, int]] = {}
        self.max_idle_workers = max_idle_workers
        #: Advanced per placement decision: SPREAD rotates over the nodes by it.
        self.spread_turn = 0
        self._ensure_workers = ensure_workers
        self._start_actor = start_actor
        self._before_schedule = before_schedule

    def handlers(self) -> Handlers:
        return {p.RequestLease: self.on_request_lease, p.ReturnLease: self.on_return_lease,
                p.SetBlocked: self.on_set_blocked,
                p.MarkLeaseNonRetriable: self.on_mark_lease_non_retriable}

    # --- requests ---------------------------------------------------------------------

    def on_request_lease(self, client: Client, msg: p.RequestLease) -> None:
        ctx = self.ctx
        req = msg.request
        shape = normalize_shape(req.shape)
        # A request sent here by another node's submitter stays, unless it can never fit
        # here (e.g. it came for its arguments' locality but asks for resources we lack).
        if client.kind != "submitter" or not ctx.ledger.fits_ever(shape):
            target = self.spill_target(shape, req.strategy)
            if isinstance(target, BaseException):
                ctx.reply(client, msg.rid, False, target)
                return
            if target is not None:
                ctx.reply(client, msg.rid, True, p.Spillback(target))
                return
        key = (client.worker_id, msg.rid)
        self.requesters[key] = (client, msg.rid)
        self._remember_env(key, req)
        self.queue.add(key, shape, normalize_shape(req.hold) if req.hold is not None else None,
                       req.strategy)
        self.schedule()
        if key in self.requesters:  # not granted: it waits for room
            self._ask_for_a_turn(client, shape)

    def _another_waits(self, holder: Client, shape: ResourceShape) -> bool:
        """A request of another process (or an actor to place) that ``shape`` would fit waits
        here (among the
        oldest few: a bound on the cost per grant)."""
        return any(pending.key[0] != holder.worker_id and fits(shape, pending.shape)
                   for pending in self.queue.oldest(_TURN_SCAN))

    def _ask_for_a_turn(self, asker: Client | None, shape: ResourceShape) -> None:
        """Fair leases: a submitter's request waits here, so one other submitter holding a
        lease that would fit it is asked to give it back after its turn. Without this, a
        submitter with queued work keeps its leases until its queue is empty, and others
        wait behind it however long that is."""
        for lease in self.leases.values():
            holder = lease.holder
            if (holder is None or lease.wanted or holder is asker
                    or lease.worker.actor_id is not None or not fits(lease.alloc.shape, shape)):
                continue
            lease.wanted = True
            holder.conn.send(p.LeaseWanted(lease.lease_id))
            return

    def spill_target(self, shape: ResourceShape, strategy: Any) -> str | EmberError | None:
        """Another node's TCP address when the request should run there; None: here; an
        error when no node ever can (the rule: decisions.choose_node)."""
        ctx = self.ctx
        self.spread_turn += 1
        choice = choose_node(shape, strategy, ctx.node_id, ctx.ledger.available, ctx.view.nodes,
                             totals_here=ctx.ledger.totals, spread_turn=self.spread_turn)
        if isinstance(choice, Refuse):
            return choice.error
        if isinstance(choice, There):
            ctx.view.reserve(choice.address, shape)
            return choice.address
        return None

    def add_actor_request(self, actor_id: ActorID, request: p.SchedulingRequest) -> None:
        self._remember_env(("actor", actor_id), request)
        self.queue.add(("actor", actor_id), normalize_shape(request.shape),
                       normalize_shape(request.hold) if request.hold is not None else None,
                       request.strategy)
        self.schedule()
        if any(pending.key == ("actor", actor_id) for pending in self.queue.oldest(_TURN_SCAN)):
            self._ask_for_a_turn(None, normalize_shape(request.shape))  # an actor waits to be placed

    def on_return_lease(self, client: Client, msg: p.ReturnLease) -> None:
        lease = self.leases.pop(msg.lease_id, None)
        if lease is None:
            return
        client.leases.discard(msg.lease_id)
        self.release(lease.alloc)
        if lease.wanted:  # its turn is over: its other requests wait behind the others'
            self.queue.demote(lambda key: key[0] == client.worker_id)
        worker = lease.worker
        if worker.state == "leased":
            worker.lease_id = None
            if msg.kill_worker or len(self.idle[pool_of(worker)]) >= self.max_idle_workers:
                worker.state = "exiting"
                self.ctx.pool.kill(worker)
            else:
                self.worker_ready(worker)
        self.schedule()

    def on_set_blocked(self, client: Client, msg: p.SetBlocked) -> None:
        record = self.ctx.pool.workers.get(client.worker_id)
        if record is None or record.lease_id not in self.leases:
            return
        alloc = self.leases[record.lease_id].alloc
        if msg.blocked:
            self.ctx.ledger.lend_cpus(alloc)
            self.schedule()
        else:
            self.ctx.ledger.reclaim_cpus(alloc)

    def on_mark_lease_non_retriable(self, client: Client, msg: p.MarkLeaseNonRetriable) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is not None:
            lease.retriable = False

    def release(self, alloc: Allocation) -> None:
        self.ctx.ledger.release(alloc)

    def end_lease(self, lease_id: int | None) -> Lease | None:
        """Take a lease out and give its resources back (a worker died or an actor ended)."""
        lease = self.leases.pop(lease_id, None) if lease_id is not None else None
        if lease is not None:
            if lease.holder is not None:
                lease.holder.leases.discard(lease.lease_id)
            self.release(lease.alloc)
        return lease

    # --- granting ---------------------------------------------------------------------

    def schedule(self) -> None:
        self._before_schedule()
        again = True
        while again:  # a grant whose requester is gone frees its resources for another pass
            again = False
            for pending, alloc in self.queue.grantable():
                pool = self._pool_of(pending.key)
                if pool is None:
                    self.release(alloc)
                    again = True
                    continue
                self._grant(LeaseWant(pending, alloc), pool)
        for pending in self.queue.infeasible():
            if not self.ctx.view.fits_anywhere(pending.shape):  # else it moves there (respill)
                self._warn_infeasible(pending)

    def _grant(self, want: LeaseWant, pool: PoolKey) -> None:
        idle = self.idle.get(pool)
        if idle:
            self.assign(want, idle.pop())
        else:
            self.wants[pool].append(want)
            self._ensure_workers(pool)

    def _pool_of(self, key: Any) -> PoolKey | None:
        """The pool a queued request's worker comes from; None if its asker is gone."""
        job_id = self._job_of(key)
        if job_id is None:
            return None
        if key[0] == "actor":
            return job_id, self.ctx.control.actors[key[1]].spec.request.env_key
        return job_id, self._request_env.get(key, "")

    def pop_requester(self, key: Any, *default: Any) -> Any:
        """Take a request's asker (and env) out of the tables: it was granted or is gone."""
        self._request_env.pop(key, None)
        return self.requesters.pop(key, *default)

    def _remember_env(self, key: Any, request: p.SchedulingRequest) -> None:
        if request.env_key:
            self.envs[request.env_key] = request.runtime_env or {}
            if key[0] != "actor":
                self._request_env[key] = request.env_key

    def _job_of(self, key: Any) -> JobID | None:
        if key[0] == "actor":
            actor = self.ctx.control.actors.get(key[1])
            return actor.spec.job_id if actor is not None and actor.state != "dead" else None
        requester = self.requesters.get(key)
        return requester[0].job_id if requester is not None and requester[0].worker_id in self.ctx.clients else None

    def _warn_infeasible(self, pending: PendingLease) -> None:
        ctx = self.ctx
        message = (f"a request for {pending.shape} cannot be scheduled: this cluster has "
                   f"{ctx.ledger.totals} in total. It waits until a node that fits joins; "
                   "lower the request or add such a node.")
        if pending.key[0] == "actor":
            actor = ctx.control.actors[pending.key[1]]
            owner = ctx.clients.get(actor.spec.owner_id)
            if owner is not None:
                owner.conn.send(p.LeaseInfeasible(0, f"actor {actor.spec.class_name}: {message}"))
            return
        client, rid = self.requesters[pending.key]
        client.conn.send(p.LeaseInfeasible(rid, message))

    def worker_ready(self, record: WorkerRecord) -> None:
        """An idle worker: the oldest grant of its pool gets it, else it waits."""
        if record.killed:
            return
        record.state = "idle"
        pool = pool_of(record)
        wants = self.wants.get(pool)
        if wants:
            want = wants.popleft()
            if not wants:
                del self.wants[pool]
            self.assign(want, record)
        else:
            self.idle[pool].append(record)

    def assign(self, want: LeaseWant, worker: WorkerRecord) -> None:
        ctx = self.ctx
        key = want.pending.key
        if key[0] == "actor":
            if not self._start_actor(key[1], worker, want.alloc):
                self.release(want.alloc)
                self.worker_ready(worker)
            return
        client, rid = self.pop_requester(key)
        if client.worker_id not in ctx.clients:
            self.release(want.alloc)
            self.worker_ready(worker)
            return
        lease = self.new_lease(client, worker, want.alloc)
        client.leases.add(lease.lease_id)
        worker.state, worker.lease_id = "leased", lease.lease_id
        # Processes on other machines (remote submitters, drivers connected over TCP) push
        # to the worker's TCP port; the node's own processes to its Unix socket.
        over_tcp = client.kind == "submitter" or (client.kind == "driver" and not client.conn.can_pass_fds)
        address = worker.tcp_address if over_tcp else worker.address
        gpu_ids = [ctx.gpu_ids[i] for i in want.alloc.gpu_ids]
        ctx.reply(client, rid, True, p.LeaseGrant(lease.lease_id, worker.worker_id, address, gpu_ids))
        if self._another_waits(client, want.alloc.shape):
            # Granted while another submitter waits (its request came while this one's
            # holder had more queued): this lease is a turn too.
            lease.wanted = True
            client.conn.send(p.LeaseWanted(lease.lease_id))

    def new_lease(self, holder: Client | None, worker: WorkerRecord, alloc: Allocation) -> Lease:
        lease = Lease(next(self._lease_ids), holder, worker, alloc)
        self.leases[lease.lease_id] = lease
        return lease

    # --- ends -------------------------------------------------------------------------

    def drop_requester(self, client: Client) -> None:
        """A process left: its leases end (their workers are killed: they may be mid-task
        for it), its queued requests go, and grants waiting for a worker are given back."""
        for lease_id in list(client.leases):
            lease = self.leases.pop(lease_id, None)
            if lease is not None:
                self.release(lease.alloc)
                self.ctx.pool.kill(lease.worker)
        for key in self.queue.remove_where(lambda key: key[0] == client.worker_id):
            self.pop_requester(key, None)
        self.drop_wants(requester=client.worker_id)

    def drop_wants(self, job_id: JobID | None = None, requester: WorkerID | None = None) -> None:
        """Give back grants still waiting for a worker to start: their job ended (``job_id``)
        or the process that asked for them left (``requester``).

        A grant already holds its allocation; dropping it without releasing that leaked
        the CPUs for good, and after a few short drivers nothing could run (issue 19).
        """
        for pool, wants in list(self.wants.items()):
            if job_id is not None and pool[0] != job_id:
                continue
            keep: deque[LeaseWant] = deque()
            for want in wants:
                if job_id is not None or want.pending.key[0] == requester:
                    self.release(want.alloc)
                    self.pop_requester(want.pending.key, None)
                else:
                    keep.append(want)
            if keep:
                self.wants[pool] = keep
            else:
                del self.wants[pool]

    def fail_wants(self, pool: PoolKey, error: EmberError) -> list[Any]:
        """Fail every grant of ``pool`` still waiting for a worker: task requesters get
        ``error`` as their reply; actor keys are returned for the caller to bury."""
        actor_keys = []
        for want in self.wants.pop(pool, ()):
            self.release(want.alloc)
            key = want.pending.key
            if key[0] == "actor":
                actor_keys.append(key)
                continue
            requester = self.pop_requester(key, None)
            if requester is not None:
                self.ctx.reply(requester[0], requester[1], False, error)
        return actor_keys

    def forget_idle(self, record: WorkerRecord) -> None:
        pool = pool_of(record)
        idle = self.idle.get(pool)
        if idle and record in idle:
            idle.remove(record)
            if not idle:
                del self.idle[pool]

    def leases_in_group(self, pg_hex: str) -> list[Lease]:
        return [lease for lease in self.leases.values()
                if any(belongs_to_group(name, pg_hex) for name in lease.alloc.shape)]

    # --- the invariant ----------------------------------------------------------------

    def held_allocations(self, bundles: list[Allocation]) -> list[Allocation]:
        """Every allocation the ledger has handed out and not yet taken back."""
        held = [lease.alloc for lease in self.leases.values()]
        held += [want.alloc for wants in self.wants.values() for want in wants]
        return held + bundles

    def check_ledger(self, after: str, bundles: list[Allocation]) -> None:
        """Debug mode (``EMBER_DEBUG_LEDGER=1``): free + held == total for every resource.
        A violation is logged loudly (tests read the log) rather than raised: raising
        would cut off the client whose message revealed it."""
        gap = ledger_discrepancy(self.ctx.ledger, self.held_allocations(bundles))
        if gap:
            log.error("ledger invariant violated after %s: free + held - total = %s", after, gap)


def pool_of(worker: WorkerRecord) -> PoolKey:
    """The pool a worker belongs to: its job and its process env's key."""
    return worker.job_id, worker.env_key

"""The node's placement groups: the head plans and reserves them two-phase; every node
reserves its share of bundles as synthetic resources (a node service).

    CreatePlacementGroup -> PENDING -> place_groups(): plan_bundles over free resources
        -> reserve here / ReserveBundles there -> all BundlesReserved ok -> CREATED
                                               -> any refused -> give back, PENDING
    RemovePlacementGroup / its job ended -> ReleaseBundles: actors in it die, tasks stop
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from .._wire import protocol as p
from .._types import PlacementGroupState, ResourceShape
from .control_store import ActorRecord
from ..exceptions import EmberError
from .context import Client, Handlers, NodeContext
from .leases import LeaseService
from .scheduler import Allocation, normalize_shape, plan_bundles
from .._resources import bundle_resources, without_group_resources

#: Removed groups kept for ``placement_group_table`` (each is a few hundred bytes).
_REMOVED_KEPT = 1000


@dataclass(eq=False)
class PlacementGroupRecord:
    """The head's record of one placement group: its bundles, state and where each is reserved."""

    pg_id: bytes
    bundles: list[ResourceShape]
    strategy: str
    name: str
    #: The job that created it: the group is removed when that job ends (Ray's default
    #: lifetime), so its bundles' resources are not held by nobody forever; None or
    #: ``detached``: it outlives that job.
    job_id: bytes | None = None
    detached: bool = False
    state: PlacementGroupState = "PENDING"
    #: node id -> the (index, bundle) pairs reserved there.
    placement: dict[bytes, list[tuple[int, ResourceShape]]] = field(default_factory=dict)
    #: Nodes whose answer to ReserveBundles is still awaited.
    awaiting: set[bytes] = field(default_factory=set)
    failed: bool = False
    #: Called once the group is placed (True) or removed (False).
    waiters: list[Any] = field(default_factory=list)

    def table(self) -> dict[str, Any]:
        return {"placement_group_id": self.pg_id.hex(), "name": self.name, "strategy": self.strategy,
                "state": self.state, "bundles": {i: dict(b) for i, b in enumerate(self.bundles)}}


class PlacementService:
    """Args:
        ctx: the shared node context.
        leases: leases running inside a removed group are stopped through it.
        kill_actor: back-edge: an actor inside a removed group dies (no restart).
        schedule: run a scheduling pass (a group placed or removed changes what fits).
    """

    def __init__(self, ctx: NodeContext, leases: LeaseService,
                 kill_actor: Callable[[ActorRecord, str, bool], None],
                 schedule: Callable[[], None]) -> None:
        self.ctx = ctx
        self.leases = leases
        self._kill_actor = kill_actor
        self._schedule = schedule
        self.groups: dict[bytes, PlacementGroupRecord] = {}
        #: Groups waiting to be placed, oldest first: a scheduling pass looks at these only
        #: (it scanned every group ever made, so create/remove loops slowed down as they ran).
        self._pending: dict[bytes, PlacementGroupRecord] = {}
        #: Removed groups stay in the table (Ray shows them as REMOVED), the newest few.
        self._removed: deque[bytes] = deque()
        #: Bundles reserved on this node: pg id -> ((index, bundle) pairs, allocations).
        self.bundles: dict[bytes, tuple[list[tuple[int, ResourceShape]], list[Allocation]]] = {}

    def handlers(self) -> Handlers:
        return {p.CreatePlacementGroup: self.on_create_placement_group,
                p.RemovePlacementGroup: self.on_remove_placement_group,
                p.PlacementGroupTable: self.on_placement_group_table,
                p.BundlesReserved: self.on_bundles_reserved,
                p.WaitPlacementGroup: self.on_wait_placement_group}

    def bundle_allocations(self) -> list[Allocation]:
        return [alloc for _indexed, allocs in self.bundles.values() for alloc in allocs]

    # --- the head: planning -----------------------------------------------------------

    def on_create_placement_group(self, client: Client, msg: p.CreatePlacementGroup) -> None:
        ctx = self.ctx
        bundles = [normalize_shape(b) for b in msg.bundles]
        record = PlacementGroupRecord(msg.pg_id, bundles, msg.strategy, msg.name,
                                      msg.job_id or client.job_id, msg.detached)
        self.groups[msg.pg_id] = self._pending[msg.pg_id] = record
        ctx.persist.mark("groups", msg.pg_id)
        ctx.reply(client, msg.rid, True)
        totals = [(n.node_id, n.totals) for n in ctx.view.alive()] or [(ctx.node_id, ctx.ledger.totals)]
        if plan_bundles(totals, bundles, msg.strategy) is None:
            client.conn.send(p.LeaseInfeasible(0, (
                f"placement group {msg.name or msg.pg_id.hex()} ({msg.strategy}, bundles {bundles}) "
                f"cannot be placed: the cluster's nodes have "
                f"{[without_group_resources(t) for _, t in totals]}. It "
                "stays pending until nodes that fit join.")))
        self._schedule()

    def restored(self) -> None:
        """Head: groups a restarted head read from storage that were not placed wait again."""
        for pg in self.groups.values():
            if pg.state == "PENDING":
                self._pending[pg.pg_id] = pg

    def place_groups(self) -> None:
        """Head: plan pending groups over the nodes' free resources and reserve them
        (two-phase: every node reserves its share, or every share is given back)."""
        ctx = self.ctx
        for pg in list(self._pending.values()):
            nodes = [(ctx.node_id, dict(ctx.ledger.available))] + [
                (n.node_id, n.available) for n in ctx.view.alive() if n.node_id != ctx.node_id
                and ctx.clients.get(n.node_id) is not None]
            plan = plan_bundles(nodes, pg.bundles, pg.strategy)
            if plan is None:
                continue
            del self._pending[pg.pg_id]
            pg.state, pg.placement, pg.awaiting, pg.failed = "RESERVING", plan, set(), False
            for node_id, indexed in plan.items():
                if node_id == ctx.node_id:
                    pg.failed |= not self.reserve_bundles(pg.pg_id, indexed)
                else:
                    pg.awaiting.add(node_id)
                    ctx.clients[node_id].conn.send(p.ReserveBundles(pg.pg_id, indexed))
            self._settle_group(pg)

    def _settle_group(self, pg: PlacementGroupRecord) -> None:
        if pg.awaiting:
            return
        self.ctx.persist.mark("groups", pg.pg_id)
        if pg.failed:  # give every share back and try again later
            self._release_group(pg)
            pg.state = "PENDING"
            self._pending[pg.pg_id] = pg
            return
        pg.state = "CREATED"
        waiters, pg.waiters = pg.waiters, []
        for waiter in waiters:
            waiter(True)
        for node_id, indexed in pg.placement.items():
            node = self.ctx.view.nodes.get(node_id)
            if node is not None and node_id != self.ctx.node_id:  # visible before the next heartbeat
                for name, amount in bundle_resources(pg.pg_id.hex(), indexed).items():
                    node.totals[name] = node.totals.get(name, 0.0) + amount
                    node.available[name] = node.available.get(name, 0.0) + amount

    def on_bundles_reserved(self, client: Client, msg: p.BundlesReserved) -> None:
        pg = self.groups.get(msg.pg_id)
        if pg is None or client.worker_id not in pg.awaiting:
            return
        pg.awaiting.discard(client.worker_id)
        if not msg.ok:
            pg.failed = True
            del pg.placement[client.worker_id]
        if pg.state == "REMOVED":
            if msg.ok:
                client.conn.send(p.ReleaseBundles(pg.pg_id))
            return
        self._settle_group(pg)
        self._schedule()

    def _release_group(self, pg: PlacementGroupRecord) -> None:
        ctx = self.ctx
        for node_id in pg.placement:
            if node_id == ctx.node_id:
                self.release_bundles(pg.pg_id)
            elif node_id not in pg.awaiting and node_id in ctx.clients:
                ctx.clients[node_id].conn.send(p.ReleaseBundles(pg.pg_id))
        pg.placement = {n: b for n, b in pg.placement.items() if n in pg.awaiting}

    # --- every node: its share ----------------------------------------------------------

    def reserve_bundles(self, pg_id: bytes, indexed: list[tuple[int, ResourceShape]]) -> bool:
        """Reserve this node's share of a group (all of it or nothing)."""
        allocs = self.ctx.ledger.reserve_bundles([b for _, b in indexed], "PACK")
        if allocs is None:
            return False
        self.bundles[pg_id] = (indexed, allocs)
        self.ctx.ledger.add_resources(bundle_resources(pg_id.hex(), indexed))
        self.ctx.ledger.bind_group_gpus(pg_id.hex(), [(i, a) for (i, _), a in zip(indexed, allocs)])
        return True

    def release_bundles(self, pg_id: bytes) -> None:
        """Give this node's share back; tasks and actors running in it are stopped."""
        ctx = self.ctx
        share = self.bundles.pop(pg_id, None)
        if share is None:
            return
        suffix = pg_id.hex()
        for lease in self.leases.leases_in_group(suffix):
            actor = ctx.control.actors.get(lease.worker.actor_id) if lease.worker.actor_id else None
            if actor is not None:
                self._kill_actor(actor, "its placement group was removed", True)
            else:
                ctx.pool.kill(lease.worker)
        indexed, allocs = share
        ctx.ledger.unbind_group_gpus(suffix)
        for alloc in allocs:
            ctx.ledger.release(alloc)
        ctx.ledger.remove_resources(bundle_resources(suffix, indexed))

    # --- removal and queries ------------------------------------------------------------

    def on_remove_placement_group(self, client: Client, msg: p.RemovePlacementGroup) -> None:
        pg = self.groups.get(msg.pg_id)
        if pg is None or pg.state == "REMOVED":
            return
        self.remove_group(pg)

    def remove_group(self, pg: PlacementGroupRecord) -> None:
        """Give every node's share back and fail the group's waiters."""
        self._release_group(pg)
        pg.state = "REMOVED"
        self._pending.pop(pg.pg_id, None)
        self._removed.append(pg.pg_id)
        while len(self._removed) > _REMOVED_KEPT:
            self.groups.pop(self._removed.popleft(), None)
        self.ctx.persist.mark("groups", pg.pg_id)
        waiters, pg.waiters = pg.waiters, []
        for waiter in waiters:
            waiter(False)
        self._schedule()

    def remove_job_groups(self, job_id: bytes) -> None:
        """Head: a job ended; its groups go with it, except detached ones (Ray's rule)."""
        for pg in list(self.groups.values()):
            if pg.job_id == job_id and not pg.detached and pg.state != "REMOVED":
                self.remove_group(pg)

    def on_wait_placement_group(self, client: Client, msg: p.WaitPlacementGroup) -> None:
        ctx = self.ctx

        def answer(placed: bool) -> None:
            if placed:
                ctx.reply(client, msg.rid, True, True)
            else:
                ctx.reply(client, msg.rid, False, EmberError(
                    f"placement group {msg.pg_id.hex()} was removed before it was placed"))

        pg = self.groups.get(msg.pg_id)
        if pg is None or pg.state == "REMOVED":
            answer(False)
        elif pg.state == "CREATED":
            answer(True)
        else:
            pg.waiters.append(answer)

    def on_placement_group_table(self, client: Client, msg: p.PlacementGroupTable) -> None:
        if msg.pg_id is not None:
            pg = self.groups.get(msg.pg_id)
            self.ctx.reply(client, msg.rid, True, pg.table() if pg is not None else None)
        else:
            self.ctx.reply(client, msg.rid, True,
                           {pg.pg_id.hex(): pg.table() for pg in self.groups.values()})

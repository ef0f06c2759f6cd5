"""The node manager's placement groups: the head plans and reserves them two-phase; every
node reserves its share of bundles as synthetic resources (a mixin of NodeManager)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import protocol as p
from ._types import PlacementGroupState, ResourceShape
from .exceptions import EmberError
from .resources import belongs_to_group, bundle_resources, without_group_resources
from .scheduler import normalize_shape, plan_bundles

if TYPE_CHECKING:
    from .node_manager import Client


@dataclass
class PlacementGroupRecord:
    """The head's record of one placement group: its bundles, state and where each is reserved."""

    pg_id: bytes
    bundles: list[ResourceShape]
    strategy: str
    name: str
    #: The job that created it; None or ``detached``: it outlives that job.
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


class PlacementMixin:
    # --- placement groups ------------------------------------------------------------

    def _on_create_placement_group(self, client: Client, msg: p.CreatePlacementGroup) -> None:
        bundles = [normalize_shape(b) for b in msg.bundles]
        self.placement_groups[msg.pg_id] = PlacementGroupRecord(msg.pg_id, bundles, msg.strategy, msg.name,
                                                                msg.job_id, msg.detached)
        self._reply(client, msg.rid, True)
        totals = [(n.node_id, n.totals) for n in self.view.alive()] or [(self.node_id, self.ledger.totals)]
        if plan_bundles(totals, bundles, msg.strategy) is None:
            client.conn.send(p.LeaseInfeasible(0, (
                f"placement group {msg.name or msg.pg_id.hex()} ({msg.strategy}, bundles {bundles}) "
                f"cannot be placed: the cluster's nodes have "
                f"{[without_group_resources(t) for _, t in totals]}. It "
                "stays pending until nodes that fit join.")))
        self._schedule()

    def _place_groups(self) -> None:
        """Head: plan pending groups over the nodes' free resources and reserve them
        (two-phase: every node reserves its share, or every share is given back)."""
        for pg in self.placement_groups.values():
            if pg.state != "PENDING":
                continue
            nodes = [(self.node_id, dict(self.ledger.available))] + [
                (n.node_id, n.available) for n in self.view.alive() if n.node_id != self.node_id
                and self.clients.get(n.node_id) is not None]
            plan = plan_bundles(nodes, pg.bundles, pg.strategy)
            if plan is None:
                continue
            pg.state, pg.placement, pg.awaiting, pg.failed = "RESERVING", plan, set(), False
            for node_id, indexed in plan.items():
                if node_id == self.node_id:
                    pg.failed |= not self._reserve_bundles(pg.pg_id, indexed)
                else:
                    pg.awaiting.add(node_id)
                    self.clients[node_id].conn.send(p.ReserveBundles(pg.pg_id, indexed))
            self._settle_group(pg)

    def _settle_group(self, pg: PlacementGroupRecord) -> None:
        if pg.awaiting:
            return
        if pg.failed:  # give every share back and try again later
            self._release_group(pg)
            pg.state = "PENDING"
            return
        pg.state = "CREATED"
        waiters, pg.waiters = pg.waiters, []
        for waiter in waiters:
            waiter(True)
        for node_id, indexed in pg.placement.items():
            node = self.view.nodes.get(node_id)
            if node is not None and node_id != self.node_id:  # visible before the next heartbeat
                for name, amount in bundle_resources(pg.pg_id.hex(), indexed).items():
                    node.totals[name] = node.totals.get(name, 0.0) + amount
                    node.available[name] = node.available.get(name, 0.0) + amount

    def _on_bundles_reserved(self, client: Client, msg: p.BundlesReserved) -> None:
        pg = self.placement_groups.get(msg.pg_id)
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
        for node_id in pg.placement:
            if node_id == self.node_id:
                self._release_bundles(pg.pg_id)
            elif node_id not in pg.awaiting and node_id in self.clients:
                self.clients[node_id].conn.send(p.ReleaseBundles(pg.pg_id))
        pg.placement = {n: b for n, b in pg.placement.items() if n in pg.awaiting}

    def _reserve_bundles(self, pg_id: bytes, indexed: list[tuple[int, ResourceShape]]) -> bool:
        """Reserve this node's share of a group (all of it or nothing)."""
        allocs = self.ledger.reserve_bundles([b for _, b in indexed], "PACK")
        if allocs is None:
            return False
        self._bundles[pg_id] = (indexed, allocs)
        self.ledger.add_resources(bundle_resources(pg_id.hex(), indexed))
        return True

    def _release_bundles(self, pg_id: bytes) -> None:
        """Give this node's share back; tasks and actors running in it are stopped."""
        share = self._bundles.pop(pg_id, None)
        if share is None:
            return
        suffix = pg_id.hex()
        for lease in list(self.leases.values()):
            if any(belongs_to_group(name, suffix) for name in lease.alloc.shape):
                actor = self.control.actors.get(lease.worker.actor_id) if lease.worker.actor_id else None
                if actor is not None:
                    self._kill_actor(actor, "its placement group was removed", no_restart=True)
                else:
                    self.pool.kill(lease.worker)
        indexed, allocs = share
        for alloc in allocs:
            self.ledger.release(alloc)
        self.ledger.remove_resources(bundle_resources(suffix, indexed))

    def _on_remove_placement_group(self, client: Client, msg: p.RemovePlacementGroup) -> None:
        pg = self.placement_groups.get(msg.pg_id)
        if pg is not None:
            self._remove_group(pg)
        self._schedule()

    def _remove_job_groups(self, job_id: bytes) -> None:
        """Head: a job ended; its groups go with it, except detached ones (Ray's rule)."""
        for pg in list(self.placement_groups.values()):
            if pg.job_id == job_id and not pg.detached:
                self._remove_group(pg)

    def _remove_group(self, pg: PlacementGroupRecord) -> None:
        if pg.state == "REMOVED":
            return
        self._release_group(pg)
        pg.state = "REMOVED"
        waiters, pg.waiters = pg.waiters, []
        for waiter in waiters:
            waiter(False)

    def _on_wait_placement_group(self, client: Client, msg: p.WaitPlacementGroup) -> None:
        def answer(placed: bool) -> None:
            if placed:
                self._reply(client, msg.rid, True, True)
            else:
                self._reply(client, msg.rid, False, EmberError(
                    f"placement group {msg.pg_id.hex()} was removed before it was placed"))

        pg = self.placement_groups.get(msg.pg_id)
        if pg is None or pg.state == "REMOVED":
            answer(False)
        elif pg.state == "CREATED":
            answer(True)
        else:
            pg.waiters.append(answer)

    def _on_placement_group_table(self, client: Client, msg: p.PlacementGroupTable) -> None:
        if msg.pg_id is not None:
            pg = self.placement_groups.get(msg.pg_id)
            self._reply(client, msg.rid, True, pg.table() if pg is not None else None)
        else:
            self._reply(client, msg.rid, True,
                        {pg.pg_id.hex(): pg.table() for pg in self.placement_groups.values()})

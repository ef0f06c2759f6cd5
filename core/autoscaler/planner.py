"""The autoscaler's decision, as a plain function: demand and nodes in, launches and
terminations out (no I/O, no clock, no provider), tested with ordinary calls.

Bin-packing, first fit decreasing, in the order Ray's autoscaler uses:

1. every node type gets its ``min_workers``;
2. ``request_resources`` bundles are packed into the cluster's *total* resources (a
   standing request for capacity, whether or not anything runs), new nodes for the rest;
3. pending demand (queued task and actor shapes, pending placement-group bundles) is
   packed into the *free* resources of running nodes, the full resources of nodes still
   launching and of the nodes chosen in 1-2; for the rest, node types are chosen one
   node at a time, the type that holds the most of what is left winning;
4. nodes idle past the timeout go, unless a minimum or a request still needs them.

A shape that no node type can ever hold is *infeasible* (reported, never launched for);
one that fits a type whose ``max_workers`` is reached is *unmet* (reported; it runs
when room frees up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal, Sequence

from .._types import ResourceShape
from .._resources import fits

NodeStatus = Literal["launching", "running"]

#: Resources a node reports that no request competes for in bin-packing.
_IGNORED = ("memory", "object_store_memory")


@dataclass(frozen=True)
class NodeType:
    """A kind of worker node: what one offers and how many may exist."""

    name: str
    resources: ResourceShape
    min_workers: int = 0
    max_workers: int = 1


@dataclass
class NodeState:
    """One node as the planner sees it."""

    node_id: str
    #: None for nodes the autoscaler did not launch (the head, nodes joined by hand):
    #: their room is used, but they are never terminated.
    node_type: str | None
    totals: ResourceShape
    #: What is free now; a launching node is planned as fully free.
    available: ResourceShape
    status: NodeStatus = "running"
    #: Seconds since every resource became free with nothing queued (0: busy).
    idle_s: float = 0.0


@dataclass(frozen=True)
class PendingGroup:
    """A placement group waiting for room: its strategy and bundles."""

    strategy: str
    bundles: tuple[ResourceShape, ...]


@dataclass
class Plan:
    """What to do now."""

    launch: dict[str, int] = field(default_factory=dict)
    terminate: list[str] = field(default_factory=list)
    #: Shapes no node type can ever hold: no launch helps; the user must change them.
    infeasible: list[ResourceShape] = field(default_factory=list)
    #: Shapes a node type could hold, but max_workers is reached.
    unmet: list[ResourceShape] = field(default_factory=list)


@dataclass
class _Bin:
    """Room left on one node (existing or planned) while packing."""

    key: str
    room: ResourceShape
    used: bool = False
    groups: set[int] = field(default_factory=set)

    def take(self, item: _Item) -> bool:
        if item.group is not None and item.group in self.groups:
            return False  # STRICT_SPREAD: one bundle of a group per node
        if not fits(self.room, item.shape):
            return False
        for name, amount in item.shape.items():
            self.room[name] = self.room.get(name, 0.0) - amount
        self.used = True
        if item.group is not None:
            self.groups.add(item.group)
        return True


@dataclass(frozen=True)
class _Item:
    """One resource shape still to be placed by the bin-packing plan."""

    shape: ResourceShape
    #: Items of one STRICT_SPREAD group must land on different nodes.
    group: int | None = None


def plan(demand: Sequence[ResourceShape], nodes: Sequence[NodeState], node_types: Sequence[NodeType], *,
         max_workers: int, idle_timeout_s: float, placement_groups: Sequence[PendingGroup] = (),
         requested: Sequence[ResourceShape] = ()) -> Plan:
    """Decide which node types to launch and which idle nodes to terminate.

    Args:
        demand: shapes of queued lease requests (tasks and actors), one per request.
        nodes: every node of the cluster and every node still launching.
        node_types: the types the autoscaler may launch.
        max_workers: cap on launched nodes of all types together.
        idle_timeout_s: a launched node idle this long may be terminated.
        placement_groups: groups waiting for room (their bundles count as demand).
        requested: ``request_resources`` bundles the cluster should be able to hold.

    Returns:
        A Plan; launching ``plan.launch[type]`` nodes of each type and terminating
        ``plan.terminate`` carries it out.

    Example:
        >>> plan([{"CPU": 1}] * 4, [], [NodeType("w", {"CPU": 2}, 0, 5)], max_workers=5,
        ...      idle_timeout_s=60).launch
        {'w': 2}
    """
    types = {t.name: t for t in node_types}
    counts = {name: 0 for name in types}
    for node in nodes:
        if node.node_type in counts:
            counts[node.node_type] += 1
    out = Plan()
    new_bins: list[_Bin] = []

    def launch(type_name: str) -> _Bin | None:
        if counts[type_name] >= types[type_name].max_workers or sum(counts.values()) >= max_workers:
            return None
        counts[type_name] += 1
        out.launch[type_name] = out.launch.get(type_name, 0) + 1
        new = _Bin(f"new-{type_name}-{len(new_bins)}", _usable(types[type_name].resources))
        new_bins.append(new)
        return new

    for node_type in node_types:  # 1. minimums
        while counts[node_type.name] < node_type.min_workers and launch(node_type.name) is not None:
            pass

    # 2. standing requests, against total capacity
    total_bins = [_Bin(n.node_id, _usable(n.totals)) for n in nodes] + \
                 [_Bin(b.key, dict(b.room)) for b in new_bins]
    left = _pack(_items(requested, ()), total_bins)
    requested_keep = {b.key for b in total_bins if b.used}
    launched_for_requests = len(new_bins)
    _launch_for(left, types, launch, out)

    # 3. pending demand, against free capacity
    free_bins = [_Bin(n.node_id, _usable(n.totals if n.status == "launching" else n.available))
                 for n in nodes]
    free_bins += [_Bin(b.key, dict(b.room)) for b in new_bins[:launched_for_requests]] + \
                 new_bins[launched_for_requests:]
    left = _pack(_items(demand, placement_groups), free_bins)
    demand_keep = {b.key for b in free_bins if b.used}
    _launch_for(left, types, launch, out)

    # 4. idle nodes past the timeout, longest idle first, never below a minimum
    for node in sorted(nodes, key=lambda n: -n.idle_s):
        if node.node_type not in types or node.status != "running" or node.idle_s < idle_timeout_s \
                or node.node_id in requested_keep or node.node_id in demand_keep:
            continue
        if counts[node.node_type] - 1 < types[node.node_type].min_workers:
            continue
        counts[node.node_type] -= 1
        out.terminate.append(node.node_id)
    return out


def _usable(shape: ResourceShape) -> ResourceShape:
    return {k: v for k, v in shape.items() if k not in _IGNORED and not k.startswith("node:")}


def _items(shapes: Iterable[ResourceShape], groups: Sequence[PendingGroup]) -> list[_Item]:
    items = [_Item(_usable(s)) for s in shapes]
    for i, group in enumerate(groups):
        bundles = [_usable(b) for b in group.bundles]
        if group.strategy == "STRICT_PACK":
            merged: ResourceShape = {}
            for bundle in bundles:
                for k, v in bundle.items():
                    merged[k] = merged.get(k, 0.0) + v
            items.append(_Item(merged))
        else:  # PACK and SPREAD are best effort: bundles may share a node or not
            items += [_Item(b, i if group.strategy == "STRICT_SPREAD" else None) for b in bundles]
    # First fit decreasing: the largest (GPU first, then CPU) shapes claim room first.
    return sorted(items, key=lambda it: (-it.shape.get("GPU", 0.0), -it.shape.get("CPU", 0.0),
                                         -sum(it.shape.values())))


def _pack(items: list[_Item], bins: list[_Bin]) -> list[_Item]:
    """Place items first-fit; returns those that found no room."""
    return [item for item in items if not any(b.take(item) for b in bins)]


def _launch_for(items: list[_Item], types: dict[str, NodeType], launch: Callable[[str], _Bin | None],
                out: Plan) -> None:
    """New nodes for ``items``, one at a time: the type that holds most of what is left."""
    while items:
        candidates = []
        for name, node_type in types.items():
            probe = _Bin("probe", _usable(node_type.resources))
            held = len(items) - len(_pack(items, [probe]))
            if held:
                candidates.append((held, -sum(node_type.resources.values()), name))
        if not candidates:
            out.infeasible += [it.shape for it in items]
            return
        placed = False
        for _held, _size, name in sorted(candidates, reverse=True):
            new = launch(name)
            if new is not None:
                items = _pack(items, [new])
                placed = True
                break
        if not placed:  # every type that fits is at its maximum
            for item in items:
                fit_any = any(fits(_usable(t.resources), item.shape) for t in types.values())
                (out.unmet if fit_any else out.infeasible).append(item.shape)
            return

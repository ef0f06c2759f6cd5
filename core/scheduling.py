"""Scheduling strategies (Ray's names) and how an options dict becomes a request."""

from __future__ import annotations

from typing import Any

from . import protocol as p
from .options import InvalidOptionError
from .resources import in_bundle


class NodeAffinitySchedulingStrategy:
    """Run on one node (``soft=True``: prefer it, fall back elsewhere)."""

    def __init__(self, node_id: str, soft: bool) -> None:
        self.node_id = node_id
        self.soft = soft

    def __repr__(self) -> str:
        return f"NodeAffinity({self.node_id}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundle (``-1``: any bundle of the group)."""

    def __init__(self, placement_group: Any, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return f"PG({self.placement_group.id.hex()}, {self.placement_group_bundle_index})"


def scheduling_request(options: dict[str, Any], shape: dict[str, float],
                       hold: dict[str, float] | None = None) -> p.SchedulingRequest:
    """Translate options into what the node manager schedules.

    Placement-group strategies rewrite the shape onto the group's reserved bundle
    resources (``CPU_group_<i>_<pg>``), so the ledger needs no special case for them.

    Raises:
        InvalidOptionError: an unknown strategy.
    """
    strategy = options.get("scheduling_strategy")
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        index = strategy.placement_group_bundle_index
        shape = in_bundle(shape, pg.id.hex(), index)
        hold = in_bundle(hold, pg.id.hex(), index) if hold is not None else None
        return p.SchedulingRequest(shape, None, hold)
    if strategy in (None, "DEFAULT"):
        return p.SchedulingRequest(shape, None, hold)
    if strategy == "SPREAD":
        return p.SchedulingRequest(shape, ("SPREAD",), hold)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return p.SchedulingRequest(shape, ("NODE_AFFINITY", strategy.node_id, bool(strategy.soft)), hold)
    raise InvalidOptionError(f"unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD', "
                             "NodeAffinitySchedulingStrategy or PlacementGroupSchedulingStrategy")

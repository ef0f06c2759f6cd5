"""Scheduling strategies (Ray's names) and how an options dict becomes a request."""

from __future__ import annotations

from typing import Any, Protocol

from .._wire import protocol as p
from ..exceptions import InvalidOptionError
from ..runtime_env import process_env, process_env_key, validate_runtime_env
from .._resources import in_bundle


class NodeAffinitySchedulingStrategy:
    """Run on one node (``soft=True``: prefer it, fall back elsewhere)."""

    def __init__(self, node_id: str, soft: bool) -> None:
        self.node_id = node_id
        self.soft = soft

    def __repr__(self) -> str:
        return f"NodeAffinity({self.node_id}, soft={self.soft})"


class GroupHandle(Protocol):
    """What a strategy reads of a placement group (ember.util.PlacementGroup)."""

    id: bytes


class PlacementGroupSchedulingStrategy:
    """Run inside a placement group's bundle (``-1``: any bundle of the group).

    With ``placement_group_capture_child_tasks=True`` the tasks and actors it starts
    without a strategy of their own run in the group too.
    """

    def __init__(self, placement_group: GroupHandle | None, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        pg = self.placement_group.id.hex() if self.placement_group is not None else None
        return f"PG({pg}, {self.placement_group_bundle_index})"


def scheduling_request(options: dict[str, Any], shape: dict[str, float],
                       hold: dict[str, float] | None = None,
                       inherited_group: tuple[str, bool] | None = None) -> p.SchedulingRequest:
    """Translate options into what the node manager schedules.

    Placement-group strategies rewrite the shape onto the group's reserved bundle
    resources (``CPU_group_<i>_<pg>``), so the ledger needs no special case for them.
    ``inherited_group`` is the caller's group when it captures child tasks: a call that
    sets no strategy runs in it too (Ray's ``placement_group_capture_child_tasks``);
    an explicit "DEFAULT" opts out.

    Raises:
        InvalidOptionError: an unknown strategy.
    """
    strategy = _strategy_of(options)
    if strategy is None and inherited_group is not None:
        pg_hex, capture = inherited_group
        return _in_group(shape, hold, pg_hex, -1, capture)
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        pg = strategy.placement_group
        if pg is None:  # Ray's way of saying "no group"
            return p.SchedulingRequest(shape, None, hold)
        return _in_group(shape, hold, pg.id.hex(), strategy.placement_group_bundle_index,
                         bool(strategy.placement_group_capture_child_tasks))
    if strategy in (None, "DEFAULT"):
        return p.SchedulingRequest(shape, None, hold)
    if strategy == "SPREAD":
        return p.SchedulingRequest(shape, ("SPREAD",), hold)
    if isinstance(strategy, NodeAffinitySchedulingStrategy):
        return p.SchedulingRequest(shape, ("NODE_AFFINITY", strategy.node_id, bool(strategy.soft)), hold)
    raise InvalidOptionError(f"unknown scheduling_strategy {strategy!r}: use 'DEFAULT', 'SPREAD', "
                             "NodeAffinitySchedulingStrategy or PlacementGroupSchedulingStrategy")


def _strategy_of(options: dict[str, Any]) -> Any:
    """The scheduling strategy the options ask for, folding in Ray's older placement-group
    options (``placement_group=``, ``placement_group_bundle_index=``,
    ``placement_group_capture_child_tasks=``).

    Raises:
        InvalidOptionError: a group given both ways, or capture/bundle index without a group.
    """
    strategy = options.get("scheduling_strategy")
    group = options.get("placement_group")
    index = options.get("placement_group_bundle_index")
    capture = options.get("placement_group_capture_child_tasks")
    if group == "default":  # Ray's old spelling of "no group"
        group = None
    if group is None:
        if isinstance(strategy, PlacementGroupSchedulingStrategy):
            if index not in (None, -1):
                raise InvalidOptionError("placement_group_bundle_index= and a PlacementGroupSchedulingStrategy "
                                         "were both given; set the index in the strategy: "
                                         "PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)")
            if capture is not None:  # .options(placement_group_capture_child_tasks=...) on top
                return PlacementGroupSchedulingStrategy(strategy.placement_group,
                                                        strategy.placement_group_bundle_index, capture)
            return strategy
        if capture or index not in (None, -1):
            name = "placement_group_capture_child_tasks" if capture else "placement_group_bundle_index"
            raise InvalidOptionError(f"{name}= needs a placement group: pass scheduling_strategy="
                                     "PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True) "
                                     "(or placement_group=pg)")
        return strategy
    if strategy is not None:
        raise InvalidOptionError("both placement_group= and scheduling_strategy= were given; use only "
                                 "scheduling_strategy=PlacementGroupSchedulingStrategy(pg, ...)")
    if not isinstance(getattr(group, "id", None), bytes):
        raise InvalidOptionError(f"placement_group= must be a PlacementGroup (from "
                                 f"ember.util.placement_group(...)), got {group!r}")
    return PlacementGroupSchedulingStrategy(group, -1 if index is None else index, capture)


def _in_group(shape: dict[str, float], hold: dict[str, float] | None, pg_hex: str, index: int | None,
              capture: bool) -> p.SchedulingRequest:
    return p.SchedulingRequest(in_bundle(shape, pg_hex, index),
                               None, in_bundle(hold, pg_hex, index) if hold is not None else None,
                               placement_group=(pg_hex, capture))


def with_process_env(request: p.SchedulingRequest, runtime_env: Any, default: dict[str, Any] | None,
                     where: str) -> p.SchedulingRequest:
    """Name the worker pool a request needs: its runtime_env's working_dir, py_modules and
    pip, each inherited from ``default`` (the job's, or the calling worker's) unless given.

    Raises:
        InvalidOptionError: a malformed runtime_env.
    """
    own = process_env(validate_runtime_env(runtime_env, where)) if runtime_env is not None else None
    env = {**(default or {}), **(own or {})} or None
    request.runtime_env, request.env_key = env, process_env_key(env)
    return request


def scheduling_key(request: p.SchedulingRequest) -> tuple:
    """What tasks that may share a lease have in common: shape, strategy, worker pool."""
    return tuple(sorted(request.shape.items())), repr(request.strategy), request.env_key

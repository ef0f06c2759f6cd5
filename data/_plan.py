"""The logical plan of a Dataset and the fusion of consecutive map-like steps.

Every Dataset method adds one node to an immutable DAG of :class:`LogicalOp` s; nothing
runs until the dataset is consumed. Before execution, :func:`fuse` merges chains of
map-like nodes (a read, ``map``, ``map_batches``, ``filter``, column selection, a write)
into one :class:`MapOp` whose stages run back to back inside one task or actor, so a
block crosses the object store once per fused chain instead of once per step.

Two map nodes fuse unless that would change where the user's code runs:

- two actor-pool nodes never fuse (each owns its actors and their state);
- a node with explicitly requested resources (``num_cpus``, ``num_gpus``, ...) fuses
  only with a node that requested nothing or exactly the same.

A node that requested nothing takes on its partner's resources and compute strategy, so
``read_parquet -> map_batches(Model, concurrency=2)`` reads inside the model's actors,
and a default-resource write after them writes there too. That is also what keeps a
2-CPU cluster whose CPUs are all held by a pool from deadlocking on a plain task.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from ember.data._block import RefBundle
from ember.data._transform import Stage
from ember.data.exceptions import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class TaskPoolStrategy:
    """Run a map step as stateless tasks.

    Attributes:
        size: most tasks of this step running at once (``None``: as many as fit).
    """

    size: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class ActorPoolStrategy:
    """Run a map step on a pool of actors (required for callable classes).

    Args:
        size: fixed pool size; or give ``min_size``/``max_size`` for a pool that grows
            while inputs wait.
        min_size: actors started at once.
        max_size: most actors.
        max_tasks_in_flight_per_actor: calls queued on each actor.

    Example:
        >>> ActorPoolStrategy(min_size=1, max_size=4)
        ActorPoolStrategy(size=None, min_size=1, max_size=4, max_tasks_in_flight_per_actor=None)
    """

    size: Optional[int] = None
    min_size: Optional[int] = None
    max_size: Optional[int] = None
    max_tasks_in_flight_per_actor: Optional[int] = None

    def bounds(self, default_max: int) -> tuple[int, int]:
        """``(min, max)`` actors; raises InvalidArgumentError for impossible bounds."""
        if self.size is not None:
            lo = hi = self.size
        else:
            lo = self.min_size if self.min_size is not None else 1
            hi = self.max_size if self.max_size is not None else max(default_max, lo)
        if lo < 1 or hi < lo:
            raise InvalidArgumentError("ActorPoolStrategy",
                                       f"needs 1 <= min_size <= max_size, got ({lo}, {hi})")
        return lo, hi


ComputeStrategy = Union[TaskPoolStrategy, ActorPoolStrategy]


@dataclasses.dataclass(eq=False)
class LogicalOp:
    """A node of the plan. Subclasses add their parameters.

    Attributes:
        name: display name, shown in progress bars and ``stats()``.
        inputs: upstream nodes.
    """

    name: str
    inputs: list["LogicalOp"]


@dataclasses.dataclass(eq=False)
class InputData(LogicalOp):
    """Blocks that already exist (``from_*`` and materialized datasets).

    ``items`` are RefBundles, or for reads, bundles holding read tasks in place of refs.
    """

    items: list[RefBundle] = dataclasses.field(default_factory=list)
    #: Exact row count when known without executing (None if unknown).
    num_rows: Optional[int] = None


@dataclasses.dataclass(eq=False)
class MapOp(LogicalOp):
    """One or more fused map-like stages.

    Attributes:
        stages: stages run in order inside each task/actor.
        compute: task pool or actor pool.
        remote_args: ``num_cpus``, ``num_gpus``, ``memory``, ``resources``, ... for the
            tasks or actors.
        explicit_resources: whether the user asked for resources (fusion rule above).
        min_rows_per_bundle: inputs are grouped until a task has at least this many rows.
        preserves_rows: the step keeps every row (lets ``count`` skip it).
    """

    stages: list[Stage] = dataclasses.field(default_factory=list)
    compute: ComputeStrategy = dataclasses.field(default_factory=TaskPoolStrategy)
    remote_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    explicit_resources: bool = False
    min_rows_per_bundle: Optional[int] = None
    preserves_rows: bool = False


@dataclasses.dataclass(eq=False)
class AllToAll(LogicalOp):
    """A barrier step that needs every input block: shuffles, sorts, aggregations.

    Attributes:
        fn: ``fn(bundles_per_input) -> list[RefBundle]``, run on the driver once all
            inputs are done; it launches its own tasks.
        preserves_rows: the step keeps every row (``repartition``, ``sort`` ...).
    """

    fn: Callable[[list[list[RefBundle]]], list[RefBundle]] = None  # type: ignore[assignment]
    preserves_rows: bool = False


@dataclasses.dataclass(eq=False)
class Limit(LogicalOp):
    """The first ``limit`` rows; stops upstream work once they are produced."""

    limit: int = 0


@dataclasses.dataclass(eq=False)
class Union(LogicalOp):
    """The rows of every input, input after input."""


def _is_default_task(op: MapOp) -> bool:
    return isinstance(op.compute, TaskPoolStrategy) and not op.explicit_resources \
        and op.compute.size is None


def _fusable(up: MapOp, down: MapOp) -> bool:
    up_actor = isinstance(up.compute, ActorPoolStrategy)
    down_actor = isinstance(down.compute, ActorPoolStrategy)
    if up_actor and down_actor:
        return False
    if _is_default_task(down) or _is_default_task(up):
        return True
    if up_actor or down_actor:
        return False
    return up.remote_args == down.remote_args and up.compute == down.compute


def _fuse_pair(up: MapOp, down: MapOp) -> MapOp:
    lead = up if _is_default_task(down) else down
    # Inputs are bundled for the first batching step of the chain; for a read that means
    # several small read tasks run in one task, as in Ray Data.
    min_rows = up.min_rows_per_bundle if up.min_rows_per_bundle is not None \
        else down.min_rows_per_bundle
    return MapOp(name=f"{up.name}->{down.name}", inputs=up.inputs,
                 stages=up.stages + down.stages, compute=lead.compute,
                 remote_args=dict(lead.remote_args), explicit_resources=lead.explicit_resources,
                 min_rows_per_bundle=min_rows,
                 preserves_rows=up.preserves_rows and down.preserves_rows)


def fuse(op: LogicalOp, consumers: Optional[dict[int, int]] = None) -> LogicalOp:
    """The plan rooted at ``op`` with consecutive compatible map steps merged.

    A map node read by several downstream nodes (a dataset used twice in one plan) is
    not fused into them, so its work is not silently duplicated inside each.

    Args:
        op: root of the plan.
        consumers: internal; how many nodes read each node.

    Returns:
        A new root; the input plan is not modified.
    """
    if consumers is None:
        consumers = {}
        _count_consumers(op, consumers, set())
    inputs = [fuse(i, consumers) for i in op.inputs]
    node = dataclasses.replace(op, inputs=inputs)
    if isinstance(node, MapOp) and len(inputs) == 1 and isinstance(inputs[0], MapOp):
        up = inputs[0]
        if consumers.get(id(op.inputs[0]), 1) <= 1 and _fusable(up, node):
            return _fuse_pair(up, node)
    return node


def _count_consumers(op: LogicalOp, counts: dict[int, int], seen: set[int]) -> None:
    if id(op) in seen:
        return
    seen.add(id(op))
    for up in op.inputs:
        counts[id(up)] = counts.get(id(up), 0) + 1
        _count_consumers(up, counts, seen)


def plan_string(op: LogicalOp, indent: int = 0) -> str:
    """The plan as an indented tree, for ``repr`` and debugging."""
    pad = "   " * indent
    lines = [f"{pad}{'+- ' if indent else ''}{op.name}"]
    for up in op.inputs:
        lines.append(plan_string(up, indent + 1))
    return "\n".join(lines)


def known_row_count(op: LogicalOp) -> Optional[int]:
    """Rows of the plan's output when known without executing it, else ``None``."""
    if isinstance(op, InputData):
        return op.num_rows
    if isinstance(op, (MapOp, AllToAll)) and op.preserves_rows and len(op.inputs) == 1:
        return known_row_count(op.inputs[0])
    if isinstance(op, Limit):
        upstream = known_row_count(op.inputs[0])
        return None if upstream is None else min(upstream, op.limit)
    if isinstance(op, Union):
        counts = [known_row_count(i) for i in op.inputs]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]
    return None

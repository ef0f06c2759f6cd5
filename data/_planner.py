"""From a (fused) logical plan to the physical operators the executor runs.

Decides per map step: task pool or actor pool, how many calls may run at once (from
the cluster's CPUs/GPUs and the step's request), and the default resource request
(1 CPU, as in Ray Data, unless the user asked for CPUs or GPUs).
"""

from __future__ import annotations

import math
from typing import Any

import ember
from ember.data._operators import (BarrierOperator, InputDataBuffer, LimitOperator,
                                   PhysicalOperator, UnionOperator)
from ember.data._map_operator import ActorPoolMapOperator, TaskPoolMapOperator
from ember.data._plan import (ActorPoolStrategy, AllToAll, InputData, Limit, LogicalOp, MapOp,
                              Union, fuse)
from ember.data._remote import slice_ref
from ember.data._transform import TransformChain
from ember.data.context import DataContext


def _cluster() -> dict[str, float]:
    # Executing a dataset starts a local cluster if none is running, as the first
    # .remote() would; sizing decisions below need the real CPU count.
    if not ember.is_initialized():
        ember.init()
    try:
        return dict(ember.cluster_resources())
    except ember.exceptions.EmberError:
        return {"CPU": 1.0}


def _with_default_cpus(remote_args: dict[str, Any]) -> dict[str, Any]:
    args = {k: v for k, v in remote_args.items() if v is not None}
    if "num_cpus" not in args and "num_gpus" not in args:
        args["num_cpus"] = 1
    return args


def _task_concurrency(op: MapOp, args: dict[str, Any], cluster: dict[str, float]) -> int:
    """Calls in flight: what fits the cluster, plus one so a worker never idles on dispatch."""
    fits = []
    cpus, gpus = args.get("num_cpus", 0) or 0, args.get("num_gpus", 0) or 0
    if cpus:
        fits.append(cluster.get("CPU", 1.0) / cpus)
    if gpus:
        fits.append(cluster.get("GPU", 0.0) / gpus)
    limit = max(1, math.floor(min(fits))) + 1 if fits else 2 * int(cluster.get("CPU", 1.0)) + 1
    size = getattr(op.compute, "size", None)
    return min(limit, size) if size else limit


def build_physical(root: LogicalOp, ctx: DataContext) -> PhysicalOperator:
    """Fuse the plan and create its physical operators.

    Args:
        root: the dataset's logical plan.
        ctx: the DataContext in force for this execution.

    Returns:
        The sink operator; upstream operators hang off ``input_dependencies``.
    """
    cluster = _cluster()
    # resource_limits.cpu/gpu cap how much of the cluster this execution keeps busy.
    limits = ctx.execution_options.resource_limits
    for key, limit in (("CPU", limits.cpu), ("GPU", limits.gpu)):
        if limit is not None:
            cluster[key] = min(cluster.get(key, 0.0), float(limit))
    return _build(fuse(root), ctx, cluster)


def _build(op: LogicalOp, ctx: DataContext, cluster: dict[str, float]) -> PhysicalOperator:
    inputs = [_build(i, ctx, cluster) for i in op.inputs]
    preserve = ctx.execution_options.preserve_order
    if isinstance(op, InputData):
        return InputDataBuffer(op.name, list(op.items))
    if isinstance(op, MapOp):
        chain = TransformChain(op.stages)
        args = _with_default_cpus(op.remote_args)
        if isinstance(op.compute, ActorPoolStrategy) or chain.has_class:
            strategy = op.compute if isinstance(op.compute, ActorPoolStrategy) else ActorPoolStrategy()
            cpus = args.get("num_cpus") or 0
            gpus = args.get("num_gpus") or 0
            default_max = int(cluster.get("GPU", 0) / gpus) if gpus else \
                int(cluster.get("CPU", 1) / cpus) if cpus else int(cluster.get("CPU", 1))
            lo, hi = strategy.bounds(max(default_max, 1))
            per_actor = strategy.max_tasks_in_flight_per_actor or ctx.max_tasks_in_flight_per_actor
            mapped: PhysicalOperator = ActorPoolMapOperator(
                op.name, inputs[0], chain, args, op.min_rows_per_bundle, lo, hi, per_actor,
                preserve, ctx.actor_startup_timeout_s)
        else:
            mapped = TaskPoolMapOperator(op.name, inputs[0], chain, args, op.min_rows_per_bundle,
                                         _task_concurrency(op, args, cluster), preserve)
        mapped.estimated_rows = _estimated_rows(inputs[0]) if op.preserves_rows else None
        return mapped
    if isinstance(op, AllToAll):
        barrier = BarrierOperator(op.name, inputs, op.fn)
        barrier.estimated_rows = _estimated_rows(inputs[0]) if op.preserves_rows else None
        return barrier
    if isinstance(op, Limit):
        return LimitOperator(op.name, inputs[0], op.limit,
                             lambda ref, meta, n: slice_ref(ref, meta, 0, n))
    if isinstance(op, Union):
        return UnionOperator(op.name, inputs)
    raise TypeError(f"unknown plan node {type(op).__name__}")  # pragma: no cover


def _estimated_rows(op: PhysicalOperator) -> Any:
    return op.estimated_rows

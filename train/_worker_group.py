"""The gang of training workers: one placement group, one actor per bundle, one rank each.

Placement is all or none (a placement group), so no rank ever waits in a collective for a
peer that cannot be scheduled. Before asking, the group's shape is checked against what
the cluster has: a group that can never fit is an error at once naming the shape and
the nodes; one that could fit but stays pending (other work holds the resources) is an
error after ``placement_timeout_s``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import ember
from ember.util import placement_group, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ._config import ScalingConfig
from ._worker import worker_class
from .errors import TrainConfigError

logger = logging.getLogger(__name__)

#: How long a group that fits the cluster may stay unplaced before fit() gives up.
DEFAULT_PLACEMENT_TIMEOUT_S = float(os.environ.get("EMBER_TRAIN_PLACEMENT_TIMEOUT_S", "120"))


@dataclasses.dataclass
class WorkerInfo:
    """One rank's actor and where it landed."""

    rank: int
    actor: Any
    node_id: str = ""
    node_ip: str = ""
    pid: int = 0
    gpu_ids: list[Any] = dataclasses.field(default_factory=list)
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0


def _fits(bundle: dict[str, float], resources: dict[str, float]) -> bool:
    return all(resources.get(name, 0.0) + 1e-9 >= amount for name, amount in bundle.items())


def check_cluster_can_fit(scaling: ScalingConfig) -> None:
    """Raise ``TrainConfigError`` if the cluster can never hold the worker group.

    Raises:
        TrainConfigError: ``use_gpu`` with no GPU in the cluster; a worker shape no node
            has; more workers than the nodes can hold together (or, for STRICT_SPREAD,
            fewer fitting nodes than workers).
    """
    shape = scaling.worker_resources
    nodes = [n for n in ember.nodes() if n.get("Alive")]
    totals = ember.cluster_resources()
    what = f"ScalingConfig(num_workers={scaling.num_workers}, worker shape {shape})"
    if scaling.use_gpu and totals.get("GPU", 0.0) <= 0:
        raise TrainConfigError(
            f"{what} asks for GPUs (use_gpu=True) but the cluster has none "
            f"(cluster resources: {_short(totals)}); set use_gpu=False, or start ember on "
            "machines with GPUs (or declare them with ember.init(num_gpus=N))")
    if not shape:
        raise TrainConfigError(
            f"{what}: a worker must reserve something; give resources_per_worker a positive "
            "amount, e.g. {'CPU': 1}")
    per_node = [n.get("Resources", {}) for n in nodes]
    fitting = [r for r in per_node if _fits(shape, r)]
    if not fitting:
        raise TrainConfigError(
            f"{what}: no node can hold even one worker; the nodes have "
            f"{[_short(r) for r in per_node]}. Lower resources_per_worker or add a larger node")
    capacity = sum(min(int((r.get(k, 0.0) + 1e-9) // v) for k, v in shape.items() if v > 0)
                   if shape else scaling.num_workers for r in fitting)
    if scaling.placement_strategy == "STRICT_SPREAD":
        capacity = min(capacity, len(fitting))
    elif scaling.placement_strategy == "STRICT_PACK":
        capacity = max(min(int((r.get(k, 0.0) + 1e-9) // v) for k, v in shape.items() if v > 0)
                       if shape else scaling.num_workers for r in fitting)
    if capacity < scaling.num_workers:
        raise TrainConfigError(
            f"{what} with placement_strategy={scaling.placement_strategy!r} needs "
            f"{_short({k: v * scaling.num_workers for k, v in shape.items()})} but the cluster "
            f"can hold at most {capacity} such worker(s): it has {_short(totals)} on "
            f"{len(nodes)} node(s). Lower num_workers or resources_per_worker, or add nodes")


def _short(resources: dict[str, float]) -> dict[str, float]:
    """Resources without the bookkeeping entries (memory, node:...), for messages."""
    return {k: v for k, v in resources.items()
            if k in ("CPU", "GPU") or not (k.startswith("node:") or k.endswith("memory"))}


class WorkerGroup:
    """Places ``num_workers`` actors in one placement group and knows where each landed."""

    def __init__(self, scaling: ScalingConfig,
                 placement_timeout_s: float = DEFAULT_PLACEMENT_TIMEOUT_S) -> None:
        self.scaling = scaling
        self.workers: list[WorkerInfo] = []
        shape = scaling.worker_resources
        self._pg = placement_group([dict(shape) for _ in range(scaling.num_workers)],
                                   strategy=scaling.placement_strategy)
        try:
            if not self._pg.wait(placement_timeout_s):
                raise TrainConfigError(
                    f"the {scaling.num_workers} training workers ({shape} each, "
                    f"{scaling.placement_strategy}) were not placed within "
                    f"{placement_timeout_s:.0f} s: the cluster has {_short(ember.cluster_resources())}"
                    f" of which {_short(ember.available_resources())} is free now; other work "
                    "holds the rest. Free resources, lower num_workers, or raise "
                    "EMBER_TRAIN_PLACEMENT_TIMEOUT_S")
            self._start_actors(shape)
        except BaseException:
            self.shutdown()
            raise

    def _start_actors(self, shape: dict[str, float]) -> None:
        custom = {k: v for k, v in shape.items() if k not in ("CPU", "GPU", "memory")}
        for rank in range(self.scaling.num_workers):
            options: dict[str, Any] = {
                "num_cpus": shape.get("CPU", 0.0), "num_gpus": shape.get("GPU", 0.0),
                "scheduling_strategy": PlacementGroupSchedulingStrategy(self._pg, rank)}
            if custom:
                options["resources"] = custom
            if shape.get("memory"):
                options["memory"] = shape["memory"]
            actor = ember.remote(worker_class(rank)).options(**options).remote()
            self.workers.append(WorkerInfo(rank=rank, actor=actor))
        infos = ember.get([w.actor.node_info.remote() for w in self.workers])
        addresses = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ember.nodes()}
        node_order: list[str] = []
        for worker, info in zip(self.workers, infos):
            worker.node_id, worker.pid = info["node_id"], info["pid"]
            worker.gpu_ids = info["gpu_ids"]
            worker.node_ip = addresses.get(worker.node_id, "") or "127.0.0.1"
            if worker.node_id not in node_order:
                node_order.append(worker.node_id)
        for worker in self.workers:
            same_node = [w for w in self.workers if w.node_id == worker.node_id]
            worker.local_rank = same_node.index(worker)
            worker.local_world_size = len(same_node)
            worker.node_rank = node_order.index(worker.node_id)

    def execute(self, fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
        """Run ``fn(*args, **kwargs)`` on every worker at once; results in rank order."""
        return self.execute_each(fn, [args] * len(self.workers), kwargs)

    def execute_each(self, fn: Any, args_per_rank: list[tuple[Any, ...]],
                     kwargs: dict[str, Any] | None = None) -> list[Any]:
        """Run ``fn(*args_per_rank[rank])`` on every rank at once; results in rank order.

        Raises:
            GroupCallError: the first rank (in completion order) whose call failed.
        """
        refs = [w.actor.execute.remote(fn, *args, **(kwargs or {}))
                for w, args in zip(self.workers, args_per_rank)]
        rank_of = {ref: rank for rank, ref in enumerate(refs)}
        waiting = list(refs)
        while waiting:
            ready, waiting = ember.wait(waiting, num_returns=1)
            for ref in ready:
                try:
                    ember.get(ref)
                except Exception as exc:  # noqa: BLE001 - reported with its rank
                    raise GroupCallError(rank_of[ref], exc) from exc
        return ember.get(refs)

    def shutdown(self) -> None:
        """Kill every worker (no rank is left in a collective) and release the group."""
        for worker in self.workers:
            try:
                ember.kill(worker.actor)
            except Exception as exc:  # noqa: BLE001 - a dead actor is what we want anyway
                logger.debug("killing rank %d: %s", worker.rank, exc)
        self.workers = []
        if self._pg is not None:
            try:
                remove_placement_group(self._pg)
            except Exception as exc:  # noqa: BLE001 - the cluster may be shutting down
                logger.debug("removing the placement group: %s", exc)
            self._pg = None


class GroupCallError(Exception):
    """A call made on every worker failed on one rank (internal: becomes a WorkerFailure)."""

    def __init__(self, rank: int, error: BaseException) -> None:
        super().__init__(rank, error)
        self.rank = rank
        self.error = error

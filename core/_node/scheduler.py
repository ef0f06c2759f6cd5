"""Placement decisions for one node: a resource ledger and a queue of lease requests.

Plain classes, no I/O: the node manager feeds events in (a request, a release, a
task blocking) and carries out the grants that come back. Keeping it pure makes
every decision testable with ordinary calls.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from .._types import ResourceShape
from .._resources import (belongs_to_group, covers, fits, fits_ever, group_resource, is_group_resource,
                        is_positive)


@dataclass
class Allocation:
    """What a granted lease holds; released exactly once."""
    shape: ResourceShape
    gpu_ids: list[int]
    gpu_fractions: dict[int, float] = field(default_factory=dict)
    #: CPUs currently lent out because the lease's task is blocked in get/wait.
    lent_cpus: float = 0.0
    #: The placement group (hex id) whose reserved devices ``gpu_fractions`` came from;
    #: None when they came from the node's free devices.
    gpu_group: str | None = None


class ResourceLedger:
    """Totals and availability of one node's resources, GPUs tracked per device."""

    def __init__(self, totals: ResourceShape) -> None:
        self.totals = {k: float(v) for k, v in totals.items() if v}
        self.available = dict(self.totals)
        n_gpus = int(self.totals.get("GPU", 0))
        #: Free fraction of each GPU id; the sum equals available["GPU"].
        self.gpu_free = {i: 1.0 for i in range(n_gpus)}
        #: Devices reserved by placed groups: group hex id -> free fraction per device id.
        #: A request inside a bundle draws its device ids from here, not from gpu_free
        #: (the bundle's reservation already took them from gpu_free).
        self.group_gpu_free: dict[str, dict[int, float]] = {}
        #: Group GPU resource name (per bundle and group-wide) -> the device ids behind it.
        self._group_gpu_ids: dict[str, list[int]] = {}

    def fits_ever(self, shape: ResourceShape) -> bool:
        return fits_ever(self.totals, shape)

    def try_allocate(self, shape: ResourceShape) -> Allocation | None:
        if not fits(self.available, shape):
            return None
        group, gpus, pool = self._gpu_pool_for(shape)
        fractions: dict[int, float] = {}
        if is_positive(gpus):
            fractions = _pick_gpus(gpus, pool)
            if not fractions:
                return None
        for name, amount in shape.items():
            self.available[name] = self.available.get(name, 0.0) - amount
        free = self.gpu_free if group is None else self.group_gpu_free[group]
        for gid, frac in fractions.items():
            free[gid] -= frac
        return Allocation(dict(shape), sorted(fractions), fractions, gpu_group=group)

    def _gpu_pool_for(self, shape: ResourceShape) -> tuple[str | None, float, dict[int, float]]:
        """(group, GPUs asked, free fraction per candidate device) for a request.

        A request rewritten onto a group's bundle asks for ``GPU_group_...`` rather than
        ``GPU``; its devices are the ones that bundle reserved (the narrowest view wins:
        an indexed request names both its bundle and the group).
        """
        named = [n for n in shape if n in self._group_gpu_ids and is_positive(shape[n])]
        if not named:
            return None, shape.get("GPU", 0.0), self.gpu_free
        name = min(named, key=lambda n: len(self._group_gpu_ids[n]))
        group = name.rsplit("_", 1)[1]
        free = self.group_gpu_free[group]
        return group, shape[name], {g: free[g] for g in self._group_gpu_ids[name]}

    def bind_group_gpus(self, pg_hex: str, bundles: list[tuple[int, Allocation]]) -> None:
        """Remember which devices each reserved bundle of group ``pg_hex`` holds, so a task
        or actor placed in the bundle is given exactly those ids (CUDA_VISIBLE_DEVICES)."""
        free: dict[int, float] = {}
        for index, alloc in bundles:
            if alloc.gpu_fractions:
                self._group_gpu_ids[group_resource("GPU", pg_hex, index)] = sorted(alloc.gpu_fractions)
            for gid, frac in alloc.gpu_fractions.items():
                free[gid] = free.get(gid, 0.0) + frac
        if free:
            self._group_gpu_ids[group_resource("GPU", pg_hex)] = sorted(free)
            self.group_gpu_free[pg_hex] = free

    def unbind_group_gpus(self, pg_hex: str) -> None:
        """The group's share is given back: its devices are no longer a separate pool."""
        self.group_gpu_free.pop(pg_hex, None)
        for name in [n for n in self._group_gpu_ids if belongs_to_group(n, pg_hex)]:
            del self._group_gpu_ids[name]

    def release(self, alloc: Allocation) -> None:
        for name, amount in alloc.shape.items():
            if name not in self.totals:
                continue  # a removed placement group's resources: nothing to give back
            if name == "CPU":
                amount -= alloc.lent_cpus
            self.available[name] = self.available.get(name, 0.0) + amount
        alloc.lent_cpus = 0.0
        # Devices taken inside a group go back to the group (nowhere, if it is gone: the
        # group's own reservation returns them to the node).
        free = self.gpu_free if alloc.gpu_group is None else self.group_gpu_free.get(alloc.gpu_group)
        for gid, frac in alloc.gpu_fractions.items():
            if free is not None:
                free[gid] += frac

    def add_resources(self, extra: ResourceShape) -> None:
        for name, amount in extra.items():
            self.totals[name] = self.totals.get(name, 0.0) + amount
            self.available[name] = self.available.get(name, 0.0) + amount

    def remove_resources(self, extra: ResourceShape) -> None:
        for name, amount in extra.items():
            for table in (self.totals, self.available):
                left = table.get(name, 0.0) - amount
                if is_positive(left):
                    table[name] = left
                else:
                    table.pop(name, None)

    def reserve_bundles(self, bundles: list[ResourceShape], strategy: str) -> list[Allocation] | None:
        """All bundles or none (placement groups are atomic). On one node every
        strategy but STRICT_SPREAD (one bundle per node) packs."""
        if strategy == "STRICT_SPREAD" and len(bundles) > 1:
            return None
        allocs: list[Allocation] = []
        for bundle in bundles:
            alloc = self.try_allocate(bundle)
            if alloc is None:
                for done in allocs:
                    self.release(done)
                return None
            allocs.append(alloc)
        return allocs

    def bundles_fit_ever(self, bundles: list[ResourceShape], strategy: str) -> bool:
        if strategy == "STRICT_SPREAD" and len(bundles) > 1:
            return False
        total: dict[str, float] = {}
        for bundle in bundles:
            for name, amount in bundle.items():
                total[name] = total.get(name, 0.0) + amount
        return self.fits_ever(total) and all(self.fits_ever(b) for b in bundles)

    def lend_cpus(self, alloc: Allocation) -> None:
        """The lease's task blocked: let others use its CPUs until it resumes."""
        cpus = alloc.shape.get("CPU", 0.0) - alloc.lent_cpus
        if cpus > 0:
            alloc.lent_cpus += cpus
            self.available["CPU"] = self.available.get("CPU", 0.0) + cpus

    def reclaim_cpus(self, alloc: Allocation) -> None:
        """The task resumed: take its CPUs back, even if that oversubscribes briefly (as Ray)."""
        if alloc.lent_cpus > 0:
            self.available["CPU"] = self.available.get("CPU", 0.0) - alloc.lent_cpus
            alloc.lent_cpus = 0.0


def _pick_gpus(gpus: float, free: dict[int, float]) -> dict[int, float]:
    """Device ids (and the fraction of each) for ``gpus`` from the ``free`` fractions."""
    if not covers(gpus, 1.0):
        # Pack fractional requests onto the fullest device that still fits,
        # leaving whole devices free for whole-GPU requests.
        fitting = [g for g, left in free.items() if covers(left, gpus)]
        if not fitting:
            return {}
        best = min(fitting, key=lambda g: (free[g], g))
        return {best: gpus}
    whole = [g for g, left in free.items() if covers(left, 1.0)]
    need = int(round(gpus))
    return {g: 1.0 for g in whole[:need]} if len(whole) >= need else {}


def ledger_discrepancy(ledger: ResourceLedger, held: list[Allocation]) -> dict[str, float]:
    """free + held - total per resource, where that is not zero (empty: the ledger is sound).

    Every allocation handed out must be in ``held`` until it is released; CPUs lent out
    by a blocked task count as free. Names no longer in the totals (a removed placement
    group's bundle resources) are skipped: releasing them is a no-op by design.
    """
    sums = dict(ledger.available)
    for alloc in held:
        for name, amount in alloc.shape.items():
            if name in ledger.totals:
                sums[name] = sums.get(name, 0.0) + amount - (alloc.lent_cpus if name == "CPU" else 0.0)
    return {name: round(sums.get(name, 0.0) - total, 9) for name, total in ledger.totals.items()
            if abs(sums.get(name, 0.0) - total) > 1e-6}


@dataclass
class PendingLease:
    """A lease request waiting in the queue (``key`` names its requester; ``seq`` keeps FIFO order)."""
    key: Any
    shape: ResourceShape
    hold: ResourceShape | None
    seq: int
    warned: bool = False
    #: The request's scheduling strategy (None: default), for decisions to move it.
    strategy: Any = None


class LeaseQueue:
    """FIFO per resource shape; a request that fits is granted ahead of bigger ones
    that don't (no head-of-line blocking across shapes)."""

    def __init__(self, ledger: ResourceLedger) -> None:
        self.ledger = ledger
        self._pending: list[PendingLease] = []
        self._seq = itertools.count()

    def add(self, key: Any, shape: ResourceShape, hold: ResourceShape | None,
            strategy: Any = None) -> PendingLease:
        pending = PendingLease(key, shape, hold, next(self._seq), strategy=strategy)
        self._pending.append(pending)
        return pending

    def remove(self, key: Any) -> None:
        self._pending = [p for p in self._pending if p.key != key]

    def remove_where(self, predicate: Any) -> list[Any]:
        """Drop the requests whose key matches; returns their keys."""
        gone = [p.key for p in self._pending if predicate(p.key)]
        self._pending = [p for p in self._pending if not predicate(p.key)]
        return gone

    def __len__(self) -> int:
        return len(self._pending)

    def waiting(self) -> list[PendingLease]:
        return list(self._pending)

    def demote(self, predicate: Any) -> None:
        """Move the waiting requests whose key matches behind every other (order kept
        within each part): a submitter that just had its turn waits behind the others."""
        self._pending = ([p for p in self._pending if not predicate(p.key)]
                         + [p for p in self._pending if predicate(p.key)])

    def oldest(self, n: int) -> list[PendingLease]:
        """The ``n`` oldest waiting requests (without copying the whole queue)."""
        return list(itertools.islice(self._pending, n))

    def grantable(self) -> list[tuple[PendingLease, Allocation]]:
        """Allocate for every request that fits now, oldest first."""
        granted = []
        blocked_shapes: set[tuple] = set()
        remaining = []
        for p in self._pending:
            sig = tuple(sorted(p.shape.items()))
            alloc = None
            if sig not in blocked_shapes:
                alloc = self._allocate(p)
            if alloc is None:
                blocked_shapes.add(sig)
                remaining.append(p)
            else:
                granted.append((p, alloc))
        self._pending = remaining
        return granted

    def _allocate(self, p: PendingLease) -> Allocation | None:
        if p.hold is None:
            return self.ledger.try_allocate(p.shape)
        # Placement needs `shape` free, but only `hold` stays allocated.
        probe = self.ledger.try_allocate(p.shape)
        if probe is None:
            return None
        self.ledger.release(probe)
        return self.ledger.try_allocate(p.hold)

    def infeasible(self) -> list[PendingLease]:
        """Requests no node could ever satisfy, not yet warned about."""
        out = []
        for p in self._pending:
            # Placement-group resources appear once the group is placed: not infeasible.
            if not p.warned and not any(is_group_resource(name) for name in p.shape) \
                    and not self.ledger.fits_ever(p.shape):
                p.warned = True
                out.append(p)
        return out


def plan_bundles(nodes: list[tuple[Any, ResourceShape]], bundles: list[ResourceShape],
                 strategy: str) -> dict[Any, list[tuple[int, ResourceShape]]] | None:
    """Which node reserves which bundle (by index), from nodes' free resources; None if
    the group cannot be placed now. ``nodes`` lists the preferred (local) node first."""
    free = {node: dict(available) for node, available in nodes}
    order = [node for node, _ in nodes]
    plan: dict[Any, list[tuple[int, ResourceShape]]] = {}

    def fits_on(node: Any, shape: ResourceShape) -> bool:
        return fits(free[node], shape)

    def take(node: Any, i: int, shape: ResourceShape) -> None:
        for k, v in shape.items():
            free[node][k] = free[node].get(k, 0.0) - v
        plan.setdefault(node, []).append((i, shape))

    total: ResourceShape = {}
    for bundle in bundles:
        for k, v in bundle.items():
            total[k] = total.get(k, 0.0) + v
    if strategy in ("PACK", "STRICT_PACK"):
        for node in order:
            if fits_on(node, total):
                return {node: list(enumerate(bundles))}
        if strategy == "STRICT_PACK":
            return None
    for i, bundle in enumerate(bundles):
        if strategy == "PACK":
            candidates = order  # fill the first nodes before moving on
        else:  # SPREAD / STRICT_SPREAD: the least used node first
            candidates = sorted(order, key=lambda n: len(plan.get(n, ())))
            if strategy == "STRICT_SPREAD":
                candidates = [n for n in candidates if n not in plan]
        node = next((n for n in candidates if fits_on(n, bundle)), None)
        if node is None:
            return None
        take(node, i, bundle)
    return plan


def normalize_shape(shape: ResourceShape) -> ResourceShape:
    """Floats, and no zero entries (a zero request is no request)."""
    return {k: float(v) for k, v in shape.items() if v}

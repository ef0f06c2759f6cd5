"""``TrialActorPool``: warm trial actors by resource shape, and the sweep's resource budget.

A trial that ends hands its actor back; the next trial of the same shape takes it, so a
new trial costs one actor call instead of a process start. The pool also keeps the
budget: what its actors hold (busy or idle) plus what running trials keep free for work
they start (a Trainer's workers) never exceeds the cluster's resources, so a trial that
does not fit waits in the controller's queue instead of oversubscribing. When a trial of
another shape cannot fit, idle actors are ended to make room.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ember
from ember.util import placement_group, remove_placement_group
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from ._trial_actor import TrialActor
from .resources import PlacementGroupFactory

_RemoteTrialActor = ember.remote(TrialActor)

#: Tolerance when adding fractional resources (0.1 + 0.2 GPUs).
EPS = 1e-9


@dataclasses.dataclass(eq=False)
class Slot:
    """A trial actor, what it holds, and the trainables it has already been sent."""

    handle: Any
    shape: str
    request: dict[str, float]
    pg: Any = None
    known: set[str] = dataclasses.field(default_factory=set)


def _shape_key(held: dict[str, float], pgf: PlacementGroupFactory | None) -> str:
    return repr((sorted(held.items()), pgf.bundles if pgf else None,
                 pgf.strategy if pgf else None))


def _add(total: dict[str, float], more: dict[str, float]) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, 0.0) + amount


class TrialActorPool:
    """Hands out trial actors within the cluster's resources (see the module docstring)."""

    def __init__(self, total: dict[str, float], reuse: bool) -> None:
        self._total = total
        self._reuse = reuse
        self._idle: list[Slot] = []
        self._slots: list[Slot] = []
        self._slot_of: dict[str, Slot] = {}
        #: trial_id -> resources kept free for that trial beyond what its actor holds.
        self._extra: dict[str, dict[str, float]] = {}

    def _fits(self, need: dict[str, float]) -> bool:
        used: dict[str, float] = {}
        for slot in self._slots:
            _add(used, slot.request)
        for extra in self._extra.values():
            _add(used, extra)
        return all(used.get(n, 0.0) + a <= self._total.get(n, 0.0) + EPS
                   for n, a in need.items())

    def slot_of(self, trial_id: str) -> Slot | None:
        return self._slot_of.get(trial_id)

    def acquire(self, trial_id: str, held: dict[str, float], pgf: PlacementGroupFactory | None,
                budget: dict[str, float]) -> Slot | None:
        """An actor for ``trial_id`` (warm if one of its shape is idle), or None if full.

        Args:
            held: what the trial's actor holds (bundle 0 when ``pgf`` is given).
            pgf: the trial's placement group, if it reserves several bundles.
            budget: everything the trial needs kept free, ``held`` included.
        """
        shape = _shape_key(held, pgf)
        held_total = pgf.required_resources if pgf is not None else held
        extra = {n: budget.get(n, 0.0) - held_total.get(n, 0.0) for n in budget}
        extra = {n: a for n, a in extra.items() if a > EPS}
        for slot in self._idle:
            if slot.shape == shape and self._fits(extra):
                self._idle.remove(slot)
                return self._assign(trial_id, slot, extra)
        need = dict(held_total)
        _add(need, extra)
        while not self._fits(need) and self._idle:
            self._drop(self._idle.pop(0))  # an idle actor of another shape yields
        if not self._fits(need):
            return None
        options: dict[str, Any] = {"num_cpus": held.get("CPU", 0.0),
                                   # run/resume block while the trial computes; stop()
                                   # must still get through.
                                   "max_concurrency": 4}
        if held.get("GPU"):
            options["num_gpus"] = held["GPU"]
        if held.get("memory"):
            options["memory"] = held["memory"]
        custom = {n: a for n, a in held.items() if n not in ("CPU", "GPU", "memory")}
        if custom:
            options["resources"] = custom
        pg = None
        if pgf is not None:
            pg = placement_group(pgf.bundles, strategy=pgf.strategy)
            # As Ray Tune: what the trial starts (an RL algorithm's env runners, a
            # trainer's workers) lands in the trial's group, in the bundles it reserved.
            options["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                pg, 0, placement_group_capture_child_tasks=True)
        slot = Slot(handle=_RemoteTrialActor.options(**options).remote(), shape=shape,
                    request=dict(held_total), pg=pg)
        self._slots.append(slot)
        return self._assign(trial_id, slot, extra)

    def _assign(self, trial_id: str, slot: Slot, extra: dict[str, float]) -> Slot:
        self._slot_of[trial_id] = slot
        self._extra[trial_id] = extra
        return slot

    def release(self, trial_id: str, healthy: bool) -> None:
        """The trial ended: keep its actor warm (``healthy`` and reusing) or end it."""
        slot = self._slot_of.pop(trial_id, None)
        self._extra.pop(trial_id, None)
        if slot is None:
            return
        if healthy and self._reuse:
            self._idle.append(slot)
        else:
            self._drop(slot)

    def _drop(self, slot: Slot) -> None:
        if slot in self._idle:
            self._idle.remove(slot)
        if slot in self._slots:
            self._slots.remove(slot)
        try:
            ember.kill(slot.handle)
        except Exception:  # noqa: BLE001 - already dead is fine
            pass
        if slot.pg is not None:
            try:
                remove_placement_group(slot.pg)
            except Exception:  # noqa: BLE001 - gone with its actor is fine
                pass

    def shutdown(self) -> None:
        """End every actor and placement group of the pool (idempotent)."""
        for slot in list(self._slots):
            self._drop(slot)
        self._idle.clear()
        self._slot_of.clear()
        self._extra.clear()

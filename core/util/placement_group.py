"""Placement groups: bundles of resources reserved atomically (Ray's API)."""

from __future__ import annotations

import numbers
import os
from typing import Any

from .._client import context
from .._wire import protocol as p
from ..exceptions import InvalidOptionError
from ..object_ref import ObjectRef

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    """A handle to a placement group; pass it to PlacementGroupSchedulingStrategy.

    Picklable: tasks and actors get the same group back (``get_current_placement_group``
    inside a task rebuilds it from its id and asks the head for its bundles).
    """

    def __init__(self, pg_id: bytes, bundles: list[dict[str, float]] | None = None) -> None:
        self.id = pg_id
        self._bundles = bundles
        self._ready_ref: ObjectRef | None = None

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles as reserved, in index order."""
        if self._bundles is None:
            table = placement_group_table(self)
            self._bundles = [dict(b) for _, b in sorted((table.get("bundles") or {}).items())]
        return self._bundles

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """An ObjectRef that resolves (to True) once every bundle is reserved."""
        # Answered by the head from the group's state: no task, no worker. One ref is
        # shared by every call while it is pending or succeeded; one that failed (the group
        # was removed, the head restarted meanwhile) is not: the next call asks again.
        if self._ready_ref is None or self._failed(self._ready_ref):
            pg_id = self.id
            self._ready_ref = ObjectRef(context.runtime().request_object(
                lambda rid: p.WaitPlacementGroup(rid, pg_id)))
        return self._ready_ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        """True if the group was placed within ``timeout_seconds``; False if not, or if it
        cannot be (it was removed)."""
        rt = context.runtime()
        ref = self.ready()
        placed = rt.objects.wait_ready([ref.id], 1, timeout_seconds, fetch=False)
        return bool(placed) and not self._failed(ref)

    @staticmethod
    def _failed(ref: ObjectRef) -> bool:
        return context.runtime().objects.error_payload(ref.id) is not None

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self._bundles))

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)


def _validate_bundles(bundles: Any) -> list[dict[str, float]]:
    if not isinstance(bundles, (list, tuple)) or not bundles:
        raise InvalidOptionError(f"bundles must be a non-empty list of dicts like [{{'CPU': 1}}], got {bundles!r}")
    out = []
    for i, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not bundle:
            raise InvalidOptionError(f"bundle {i} must be a non-empty dict like {{'CPU': 1}}, got {bundle!r}")
        for name, amount in bundle.items():
            if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or amount < 0:
                raise InvalidOptionError(f"bundle {i}: {name} must be a non-negative number, got {amount!r}")
        if all(v == 0 for v in bundle.values()):
            raise InvalidOptionError(f"bundle {i} reserves nothing ({bundle!r}); give it a positive amount")
        out.append({k: float(v) for k, v in bundle.items()})
    return out


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK", name: str = "",
                    lifetime: str | None = None, **options: Any) -> PlacementGroup:
    """Reserve ``bundles`` atomically (all or none).

    Args:
        bundles: e.g. ``[{"CPU": 1, "GPU": 1}] * 4``.
        strategy: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD.
        name: shown by ``placement_group_table``.
        lifetime: None: the group is removed when the job that made it ends;
            "detached": it stays until ``remove_placement_group``.

    Returns:
        A PlacementGroup; ``ember.get(pg.ready())`` waits until it is placed.

    Raises:
        InvalidOptionError: malformed bundles, an unknown strategy or lifetime, or an
            option ember does not support.
    """
    specs = _validate_bundles(bundles)
    if strategy not in STRATEGIES:
        raise InvalidOptionError(f"unknown placement strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if lifetime not in (None, "detached"):
        raise InvalidOptionError(f"placement_group lifetime must be None (ends with the job) or "
                                 f"'detached', got {lifetime!r}")
    options.pop("_max_cpu_fraction_per_node", None)  # Ray's deprecated no-op, still passed
    if options.get("bundle_label_selector") is None:
        options.pop("bundle_label_selector", None)
    if options:
        raise InvalidOptionError(f"placement_group got unsupported option(s) "
                                 f"{', '.join(sorted(options))}; ember supports bundles, strategy, "
                                 "name and lifetime (node labels: use custom resources in the bundles)")
    if not isinstance(name, str):
        raise InvalidOptionError(f"placement_group name must be a string, got {name!r}")
    rt = context.runtime()
    pg_id = os.urandom(14)
    rt.call(lambda rid: p.CreatePlacementGroup(rid, pg_id, specs, strategy, name, rt.job_id,
                                               lifetime == "detached"))
    return PlacementGroup(pg_id, specs)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's reservation; tasks and actors running in it are stopped."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group expects a PlacementGroup, got {type(placement_group).__name__}")
    context.runtime().send(p.RemovePlacementGroup(placement_group.id))


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """State of one group (or of all, keyed by id): strategy, state, bundles."""
    pg_id = placement_group.id if placement_group is not None else None
    table, _ = context.runtime().call(lambda rid: p.PlacementGroupTable(rid, pg_id))
    return table or {}


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group created with ``name=placement_group_name`` (Ray's
    ``ray.util.get_placement_group``), from any driver, task or actor of the cluster.

    Raises:
        ValueError: no live group has that name (or the name is empty).

    Example:
        >>> pg = placement_group([{"CPU": 1}], name="shared")
        >>> get_placement_group("shared") == pg
        True
    """
    if not isinstance(placement_group_name, str) or not placement_group_name:
        raise ValueError(f"get_placement_group needs the non-empty name a group was created with, got "
                         f"{placement_group_name!r}")
    for pg_hex, row in placement_group_table().items():
        if row.get("name") == placement_group_name and row.get("state") != "REMOVED":
            bundles = [dict(b) for _, b in sorted((row.get("bundles") or {}).items())]
            return PlacementGroup(bytes.fromhex(pg_hex), bundles)
    raise ValueError(f"no placement group named {placement_group_name!r} (or it was removed). Create it "
                     f"with placement_group(bundles, name={placement_group_name!r}); a group without "
                     "lifetime='detached' is removed when the job that made it ends.")


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the calling task or actor runs in; None in a driver or outside
    any group.

    Example:
        >>> @ember.remote
        ... def f():
        ...     return get_current_placement_group()
        >>> ember.get(f.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg)).remote()) == pg
        True
    """
    task = context.current_task.get()
    if task is None or task.placement_group is None:
        return None
    return PlacementGroup(bytes.fromhex(task.placement_group[0]))

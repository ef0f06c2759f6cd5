"""Placement groups: bundles of resources reserved atomically (Ray's API)."""

from __future__ import annotations

import numbers
import os
from typing import Any

from .. import protocol as p
from ..options import InvalidOptionError

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


class PlacementGroup:
    """A handle to a placement group; pass it to PlacementGroupSchedulingStrategy."""

    def __init__(self, pg_id: bytes, bundles: list[dict[str, float]]) -> None:
        self.id = pg_id
        self.bundle_specs = bundles
        self._ready_ref: Any = None

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> Any:
        """An ObjectRef that resolves (to True) once every bundle is reserved."""
        # Answered by the head from the group's state: no task, no worker.
        if self._ready_ref is None:
            from ..api import _runtime
            pg_id = self.id
            self._ready_ref = _runtime().ref_from_request(lambda rid: p.WaitPlacementGroup(rid, pg_id))
        return self._ready_ref

    def wait(self, timeout_seconds: float = 30) -> bool:
        """True if the group was placed within ``timeout_seconds``."""
        import ember
        ready, _ = ember.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self) -> Any:
        return (PlacementGroup, (self.id, self.bundle_specs))

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
                    lifetime: str | None = None, **_ignored: Any) -> PlacementGroup:
    """Reserve ``bundles`` atomically (all or none).

    Args:
        bundles: e.g. ``[{"CPU": 1, "GPU": 1}] * 4``.
        strategy: PACK, SPREAD, STRICT_PACK or STRICT_SPREAD.

    Returns:
        A PlacementGroup; ``ember.get(pg.ready())`` waits until it is placed.

    Raises:
        InvalidOptionError: malformed bundles or an unknown strategy.
    """
    from ..api import _runtime
    specs = _validate_bundles(bundles)
    if strategy not in STRATEGIES:
        raise InvalidOptionError(f"unknown placement strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    rt = _runtime()
    pg_id = os.urandom(14)
    rt.call(lambda rid: p.CreatePlacementGroup(rid, pg_id, specs, strategy, name))
    return PlacementGroup(pg_id, specs)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's reservation; tasks and actors running in it are stopped."""
    from ..api import _runtime
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"remove_placement_group expects a PlacementGroup, got {type(placement_group).__name__}")
    _runtime().send(p.RemovePlacementGroup(placement_group.id))


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """State of one group (or of all, keyed by id): strategy, state, bundles."""
    from ..api import _runtime
    pg_id = placement_group.id if placement_group is not None else None
    table, _ = _runtime().call(lambda rid: p.PlacementGroupTable(rid, pg_id))
    return table or {}


def get_current_placement_group() -> PlacementGroup | None:
    """ember does not capture child tasks into their parent's group; always None."""
    return None

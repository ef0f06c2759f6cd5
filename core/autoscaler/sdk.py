"""``request_resources``: ask the autoscaler for capacity ahead of the work (Ray's SDK)."""

from __future__ import annotations

import numbers
from typing import Sequence

import ember

from .._types import ResourceShape
from .errors import AutoscalerNotRunningError
from .state import find_state_actor


def request_resources(num_cpus: int | None = None, bundles: Sequence[dict[str, float]] | None = None) -> None:
    """Make the cluster big enough to hold ``num_cpus`` CPUs and ``bundles`` at once.

    The request stands until the next call replaces it (``request_resources()`` with no
    arguments clears it): the autoscaler keeps nodes that the request needs even when
    they are idle, and launches nodes for what the cluster's total resources cannot hold.
    Like Ray, it sizes the cluster; it does not reserve anything for the caller.

    Args:
        num_cpus: that many 1-CPU bundles.
        bundles: resource shapes, e.g. ``[{"CPU": 2, "GPU": 1}] * 4``.

    Raises:
        TypeError / ValueError: a count or bundle is malformed (names which).
        AutoscalerNotRunningError: the cluster has no autoscaler (start it with ``ember up``).

    Example:
        >>> request_resources(num_cpus=8)  # doctest: +SKIP
    """
    shapes: list[ResourceShape] = []
    if num_cpus is not None:
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, numbers.Integral) or num_cpus < 0:
            raise ValueError(f"request_resources(num_cpus={num_cpus!r}): num_cpus must be a whole number >= 0")
        shapes += [{"CPU": 1.0}] * int(num_cpus)
    for i, bundle in enumerate(bundles or []):
        if not isinstance(bundle, dict) or not bundle:
            raise TypeError(f"request_resources(bundles=...): bundle {i} is {bundle!r}; each bundle is a "
                            "non-empty dict of resource name -> amount, e.g. {'CPU': 2}")
        for name, amount in bundle.items():
            if not isinstance(name, str) or isinstance(amount, bool) or not isinstance(amount, numbers.Real) \
                    or amount < 0:
                raise ValueError(f"request_resources(bundles=...): bundle {i} asks {name!r}: {amount!r}; "
                                 "amounts are numbers >= 0")
        shapes.append({k: float(v) for k, v in bundle.items()})
    if not ember.is_initialized():
        ember.init(address="auto")
    actor = find_state_actor()
    if actor is None:
        raise AutoscalerNotRunningError()
    ember.get(actor.request_resources.remote(shapes))

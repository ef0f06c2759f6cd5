"""Libraries on top of ember's public API (Ray's ``ray.util``).

``ActorPool`` and the placement-group functions are exported here; the queue, the
``multiprocessing.Pool`` drop-in, the joblib backend, metrics and accelerator names are
submodules (``ember.util.queue``, ``ember.util.metrics``, ...) loaded on first access
(``ember.util.metrics.Counter`` works after ``import ember``), so importing
``ember.util`` does not import joblib.
"""

import importlib
from types import ModuleType

from ember.util.actor_pool import ActorPool
from ember.util.placement_group import (PlacementGroup, get_current_placement_group, get_placement_group,
                                        placement_group, placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group", "get_placement_group",
           "placement_group", "placement_group_table", "remove_placement_group"]


def __getattr__(name: str) -> ModuleType:
    """Import the submodule ``ember.util.<name>`` on first access (PEP 562), as Ray's
    ``ray.util.metrics`` is reachable after ``import ray``."""
    if name.startswith("_"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = module
    return module

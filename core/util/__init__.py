"""Libraries on top of ember's public API (Ray's ``ray.util``).

``ActorPool`` is exported here; the queue, the ``multiprocessing.Pool`` drop-in and the
joblib backend are submodules (``ember.util.queue``, ``ember.util.multiprocessing``,
``ember.util.joblib``) so importing ``ember.util`` does not import joblib.
"""

from ember.util.actor_pool import ActorPool
from ember.util.placement_group import (PlacementGroup, get_current_placement_group, placement_group,
                                        placement_group_table, remove_placement_group)

__all__ = ["ActorPool", "PlacementGroup", "get_current_placement_group", "placement_group",
           "placement_group_table", "remove_placement_group"]

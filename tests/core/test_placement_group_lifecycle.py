"""Placement groups created and removed in a loop: the head keeps a bounded record of
removed groups and placing a new group does not slow down with how many came before."""

from __future__ import annotations

import pytest

import ember
from ember.util.placement_group import placement_group, placement_group_table, remove_placement_group

pytestmark = pytest.mark.timeout(120)


def test_removed_groups_are_kept_in_the_table_only_up_to_a_bound(ember_local) -> None:
    first = None
    for _ in range(11):
        groups = [placement_group([{"CPU": 0.01}]) for _ in range(100)]
        first = first or groups[0]
        ember.get([g.ready() for g in groups], timeout=30)
        for g in groups:
            remove_placement_group(g)
    table = placement_group_table()
    assert 1000 <= len(table) <= 1001 and all(t["state"] == "REMOVED" for t in table.values())
    assert first.id.hex() not in table  # the oldest removed ones went first
    live = placement_group([{"CPU": 1}])
    assert live.wait(30)
    assert placement_group_table(live)["state"] == "CREATED"
    remove_placement_group(live)

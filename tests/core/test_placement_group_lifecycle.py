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


@pytest.mark.filterwarnings("ignore:placement group .* cannot be placed:RuntimeWarning")
def test_wait_on_a_group_removed_before_it_was_placed_is_false(ember_local) -> None:
    """Its ready() ref failed: wait() says it was not placed, and a later ready() asks again
    instead of handing back the failed ref."""
    pending = placement_group([{"CPU": 64}])
    failed = pending.ready()
    remove_placement_group(pending)
    with pytest.raises(ember.exceptions.EmberError, match="removed before it was placed"):
        ember.get(failed, timeout=30)
    assert pending.wait(5) is False
    assert pending.ready() != failed

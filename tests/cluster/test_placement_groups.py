"""Placement groups reserve bundles across nodes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import ember
from ember.util.placement_group import (PlacementGroup, placement_group, placement_group_table,
                                        remove_placement_group)
from ember.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .conftest import wait_for

_TIMEOUT_S = 30


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def test_strict_spread_over_three_nodes_puts_one_bundle_on_each(three_nodes) -> None:
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert pg.wait(_TIMEOUT_S)
    refs = [where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
            for i in range(3)]
    roles = [three_nodes.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)]
    assert sorted(roles) == ["b", "c", "head"], roles
    # Bundle i stays on its node: asking again lands on the same nodes.
    again = [where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, i)).remote()
             for i in range(3)]
    assert [three_nodes.role_of(n) for n in ember.get(again, timeout=_TIMEOUT_S)] == roles
    remove_placement_group(pg)


def test_strict_spread_with_more_bundles_than_nodes_stays_pending_and_warns(three_nodes) -> None:
    with pytest.warns(RuntimeWarning, match="STRICT_SPREAD.*cannot be placed"):
        pg = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
        assert not pg.wait(1)
    assert placement_group_table(pg)["state"] == "PENDING"
    remove_placement_group(pg)
    # Its reservation attempt left nothing behind: a full-width group still fits.
    fits = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
    assert fits.wait(_TIMEOUT_S)
    remove_placement_group(fits)


_DRIVER_WITH_GROUPS = textwrap.dedent("""
    import json, sys
    import ember
    from ember.util.placement_group import placement_group

    ember.init(address=sys.argv[1])
    kept = placement_group([{"CPU": 0.1}], name="kept", lifetime="detached")
    dropped = placement_group([{"CPU": 0.1}], name="dropped")
    assert kept.wait(30) and dropped.wait(30)
    print(json.dumps({"kept": kept.id.hex(), "dropped": dropped.id.hex()}))
    ember.shutdown()
""")


def test_a_jobs_placement_groups_end_with_it_unless_detached(three_nodes) -> None:
    """The groups are made by a second driver (a separate process); when it exits, its
    plain group is removed and its resources come back, its detached group stays."""
    done = subprocess.run([sys.executable, "-c", _DRIVER_WITH_GROUPS, three_nodes.address],
                          env=three_nodes.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout.splitlines()[-1])
    table = wait_for(lambda: (t := placement_group_table()) and t[ids["dropped"]]["state"] == "REMOVED"
                     and t, timeout_s=_TIMEOUT_S, what="the second driver's plain group to be removed")
    assert table[ids["kept"]]["state"] == "CREATED"
    remove_placement_group(PlacementGroup(bytes.fromhex(ids["kept"])))
    wait_for(lambda: placement_group_table()[ids["kept"]]["state"] == "REMOVED", timeout_s=_TIMEOUT_S,
             what="the detached group to be removed")

"""plan(): the autoscaler's decision, by plain calls (no cluster, no clock)."""

from __future__ import annotations

import pytest

from ember.autoscaler import NodeState, NodeType, PendingGroup, plan

pytestmark = pytest.mark.timeout(30)

SMALL = NodeType("small", {"CPU": 1.0}, 0, 3)
BIG = NodeType("big", {"CPU": 4.0}, 0, 2)
GPU = NodeType("gpu", {"CPU": 2.0, "GPU": 1.0}, 0, 1)


def _plan(demand: list, nodes: list | None = None, types: tuple = (SMALL,), max_workers: int = 10,
          idle_timeout_s: float = 60.0, **kw: object):
    return plan(demand, nodes or [], list(types), max_workers=max_workers, idle_timeout_s=idle_timeout_s, **kw)


def _busy(node_id: str, node_type: str | None, cpus: float) -> NodeState:
    return NodeState(node_id, node_type, {"CPU": cpus}, {}, "running", 0.0)


def _idle(node_id: str, node_type: str | None, cpus: float, idle_s: float) -> NodeState:
    return NodeState(node_id, node_type, {"CPU": cpus}, {"CPU": cpus}, "running", idle_s)


def test_a_burst_that_needs_three_nodes_launches_the_two_missing() -> None:
    decided = _plan([{"CPU": 1.0}] * 2, [_busy("head", None, 0.0), _busy("w1", "small", 1.0)])
    assert decided.launch == {"small": 2} and not decided.terminate


def test_demand_that_fits_free_room_launches_nothing() -> None:
    assert _plan([{"CPU": 1.0}] * 2, [_idle("w1", "small", 2.0, 0.5)]).launch == {}


def test_nodes_still_launching_count_as_room() -> None:
    launching = NodeState("w1", "small", {"CPU": 1.0}, {"CPU": 1.0}, "launching")
    assert _plan([{"CPU": 1.0}] * 2, [launching]).launch == {"small": 1}


def test_the_type_that_holds_most_of_the_demand_wins() -> None:
    assert _plan([{"CPU": 1.0}] * 4, types=(SMALL, BIG)).launch == {"big": 1}


def test_a_gpu_shape_gets_the_gpu_type() -> None:
    decided = _plan([{"GPU": 1.0}, {"CPU": 1.0}], types=(SMALL, GPU))
    assert decided.launch == {"gpu": 1}


def test_per_type_max_workers_is_never_exceeded_and_the_rest_is_unmet() -> None:
    decided = _plan([{"CPU": 1.0}] * 5, [_busy("w1", "small", 1.0)])
    assert decided.launch == {"small": 2}
    assert decided.unmet == [{"CPU": 1.0}] * 3 and decided.infeasible == []


def test_the_global_max_workers_caps_all_types_together() -> None:
    decided = _plan([{"CPU": 4.0}] * 2 + [{"CPU": 1.0}] * 3, types=(SMALL, BIG), max_workers=2)
    assert sum(decided.launch.values()) == 2


def test_a_shape_no_type_can_hold_is_infeasible_not_launched_for() -> None:
    decided = _plan([{"CPU": 8.0}, {"TPU": 1.0}], types=(SMALL, BIG))
    assert decided.launch == {} and sorted(map(str, decided.infeasible)) == ["{'CPU': 8.0}", "{'TPU': 1.0}"]


def test_min_workers_are_launched_without_demand() -> None:
    assert _plan([], types=(NodeType("small", {"CPU": 1.0}, 2, 3),)).launch == {"small": 2}


def test_idle_nodes_past_the_timeout_go_but_never_below_min_workers() -> None:
    types = (NodeType("small", {"CPU": 1.0}, 1, 3),)
    nodes = [_idle("w1", "small", 1.0, 100.0), _idle("w2", "small", 1.0, 50.0), _idle("w3", "small", 1.0, 5.0),
             _idle("head", None, 0.0, 100.0)]
    decided = _plan([], nodes, types=types, idle_timeout_s=10.0)
    assert decided.terminate == ["w1", "w2"]  # w3 is not idle long enough; the head is never removed


def test_an_idle_node_that_pending_demand_fits_is_kept() -> None:
    decided = _plan([{"CPU": 1.0}], [_idle("w1", "small", 1.0, 100.0)], idle_timeout_s=10.0)
    assert decided.terminate == [] and decided.launch == {}


def test_requested_resources_count_against_totals_and_keep_idle_nodes() -> None:
    nodes = [_idle("w1", "small", 1.0, 100.0)]
    decided = _plan([], nodes, idle_timeout_s=10.0, requested=[{"CPU": 1.0}] * 3)
    assert decided.launch == {"small": 2} and decided.terminate == []
    busy = [_busy("w1", "small", 1.0)]  # busy or not, a node's total counts for a request
    assert _plan([], busy, requested=[{"CPU": 1.0}]).launch == {}


def test_a_strict_pack_group_needs_one_node_that_holds_all_bundles() -> None:
    group = PendingGroup("STRICT_PACK", ({"CPU": 1.0}, {"CPU": 1.0}))
    assert _plan([], types=(SMALL, BIG), placement_groups=[group]).launch == {"big": 1}
    assert _plan([], types=(SMALL,), placement_groups=[group]).infeasible == [{"CPU": 2.0}]


def test_a_strict_spread_group_needs_one_node_per_bundle() -> None:
    group = PendingGroup("STRICT_SPREAD", ({"CPU": 1.0},) * 3)
    assert _plan([], types=(BIG,), placement_groups=[group], max_workers=5).launch == {"big": 2}
    assert _plan([], types=(NodeType("big", {"CPU": 4.0}, 0, 5),), placement_groups=[group]).launch == {"big": 3}


def test_memory_and_node_address_resources_do_not_block_packing() -> None:
    node = NodeState("w1", "small", {"CPU": 1.0, "memory": 1e9, "node:127.0.0.1": 1.0},
                     {"CPU": 1.0, "memory": 1e9, "node:127.0.0.1": 1.0}, "running", 1.0)
    assert _plan([{"CPU": 1.0, "memory": 5e9}], [node]).launch == {}

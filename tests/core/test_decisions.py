"""The node manager's pure decisions (core/decisions.py, core/resources.py, plan_bundles):
plain calls, no processes."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import pytest

from ember._node.decisions import Here, Refuse, There, actor_may_restart, choose_node, respill_target
from ember.exceptions import EmberError
from ember._resources import (belongs_to_group, bundle_resources, fits, fits_ever, group_of,
                             in_bundle, is_group_resource, without_group_resources)
from ember._node.scheduler import plan_bundles

pytestmark = pytest.mark.timeout(30)

A, B, C = b"\x01" * 16, b"\x02" * 16, b"\x03" * 16


@dataclass
class Node:
    node_id: bytes
    tcp_address: str
    totals: dict
    available: dict
    alive: bool = True


def _view(*nodes: Node) -> dict[bytes, Node]:
    return {n.node_id: n for n in nodes}


def _cluster(a_free: float = 2.0, b_free: float = 2.0, c_free: float = 2.0) -> dict[bytes, Node]:
    return _view(Node(A, "tcp:a:1", {"CPU": 2.0}, {"CPU": a_free}),
                 Node(B, "tcp:b:1", {"CPU": 2.0}, {"CPU": b_free}),
                 Node(C, "tcp:c:1", {"CPU": 4.0, "GPU": 1.0}, {"CPU": c_free, "GPU": 1.0}))


def _choose(shape: dict, strategy: tuple | None = None, free_here: dict | None = None,
            view: dict | None = None, spread_turn: int = 0) -> object:
    view = _cluster() if view is None else view
    free = view[A].available if free_here is None else free_here
    return choose_node(shape, strategy, A, free, view, totals_here=view[A].totals,
                       spread_turn=spread_turn)


# --- choose_node ----------------------------------------------------------------------


def test_a_request_that_fits_here_stays_here() -> None:
    assert _choose({"CPU": 1.0}) == Here()


def test_a_single_node_keeps_everything_even_what_never_fits() -> None:
    view = _view(Node(A, "tcp:a:1", {"CPU": 2.0}, {"CPU": 0.0}))
    assert _choose({"CPU": 64.0}, view=view) == Here()


def test_a_busy_node_sends_the_request_to_the_node_with_most_free_cpus() -> None:
    choice = _choose({"CPU": 1.0}, free_here={"CPU": 0.0}, view=_cluster(b_free=1.0, c_free=3.0))
    assert choice == There("tcp:c:1")


def test_a_busy_node_keeps_a_request_nobody_can_take_now_if_it_ever_fits_here() -> None:
    choice = _choose({"CPU": 2.0}, free_here={"CPU": 0.0}, view=_cluster(b_free=1.0, c_free=1.0))
    assert choice == Here()


def test_a_request_that_never_fits_here_goes_where_it_fits_now_or_waits_here() -> None:
    choice = _choose({"GPU": 1.0}, view=_cluster(c_free=0.0))
    assert choice == There("tcp:c:1")
    busy = _cluster()
    busy[C].available = {"CPU": 0.0, "GPU": 0.0}
    # Not into the busy node's queue: it waits here, and moves to the first node with room.
    assert _choose({"GPU": 1.0}, view=busy) == Here()
    assert respill_target({"GPU": 1.0}, None, A, {"CPU": 2.0}, busy, totals_here={"CPU": 2.0}) is None
    busy[C].available = {"CPU": 0.0, "GPU": 1.0}
    assert respill_target({"GPU": 1.0}, None, A, {"CPU": 2.0}, busy, totals_here={"CPU": 2.0}) == "tcp:c:1"


def test_a_request_no_node_ever_fits_waits_here() -> None:
    assert _choose({"TPU": 1.0}) == Here()


def test_dead_nodes_are_not_chosen() -> None:
    view = _cluster()
    view[C].alive = False
    assert _choose({"GPU": 1.0}, view=view) == Here()


def test_spread_rotates_over_the_nodes_where_it_fits() -> None:
    picks = [_choose({"CPU": 1.0}, ("SPREAD",), spread_turn=turn) for turn in range(3)]
    assert picks == [Here(), There("tcp:b:1"), There("tcp:c:1")]


def test_hard_affinity_to_a_live_node_goes_there_even_if_busy() -> None:
    view = _cluster(b_free=0.0)
    assert _choose({"CPU": 1.0}, ("NODE_AFFINITY", B.hex(), False), view=view) == There("tcp:b:1")
    assert _choose({"CPU": 1.0}, ("NODE_AFFINITY", A.hex(), False), view=view) == Here()


def test_hard_affinity_to_a_dead_node_is_refused_with_the_fix() -> None:
    view = _cluster()
    view[B].alive = False
    choice = _choose({"CPU": 1.0}, ("NODE_AFFINITY", B.hex(), False), view=view)
    assert isinstance(choice, Refuse) and isinstance(choice.error, EmberError)
    assert B.hex() in str(choice.error) and "soft=True" in str(choice.error)


def test_soft_affinity_falls_back_when_the_node_is_gone_or_never_fits() -> None:
    view = _cluster()
    view[B].alive = False
    assert _choose({"CPU": 1.0}, ("NODE_AFFINITY", B.hex(), True), view=view) == Here()
    assert _choose({"GPU": 1.0}, ("NODE_AFFINITY", B.hex(), True)) == There("tcp:c:1")


def test_choose_node_does_not_mutate_the_view() -> None:
    view = _cluster(b_free=1.0)
    before = copy.deepcopy(view)
    for strategy in (None, ("SPREAD",), ("NODE_AFFINITY", B.hex(), True)):
        _choose({"CPU": 1.0}, strategy, free_here={"CPU": 0.0}, view=view)
    assert view == before


# --- respill_target -------------------------------------------------------------------


def test_a_queued_request_that_fits_here_now_stays() -> None:
    assert respill_target({"CPU": 2.0}, None, A, {"CPU": 2.0}, _cluster(), totals_here={"CPU": 2.0}) is None


def test_a_queued_request_on_a_busy_node_moves_to_a_node_with_room_now() -> None:
    assert respill_target({"CPU": 2.0}, None, A, {"CPU": 0.0}, _cluster(a_free=0.0, b_free=0.0),
                          totals_here={"CPU": 2.0}) == "tcp:c:1"


def test_a_queued_request_that_never_fits_here_moves_where_it_fits() -> None:
    assert respill_target({"GPU": 1.0}, None, A, {"CPU": 2.0}, _cluster(),
                          totals_here={"CPU": 2.0}) == "tcp:c:1"


def test_soft_affinity_that_fell_back_moves_where_there_is_room() -> None:
    strategy = ("NODE_AFFINITY", B.hex(), True)  # B could never take it; it waits on A
    assert respill_target({"GPU": 1.0}, strategy, A, {"CPU": 2.0}, _cluster(),
                          totals_here={"CPU": 2.0}) == "tcp:c:1"
    named_here = ("NODE_AFFINITY", A.hex(), True)  # named this node, which can never fit it
    assert respill_target({"GPU": 1.0}, named_here, A, {"CPU": 2.0}, _cluster(),
                          totals_here={"CPU": 2.0}) == "tcp:c:1"


def test_a_queued_request_waits_here_rather_than_queue_on_a_busy_node() -> None:
    busy = {A: Node(A, "tcp:a:1", {"CPU": 0.0}, {"CPU": 0.0}),
            B: Node(B, "tcp:b:1", {"CPU": 2.0}, {"CPU": 0.0})}
    assert respill_target({"CPU": 1.0}, None, A, {"CPU": 0.0}, busy, totals_here={"CPU": 0.0}) is None


def test_a_queued_request_with_node_affinity_stays_where_it_asked_to_run() -> None:
    """A busy node keeps its affinity requests even when another node has room now."""
    view = _cluster(a_free=0.0)
    for soft in (False, True):
        assert respill_target({"CPU": 1.0}, ("NODE_AFFINITY", A.hex(), soft), A, {"CPU": 0.0}, view,
                              totals_here={"CPU": 2.0}) is None
    assert respill_target({"CPU": 1.0}, None, A, {"CPU": 0.0}, view, totals_here={"CPU": 2.0}) is not None


# --- actor_may_restart ----------------------------------------------------------------


@pytest.mark.parametrize("max_restarts, num_restarts, no_restart, owner_alive, detached, expected", [
    (0, 0, False, True, False, False),    # no restarts asked for
    (2, 1, False, True, False, True),     # one left
    (2, 2, False, True, False, False),    # used up
    (-1, 99, False, True, False, True),   # unlimited
    (-1, 0, True, True, False, False),    # killed for good
    (3, 0, False, False, False, False),   # its job ended
    (3, 0, False, False, True, True),     # detached outlives its job
])
def test_actor_restart_rule(max_restarts: int, num_restarts: int, no_restart: bool, owner_alive: bool,
                            detached: bool, expected: bool) -> None:
    assert actor_may_restart(max_restarts, num_restarts, no_restart, owner_alive=owner_alive,
                             detached=detached) is expected


# --- resources and bundle names -------------------------------------------------------


def test_fits_tolerates_float_noise_and_fits_ever_rejects_split_gpus() -> None:
    assert fits({"CPU": 1.0}, {"CPU": 0.1 * 10})
    assert not fits({"CPU": 1.0}, {"CPU": 1.01})
    assert not fits({}, {"TPU": 1.0})
    assert fits_ever({"GPU": 4.0}, {"GPU": 2.0}) and not fits_ever({"GPU": 4.0}, {"GPU": 1.5})


def test_a_request_in_a_bundle_is_rewritten_onto_the_groups_resources() -> None:
    pg = "ab" * 14
    anywhere = in_bundle({"CPU": 1.0}, pg, -1)
    assert anywhere == {f"CPU_group_{pg}": 1.0, f"bundle_group_{pg}": 0.001}
    indexed = in_bundle({"CPU": 1.0}, pg, 1)
    assert indexed[f"CPU_group_1_{pg}"] == 1.0 and indexed[f"CPU_group_{pg}"] == 1.0
    assert group_of(anywhere) == pg and group_of(indexed) == pg and group_of({"CPU": 1.0}) is None
    assert all(is_group_resource(name) and belongs_to_group(name, pg) for name in indexed)
    assert without_group_resources({**indexed, "CPU": 2.0}) == {"CPU": 2.0}


def test_a_placed_group_offers_what_its_requests_ask_for() -> None:
    pg = "cd" * 14
    offered = bundle_resources(pg, [(0, {"CPU": 1.0}), (1, {"CPU": 2.0})])
    assert offered[f"CPU_group_{pg}"] == 3.0 and offered[f"CPU_group_1_{pg}"] == 2.0
    assert fits(offered, in_bundle({"CPU": 2.0}, pg, 1))
    assert not fits(offered, in_bundle({"CPU": 2.0}, pg, 0))


# --- plan_bundles ---------------------------------------------------------------------


def test_pack_puts_every_bundle_on_the_first_node_that_holds_them_all() -> None:
    plan = plan_bundles([("a", {"CPU": 1.0}), ("b", {"CPU": 4.0})], [{"CPU": 1.0}] * 3, "PACK")
    assert plan == {"b": [(0, {"CPU": 1.0}), (1, {"CPU": 1.0}), (2, {"CPU": 1.0})]}


def test_pack_fills_nodes_in_order_when_no_node_holds_them_all() -> None:
    plan = plan_bundles([("a", {"CPU": 2.0}), ("b", {"CPU": 2.0})], [{"CPU": 1.0}] * 3, "PACK")
    assert plan == {"a": [(0, {"CPU": 1.0}), (1, {"CPU": 1.0})], "b": [(2, {"CPU": 1.0})]}


def test_strict_pack_refuses_to_split() -> None:
    assert plan_bundles([("a", {"CPU": 2.0}), ("b", {"CPU": 2.0})], [{"CPU": 1.0}] * 3,
                        "STRICT_PACK") is None


def test_spread_uses_the_least_used_node_first() -> None:
    plan = plan_bundles([("a", {"CPU": 4.0}), ("b", {"CPU": 4.0})], [{"CPU": 1.0}] * 4, "SPREAD")
    assert {n: len(b) for n, b in plan.items()} == {"a": 2, "b": 2}


def test_strict_spread_needs_one_node_per_bundle() -> None:
    nodes = [("a", {"CPU": 4.0}), ("b", {"CPU": 4.0})]
    assert plan_bundles(nodes, [{"CPU": 1.0}] * 3, "STRICT_SPREAD") is None
    plan = plan_bundles(nodes, [{"CPU": 1.0}] * 2, "STRICT_SPREAD")
    assert sorted(plan) == ["a", "b"]


def test_plan_bundles_does_not_mutate_the_free_resources() -> None:
    nodes = [("a", {"CPU": 2.0})]
    plan_bundles(nodes, [{"CPU": 1.0}] * 2, "PACK")
    assert nodes == [("a", {"CPU": 2.0})]

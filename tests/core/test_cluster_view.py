"""The head's view of the cluster, by plain calls: idle clocks and spill reservations
(what the autoscaler reads through ``ember.nodes()``)."""

from __future__ import annotations

import pytest

from ember._node.membership import ClusterView, NodeInfo

pytestmark = pytest.mark.timeout(30)

A, B = b"\x01" * 16, b"\x02" * 16


def _node(node_id: bytes, available: float, pending: list | None = None) -> NodeInfo:
    return NodeInfo(node_id, f"tcp:127.0.0.1:{node_id[0]}", "unix", {"CPU": 2.0}, {"CPU": available},
                    pending=pending or [])


def test_a_node_with_everything_free_and_nothing_queued_is_idle() -> None:
    view = ClusterView()
    view.upsert(_node(A, 2.0))
    assert view.nodes[A].idle_since is not None
    assert view.nodes[A].as_dict()["IdleS"] >= 0.0


def test_a_busy_or_queued_node_is_not_idle_and_its_clock_restarts() -> None:
    view = ClusterView()
    view.upsert(_node(A, 2.0))
    view.heartbeat(A, {"CPU": 2.0}, {"CPU": 1.0}, [])
    assert view.nodes[A].idle_since is None and view.nodes[A].as_dict()["IdleS"] == 0.0
    view.heartbeat(A, {"CPU": 2.0}, {"CPU": 2.0}, [{"CPU": 4.0}])
    assert view.nodes[A].idle_since is None
    view.heartbeat(A, {"CPU": 2.0}, {"CPU": 2.0}, [])
    assert view.nodes[A].idle_since is not None


def test_the_idle_clock_survives_a_fresh_record_of_the_same_node() -> None:
    view = ClusterView()
    view.upsert(_node(A, 2.0))
    since = view.nodes[A].idle_since
    view.upsert(_node(A, 2.0))
    assert view.nodes[A].idle_since == since


def test_a_spilled_request_counts_against_its_target_until_the_next_heartbeat() -> None:
    view = ClusterView()
    view.upsert(_node(A, 2.0))
    view.upsert(_node(B, 2.0))
    view.reserve("tcp:127.0.0.1:2", {"CPU": 1.5})
    assert view.nodes[B].available == {"CPU": 0.5}
    assert view.pick({"CPU": 1.0}, exclude=b"", spread=False).node_id == A
    view.heartbeat(B, {"CPU": 2.0}, {"CPU": 2.0}, [])
    assert view.nodes[B].available == {"CPU": 2.0}

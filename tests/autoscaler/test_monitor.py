"""The monitor's bookkeeping by plain calls: an in-memory provider and a scripted node
table stand in for machines and the head (the end-to-end tests use real ones)."""

from __future__ import annotations

import pytest

from ember.autoscaler import Monitor, NodeProvider, load_config
from ember.autoscaler.provider import TAG_LAUNCH_ERROR, TAG_NODE_STATUS, TAG_NODE_TYPE

pytestmark = pytest.mark.timeout(30)


class MemoryProvider(NodeProvider):
    """Nodes are dict entries; a test decides when they fail."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict] = {}
        self.created = 0
        self.terminated: list[str] = []

    def create_node(self, node_type: str, resources: dict, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            self.created += 1
            node_id = f"n{self.created}"
            self.nodes[node_id] = {"type": node_type, "port": 7000 + self.created, "failed": ""}
            ids.append(node_id)
        return ids

    def terminate_node(self, node_id: str) -> None:
        if self.nodes.pop(node_id, None) is not None:
            self.terminated.append(node_id)

    def non_terminated_nodes(self) -> list[str]:
        return list(self.nodes)

    def node_tags(self, node_id: str) -> dict[str, str]:
        node = self.nodes[node_id]
        tags = {TAG_NODE_TYPE: node["type"], TAG_NODE_STATUS: "failed" if node["failed"] else "launching"}
        if node["failed"]:
            tags[TAG_LAUNCH_ERROR] = node["failed"]
        return tags

    def internal_address(self, node_id: str) -> str:
        return f"127.0.0.1:{self.nodes[node_id]['port']}"


def _node(port: int, cpus: float, idle_s: float = 0.0, pending: list | None = None, head: bool = False) -> dict:
    return {"NodeID": f"id{port}", "Alive": True, "IsHead": head, "NodeManagerAddress": "127.0.0.1",
            "NodeManagerPort": port, "Resources": {"CPU": cpus}, "PendingDemand": pending or [],
            "PendingPlacementGroups": [], "IdleS": idle_s}


CONFIG = load_config({"max_workers": 2, "idle_timeout_s": 10, "update_interval_s": 1, "launch_timeout_s": 5,
                      "provider": {"type": "local"},
                      "available_node_types": {"w": {"resources": {"CPU": 1}, "max_workers": 2}}})


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_launch_that_never_joins_fails_after_the_timeout_and_is_retried_with_backoff() -> None:
    provider, clock = MemoryProvider(), Clock()
    table = [_node(6379, 0.0, pending=[{"CPU": 1.0}], head=True)]
    monitor = Monitor(CONFIG, provider, lambda: table, clock=clock)
    assert monitor.update().launch == {"w": 1} and provider.created == 1
    clock.now = 6.0  # past launch_timeout_s, never joined
    monitor.update()
    assert provider.terminated == ["n1"] and monitor.failures_total == {"w": 1}
    assert "did not join within launch_timeout_s=5" in monitor.failures[-1].error
    assert provider.created == 1  # backing off for update_interval_s
    clock.now = 7.5
    monitor.update()
    assert provider.created == 2


def test_a_failed_start_is_reported_with_its_output_and_a_joined_node_resets_the_streak() -> None:
    provider, clock = MemoryProvider(), Clock()
    table = [_node(6379, 0.0, pending=[{"CPU": 1.0}], head=True)]
    reports: list[dict] = []
    monitor = Monitor(CONFIG, provider, lambda: table, publish=reports.append, clock=clock)
    monitor.update()
    provider.nodes["n1"]["failed"] = "ember start: cannot reach the head"
    monitor.update()
    assert reports[-1]["launch_failures"][-1]["error"] == "ember start: cannot reach the head"
    clock.now = 1.5
    monitor.update()  # retried
    table.append(_node(provider.nodes["n2"]["port"], 1.0))
    table[0]["PendingDemand"] = []
    monitor.update()
    assert monitor._streak["w"] == 0 and reports[-1]["nodes"][0]["status"] == "running"


def test_idle_nodes_go_and_a_node_that_left_the_cluster_is_cleaned_up() -> None:
    provider, clock = MemoryProvider(), Clock()
    table = [_node(6379, 0.0, pending=[{"CPU": 1.0}] * 2, head=True)]
    monitor = Monitor(CONFIG, provider, lambda: table, clock=clock)
    monitor.update()
    assert sorted(provider.nodes) == ["n1", "n2"]
    table[:] = [_node(6379, 0.0, head=True), _node(provider.nodes["n1"]["port"], 1.0, idle_s=11.0),
                _node(provider.nodes["n2"]["port"], 1.0, idle_s=1.0)]
    assert monitor.update().terminate == ["n1"]
    del table[2]  # n2's node manager died
    monitor.update()
    assert provider.nodes == {} and provider.terminated == ["n1", "n2"]

"""A node's Prometheus endpoint: system metrics, and users' metrics (ember.util.metrics)
recorded in tasks and actors, exported by their workers through the node."""

from __future__ import annotations

import os
from types import SimpleNamespace
from typing import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ember
from ember._node.launcher import read_http_urls
from ember.util.metrics import Counter, Gauge, Histogram
from tests.conftest import assert_no_leaked_processes, wait_for

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def node() -> Iterator[SimpleNamespace]:
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=2, object_store_memory=64 << 20, include_dashboard=False)
    with open(os.path.join(info["session_dir"], "token")) as f:
        token = f.read().strip()
    yield SimpleNamespace(url=read_http_urls(info["session_dir"])["metrics_url"], token=token,
                          node_id=info["node_id"])
    ember.shutdown()
    assert_no_leaked_processes()


def scrape(node: SimpleNamespace) -> dict[str, dict[tuple, float]]:
    """metric sample name -> {sorted label items: value}."""
    r = httpx.get(node.url, headers={"authorization": f"Bearer {node.token}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_system_metrics_describe_the_node(node: SimpleNamespace) -> None:
    ref = ember.put(b"x" * (1 << 20))
    metrics = wait_for(lambda: (m := scrape(node))["ember_object_store_used_bytes"][
        (("NodeId", node.node_id),)] >= 1 << 20 and m, what="the put object in the store metric")
    me = (("NodeId", node.node_id),)
    assert 0 <= metrics["ember_node_cpu_utilization"][me] <= 100
    assert 0 < metrics["ember_node_mem_used_bytes"][me] < metrics["ember_node_mem_total_bytes"][me]
    assert metrics["ember_object_store_capacity_bytes"][me] == 64 << 20
    assert metrics["ember_object_store_objects"][me] >= 1
    assert metrics["ember_object_store_spilled_bytes"][me] == 0
    assert (("Name", "CPU"), ("NodeId", node.node_id)) in metrics["ember_resources_total"]
    assert metrics["ember_leases"][me] >= 0
    assert metrics["ember_node_cpu_utilization"]  # one sample per node
    del ref


@ember.remote
def noop() -> int:
    return 1


def test_workers_appear_by_state(node: SimpleNamespace) -> None:
    assert ember.get(noop.remote(), timeout=60) == 1
    workers = wait_for(lambda: scrape(node).get("ember_workers"), what="a worker in ember_workers")
    assert sum(workers.values()) >= 1
    assert all(dict(labels)["State"] in ("starting", "idle", "leased", "actor") for labels in workers)


@ember.remote
def record(route: str, n: int) -> None:
    requests = Counter("app_requests", description="requests served", tag_keys=("route",))
    latency = Histogram("app_latency_s", boundaries=[0.1, 1.0], tag_keys=("route",))
    for i in range(n):
        requests.inc(tags={"route": route})
        latency.observe(0.05 if i % 2 == 0 else 0.5, tags={"route": route})


@ember.remote
class Queue:
    def __init__(self) -> None:
        self.depth = Gauge("app_queue_depth", description="items waiting")

    def set(self, n: int) -> int:
        self.depth.set(n)
        return n


def test_users_metrics_from_tasks_and_actors_reach_the_nodes_endpoint(node: SimpleNamespace) -> None:
    ember.get([record.remote("/a", 3), record.remote("/a", 2), record.remote("/b", 1)], timeout=60)
    q = Queue.remote()
    assert ember.get(q.set.remote(7), timeout=60) == 7

    def exported() -> dict | None:
        m = scrape(node)
        counts = m.get("app_requests_total", {})
        ok = (counts.get((("route", "/a"),)) == 5 and counts.get((("route", "/b"),)) == 1
              and m.get("app_queue_depth", {}).get(()) == 7)
        return m if ok else None

    metrics = wait_for(exported, timeout_s=30, what="the tasks' counters and the actor's gauge")
    assert metrics["app_latency_s_count"][(("route", "/a"),)] == 5
    assert metrics["app_latency_s_bucket"][(("le", "0.1"), ("route", "/a"))] == 3
    assert metrics["app_latency_s_bucket"][(("le", "1.0"), ("route", "/a"))] == 5
    assert metrics["app_latency_s_sum"][(("route", "/a"),)] == pytest.approx(3 * 0.05 + 2 * 0.5)

    # The actor's worker exits: its counter-free gauge goes with it, the tasks' counts stay.
    ember.kill(q)
    wait_for(lambda: "app_queue_depth" not in scrape(node) or not scrape(node)["app_queue_depth"],
             timeout_s=30, what="the dead actor's gauge to go")
    assert scrape(node)["app_requests_total"][(("route", "/a"),)] == 5


def test_the_drivers_own_metrics_are_exported_too(node: SimpleNamespace) -> None:
    Counter("driver_events").inc(4)
    wait_for(lambda: scrape(node).get("driver_events_total", {}).get(()) == 4, timeout_s=30,
             what="the driver's counter on its node's endpoint")

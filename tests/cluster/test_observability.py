"""Observability across nodes: every node's stats reach the head's dashboard, every node
serves its own Prometheus endpoint (users' metrics of its workers included), and the
dashboard reads another node's worker logs."""

from __future__ import annotations

import os
import subprocess

import httpx
import pytest

import ember
from ember._node.launcher import read_http_urls
from ember.util.metrics import Counter
from conftest import wait_for

from .conftest import Cluster, ember_cli

pytestmark = pytest.mark.timeout(120)


def _token(cluster: Cluster) -> dict[str, str]:
    with open(os.path.join(cluster.sessions["head"], "token")) as f:
        return {"authorization": f"Bearer {f.read().strip()}"}


@ember.remote(resources={"node_b": 0.01})
def on_b(marker: str) -> str:
    Counter("jobs_on_b", tag_keys=("kind",)).inc(3, tags={"kind": "x"})
    print(marker, flush=True)
    return ember.get_runtime_context().get_node_id()


def test_every_nodes_stats_and_metrics_reach_the_head_and_its_own_endpoint(three_nodes: Cluster) -> None:
    headers = _token(three_nodes)
    dashboard = read_http_urls(three_nodes.sessions["head"])["dashboard_url"]
    assert dashboard

    def nodes_with_stats() -> list | None:
        rows = httpx.get(dashboard + "/api/nodes", headers=headers).json()["rows"]
        return rows if len(rows) == 3 and all(r["stats"] for r in rows) else None
    rows = wait_for(nodes_with_stats, timeout_s=30, what="stats of all three nodes on the head")
    assert {r["node_id"] for r in rows} == set(three_nodes.node_ids.values())
    for row in rows:
        assert 0 < row["stats"]["memory_used_bytes"] < row["stats"]["memory_total_bytes"]

    for role, session in three_nodes.sessions.items():
        metrics_url = read_http_urls(session)["metrics_url"]
        assert httpx.get(metrics_url).status_code == 401
        text = httpx.get(metrics_url, headers=headers).text
        assert f'ember_node_cpu_utilization{{NodeId="{three_nodes.node_ids[role]}"}}' in text, role


def test_a_workers_metric_is_served_by_its_own_node(three_nodes: Cluster) -> None:
    headers = _token(three_nodes)
    assert ember.get(on_b.remote("metric-run"), timeout=60) == three_nodes.node_ids["b"]
    b_url = read_http_urls(three_nodes.sessions["b"])["metrics_url"]
    wait_for(lambda: 'jobs_on_b_total{kind="x"} 3.0' in httpx.get(b_url, headers=headers).text,
             timeout_s=30, what="node b's worker's counter on node b's endpoint")
    c_url = read_http_urls(three_nodes.sessions["c"])["metrics_url"]
    assert "jobs_on_b" not in httpx.get(c_url, headers=headers).text


def test_the_dashboard_reads_a_log_on_another_node(three_nodes: Cluster) -> None:
    headers = _token(three_nodes)
    dashboard = read_http_urls(three_nodes.sessions["head"])["dashboard_url"]
    assert ember.get(on_b.remote("line-from-node-b"), timeout=60) == three_nodes.node_ids["b"]
    b = three_nodes.node_ids["b"]

    def found() -> bool:
        listing = httpx.get(dashboard + "/logs", headers=headers).text
        workers = [w for w in ember.util.state.list_workers(filters=[("node_id", "=", b)])
                   if w["worker_type"] == "WORKER"]
        return any("line-from-node-b" in httpx.get(dashboard + "/logs/view", headers=headers, params={
            "node_id": b, "filename": f"worker-{w['worker_id']}.log"}).text for w in workers) \
            and b[:12] in listing
    wait_for(found, timeout_s=30, what="node b's worker log through the head's dashboard")


def test_ember_dashboard_prints_where_the_dashboard_is(three_nodes: Cluster) -> None:
    done = subprocess.run(ember_cli() + ["dashboard"], env=three_nodes.env, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    urls = read_http_urls(three_nodes.sessions["head"])
    assert urls["dashboard_url"] in done.stdout and urls["metrics_url"] in done.stdout
    assert f"{three_nodes.sessions['head']}/token" in done.stdout
    assert httpx.get(urls["dashboard_url"] + "/api/nodes").status_code == 401

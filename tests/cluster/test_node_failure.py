"""A node that dies is reported dead, and the rest of the cluster keeps working.

Each test kills a node, so each gets a cluster of its own (``fresh_three_nodes``).
"""

from __future__ import annotations

import os
import signal
import time

import psutil

import ember

from .conftest import NODE_TIMEOUT_S, Cluster, wait_for

_TIMEOUT_S = 30


@ember.remote(num_cpus=1)
def where() -> str:
    return ember.get_runtime_context().get_node_id()


def _alive(node_id: str) -> bool:
    return any(n["NodeID"] == node_id and n["Alive"] for n in ember.nodes())


def _node_processes(cluster: Cluster, role: str) -> list[psutil.Process]:
    manager = psutil.Process(cluster.pids[role])
    return [manager] + manager.children(recursive=True)


def _assert_the_rest_still_runs_tasks(cluster: Cluster, dead: str) -> None:
    survivors = {"head", "b", "c"} - {dead}
    refs = [where.options(scheduling_strategy="SPREAD").remote() for _ in range(6)]
    assert {cluster.role_of(n) for n in ember.get(refs, timeout=_TIMEOUT_S)} <= survivors
    for role in survivors - {"head"}:
        ref = where.options(resources={f"node_{role}": 1}).remote()
        assert cluster.role_of(ember.get(ref, timeout=_TIMEOUT_S)) == role


def test_a_node_killed_with_sigkill_is_reported_dead_and_tasks_run_on_the_rest(fresh_three_nodes) -> None:
    cluster = fresh_three_nodes
    # Warm node c up so that it has workers to lose.
    warm = where.options(resources={"node_c": 1}).remote()
    assert cluster.role_of(ember.get(warm, timeout=_TIMEOUT_S)) == "c"
    processes = _node_processes(cluster, "c")
    killed_at = time.monotonic()
    os.kill(cluster.pids["c"], signal.SIGKILL)
    wait_for(lambda: not _alive(cluster.node_ids["c"]), timeout_s=NODE_TIMEOUT_S + 2.0,
             what="ember.nodes() to report node c dead")
    assert time.monotonic() - killed_at < NODE_TIMEOUT_S + 2.0
    assert sum(n["Alive"] for n in ember.nodes()) == 2
    _assert_the_rest_still_runs_tasks(cluster, dead="c")
    # The killed node's fork server and workers do not outlive it.
    wait_for(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in processes),
             timeout_s=10, what="node c's fork server and workers to exit")


def test_a_silent_node_is_reported_dead_after_the_heartbeat_timeout(fresh_three_nodes) -> None:
    """SIGSTOP keeps the node's connection open: only the missing heartbeats reveal it."""
    cluster = fresh_three_nodes
    stopped_at = time.monotonic()
    os.kill(cluster.pids["b"], signal.SIGSTOP)
    try:
        wait_for(lambda: not _alive(cluster.node_ids["b"]), timeout_s=NODE_TIMEOUT_S + 2.0,
                 what="ember.nodes() to report the silent node b dead")
        silent_for = time.monotonic() - stopped_at
        assert silent_for >= NODE_TIMEOUT_S - 0.3, f"declared dead after only {silent_for:.2f}s of silence"
        _assert_the_rest_still_runs_tasks(cluster, dead="b")
    finally:
        os.kill(cluster.pids["b"], signal.SIGKILL)

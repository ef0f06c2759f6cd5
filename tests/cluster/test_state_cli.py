"""`ember list/get/summary/logs/timeline` against a CLI-started three-node loopback cluster:
state from every node, logs of a task that ran on another node (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import pytest

import ember

from .conftest import Cluster, ember_cli, wait_for

pytestmark = pytest.mark.timeout(180)


def _cli(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(ember_cli() + list(args), env=cluster.env, capture_output=True, text=True,
                          timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"`ember {' '.join(args)}` exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


@ember.remote(resources={"node_b": 0.1})
def on_b(word: str) -> str:
    print(f"task on b says {word}")
    return word


@ember.remote(resources={"node_c": 0.1}, max_retries=0)
def fails_on_c() -> None:
    raise KeyError("missing on c")


def test_list_and_get_tasks_from_every_node(three_nodes: Cluster) -> None:
    cluster = three_nodes
    ref = on_b.remote("bonjour")
    bad = fails_on_c.remote()
    assert ember.get(ref) == "bonjour"
    with pytest.raises(KeyError):
        ember.get(bad)
    tid, bad_tid = ref.task_id().hex(), bad.task_id().hex()

    def listed() -> dict | None:
        rows = json.loads(_cli(cluster, "list", "tasks", "--format", "json", "--limit", "1000").stdout)
        by_id = {r["task_id"]: r for r in rows}
        ok = by_id.get(tid, {}).get("state") == "FINISHED" and by_id.get(bad_tid, {}).get("state") == "FAILED"
        return by_id if ok else None

    by_id = wait_for(listed, timeout_s=30, what="both tasks in `ember list tasks`")
    assert by_id[tid]["node_id"] == cluster.node_ids["b"]
    assert by_id[bad_tid]["node_id"] == cluster.node_ids["c"]
    failed = _cli(cluster, "list", "tasks", "--filter", "state=FAILED", "--filter", "name=fails_on_c").stdout
    assert bad_tid in failed and tid not in failed
    record = _cli(cluster, "get", "tasks", bad_tid).stdout
    assert "KeyError" in record and "missing on c" in record and "error_type: TASK_EXECUTION_EXCEPTION" in record
    summary = _cli(cluster, "summary", "tasks").stdout
    assert "on_b" in summary and "FINISHED" in summary


def test_logs_of_a_task_that_ran_on_another_node(three_nodes: Cluster) -> None:
    cluster = three_nodes
    ref = on_b.remote("from-node-b")
    assert ember.get(ref) == "from-node-b"
    tid = ref.task_id().hex()
    out = wait_for(lambda: "task on b says from-node-b" in (o := _cli(cluster, "logs", "--task-id", tid,
                                                                       check=False).stdout) and o,
                   timeout_s=30, what="the task's line in `ember logs --task-id`")
    assert "task on b says from-node-b" in out
    listing = _cli(cluster, "logs").stdout
    assert listing.count("node_manager.log") == 3
    node_log = _cli(cluster, "logs", "--node-id", cluster.node_ids["b"], "--tail", "5").stdout
    assert len(node_log.splitlines()) <= 5


def test_workers_and_nodes_of_every_node_are_listed(three_nodes: Cluster) -> None:
    cluster = three_nodes
    ember.get([on_b.remote("x")])
    nodes = json.loads(_cli(cluster, "list", "nodes", "--format", "json").stdout)
    assert sorted(n["node_id"] for n in nodes) == sorted(cluster.node_ids.values())
    workers = json.loads(_cli(cluster, "list", "workers", "--format", "json", "--limit", "1000").stdout)
    assert cluster.node_ids["b"] in {w["node_id"] for w in workers}
    head = _cli(cluster, "get", "nodes", cluster.node_ids["head"]).stdout
    assert "is_head_node: True" in head


def test_bad_input_on_the_command_line_is_an_error_naming_it(three_nodes: Cluster) -> None:
    cluster = three_nodes
    done = _cli(cluster, "list", "tasks", "--filter", "state", check=False)
    assert done.returncode == 1 and "state=RUNNING" in done.stderr
    done = _cli(cluster, "list", "tasks", "--filter", "colour=red", check=False)
    assert done.returncode == 1 and "colour" in done.stderr
    done = _cli(cluster, "get", "actors", "ab" * 16, check=False)
    assert done.returncode == 1 and "ab" * 16 in done.stderr and "ember list actors" in done.stderr
    done = _cli(cluster, "logs", "--actor-id", "zz", check=False)
    assert done.returncode == 1 and "hex" in done.stderr


def test_timeline_writes_a_chrome_trace(three_nodes: Cluster) -> None:
    cluster = three_nodes
    ember.get([on_b.remote(str(i)) for i in range(3)])
    # Not tmp_path: while a CLI cluster runs, the temp dir is its private one (gone after).
    path = os.path.join(cluster.tmpdir, "trace.json")
    wait_for(lambda: _cli(cluster, "timeline", "--output", path) and
             sum(1 for e in json.load(open(path)) if e.get("name") == "on_b") >= 3,
             timeout_s=30, what="three on_b slices in the trace")


def test_submitted_jobs_are_listed_next_to_drivers(three_nodes: Cluster) -> None:
    cluster = three_nodes
    _cli(cluster, "job", "submit", "--submission-id", "state-listing", "--", "python", "-c", "print(7)")

    def listed() -> dict | None:
        jobs = json.loads(_cli(cluster, "list", "jobs", "--format", "json").stdout)
        found = [j for j in jobs if j["submission_id"] == "state-listing"]
        return found[0] if found and found[0]["status"] == "SUCCEEDED" else None

    job = wait_for(listed, timeout_s=60, what="the submitted job SUCCEEDED in `ember list jobs`")
    assert job["type"] == "SUBMISSION" and "print(7)" in job["entrypoint"] and job["end_time"] >= job["start_time"]
    drivers = _cli(cluster, "list", "jobs", "--filter", "type=DRIVER", "--format", "json").stdout
    assert ember.get_runtime_context().get_job_id() in drivers

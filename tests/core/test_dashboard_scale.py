"""The dashboard pages a head table of 100,000 tasks on the server: a page, the last page,
a filter, each one request. (Speeds are recorded in docs/benchmarks.md, not asserted.)"""

from __future__ import annotations

import os
import re
import time

import httpx
import pytest

import ember
from ember._client import context
from ember._wire import protocol as p
from tests.conftest import assert_no_leaked_processes, wait_for

pytestmark = pytest.mark.timeout(120)

NUM_TASKS = 100_000
FAILED_EVERY = 10
BATCH = 5_000


def _record_tasks() -> None:
    """Send NUM_TASKS tasks' events (submitted, then finished or failed) from this driver,
    as its own task event buffer would, without running them (a real run of 100,000
    tasks takes minutes on this machine's two cores)."""
    rt = context.runtime()
    now = time.time()
    for start in range(0, NUM_TASKS, BATCH):
        events = []
        for i in range(start, start + BATCH):
            task_id = i.to_bytes(8, "big") + b"\xee" * 16
            events.append(("S", task_id, now, f"task_{i % 100}", "NORMAL_TASK", None, None, {"CPU": 1.0},
                           False, None))
            failed = i % FAILED_EVERY == 0
            events.append(("F", task_id, now, now + 0.001, "TASK_EXECUTION_EXCEPTION" if failed else None,
                           f"ValueError: scale {i}" if failed else ""))
        rt.link.send(p.TaskEvents(rt.worker_id, rt.node_id, os.getpid(), rt.job_id, events))


def test_pages_of_100000_tasks_are_cut_on_the_server() -> None:
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=1, object_store_memory=64 << 20, dashboard_port=0)
    try:
        with open(os.path.join(info["session_dir"], "token")) as f:
            headers = {"authorization": f"Bearer {f.read().strip()}"}
        url = info.dashboard_url
        _record_tasks()

        def total() -> int:
            return httpx.get(url + "/api/tasks", params={"limit": 1}, headers=headers).json()["total"]
        wait_for(lambda: total() >= NUM_TASKS, timeout_s=60, what="100,000 tasks in the head's table")

        timings = {}
        for label, params in (("first page", {}), ("last page", {"offset": NUM_TASKS - 100}),
                              ("failed only", {"state": "FAILED", "offset": 500}),
                              ("by name", {"name": "task_7"})):
            t0 = time.perf_counter()
            r = httpx.get(url + "/tasks", params=params, headers=headers, timeout=30)
            timings[label] = time.perf_counter() - t0
            assert r.status_code == 200, r.text
            assert len(re.findall(r'<a href="/tasks/[0-9a-f]+">', r.text)) == 100, label
        shown = lambda params: re.search(r'id="pager-range">([^<]*)<', httpx.get(  # noqa: E731
            url + "/tasks", params=params, headers=headers, timeout=30).text).group(1)
        assert shown({"offset": NUM_TASKS - 100}) == f"{NUM_TASKS - 99}-{NUM_TASKS} of {NUM_TASKS}"
        assert shown({"state": "FAILED"}) == f"1-100 of {NUM_TASKS // FAILED_EVERY}"
        assert shown({"name": "task_7"}) == f"1-100 of {NUM_TASKS // 100}"
        print("dashboard /tasks over 100,000 tasks: " + ", ".join(f"{k} {v * 1000:.0f} ms"
                                                                   for k, v in timings.items()))
    finally:
        ember.shutdown()
        assert_no_leaked_processes()

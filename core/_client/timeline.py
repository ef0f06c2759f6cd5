"""``ember.timeline()``: the recorded tasks as a Chrome trace (chrome://tracing, Perfetto).

    head's task table (every row, with detail) -> chrome_trace(): per task that ran,
        one complete event ("ph": "X") on its node (pid) and worker (tid), from start to end
        (slices on one worker never overlap: it runs one task at a time, except threaded
        and async actors, whose calls Chrome draws stacked)

Times in the trace are microseconds since the epoch, as the format wants.
"""

from __future__ import annotations

import json
from typing import Any

from .state_client import StateClient


def chrome_trace(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chrome trace events for task rows (``detail=True`` rows of the head's task table)."""
    events: list[dict[str, Any]] = []
    named: set[tuple[str, str]] = set()
    for row in rows:
        start_ms, end_ms = row.get("start_time_ms"), row.get("end_time_ms")
        if start_ms is None or row.get("node_id") is None:
            continue  # never ran: nothing to draw
        pid = f"node {row['node_id'][:12]}"
        tid = f"worker {row['worker_pid']}" if row.get("worker_pid") else f"worker {row['worker_id'][:12]}"
        if (pid, tid) not in named:
            named.add((pid, tid))
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": tid}})
        end_ms = end_ms if end_ms is not None else start_ms  # still running: a zero-length slice
        failed = row["state"] == "FAILED"
        events.append({
            "cat": "task", "name": row["name"] or row["task_id"], "ph": "X", "pid": pid, "tid": tid,
            "ts": start_ms * 1000, "dur": max(0, end_ms - start_ms) * 1000,
            "cname": "terrible" if failed else "rail_response",
            "args": {"task_id": row["task_id"], "state": row["state"], "job_id": row["job_id"],
                     "attempt_number": row["attempt_number"], "actor_id": row["actor_id"],
                     "error_type": row["error_type"], "submitted_ms": row.get("creation_time_ms")}})
    return events


def timeline(filename: str | None = None) -> list[dict[str, Any]] | None:
    """The cluster's recorded tasks as Chrome trace events (Ray's ``ray.timeline``).

    Args:
        filename: write the events there as JSON (open it in chrome://tracing or
            https://ui.perfetto.dev) and return None; without it, return the events.

    Raises:
        StateApiError: no cluster to ask.

    Example:
        >>> ember.timeline("/tmp/trace.json")
    """
    with StateClient() as client:
        events = chrome_trace(client.all_rows("tasks", detail=True))
    if filename is None:
        return events
    with open(filename, "w") as f:
        json.dump(events, f)
    return None

"""The head's table of tasks, merged from every process's task events (plain class, no I/O).

    TaskEvents batch (from an owner or a worker, in any order)
        -> add_batch(): one TaskRow per task id, created by whichever event comes first
           S submitted (name, type, job, parent, resources)   A args ready
           P pushed (attempt)   R running   F finished/failed (start, end, error)
           X failed at the owner (cancelled, worker died, argument failed)
           C an actor's __init__ ran (its creation task, keyed by the actor's id)
    query(filters, offset, limit) -> {"rows": [...], "total": N, "offset": k, ...}

Bounded: at most ``max_tasks`` rows; the oldest (first seen) goes first and
``dropped_tasks`` counts it. Events arrive out of order across processes (a worker's
"F" may come before its owner's "S"), so a row's state only moves forward in the order
of TASK_STATES, except that a new attempt ("P" with a higher attempt) starts over.

A query filters TaskRow attributes directly (no dict per row), so a page out of
100,000 tasks costs one pass of cheap comparisons; only the rows of the page become
dicts.
"""

from __future__ import annotations

import collections
import os
from typing import Any, Callable, Iterable, Iterator

from .._types import NodeID, TaskID, WorkerID
from .._wire import protocol as p
from .._wire.state_query import TASK_STATES, Filter, as_text, columns_of

#: Rows the head keeps (Ray: RAY_task_events_max_num_task_in_gcs, 100,000 by default).
MAX_TASKS = int(os.environ.get("EMBER_TASK_EVENTS_MAX_NUM_TASKS", "100000"))
#: Workers whose pid and node the head remembers from their batches (for actor rows).
_MAX_WORKERS_KEPT = 65536

_RANK = {state: i for i, state in enumerate(TASK_STATES)}
_FINISHED_RANK = _RANK["FINISHED"]


class TaskRow:
    """One task as the head knows it; times are seconds since the epoch (None: not yet)."""

    __slots__ = ("task_id", "attempt", "name", "type", "state", "job_id", "actor_id", "parent_task_id",
                 "node_id", "worker_id", "worker_pid", "error_type", "error_message",
                 "required_resources", "placement_group_id", "creation_s", "start_s", "end_s", "events")

    def __init__(self, task_id: TaskID) -> None:
        self.task_id = task_id
        self.attempt = 0
        self.name = ""
        self.type = "NORMAL_TASK"
        self.state = "PENDING_NODE_ASSIGNMENT"
        self.job_id: bytes | None = None
        self.actor_id: bytes | None = None
        self.parent_task_id: bytes | None = None
        self.node_id: NodeID | None = None
        self.worker_id: WorkerID | None = None
        self.worker_pid: int | None = None
        self.error_type: str | None = None
        self.error_message: str | None = None
        self.required_resources: dict[str, float] | None = None
        self.placement_group_id: str | None = None
        self.creation_s: float | None = None
        self.start_s: float | None = None
        self.end_s: float | None = None
        #: (state, time) in the order they happened.
        self.events: list[tuple[str, float]] = []

    def _move(self, state: str, at_s: float) -> None:
        self.events.append((state, at_s))
        if _RANK[state] >= _RANK[self.state]:
            self.state = state

    def as_dict(self, detail: bool) -> dict[str, Any]:
        row = {"task_id": self.task_id.hex(), "attempt_number": max(0, self.attempt - 1),
               "name": self.name, "state": self.state, "job_id": _hex(self.job_id),
               "actor_id": _hex(self.actor_id), "type": self.type, "func_or_class_name": self.name,
               "parent_task_id": _hex(self.parent_task_id), "node_id": _hex(self.node_id),
               "worker_id": _hex(self.worker_id), "worker_pid": self.worker_pid,
               "error_type": self.error_type}
        if detail:
            row.update({
                "language": "PYTHON", "required_resources": self.required_resources,
                "runtime_env_info": None, "placement_group_id": self.placement_group_id,
                "events": [{"state": s, "created_ms": _ms(t)} for s, t in sorted(self.events, key=_at)],
                "profiling_data": None, "creation_time_ms": _ms(self.creation_s),
                "start_time_ms": _ms(self.start_s), "end_time_ms": _ms(self.end_s),
                "task_log_info": ({"stdout_file": f"worker-{self.worker_id.hex()}.log",
                                   "stderr_file": f"worker-{self.worker_id.hex()}.log"}
                                  if self.worker_id else None),
                "error_message": self.error_message, "is_debugger_paused": None, "call_site": None})
        return row


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds is not None else None


def _at(event: tuple[str, float]) -> float:
    return event[1]


#: Task columns -> how to read them off a TaskRow for filtering (as_text compares).
_GETTERS: dict[str, Callable[[TaskRow], Any]] = {
    "task_id": lambda r: r.task_id, "attempt_number": lambda r: max(0, r.attempt - 1),
    "name": lambda r: r.name, "func_or_class_name": lambda r: r.name, "state": lambda r: r.state,
    "job_id": lambda r: r.job_id, "actor_id": lambda r: r.actor_id, "type": lambda r: r.type,
    "parent_task_id": lambda r: r.parent_task_id, "node_id": lambda r: r.node_id,
    "worker_id": lambda r: r.worker_id, "worker_pid": lambda r: r.worker_pid,
    "error_type": lambda r: r.error_type, "language": lambda r: "PYTHON",
    "placement_group_id": lambda r: r.placement_group_id, "error_message": lambda r: r.error_message,
}


def _predicate(f: Filter) -> Callable[[TaskRow], bool]:
    """A fast test for one filter on a TaskRow (state and ids compare without conversion)."""
    if f.column == "state":
        want = f.value.upper()
        return (lambda r: r.state != want) if f.negate else (lambda r: r.state == want)
    getter = _GETTERS.get(f.column)
    if getter is None:  # a detail column without a cheap getter: compare its dict value
        return lambda r: f.matches(r.as_dict(True).get(f.column))
    if f.column in ("task_id", "job_id", "actor_id", "parent_task_id", "node_id", "worker_id") \
            and f.value not in ("none", ""):
        want_bytes = bytes.fromhex(f.value)
        return (lambda r: getter(r) != want_bytes) if f.negate else (lambda r: getter(r) == want_bytes)
    return lambda r: (as_text(getter(r)) == f.value) != f.negate


class TaskEventStore:
    """Every recorded task, newest last, bounded by ``max_tasks``."""

    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.max_tasks = max(1, max_tasks)
        self.rows: collections.OrderedDict[TaskID, TaskRow] = collections.OrderedDict()
        #: Rows dropped here because the table was full (oldest first).
        self.dropped_tasks = 0
        #: Events processes dropped before sending them (their buffers were full).
        self.dropped_events = 0
        #: worker id -> (pid, node id), learned from batches (actor rows show the pid).
        self.workers: collections.OrderedDict[WorkerID, tuple[int, NodeID]] = collections.OrderedDict()

    def _row(self, task_id: TaskID) -> TaskRow:
        row = self.rows.get(task_id)
        if row is None:
            row = self.rows[task_id] = TaskRow(task_id)
            if len(self.rows) > self.max_tasks:
                self.rows.popitem(last=False)
                self.dropped_tasks += 1
        return row

    def add_batch(self, msg: p.TaskEvents) -> None:
        """Merge one process's batch (the lock of the node manager is held)."""
        self.dropped_events += msg.dropped
        if msg.worker_id not in self.workers:
            self.workers[msg.worker_id] = (msg.pid, msg.node_id)
            if len(self.workers) > _MAX_WORKERS_KEPT:
                self.workers.popitem(last=False)
        for event in msg.events:
            code = event[0]
            row = self._row(event[1])
            if row.job_id is None:
                row.job_id = msg.job_id
            if code == "F":
                _, _, start_s, end_s, error_type, message = event
                row.node_id, row.worker_id, row.worker_pid = msg.node_id, msg.worker_id, msg.pid
                row.start_s, row.end_s = start_s, end_s
                if ("RUNNING", start_s) not in row.events:
                    row.events.append(("RUNNING", start_s))
                if error_type is None:
                    row.error_type = row.error_message = None
                    row._move("FINISHED", end_s)
                else:
                    row.error_type, row.error_message = error_type, message
                    row._move("FAILED", end_s)
            elif code == "S":
                _, _, at_s, name, kind, actor_id, parent, shape, waiting, group = event
                row.name, row.type, row.actor_id, row.parent_task_id = name, kind, actor_id, parent
                row.required_resources, row.creation_s = shape, at_s
                row.placement_group_id = group[0] if group else None
                row._move("PENDING_ARGS_AVAIL" if waiting else "PENDING_NODE_ASSIGNMENT", at_s)
            elif code == "P":
                _, _, at_s, attempt = event
                if attempt > row.attempt:
                    if row.attempt and _RANK.get(row.state, 0) >= _FINISHED_RANK:
                        row.state = "SUBMITTED_TO_WORKER"  # a retry starts over
                        row.end_s = row.error_type = row.error_message = None
                    row.attempt = attempt
                row._move("SUBMITTED_TO_WORKER", at_s)
            elif code == "R":
                _, _, at_s = event
                row.node_id, row.worker_id, row.worker_pid = msg.node_id, msg.worker_id, msg.pid
                row.start_s = at_s
                row._move("RUNNING", at_s)
            elif code == "C":
                _, actor_id, start_s, end_s, class_name, error_type, message = event
                row.type, row.name, row.actor_id = "ACTOR_CREATION_TASK", f"{class_name}.__init__", actor_id
                row.node_id, row.worker_id, row.worker_pid = msg.node_id, msg.worker_id, msg.pid
                row.attempt += 1
                if row.creation_s is None:
                    row.creation_s = start_s
                row.start_s, row.end_s = start_s, end_s
                row.error_type, row.error_message = error_type, message
                row.state = "RUNNING"  # a restart runs __init__ again: the row follows it
                row.events.append(("RUNNING", start_s))
                row._move("FAILED" if error_type else "FINISHED", end_s)
            elif code == "A":
                row._move("PENDING_NODE_ASSIGNMENT", event[2])
            elif code == "X":
                _, _, at_s, error_type, message = event
                row.error_type, row.error_message, row.end_s = error_type, message, at_s
                row._move("FAILED", at_s)

    # --- queries ----------------------------------------------------------------------

    def matching(self, filters: Iterable[Filter], newest_first: bool = False) -> Iterator[TaskRow]:
        tests = [_predicate(f) for f in filters]
        rows = reversed(self.rows.values()) if newest_first else iter(self.rows.values())
        if not tests:
            return rows
        if len(tests) == 1:
            return filter(tests[0], rows)
        return (r for r in rows if all(t(r) for t in tests))

    def query(self, filters: list[Filter], offset: int = 0, limit: int = 100, detail: bool = False,
              newest_first: bool = False) -> dict[str, Any]:
        """One page of the rows matching every filter, oldest first (or newest first).

        ``total`` counts every match, so a pager knows how many pages there are.
        """
        page: list[dict[str, Any]] = []
        total = 0
        end = offset + limit
        for row in self.matching(filters, newest_first):
            if offset <= total < end:
                page.append(row.as_dict(detail))
            total += 1
        return {"rows": page, "total": total, "offset": offset, "columns": list(columns_of("tasks", detail)),
                **self.counters()}

    def counters(self) -> dict[str, int]:
        return {"num_tasks": len(self.rows), "dropped_tasks": self.dropped_tasks,
                "dropped_events": self.dropped_events}

    def summary(self) -> dict[str, Any]:
        """Ray's summarize_tasks shape: per function name, the count of tasks in each state."""
        by_name: dict[str, dict[str, Any]] = {}
        actor_tasks = actor_scheduled = 0
        for row in self.rows.values():
            entry = by_name.get(row.name)
            if entry is None:
                entry = by_name[row.name] = {"func_or_class_name": row.name, "type": row.type,
                                             "state_counts": {}}
            counts = entry["state_counts"]
            counts[row.state] = counts.get(row.state, 0) + 1
            if row.type == "ACTOR_TASK":
                actor_tasks += 1
            elif row.type == "ACTOR_CREATION_TASK":
                actor_scheduled += 1
        return {"cluster": {"summary": by_name, "total_tasks": len(self.rows) - actor_tasks - actor_scheduled,
                            "total_actor_tasks": actor_tasks, "total_actor_scheduled": actor_scheduled,
                            "summary_by": "func_name"}, **self.counters()}

    def all_rows(self, filters: list[Filter]) -> list[dict[str, Any]]:
        """Every matching row with detail (the timeline's input)."""
        return [row.as_dict(True) for row in self.matching(filters)]

    def mark_job_finished(self, job_id: bytes, at_s: float) -> int:
        """A driver exited: its tasks that never ended failed with it. Returns how many."""
        n = 0
        for row in self.rows.values():
            if row.job_id == job_id and _RANK.get(row.state, 0) < _FINISHED_RANK:
                row.error_type, row.error_message, row.end_s = (
                    "WORKER_DIED", "the job's driver exited before the task ended", at_s)
                row._move("FAILED", at_s)
                n += 1
        return n

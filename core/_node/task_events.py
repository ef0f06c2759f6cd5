"""The head's table of tasks, merged from every process's task events (plain class, no I/O).

    TaskEvents batch (from an owner or a worker, in any order)
        -> add_batch(): one row per task id, created by whichever event comes first
           S submitted (name, type, job, parent, resources)   A args ready
           P pushed (attempt)   R running   F finished/failed (start, end, error)
           X failed at the owner (cancelled, worker died, argument failed)
           C an actor's __init__ ran (its creation task, keyed by the actor's id)
    query(filters, offset, limit) -> {"rows": [...], "total": N, "offset": k, ...}

Bounded: at most ``max_tasks`` rows; the oldest (first seen) goes first and
``dropped_tasks`` counts it. Events arrive out of order across processes (a worker's
"F" may come before its owner's "S"), so a row's state only moves forward in the order
of TASK_STATES, except that a new attempt ("P" with a higher attempt) starts over.

A query tests rows directly (no dict per row), so a page out of 100,000 tasks costs
one pass of cheap comparisons; only the rows of the page become dicts.
"""

from __future__ import annotations

import collections
import operator
import os
from itertools import compress, islice, repeat
from operator import itemgetter
from typing import Any, Iterator

from .._types import NodeID, TaskID, WorkerID
from .._wire import protocol as p
from .._wire.state_query import TASK_STATES, Filter, as_text, columns_of

#: Rows the head keeps (Ray: RAY_task_events_max_num_task_in_gcs, 100,000 by default).
MAX_TASKS = int(os.environ.get("EMBER_TASK_EVENTS_MAX_NUM_TASKS", "100000"))
#: Workers whose pid and node the head remembers from their batches (for actor rows).
_MAX_WORKERS_KEPT = 65536

#: States by rank: a row's state only moves up, so late events cannot undo newer ones.
_RANK = {state: i for i, state in enumerate(TASK_STATES)}
ARGS, NODE, PUSHED, RUNNING, FINISHED, FAILED = range(6)

# A row is a plain list, indexed by these names: building one is a list display, and
# merging an event a few item stores (objects with 20 attributes cost ~4x as much, which
# mattered: the head merges three events per task, issue 17's budget is 5% of a task).
(TASK_ID, ATTEMPT, NAME, TYPE, STATE, JOB_ID, ACTOR_ID, PARENT_ID, NODE_ID, WORKER_ID, PID,
 ERROR_TYPE, ERROR_MESSAGE, RESOURCES, GROUP_ID, CREATED_S, ARGS_READY_S, PUSHED_S, START_S,
 END_S) = range(20)
#: One row: [task id, attempt, name, type, state rank, job, actor, parent, node, worker, pid,
#: error type, error message, resources, placement group, created, args ready, pushed,
#: started, ended] (times in seconds since the epoch, None until known).
TaskRow = list


def _new_row(task_id: TaskID, job_id: bytes) -> TaskRow:
    return [task_id, 0, "", "NORMAL_TASK", NODE, job_id, None, None, None, None, None,
            None, None, None, None, None, None, None, None, None]


def row_events(row: TaskRow) -> list[dict[str, Any]]:
    """The states the row went through, with times (its latest attempt's)."""
    out = []
    if row[CREATED_S] is not None:
        out.append({"state": "PENDING_ARGS_AVAIL" if row[ARGS_READY_S] is not None or row[STATE] == ARGS
                    else "PENDING_NODE_ASSIGNMENT",
                    "created_ms": _ms(row[CREATED_S])})
    if row[ARGS_READY_S] is not None:
        out.append({"state": "PENDING_NODE_ASSIGNMENT", "created_ms": _ms(row[ARGS_READY_S])})
    if row[PUSHED_S] is not None:
        out.append({"state": "SUBMITTED_TO_WORKER", "created_ms": _ms(row[PUSHED_S])})
    if row[START_S] is not None:
        out.append({"state": "RUNNING", "created_ms": _ms(row[START_S])})
    if row[END_S] is not None and row[STATE] >= FINISHED:
        out.append({"state": TASK_STATES[row[STATE]], "created_ms": _ms(row[END_S])})
    return sorted(out, key=lambda e: e["created_ms"])


def as_dict(row: TaskRow, detail: bool) -> dict[str, Any]:
    """A row with Ray's column names (``detail``: with the detail columns)."""
    worker = row[WORKER_ID]
    out = {"task_id": row[TASK_ID].hex(), "attempt_number": max(0, row[ATTEMPT] - 1),
           "name": row[NAME], "state": TASK_STATES[row[STATE]], "job_id": _hex(row[JOB_ID]),
           "actor_id": _hex(row[ACTOR_ID]), "type": row[TYPE], "func_or_class_name": row[NAME],
           "parent_task_id": _hex(row[PARENT_ID]), "node_id": _hex(row[NODE_ID]),
           "worker_id": _hex(worker), "worker_pid": row[PID], "error_type": row[ERROR_TYPE]}
    if detail:
        out.update({
            "language": "PYTHON", "required_resources": row[RESOURCES], "runtime_env_info": None,
            "placement_group_id": row[GROUP_ID], "events": row_events(row), "profiling_data": None,
            "creation_time_ms": _ms(row[CREATED_S]), "start_time_ms": _ms(row[START_S]),
            "end_time_ms": _ms(row[END_S]),
            "task_log_info": ({"stdout_file": f"worker-{worker.hex()}.log",
                               "stderr_file": f"worker-{worker.hex()}.log"} if worker else None),
            "error_message": row[ERROR_MESSAGE], "is_debugger_paused": None, "call_site": None})
    return out


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value is not None else None


def _ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds is not None else None


#: Task columns a filter reads straight off a row (others: off its detail dict).
_INDEX = {"task_id": TASK_ID, "name": NAME, "func_or_class_name": NAME, "job_id": JOB_ID,
          "actor_id": ACTOR_ID, "type": TYPE, "parent_task_id": PARENT_ID, "node_id": NODE_ID,
          "worker_id": WORKER_ID, "worker_pid": PID, "error_type": ERROR_TYPE,
          "placement_group_id": GROUP_ID, "error_message": ERROR_MESSAGE}
_ID_INDEXES = frozenset({TASK_ID, JOB_ID, ACTOR_ID, PARENT_ID, NODE_ID, WORKER_ID})


def _mask(f: Filter, rows: list[TaskRow]) -> Iterator[bool]:
    """Whether each row passes one filter, computed by C-level iterators (itemgetter,
    operator.eq over the whole column): 100,000 rows in a few milliseconds, where a Python
    predicate per row costs ten times as much."""
    compare = operator.ne if f.negate else operator.eq
    if f.column == "state":
        return map(compare, map(itemgetter(STATE), rows), repeat(_RANK[f.value.upper()]))
    index = _INDEX.get(f.column)
    if index is None:  # attempt_number, language, detail columns: compare the dict's value
        return map(compare, (as_text(as_dict(r, True).get(f.column)) for r in rows), repeat(f.value))
    if index in _ID_INDEXES and f.value not in ("none", ""):
        return map(compare, map(itemgetter(index), rows), repeat(bytes.fromhex(f.value)))
    return map(compare, map(as_text, map(itemgetter(index), rows)), repeat(f.value))


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

    def add_batch(self, msg: p.TaskEvents) -> None:
        """Merge one process's batch (the node manager's lock is held: keep it lean)."""
        self.dropped_events += msg.dropped
        if msg.worker_id not in self.workers:
            self.workers[msg.worker_id] = (msg.pid, msg.node_id)
            if len(self.workers) > _MAX_WORKERS_KEPT:
                self.workers.popitem(last=False)
        rows, job, node, worker, pid = self.rows, msg.job_id, msg.node_id, msg.worker_id, msg.pid
        for event in msg.events:
            code = event[0]
            row = rows.get(event[1])
            if row is None:
                row = rows[event[1]] = _new_row(event[1], job)
                if len(rows) > self.max_tasks:
                    rows.popitem(last=False)
                    self.dropped_tasks += 1
            if code == "F":  # a worker: (start, end, error type, message)
                row[NODE_ID], row[WORKER_ID], row[PID], row[START_S], row[END_S] = node, worker, pid, event[2], event[3]
                if event[4] is None:
                    if row[STATE] < FINISHED:
                        row[STATE] = FINISHED
                else:
                    row[ERROR_TYPE], row[ERROR_MESSAGE], row[STATE] = event[4], event[5], FAILED
            elif code == "S":  # the owner: (time, name, type, actor, parent, resources, waiting, group)
                _, _, at_s, row[NAME], row[TYPE], row[ACTOR_ID], row[PARENT_ID], row[RESOURCES], waiting, group = event
                row[CREATED_S] = at_s
                row[GROUP_ID] = group[0] if group else None
                if waiting and row[STATE] == NODE:
                    row[STATE] = ARGS
            elif code == "P":  # the owner: (time, attempt)
                attempt = event[3]
                if attempt > row[ATTEMPT]:
                    if row[ATTEMPT] and row[STATE] >= FINISHED:  # a retry starts over
                        row[STATE] = PUSHED
                        row[END_S] = row[ERROR_TYPE] = row[ERROR_MESSAGE] = None
                    row[ATTEMPT] = attempt
                row[PUSHED_S] = event[2]
                if row[STATE] < PUSHED:
                    row[STATE] = PUSHED
            elif code == "R":  # a worker: (start)
                row[NODE_ID], row[WORKER_ID], row[PID], row[START_S] = node, worker, pid, event[2]
                if row[STATE] < RUNNING:
                    row[STATE] = RUNNING
            elif code == "A":  # the owner: (time)
                row[ARGS_READY_S] = event[2]
                if row[STATE] < NODE:
                    row[STATE] = NODE
            elif code == "X":  # the owner: (time, error type, message)
                row[END_S], row[ERROR_TYPE], row[ERROR_MESSAGE], row[STATE] = event[2], event[3], event[4], FAILED
            elif code == "C":  # a worker ran an actor's __init__: (start, end, class, error type, message)
                _, actor_id, start_s, end_s, class_name, error_type, message = event
                row[TYPE], row[NAME], row[ACTOR_ID] = "ACTOR_CREATION_TASK", f"{class_name}.__init__", actor_id
                row[NODE_ID], row[WORKER_ID], row[PID] = node, worker, pid
                row[ATTEMPT] += 1  # a restart runs __init__ again: the row follows it
                if row[CREATED_S] is None:
                    row[CREATED_S] = start_s
                row[START_S], row[END_S], row[ERROR_TYPE], row[ERROR_MESSAGE] = start_s, end_s, error_type, message
                row[STATE] = FAILED if error_type else FINISHED

    # --- queries ----------------------------------------------------------------------

    def select(self, filters: list[Filter], offset: int = 0, limit: int | None = None,
               newest_first: bool = False) -> tuple[list[TaskRow], int]:
        """(the rows matching every filter from ``offset``, at most ``limit`` of them; how
        many match in all)."""
        rows = list(self.rows.values())
        if newest_first:
            rows.reverse()
        end = None if limit is None else offset + limit
        if not filters:
            return rows[offset:end], len(rows)
        mask = _mask(filters[0], rows)
        for f in filters[1:]:
            mask = map(operator.and_, mask, _mask(f, rows))
        passed = list(mask)
        return list(islice(compress(rows, passed), offset, end)), sum(passed)

    def query(self, filters: list[Filter], offset: int = 0, limit: int = 100, detail: bool = False,
              newest_first: bool = False) -> dict[str, Any]:
        """One page of the rows matching every filter, oldest first (or newest first).

        ``total`` counts every match, so a pager knows how many pages there are.
        """
        selected, total = self.select(filters, offset, limit, newest_first)
        return {"rows": [as_dict(row, detail) for row in selected], "total": total, "offset": offset,
                "columns": list(columns_of("tasks", detail)), **self.counters()}

    def counters(self) -> dict[str, int]:
        return {"num_tasks": len(self.rows), "dropped_tasks": self.dropped_tasks,
                "dropped_events": self.dropped_events}

    def summary(self) -> dict[str, Any]:
        """Ray's summarize_tasks shape: per function name, the count of tasks in each state."""
        rows = self.rows.values()
        counts: collections.Counter[tuple[str, str, int]] = collections.Counter(
            zip(map(itemgetter(NAME), rows), map(itemgetter(TYPE), rows), map(itemgetter(STATE), rows)))
        by_name: dict[str, dict[str, Any]] = {}
        by_type: collections.Counter[str] = collections.Counter()
        by_state: dict[str, int] = {}
        for (name, kind, state), n in counts.items():
            entry = by_name.setdefault(name, {"func_or_class_name": name, "type": kind, "state_counts": {}})
            entry["state_counts"][TASK_STATES[state]] = entry["state_counts"].get(TASK_STATES[state], 0) + n
            by_type[kind] += n
            by_state[TASK_STATES[state]] = by_state.get(TASK_STATES[state], 0) + n
        return {"cluster": {"summary": by_name, "total_tasks": by_type["NORMAL_TASK"],
                            "total_actor_tasks": by_type["ACTOR_TASK"],
                            "total_actor_scheduled": by_type["ACTOR_CREATION_TASK"],
                            "summary_by": "func_name"},
                # Not in Ray's shape: every task by state (the metrics' "tasks by state").
                "state_counts": by_state, **self.counters()}

    def mark_job_finished(self, job_id: bytes, at_s: float) -> int:
        """A driver exited: its tasks that never ended failed with it. Returns how many."""
        n = 0
        for row in self.rows.values():
            if row[JOB_ID] == job_id and row[STATE] < FINISHED:
                row[END_S], row[STATE] = at_s, FAILED
                row[ERROR_TYPE], row[ERROR_MESSAGE] = "WORKER_DIED", "the job's driver exited before the task ended"
                n += 1
        return n

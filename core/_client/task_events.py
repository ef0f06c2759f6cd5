"""This process's task events: a few tuples appended on the hot path, sent to the node
manager in one batch about once a second, merged into rows on the head
(ember/_node/task_events.py).

    owner (submitter):  "S" submitted -> "A" its arguments are ready -> "P" pushed to a worker
                        "X" failed without a result from a worker (cancelled, worker died,
                            an argument failed)
    worker:             ``running`` (a dict, not an event: reported as "R" by the next flush
                        only if the task still runs then) -> "F" finished or failed
                        "C" an actor's __init__ ran (its creation task; id = the actor's)
    housekeeping thread: flush_if_due() -> TaskEvents(who, events, dropped) -> node -> head

Recording must stay cheap (issue 17: at most 5% of single_client_tasks_async), so an
event is one tuple and one deque append, a short task costs three events in all, and
the worker's "running" becomes an event only for tasks that outlive a flush. The buffer
is bounded: when it is full the oldest event goes and ``dropped`` counts it; the head
adds every process's drops to its own.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from typing import Any, Callable

from .._types import JobID, NodeID, TaskID, WorkerID
from .._wire import protocol as p
from ..exceptions import (ActorDiedError, ActorUnavailableError, ObjectLostError, OutOfMemoryError,
                          TaskCancelledError, WorkerCrashedError)

#: Events one process keeps before dropping its oldest (Ray's worker-side default).
MAX_BUFFERED_EVENTS = int(os.environ.get("EMBER_TASK_EVENTS_MAX_BUFFER", "100000"))
#: How often a process sends its events (Ray: task_events_report_interval_ms).
REPORT_INTERVAL_S = float(os.environ.get("EMBER_TASK_EVENTS_REPORT_INTERVAL_MS", "1000")) / 1000.0
#: Error messages (tracebacks) kept per failed task, in characters.
MAX_ERROR_CHARS = 8192
#: A batch is cut at about this size: control frames are capped (node_server), and many
#: failed tasks with long tracebacks must not add up to one oversized frame.
MAX_BATCH_BYTES = 2 << 20

#: A task's kind, as Ray names it.
TASK_TYPES = ("NORMAL_TASK", "ACTOR_TASK", "ACTOR_CREATION_TASK")


def events_enabled_by_default() -> bool:
    """Recording is on unless ``EMBER_ENABLE_TASK_EVENTS=0`` (the process-wide switch; per
    task, ``enable_task_events=False``)."""
    return os.environ.get("EMBER_ENABLE_TASK_EVENTS", "1").lower() not in ("0", "false", "no")


def error_type_of(error: BaseException) -> str:
    """Ray's error type name for a failure the owner saw (not a user exception)."""
    if isinstance(error, TaskCancelledError):
        return "TASK_CANCELLED"
    if isinstance(error, OutOfMemoryError):
        return "OUT_OF_MEMORY"
    if isinstance(error, WorkerCrashedError):
        return "WORKER_DIED"
    if isinstance(error, ActorUnavailableError):
        return "ACTOR_UNAVAILABLE"
    if isinstance(error, ActorDiedError):
        return "ACTOR_DIED"
    if isinstance(error, ObjectLostError):
        return "OBJECT_LOST"
    return "TASK_EXECUTION_EXCEPTION"


def _discard(_msg: Any) -> None:
    pass


def _recorded(spec: p.TaskSpec) -> bool:
    # enable_task_events is a TaskSpec field from issue 14 (branch compat); absent: on.
    return getattr(spec, "enable_task_events", True) is not False


class TaskEventBuffer:
    """Args:
        send: one-way send to this process's node manager.
        worker_id, node_id, job_id: who records (sent once per batch, not per event).
        enabled: False records nothing (``EMBER_ENABLE_TASK_EVENTS=0``).
        max_events: events kept before the oldest is dropped (and counted).
    """

    def __init__(self, send: Callable[[Any], None], worker_id: WorkerID, node_id: NodeID,
                 job_id: JobID, enabled: bool = True, max_events: int = MAX_BUFFERED_EVENTS,
                 report_interval_s: float = REPORT_INTERVAL_S) -> None:
        self._send = send
        self.worker_id, self.node_id, self.job_id = worker_id, node_id, job_id
        self.enabled = enabled
        self.max_events = max(1, max_events)
        self.report_interval_s = report_interval_s
        #: Events not yet sent, oldest first. Appended from any thread (deque appends are
        #: atomic); only ``flush`` takes from the left.
        self._events: collections.deque[tuple] = collections.deque()
        #: Tasks running in this worker now: task id -> [start time, reported as "R"].
        self.running: dict[TaskID, list] = {}
        #: Events dropped since the last batch (the buffer was full).
        self.dropped = 0
        self._flush_lock = threading.Lock()
        self._next_flush_s = time.monotonic() + report_interval_s

    @classmethod
    def disabled(cls) -> TaskEventBuffer:
        """A buffer that records nothing (a submitter's until its runtime gives it one)."""
        return cls(_discard, b"", b"", b"", enabled=False)

    def _append(self, event: tuple) -> None:
        events = self._events
        if len(events) >= self.max_events:
            self._drop_oldest()
        events.append(event)

    def _drop_oldest(self) -> None:
        try:
            self._events.popleft()
            self.dropped += 1
        except IndexError:  # a flush emptied it meanwhile
            pass

    # --- the owner's side -------------------------------------------------------------

    def submitted(self, spec: p.TaskSpec, parent: TaskID | None, shape: dict[str, float] | None,
                  waiting_for_args: bool) -> None:
        """A task (``spec.actor_id`` set: an actor call) was submitted by this process."""
        # The hot path (the owner submits every task): _append and _recorded written out.
        if self.enabled and getattr(spec, "enable_task_events", True) is not False:
            events = self._events
            if len(events) >= self.max_events:
                self._drop_oldest()
            events.append(("S", spec.task_id, time.time(), spec.name,
                           "ACTOR_TASK" if spec.actor_id is not None else "NORMAL_TASK",
                           spec.actor_id, parent, shape, waiting_for_args, spec.placement_group))

    def args_ready(self, spec: p.TaskSpec) -> None:
        """A task that waited for its arguments now waits for a worker."""
        if self.enabled and _recorded(spec):
            self._append(("A", spec.task_id, time.time()))

    def pushed(self, spec: p.TaskSpec, attempt: int) -> None:
        """A task was pushed to a leased worker (its ``attempt``-th try, from 1)."""
        if self.enabled and getattr(spec, "enable_task_events", True) is not False:  # hot: written out
            events = self._events
            if len(events) >= self.max_events:
                self._drop_oldest()
            events.append(("P", spec.task_id, time.time(), attempt))

    def failed_here(self, spec: p.TaskSpec, error: BaseException | str, error_type: str | None = None) -> None:
        """A task failed without a worker's answer: cancelled, worker died, argument failed."""
        if self.enabled and _recorded(spec):
            kind = error_type or (error_type_of(error) if isinstance(error, BaseException)
                                  else "TASK_EXECUTION_EXCEPTION")
            self._append(("X", spec.task_id, time.time(), kind, str(error)[:MAX_ERROR_CHARS]))

    # --- the worker's side ------------------------------------------------------------

    def started(self, spec: p.TaskSpec) -> None:
        """A task or actor call starts running in this worker."""
        if self.enabled and _recorded(spec):
            self.running[spec.task_id] = [time.time(), False]

    def ended(self, spec: p.TaskSpec, error_type: str | None = None, error_message: str = "") -> None:
        """The call ``started`` reported ended (``error_type`` None: it succeeded)."""
        entry = self.running.pop(spec.task_id, None)
        if entry is not None:
            events = self._events
            if len(events) >= self.max_events:
                self._drop_oldest()
            events.append(("F", spec.task_id, entry[0], time.time(), error_type,
                           error_message[:MAX_ERROR_CHARS] if error_type else None))

    def actor_created(self, spec: p.ActorSpec, start_s: float, error_message: str | None) -> None:
        """This worker ran an actor's ``__init__`` (``error_message``: its traceback if it
        raised). Recorded as the actor's creation task, whose id is the actor's id."""
        if self.enabled and getattr(spec, "enable_task_events", True) is not False:
            self._append(("C", spec.actor_id, start_s, time.time(), spec.class_name,
                          None if error_message is None else "ACTOR_CREATION_FAILED",
                          None if error_message is None else error_message[:MAX_ERROR_CHARS]))

    # --- sending ------------------------------------------------------------------------

    def flush_if_due(self) -> None:
        """Send a batch if REPORT_INTERVAL_S passed since the last (housekeeping calls this)."""
        if self.enabled and time.monotonic() >= self._next_flush_s:
            self.flush()

    def flush(self) -> None:
        """Send what is buffered now, with tasks still running reported once as "R"."""
        with self._flush_lock:
            self._next_flush_s = time.monotonic() + self.report_interval_s
            for task_id, entry in list(self.running.items()):
                if not entry[1]:
                    entry[1] = True
                    self._append(("R", task_id, entry[0]))
            events = self._events
            batch: list[tuple] = []
            size = 0
            dropped, self.dropped = self.dropped, 0
            try:
                for _ in range(len(events)):
                    event = events.popleft()
                    batch.append(event)
                    size += _approx_bytes(event)
                    if size >= MAX_BATCH_BYTES:
                        self._send_batch(batch, dropped)
                        batch, size, dropped = [], 0, 0
            except IndexError:
                pass
            if batch or dropped:
                self._send_batch(batch, dropped)

    def _send_batch(self, batch: list[tuple], dropped: int) -> None:
        try:
            self._send(p.TaskEvents(self.worker_id, self.node_id, os.getpid(), self.job_id, batch, dropped))
        except Exception:  # a closed link loses this batch, never the caller's work
            self.dropped += len(batch) + dropped


def _approx_bytes(event: tuple) -> int:
    """About what an event pickles to: small, unless it carries an error message."""
    message = event[-1] if event[0] in ("F", "X", "C") else None
    return 96 + (len(message) if isinstance(message, str) else 0)

"""The state API's vocabulary, shared by the client and the node that answers: which
kinds of state exist, their columns, and what a filter may say.

    ember.util.state.list_tasks(filters=[("state", "=", "RUNNING")], limit=100)
      -> check_filters("tasks", ...)   here, in the caller: a typo fails at once, typed
      -> StateQuery(kind, filters, offset, limit, detail) -> the head
      -> the head filters with the same Filter objects (matches()) and pages the result

Filters follow Ray: ``(column, "=" | "!=", value)``; string values compare without case,
and a value is compared with the column's value as text (``True``, ``3``), so a filter
typed on the command line (``state=running``) means what the same filter means in
Python. Id columns take hex; a malformed value is an error, not an empty answer.
"""

from __future__ import annotations

from typing import Any, Iterable, Literal

from ..exceptions import InvalidStateQueryError

#: The kinds the head answers from its tables (``StateQuery``).
HeadKind = Literal["tasks", "actors", "nodes", "jobs", "placement_groups"]
#: The kinds every node answers about itself (``NodeQuery``); the client asks each node.
NodeKind = Literal["workers", "objects"]
StateKind = Literal["tasks", "actors", "nodes", "jobs", "placement_groups", "workers", "objects"]
HEAD_KINDS: tuple[str, ...] = ("tasks", "actors", "nodes", "jobs", "placement_groups")
NODE_KINDS: tuple[str, ...] = ("workers", "objects")
KINDS: tuple[str, ...] = HEAD_KINDS + NODE_KINDS

#: Ray's task states, in the order a task goes through them (terminal ones last).
TaskStateName = Literal["PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
                        "RUNNING", "FINISHED", "FAILED"]
TASK_STATES: tuple[str, ...] = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT", "SUBMITTED_TO_WORKER",
                                "RUNNING", "FINISHED", "FAILED")
TERMINAL_TASK_STATES = frozenset({"FINISHED", "FAILED"})

#: kind -> (columns of the default view, columns added by ``detail=True``). Ray's names.
COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "tasks": (("task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
               "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
               "error_type"),
              ("language", "required_resources", "runtime_env_info", "placement_group_id", "events",
               "profiling_data", "creation_time_ms", "start_time_ms", "end_time_ms", "task_log_info",
               "error_message", "is_debugger_paused", "call_site")),
    "actors": (("actor_id", "class_name", "state", "job_id", "name", "node_id", "pid",
                "ray_namespace"),
               ("serialized_runtime_env", "required_resources", "death_cause", "is_detached",
                "placement_group_id", "repr_name", "num_restarts", "worker_id", "max_restarts",
                "max_task_retries", "max_concurrency")),
    "nodes": (("node_id", "node_ip", "is_head_node", "state", "node_name", "resources_total",
               "labels"),
              ("resources_available", "tcp_address", "state_message")),
    "jobs": (("job_id", "submission_id", "type", "status", "entrypoint", "message", "error_type",
              "start_time", "end_time", "metadata", "runtime_env", "driver_info"),
             ("ray_namespace",)),
    "placement_groups": (("placement_group_id", "name", "creator_job_id", "state"),
                         ("bundles", "is_detached", "stats")),
    "workers": (("worker_id", "is_alive", "worker_type", "exit_type", "node_id", "ip", "pid",
                 "exit_detail"),
                ("job_id", "actor_id", "state", "log_file")),
    "objects": (("object_id", "object_size", "task_status", "reference_type", "call_site", "type",
                 "pid", "ip"),
                ("node_id", "owner_worker_id", "spilled", "num_holders")),
}

#: Columns whose values are hex ids: a filter value there must be hex.
ID_COLUMNS = frozenset({"task_id", "job_id", "actor_id", "parent_task_id", "node_id", "worker_id",
                        "placement_group_id", "object_id", "creator_job_id", "owner_worker_id"})

FilterOp = Literal["=", "!="]
OPS: tuple[str, ...] = ("=", "!=")
#: Rows a query returns at most (Ray's state API caps at 10,000 as well).
MAX_LIMIT = 10_000
DEFAULT_LIMIT = 100


class Filter:
    """One checked ``(column, op, value)``: ``value`` is kept as the text every row value
    is compared with (lower case), so matching a row costs one conversion and one ``==``."""

    __slots__ = ("column", "op", "value", "negate")

    def __init__(self, column: str, op: str, value: str) -> None:
        self.column = column
        self.op = op
        self.value = value
        self.negate = op == "!="

    def as_tuple(self) -> tuple[str, str, str]:
        return (self.column, self.op, self.value)

    def matches(self, row_value: Any) -> bool:
        return (as_text(row_value) == self.value) != self.negate


def as_text(value: Any) -> str:
    """How a column value compares with a filter value: lower-case text (None is "none")."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str):
        return value.lower()
    return str(value).lower()


def columns_of(kind: str, detail: bool) -> tuple[str, ...]:
    base, more = COLUMNS[kind]
    return base + more if detail else base


def check_kind(kind: str) -> None:
    """Raises InvalidStateQueryError for a kind the state API does not know."""
    if kind not in COLUMNS:
        raise InvalidStateQueryError(f"resource kind {kind!r}", "is not one the state API lists",
                                     f"use one of: {', '.join(KINDS)}")


def check_filters(kind: str, filters: Iterable[Any] | None) -> list[Filter]:
    """Check Ray-style filters against ``kind``'s columns and normalize their values.

    Raises:
        InvalidStateQueryError: a filter that is not a (column, "=" or "!=", value)
            triple, names an unknown column, compares an id column with a non-hex
            value, or asks ``state`` of tasks for a state that does not exist.
    """
    check_kind(kind)
    out = []
    known = columns_of(kind, True)
    for item in filters or ():
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise InvalidStateQueryError(
                f"filter {item!r}", "is not a (column, predicate, value) triple",
                'write filters as [("state", "=", "RUNNING")] (or `--filter state=RUNNING` on the '
                "command line)")
        column, op, value = item
        if column not in known:
            raise InvalidStateQueryError(f"filter column {column!r} of {kind}", "is not a column",
                                         f"filter on one of: {', '.join(known)}")
        if op not in OPS:
            raise InvalidStateQueryError(f"filter predicate {op!r}", "is not supported",
                                         'use "=" or "!="')
        if isinstance(value, (list, dict, tuple, set)):
            raise InvalidStateQueryError(f"filter value {value!r} for {column}",
                                         "is not a single value", "compare with one string or number")
        text = as_text(value).strip()
        if column in ID_COLUMNS and text not in ("none", ""):
            try:
                bytes.fromhex(text)
            except ValueError:
                raise InvalidStateQueryError(f"filter value {value!r} for {column}", "is not a hex id",
                                             f"pass the id as printed by `ember list {kind}`") from None
        if kind == "tasks" and column == "state" and text.upper() not in TASK_STATES:
            raise InvalidStateQueryError(f"task state {value!r}", "does not exist",
                                         f"filter on one of: {', '.join(TASK_STATES)}")
        out.append(Filter(column, op, text))
    return out


def parse_filter(text: str) -> tuple[str, str, str]:
    """``"state=RUNNING"`` / ``"state!=FINISHED"`` (the CLI's ``--filter``) as a triple.

    Raises:
        InvalidStateQueryError: no ``=`` or ``!=`` between a column and a value.
    """
    for op in ("!=", "="):
        column, sep, value = text.partition(op)
        if sep and column.strip() and value.strip():
            return (column.strip(), op, value.strip())
    raise InvalidStateQueryError(f"filter {text!r}", "is not COLUMN=VALUE or COLUMN!=VALUE",
                                 "write it like --filter state=RUNNING")


def check_limit(limit: int, offset: int = 0) -> None:
    """Raises InvalidStateQueryError for a limit outside 1..MAX_LIMIT or a negative offset."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidStateQueryError(f"limit {limit!r}", f"is not an integer in 1..{MAX_LIMIT}",
                                     "page through more rows with offset")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidStateQueryError(f"offset {offset!r}", "is not an integer >= 0",
                                     "pass the number of matching rows to skip")


def check_id(what: str, value: Any) -> bytes:
    """A hex id given by a user, as bytes.

    Raises:
        InvalidStateQueryError: not a non-empty hex string.
    """
    if isinstance(value, bytes):
        return value
    try:
        if not isinstance(value, str) or not value:
            raise ValueError
        return bytes.fromhex(value)
    except ValueError:
        raise InvalidStateQueryError(f"{what} {value!r}", "is not a hex id",
                                     f"copy the id from `ember list {what.split()[0]}s`") from None


def page(rows: Iterable[dict[str, Any]], filters: list[Filter], offset: int, limit: int
         ) -> dict[str, Any]:
    """Filter dict rows and cut one page: the same answer shape as the head's task query."""
    matched = [row for row in rows if all(f.matches(row.get(f.column)) for f in filters)]
    return {"rows": matched[offset:offset + limit], "total": len(matched), "offset": offset}

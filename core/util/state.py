"""The state API (Ray's ``ray.util.state``): list, get and summarize what the cluster runs.

    from ember.util.state import list_tasks, get_actor, summarize_tasks
    list_tasks(filters=[("state", "=", "RUNNING")], limit=10)
    get_actor("a1b2...")                      # None if no actor has that id
    summarize_tasks()["cluster"]["summary"]   # per function: counts by state

Tasks, actors, nodes, jobs and placement groups come from the head's tables (one
request, filtered and paged there); workers and objects from every node. Each row is a
dict that also reads as attributes (``row.state``), with Ray's column names; ids are
hex. ``detail=True`` adds the detail columns (for tasks: events with times, errors with
tracebacks, resources). Task events arrive about once a second, so a task that just
changed state may show its previous one for that long.

A filter is ``(column, "=" or "!=", value)``; values compare as text without case. A
malformed filter or id raises InvalidStateQueryError (also a ValueError) before
anything is sent; a well-formed id that names nothing gives None, as in Ray.
"""

from __future__ import annotations

import fnmatch
import time
import warnings
from typing import Any, Iterator

from .._client.state_client import DEFAULT_TIMEOUT_S, StateClient
from .._wire.state_query import COLUMNS, DEFAULT_LIMIT, check_id
from ..exceptions import InvalidStateQueryError, StateApiError, StateNotFoundError

__all__ = [
    "StateRow", "RayStateApiException", "StateApiError", "list_actors", "list_jobs", "list_nodes",
    "list_objects", "list_placement_groups", "list_tasks", "list_workers", "get_actor", "get_job",
    "get_node", "get_objects", "get_placement_group", "get_task", "get_worker", "summarize_actors",
    "summarize_objects", "summarize_tasks", "list_logs", "get_log",
]

#: Ray's name for the state API's error.
RayStateApiException = StateApiError

Filters = list[tuple[str, str, Any]]


class StateRow(dict):
    """One row of state: a dict (``row["state"]``) whose keys also read as attributes
    (``row.state``), as Ray's state dataclasses do."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"this row has no column {name!r}; it has: {', '.join(self)}") from None


def _rows(answer: dict[str, Any], limit: int, kind: str, raise_on_missing_output: bool) -> list[StateRow]:
    rows = [StateRow(row) for row in answer["rows"]]
    if answer["total"] > len(rows) and raise_on_missing_output:
        # Ray warns too: the caller sees the first `limit` only.
        warnings.warn(f"{answer['total']} {kind} match, {len(rows)} listed (limit={limit}); raise "
                      "limit or narrow the filters to see the rest", UserWarning, stacklevel=3)
    dropped = answer.get("dropped_tasks", 0) + answer.get("dropped_events", 0)
    if kind == "tasks" and dropped and raise_on_missing_output:
        warnings.warn(f"task events were dropped ({answer.get('dropped_tasks', 0)} tasks left the head's "
                      f"table, {answer.get('dropped_events', 0)} events were dropped by full process "
                      "buffers): old or very numerous tasks may be missing", UserWarning, stacklevel=3)
    return rows


def _list(kind: str, address: str | None, filters: Filters | None, limit: int, timeout: float,
          detail: bool, raise_on_missing_output: bool) -> list[StateRow]:
    with StateClient(address, timeout) as client:
        if kind in ("workers", "objects"):
            answer = client.each_node(kind, filters, raise_on_missing_output, limit)
            if not detail:
                from_detail = set(_detail_columns(kind))
                answer["rows"] = [{k: v for k, v in row.items() if k not in from_detail}
                                  for row in answer["rows"]]
            return _rows(answer, limit, kind, raise_on_missing_output)
        answer = client.query(kind, filters, 0, limit, detail)
    return _rows(answer, limit, kind, raise_on_missing_output)


def _detail_columns(kind: str) -> tuple[str, ...]:
    return COLUMNS[kind][1]


def list_tasks(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
               timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[StateRow]:
    """Tasks and actor calls the cluster recorded (Ray's ``list_tasks``).

    Args:
        address: None (this driver's cluster, else this machine's), "auto", or HOST:PORT.
        filters: ``[(column, "=" | "!=", value), ...]``, e.g. ``[("state", "=", "RUNNING")]``.
        limit: rows returned at most (1..10,000).
        timeout: seconds to wait for the answer.
        detail: add the detail columns (events, times, error messages, resources).
        raise_on_missing_output: warn when rows were cut by ``limit`` or events dropped.

    Returns:
        Rows in submission order, oldest first.

    Raises:
        InvalidStateQueryError: a malformed filter, an unknown column or state, a bad limit.
        StateApiError: no cluster answered.

    Example:
        >>> list_tasks(filters=[("state", "=", "FAILED")], detail=True)[0].error_message
    """
    return _list("tasks", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_actors(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
                timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[StateRow]:
    """Actors, alive and dead (Ray's ``list_actors``); see ``list_tasks`` for the arguments."""
    return _list("actors", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_nodes(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
               timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[StateRow]:
    """Nodes, alive and dead (Ray's ``list_nodes``); see ``list_tasks`` for the arguments."""
    return _list("nodes", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_jobs(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
              timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False) -> list[StateRow]:
    """Jobs (one per driver) (Ray's ``list_jobs``); see ``list_tasks`` for the arguments."""
    return _list("jobs", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_placement_groups(address: str | None = None, filters: Filters | None = None,
                          limit: int = DEFAULT_LIMIT, timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False,
                          raise_on_missing_output: bool = True, _explain: bool = False) -> list[StateRow]:
    """Placement groups (Ray's ``list_placement_groups``); see ``list_tasks`` for the arguments."""
    return _list("placement_groups", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_workers(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """Worker processes and drivers of every node, with recently exited workers (Ray's
    ``list_workers``); see ``list_tasks`` for the arguments."""
    return _list("workers", address, filters, limit, timeout, detail, raise_on_missing_output)


def list_objects(address: str | None = None, filters: Filters | None = None, limit: int = DEFAULT_LIMIT,
                 timeout: float = DEFAULT_TIMEOUT_S, detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[StateRow]:
    """Objects in the nodes' object stores (Ray's ``list_objects``). Small values that
    travel inline and live only in their owner's process are not listed."""
    return _list("objects", address, filters, limit, timeout, detail, raise_on_missing_output)


def _get_one(kind: str, column: str, id_: str, address: str | None, timeout: float) -> StateRow | None:
    check_id(f"{kind[:-1]} id", id_)
    rows = _list(kind, address, [(column, "=", id_)], 2, timeout, True, False)
    return rows[0] if rows else None


def get_task(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
             _explain: bool = False) -> StateRow | None:
    """The task with this id (hex), with detail; None if none has it (Ray's ``get_task``).

    Raises:
        InvalidStateQueryError: ``id`` is not hex.
    """
    return _get_one("tasks", "task_id", id, address, timeout)


def get_actor(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
              _explain: bool = False) -> StateRow | None:
    """The actor with this id (hex), with detail; None if none has it (Ray's ``get_actor``)."""
    return _get_one("actors", "actor_id", id, address, timeout)


def get_node(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
             _explain: bool = False) -> StateRow | None:
    """The node with this id (hex), with detail; None if none has it (Ray's ``get_node``)."""
    return _get_one("nodes", "node_id", id, address, timeout)


def get_job(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
            _explain: bool = False) -> StateRow | None:
    """The job with this id (hex); None if none has it (Ray's ``get_job``)."""
    return _get_one("jobs", "job_id", id, address, timeout)


def get_placement_group(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                        _explain: bool = False) -> StateRow | None:
    """The placement group with this id (hex); None if none has it."""
    return _get_one("placement_groups", "placement_group_id", id, address, timeout)


def get_worker(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
               _explain: bool = False) -> StateRow | None:
    """The worker (or driver) with this id (hex); None if no node has it."""
    return _get_one("workers", "worker_id", id, address, timeout)


def get_objects(id: str, address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                _explain: bool = False) -> list[StateRow]:
    """Every copy of the object with this id (hex), one per node holding it (Ray's
    ``get_objects``); empty if none."""
    check_id("object id", id)
    return _list("objects", address, [("object_id", "=", id)], 10_000, timeout, True, False)


def summarize_tasks(address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Per function name, how many tasks are in each state (Ray's ``summarize_tasks``):
    ``{"cluster": {"summary": {name: {"func_or_class_name", "type", "state_counts"}},
    "total_tasks", "total_actor_tasks", "total_actor_scheduled", "summary_by"}}``."""
    with StateClient(address, timeout) as client:
        answer = client.query("tasks", summary=True)
    return {"cluster": answer["cluster"]}


def summarize_actors(address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Per actor class, how many actors are in each state (Ray's ``summarize_actors``)."""
    with StateClient(address, timeout) as client:
        answer = client.query("actors", summary=True)
    return {"cluster": answer["cluster"]}


def summarize_objects(address: str | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict[str, Any]:
    """Objects in the stores, totalled (Ray's ``summarize_objects`` shape; ember records
    no call sites, so everything is under "disabled")."""
    with StateClient(address, timeout) as client:
        rows = client.each_node("objects", None, raise_on_missing_output)["rows"]
    mb = 1024 * 1024
    states: dict[str, int] = {}
    refs: dict[str, int] = {}
    for row in rows:
        states[row["task_status"]] = states.get(row["task_status"], 0) + 1
        refs[row["reference_type"]] = refs.get(row["reference_type"], 0) + 1
    total_mb = sum(row["object_size"] or 0 for row in rows) / mb
    group = {"total_objects": len(rows), "total_size_mb": total_mb,
             "total_num_workers": len({row["pid"] for row in rows}),
             "total_num_nodes": len({row["node_id"] for row in rows}),
             "task_state_counts": states, "ref_type_counts": refs}
    return {"cluster": {"summary": {"disabled": group} if rows else {}, "total_objects": len(rows),
                        "total_size_mb": total_mb, "callsite_enabled": False, "summary_by": "callsite"}}


# --- logs ---------------------------------------------------------------------------------


def list_logs(address: str | None = None, node_id: str | None = None, node_ip: str | None = None,
              glob_filter: str | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, list[str]]:
    """Log file names per node id (Ray's ``list_logs``): ``node_manager.log`` and one
    ``worker-<worker id>.log`` per worker (its stdout and stderr)."""
    with StateClient(address, timeout) as client:
        nodes = [client.find_node(node_id)] if node_id else [
            n for n in client.nodes() if n["state"] == "ALIVE" and (node_ip is None or n["node_ip"] == node_ip)]
        out = {}
        for node in nodes:
            files = [f["name"] for f in client.node_query(node, "logs")["files"]]
            out[node["node_id"]] = [f for f in files if glob_filter is None or fnmatch.fnmatch(f, glob_filter)]
        return out


def get_log(address: str | None = None, node_id: str | None = None, node_ip: str | None = None,
            filename: str | None = None, actor_id: str | None = None, task_id: str | None = None,
            pid: int | None = None, worker_id: str | None = None, follow: bool = False, tail: int = 1000,
            timeout: float = DEFAULT_TIMEOUT_S, interval_s: float = 0.5) -> Iterator[str]:
    """The lines of one log (Ray's ``get_log``), chosen by exactly one of ``filename``
    (on ``node_id``, default the head), ``actor_id``, ``task_id``, ``worker_id``, ``pid``
    (on ``node_id``, default any node), or ``node_id`` alone (the node manager's log).

    Args:
        tail: the last this many lines first (-1: everything kept, up to 1 MiB).
        follow: then keep yielding new lines as they are written (until closed).

    Yields:
        Chunks of text, each ending at a line end.

    Raises:
        InvalidStateQueryError: none or several of the selectors, or a malformed id.
        StateNotFoundError: nothing has that id, or the log does not exist.
    """
    chosen = [name for name, v in (("filename", filename), ("actor_id", actor_id), ("task_id", task_id),
                                   ("pid", pid), ("worker_id", worker_id)) if v is not None]
    if len(chosen) > 1:
        raise InvalidStateQueryError(f"log selectors {', '.join(chosen)}", "were given together",
                                     "choose one log: a file, an actor, a task, a worker or a pid")
    if not chosen and node_id is None:
        raise InvalidStateQueryError("the log", "was not chosen",
                                     "pass filename, actor_id, task_id, worker_id, pid or node_id")
    client = StateClient(address, timeout)
    try:
        node, name = _resolve_log(client, node_id, node_ip, filename, actor_id, task_id, pid, worker_id)
        answer = client.node_query(node, "log", {"filename": name, "offset": None, "tail_lines": tail})
        if answer["data"]:
            yield answer["data"]
        offset = answer["offset"]
        while follow:
            answer = client.node_query(node, "log", {"filename": name, "offset": offset})
            if answer["data"]:
                offset = answer["offset"]
                yield answer["data"]
            else:
                time.sleep(interval_s)  # a follower polls the file; nothing waits on it
    finally:
        client.close()


def _resolve_log(client: StateClient, node_id: str | None, node_ip: str | None, filename: str | None,
                 actor_id: str | None, task_id: str | None, pid: int | None,
                 worker_id: str | None) -> tuple[dict[str, Any], str]:
    """(node row, file name) of the log a selector names."""
    if task_id is not None:
        check_id("task id", task_id)
        rows = client.query("tasks", [("task_id", "=", task_id)], 0, 1, True)["rows"]
        if not rows:
            raise StateNotFoundError(f"task {task_id}", "the head's task table",
                                     "list recorded tasks with `ember list tasks`")
        if rows[0]["worker_id"] is None:
            raise StateNotFoundError(f"log of task {task_id}", f"the cluster yet (it is {rows[0]['state']})",
                                     "a task's log exists once a worker runs it; try again then")
        return client.find_node(rows[0]["node_id"]), f"worker-{rows[0]['worker_id']}.log"
    if actor_id is not None:
        check_id("actor id", actor_id)
        rows = client.query("actors", [("actor_id", "=", actor_id)], 0, 1, True)["rows"]
        if not rows:
            raise StateNotFoundError(f"actor {actor_id}", "the head's actor table",
                                     "list actors with `ember list actors`")
        worker = rows[0]["worker_id"]
        if worker is None:  # dead: the worker that last ran its calls
            calls = client.query("tasks", [("actor_id", "=", actor_id)], 0, 1, True, newest_first=True)["rows"]
            worker = calls[0]["worker_id"] if calls and calls[0]["worker_id"] else None
            node = calls[0]["node_id"] if worker else None
        else:
            node = rows[0]["node_id"]
        if worker is None or node is None:
            raise StateNotFoundError(f"log of actor {actor_id}", f"the cluster yet (it is {rows[0]['state']})",
                                     "an actor's log exists once it is placed on a worker; try again then")
        return client.find_node(node), f"worker-{worker}.log"
    if worker_id is not None or pid is not None:
        if worker_id is not None:
            check_id("worker id", worker_id)
        nodes = [client.find_node(node_id)] if node_id else [n for n in client.nodes() if n["state"] == "ALIVE"]
        for node in nodes:
            for row in client.node_query(node, "workers"):
                if row["log_file"] and (row["worker_id"] == (worker_id or "").lower() or row["pid"] == pid):
                    return node, row["log_file"]
        what = f"worker {worker_id}" if worker_id is not None else f"worker pid {pid}"
        raise StateNotFoundError(what, "the cluster's nodes", "list workers with `ember list workers`")
    node = client.find_node(node_id) if node_id else (
        _node_by_ip(client, node_ip) if node_ip else client.head_node())
    return node, filename or "node_manager.log"


def _node_by_ip(client: StateClient, node_ip: str) -> dict[str, Any]:
    for node in client.nodes():
        if node["node_ip"] == node_ip and node["state"] == "ALIVE":
            return node
    raise StateNotFoundError(f"node at {node_ip}", "the cluster", "list the nodes with `ember list nodes`")

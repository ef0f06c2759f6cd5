"""What the dashboard shows, read on the head: node stats (telemetry) and the state
tables (tasks, actors, jobs, placement groups; workers, objects and logs of each node),
one page at a time.

    page -> DashboardData.list(kind, filters, offset, limit)
        head tables:        StateTables.query(...) in this process, under the node lock
        this node's own:    StateTables.node_query(...) in this process
        another node's own: a NodeQuery over a "peer" link to that node (kept, reused)

Only the rows of the page are built (the head's task table pages 100,000 tasks in one
pass of cheap comparisons), so every page stays fast however much is recorded.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from dataclasses import asdict
from typing import Any, Callable, Protocol

from ..._types import NodeID
from ..._wire import protocol as p
from ..._wire.node_link import NodeLink
from ..._wire.protocol import NodeStats
from ...exceptions import EmberError
from ..context import NodeContext

log = logging.getLogger("ember._node.dashboard")

#: Seconds the dashboard waits for another node's answer.
NODE_QUERY_TIMEOUT_S = 5.0
#: Kinds each node answers about itself; the rest come from the head's tables.
NODE_KINDS = ("workers", "objects")


class StateTables(Protocol):
    """The head's state service (state.py), as the dashboard reads it."""

    def query(self, kind: str, filters: list, offset: int = 0, limit: int = 100, detail: bool = False,
              newest_first: bool = False, summary: bool = False) -> dict[str, Any]: ...

    def node_query(self, kind: str, args: dict[str, Any]) -> Any: ...


class NodeTelemetry(Protocol):
    """What the dashboard reads from the head's telemetry service (telemetry.py; named
    here, not imported: that service imports this package when first asked)."""
    ctx: NodeContext
    #: Every node's latest stats, by node id.
    nodes: dict[NodeID, NodeStats]
    #: The state tables, None where the node keeps none.
    state: StateTables | None
    #: The head's submitted jobs (records with Ray's JobInfo fields), or None.
    submitted_jobs: Callable[[], list[Any]] | None

    def snapshot(self) -> NodeStats: ...

    def metrics_text(self) -> bytes: ...


@dataclass
class ListQuery:
    """Equality filters (column -> value), and the page: rows offset .. offset+limit."""
    filters: dict[str, str]
    offset: int
    limit: int


class QueryError(EmberError):
    """A page asked for something the state tables refuse (a malformed filter value);
    the page shows the message."""


class DashboardData:
    """Reads for the pages; every call takes the node lock only briefly."""

    #: /api/<kind> endpoints (JSON, paginated like the pages).
    API_KINDS = ("nodes", "jobs", "tasks", "actors", "objects", "placement_groups", "workers")

    def __init__(self, telemetry: NodeTelemetry) -> None:
        self.telemetry = telemetry
        self.ctx = telemetry.ctx
        self._links: dict[str, NodeLink] = {}
        self._links_lock = threading.Lock()

    # --- nodes --------------------------------------------------------------------------

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the head knows, alive or dead, with its latest stats (None before
        its first report)."""
        own = self.telemetry.snapshot()
        ctx = self.ctx
        with ctx.lock:
            self.telemetry.nodes[own.node_id] = own
            return [{"node_id": info.node_id.hex(), "address": info.tcp_address.removeprefix("tcp:"),
                     "tcp_address": info.tcp_address, "alive": info.alive, "is_head": info.is_head,
                     "totals": dict(info.totals), "available": dict(info.available),
                     "stats": self.telemetry.nodes.get(info.node_id)}
                    for info in sorted(ctx.view.nodes.values(), key=lambda n: (not n.is_head, n.node_id))]

    # --- the state tables -----------------------------------------------------------------

    def _head_query(self, kind: str, filters: list, offset: int, limit: int, detail: bool,
                    newest_first: bool = False, summary: bool = False) -> dict[str, Any]:
        state = self.telemetry.state
        if state is None:
            return {"rows": [], "total": 0, "offset": offset}
        try:
            with self.ctx.lock:
                return state.query(kind, filters, offset, limit, detail, newest_first, summary)
        except ValueError as e:  # InvalidStateQueryError: a filter value the table refuses
            raise QueryError(str(e)) from e

    def submitted_jobs(self) -> list[dict[str, Any]]:
        """Jobs submitted with ``ember job submit`` / JobSubmissionClient, newest first."""
        if self.telemetry.submitted_jobs is None:
            return []
        with self.ctx.lock:
            records = [asdict(r) for r in self.telemetry.submitted_jobs()]
        return sorted(records, key=lambda r: r.get("start_time") or 0, reverse=True)

    def counts(self, kind: str) -> dict[str, int]:
        """Actors or jobs by state (the overview's summary lines)."""
        if kind == "actors":
            summary = self._head_query("actors", [], 0, 1, False, summary=True)
            counts: dict[str, int] = {}
            for entry in summary.get("cluster", {}).get("summary", {}).values():
                for state, n in entry["state_counts"].items():
                    counts[state] = counts.get(state, 0) + n
            return counts
        counts = {}
        for row in self._head_query(kind, [], 0, 10_000, False)["rows"]:
            state = str(row.get("status") or row.get("state"))
            counts[state] = counts.get(state, 0) + 1
        return counts

    def list(self, kind: str, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of ``kind`` matching ``query.filters`` (newest first), and how many match.

        Raises:
            QueryError: a filter value the tables refuse (e.g. a state that does not exist).
        """
        filters = [(column, "=", value) for column, value in query.filters.items()]
        if kind in NODE_KINDS:
            rows = [row for row in self._each_node(kind)
                    if all(str(row.get(c, "")).lower() == v.lower() for c, v in query.filters.items())]
            return rows[query.offset:query.offset + query.limit], len(rows)
        answer = self._head_query(kind, filters, query.offset, query.limit, detail=True,
                                  newest_first=kind in ("tasks", "jobs", "actors"))
        return answer["rows"], answer["total"]

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        """The row of ``kind`` whose id is ``ident`` (with detail), or None."""
        column = {"tasks": "task_id", "actors": "actor_id", "jobs": "job_id",
                  "placement_groups": "placement_group_id"}[kind]
        try:
            bytes.fromhex(ident)
        except ValueError:
            return None
        rows = self._head_query(kind, [(column, "=", ident)], 0, 1, detail=True)["rows"]
        return rows[0] if rows else None

    # --- each node's own state ----------------------------------------------------------

    def _node_query(self, node: dict[str, Any], kind: str, args: dict[str, Any]) -> Any:
        """Ask one node (a row of ``nodes()``); this node is asked in process."""
        state = self.telemetry.state
        if state is None:
            return None
        if node["node_id"] == self.ctx.node_id.hex():
            with self.ctx.lock:
                return state.node_query(kind, args)
        link = self._link(node["tcp_address"])
        value, _fds = link.call(lambda rid: p.NodeQuery(rid, kind, dict(args)), NODE_QUERY_TIMEOUT_S)
        return value

    def _link(self, tcp_address: str) -> NodeLink:
        with self._links_lock:
            link = self._links.get(tcp_address)
            if link is None or link.closed:
                # A "peer" starts no job and holds nothing on the node it asks.
                link = self._links[tcp_address] = NodeLink(
                    tcp_address, self.ctx.token, p.Register("peer", os.urandom(16), os.getpid()),
                    name="ember-dashboard-peer")
            return link

    def _each_node(self, kind: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for node in self.nodes():
            if not node["alive"]:
                continue
            try:
                rows += self._node_query(node, kind, {})["rows"]
            except (EmberError, OSError) as e:  # one node down must not blank the page
                log.warning("node %s did not list its %s: %s", node["node_id"][:12], kind, e)
        return rows

    def log_files(self) -> list[dict[str, Any]]:
        """Every alive node's log files: node, name, size, and the worker (if a worker's)."""
        out = []
        for node in self.nodes():
            if not node["alive"]:
                continue
            try:
                answer = self._node_query(node, "logs", {})
            except (EmberError, OSError) as e:
                log.warning("node %s did not list its logs: %s", node["node_id"][:12], e)
                continue
            for f in (answer or {}).get("files", []):
                name = f["name"]
                worker = name[len("worker-"):-len(".log")] if name.startswith("worker-") else ""
                out.append({"node_id": node["node_id"], "name": name, "size_bytes": f.get("size_bytes"),
                            "worker_id": worker,
                            "query": {"node_id": node["node_id"], "filename": name}})
        return out

    def log_lines(self, params: dict[str, str], tail: int, search: str) -> tuple[list[str] | None, str]:
        """The last ``tail`` lines of a log (``node_id`` + ``filename``, or ``worker_id``)
        that contain ``search`` (case-insensitive; all lines when empty); None if no such log."""
        filename = params.get("filename") or (f"worker-{params['worker_id']}.log"
                                              if params.get("worker_id") else "")
        nodes = [n for n in self.nodes() if n["alive"]]
        if params.get("node_id"):
            nodes = [n for n in nodes if n["node_id"] == params["node_id"]]
        for node in nodes:
            try:
                answer = self._node_query(node, "log", {"filename": filename,
                                                        "tail_lines": -1 if search else tail})
            except (EmberError, OSError, ValueError, LookupError):
                continue
            if answer is None:
                continue
            lines = answer["data"].splitlines()
            if search:
                needle = search.lower()
                lines = [line for line in lines if needle in line.lower()][-tail:]
            return lines, filename
        return None, filename

    # --- JSON ---------------------------------------------------------------------------

    def api(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        """/api/<kind>?column=value&offset=&limit=: {"rows", "total", "offset"}."""
        try:
            offset = max(0, int(params.pop("offset", 0)))
            limit = min(1000, max(1, int(params.pop("limit", 100))))
        except ValueError:
            raise QueryError("offset and limit must be integers") from None
        if kind == "nodes":
            rows = [{**{k: v for k, v in n.items() if k != "stats"},
                     "stats": _stats_dict(n["stats"])} for n in self.nodes()]
            return {"rows": rows[offset:offset + limit], "total": len(rows), "offset": offset}
        rows, total = self.list(kind, ListQuery(params, offset, limit))
        return {"rows": rows, "total": total, "offset": offset}

    def close(self) -> None:
        with self._links_lock:
            for link in self._links.values():
                link.close()
            self._links.clear()


def _stats_dict(stats: NodeStats | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    out = {name: getattr(stats, name) for name in stats.__slots__}  # type: ignore[attr-defined]
    out["node_id"] = stats.node_id.hex()
    out["gpus"] = [{name: getattr(g, name) for name in g.__slots__} for g in stats.gpus]  # type: ignore[attr-defined]
    return out

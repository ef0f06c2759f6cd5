"""What the node tells the state API (a node service): task events and the head's
tables as pages of rows, this node's workers, objects and log files.

    any process --TaskEvents--> its node --(forwarded)--> head: TaskEventStore.add_batch
    StateQuery (head; a worker node forwards it)   tasks | actors | nodes | jobs | placement_groups
        -> filter (the checked Filters of _wire/state_query) -> {"rows", "total", "offset", ...}
    NodeQuery (every node, about itself)           workers | objects | logs | log

The rows use Ray's column names (ray.util.state), ids in hex. Every answer is built
under the node lock from tables other services own; nothing here changes them.
Log files are read here too (at most MAX_LOG_READ_BYTES per request, from local disk),
which keeps a `--follow` poll one small request.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from .._wire import protocol as p
from .._wire.state_query import check_filters, check_kind, check_limit, columns_of, page
from ..exceptions import InvalidStateQueryError, StateNotFoundError
from .context import Client, Handlers, NodeContext
from .task_events import PID, WORKER_ID, TaskEventStore

#: Bytes one "log" request returns at most; a follower asks again from the new offset.
MAX_LOG_READ_BYTES = 1 << 20

_ACTOR_STATES = {"pending": "PENDING_CREATION", "alive": "ALIVE", "restarting": "RESTARTING",
                 "dead": "DEAD"}
_OBJECT_STATES = {"sealed": "FINISHED", "pending": "PENDING", "failed": "FAILED"}


class StateService:
    """Args:
        ctx: the shared node context.
        placement_groups: the head's placement group records (read only).
        submitted_jobs: the head's submitted jobs (``ember job``), by submission id (read only).
    """

    def __init__(self, ctx: NodeContext, placement_groups: Callable[[], dict[bytes, Any]],
                 submitted_jobs: Callable[[], dict[str, Any]] = dict) -> None:
        self.ctx = ctx
        self._placement_groups = placement_groups
        self._submitted_jobs = submitted_jobs
        #: Only the head's store fills up: other nodes forward their processes' events.
        self.tasks = TaskEventStore()
        #: job id -> [start, end] in ms since the epoch (end None while it runs).
        self.job_times: dict[bytes, list] = {}

    def handlers(self) -> Handlers:
        return {p.TaskEvents: self.on_task_events, p.StateQuery: self.on_state_query,
                p.NodeQuery: self.on_node_query}

    # --- task events ------------------------------------------------------------------

    def on_task_events(self, client: Client, msg: p.TaskEvents) -> None:
        self.tasks.add_batch(msg)

    def job_started(self, job_id: bytes) -> None:
        """A driver registered: its job starts now (list_jobs' start_time)."""
        self.job_times[job_id] = [int(time.time() * 1000), None]

    def job_finished(self, job_id: bytes) -> None:
        """A driver exited: tasks of its job that never ended are failed in the table."""
        now = time.time()
        self.tasks.mark_job_finished(job_id, now)
        times = self.job_times.get(job_id)
        if times is not None:
            times[1] = int(now * 1000)

    # --- the head's tables ----------------------------------------------------------------

    def on_state_query(self, client: Client, msg: p.StateQuery) -> None:
        try:
            answer = self.query(msg.kind, msg.filters, msg.offset, msg.limit, msg.detail,
                                msg.newest_first, msg.summary)
        except InvalidStateQueryError as e:
            self.ctx.reply(client, msg.rid, False, e)
            return
        self.ctx.reply(client, msg.rid, True, answer)

    def query(self, kind: str, filters: list, offset: int = 0, limit: int = 100, detail: bool = False,
              newest_first: bool = False, summary: bool = False) -> dict[str, Any]:
        """One page of ``kind`` (or its summary). Checked again here: a request may come
        from any client, not only ember.util.state.

        Raises:
            InvalidStateQueryError: an unknown kind or column, a bad filter, limit or offset.
        """
        check_kind(kind)
        checked = check_filters(kind, filters)
        check_limit(limit, offset)
        if kind == "tasks":
            if summary:
                return self.tasks.summary()
            return self.tasks.query(checked, offset, limit, detail, newest_first)
        rows = {"actors": self.actor_rows, "nodes": self.node_rows, "jobs": self.job_rows,
                "placement_groups": self.placement_group_rows}.get(kind)
        if rows is None:
            raise InvalidStateQueryError(f"resource kind {kind!r}", "is answered by each node, not the head",
                                         "ask every node with a NodeQuery (ember.util.state does)")
        all_rows = rows()
        if summary and kind == "actors":
            return _actor_summary(all_rows)
        if newest_first:
            all_rows.reverse()
        answer = page(all_rows, checked, offset, limit)
        answer["rows"] = [_columns(row, kind, detail) for row in answer["rows"]]
        answer["columns"] = list(columns_of(kind, detail))
        return answer

    def actor_rows(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        rows = []
        for record in ctx.control.actors.values():
            spec = record.spec
            pid, worker_id = None, record.worker_id
            if worker_id is not None:
                local = ctx.pool.workers.get(worker_id)
                seen = self.tasks.workers.get(worker_id)
                pid = local.pid if local is not None and local.pid else (seen[0] if seen else None)
            creation = self.tasks.rows.get(spec.actor_id)  # its __init__'s row: the last worker it had
            if creation is not None and (worker_id is None or worker_id == creation[WORKER_ID]):
                pid, worker_id = pid or creation[PID], worker_id or creation[WORKER_ID]
            group = spec.request.placement_group
            rows.append({
                "actor_id": spec.actor_id.hex(), "class_name": spec.class_name,
                "state": _ACTOR_STATES.get(record.state, record.state.upper()), "job_id": spec.job_id.hex(),
                "name": spec.name or "", "node_id": _hex(record.node_id), "pid": pid,
                "ray_namespace": spec.namespace or _namespace(ctx, spec.job_id),
                "serialized_runtime_env": None,
                "required_resources": dict(spec.request.shape), "death_cause": record.death_cause or None,
                "is_detached": spec.detached, "placement_group_id": group[0] if group else None,
                "repr_name": "", "num_restarts": record.num_restarts, "worker_id": _hex(worker_id),
                "max_restarts": spec.max_restarts, "max_task_retries": spec.max_task_retries,
                "max_concurrency": spec.max_concurrency})
        return rows

    def node_rows(self) -> list[dict[str, Any]]:
        rows = []
        for info in sorted(self.ctx.view.nodes.values(), key=lambda n: (not n.is_head, n.node_id)):
            host = _host(info.tcp_address)
            rows.append({
                "node_id": info.node_id.hex(), "node_ip": host, "is_head_node": info.is_head,
                "state": "ALIVE" if info.alive else "DEAD", "node_name": host,
                "resources_total": dict(info.totals), "labels": {},
                "resources_available": dict(info.available) if info.alive else {},
                "tcp_address": info.tcp_address, "state_message": None if info.alive else
                "the node stopped sending heartbeats or its connection dropped"})
        return rows

    def job_rows(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        rows = []
        for job in ctx.control.jobs.values():
            driver = ctx.clients.get(job.driver_id) if job.driver_id else None
            start_ms, end_ms = self.job_times.get(job.job_id, (None, None))
            rows.append({
                "job_id": job.job_id.hex(), "submission_id": None, "type": "DRIVER",
                "status": "RUNNING" if job.alive else "SUCCEEDED", "entrypoint": "", "message": None,
                "error_type": None, "start_time": start_ms, "end_time": end_ms, "metadata": {},
                "runtime_env": {"env_vars": dict(job.env_vars)} if job.env_vars else {},
                "driver_info": {"id": job.driver_id.hex(), "node_ip_address": _host(ctx.tcp_address),
                                "pid": str(driver.pid) if driver is not None else None},
                "ray_namespace": job.namespace})
        for sid, job in self._submitted_jobs().items():
            rows.append({
                "job_id": job.job_id, "submission_id": sid, "type": "SUBMISSION", "status": job.status,
                "entrypoint": job.entrypoint, "message": job.message or None, "error_type": job.error_type,
                "start_time": job.start_time, "end_time": job.end_time, "metadata": dict(job.metadata),
                "runtime_env": dict(job.runtime_env),
                "driver_info": {"id": None, "node_ip_address": _host(ctx.tcp_address),
                                "pid": str(job.driver_pid) if job.driver_pid else None},
                "ray_namespace": None})
        return rows

    def placement_group_rows(self) -> list[dict[str, Any]]:
        rows = []
        for pg in self._placement_groups().values():
            where = {index: node_id for node_id, pairs in pg.placement.items() for index, _ in pairs}
            rows.append({
                "placement_group_id": pg.pg_id.hex(), "name": pg.name,
                "creator_job_id": _hex(pg.job_id), "state": pg.state,
                "bundles": [{"bundle_id": i, "node_id": _hex(where.get(i)), "unit_resources": dict(b)}
                            for i, b in enumerate(pg.bundles)],
                "is_detached": pg.detached, "stats": None})
        return rows

    # --- this node ------------------------------------------------------------------------

    def on_node_query(self, client: Client, msg: p.NodeQuery) -> None:
        try:
            answer = self.node_query(msg.kind, msg.args)
        except (InvalidStateQueryError, StateNotFoundError) as e:
            self.ctx.reply(client, msg.rid, False, e)
            return
        self.ctx.reply(client, msg.rid, True, answer)

    def node_query(self, kind: str, args: dict[str, Any]) -> Any:
        """This node's ``workers`` or ``objects`` ({"rows", "total"}: the rows matching
        ``args["filters"]``, at most ``args["limit"]`` of them; the caller merges the nodes),
        its log files (``logs``) or part of one (``log``).

        Raises:
            InvalidStateQueryError: an unknown kind, a bad filter or limit, or a log file
                name that is a path.
            StateNotFoundError: no log file of that name on this node.
        """
        if kind in ("workers", "objects"):
            filters = check_filters(kind, args.get("filters"))
            limit = args.get("limit")
            if limit is not None:
                check_limit(limit, 0)
            rows = self.worker_rows() if kind == "workers" else self.object_rows()
            matching = [row for row in rows if all(f.matches(row.get(f.column)) for f in filters)]
            return {"rows": matching if limit is None else matching[:limit], "total": len(matching)}
        if kind == "logs":
            return {"node_id": self.ctx.node_id.hex(), "files": self.log_files()}
        if kind == "log":
            return self.read_log(str(args.get("filename", "")), args.get("offset"),
                                 int(args.get("tail_lines", 1000)))
        raise InvalidStateQueryError(f"node query {kind!r}", "is not one a node answers",
                                     "ask for workers, objects, logs or log")

    def worker_rows(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        node, host = ctx.node_id.hex(), _host(ctx.tcp_address)
        rows = []
        for record in [*ctx.pool.workers.values(), *ctx.pool.exited.values()]:
            alive = record.state != "dead" and not record.exit_detail
            rows.append({
                "worker_id": record.worker_id.hex(), "is_alive": alive, "worker_type": "WORKER",
                "exit_type": None if alive else _exit_type(record),
                "node_id": node, "ip": host, "pid": record.pid or None,
                "exit_detail": record.exit_detail or None, "job_id": record.job_id.hex(),
                "actor_id": _hex(record.actor_id), "state": record.state,
                "log_file": f"worker-{record.worker_id.hex()}.log"})
        for client in ctx.clients.values():
            if client.kind == "driver":
                rows.append({"worker_id": client.worker_id.hex(), "is_alive": True, "worker_type": "DRIVER",
                             "exit_type": None, "node_id": node, "ip": host, "pid": client.pid,
                             "exit_detail": None, "job_id": client.job_id.hex(), "actor_id": None,
                             "state": "connected", "log_file": None})
        return rows

    def object_rows(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        node, host = ctx.node_id.hex(), _host(ctx.tcp_address)
        rows = []
        for entry in list(ctx.objects.objects.values()):
            owner = ctx.clients.get(entry.owner)
            spilled = entry.location in ("disk", "restoring")
            rows.append({
                "object_id": entry.object_id.hex(), "object_size": entry.size,
                "task_status": _OBJECT_STATES.get(entry.state, entry.state.upper()),
                "reference_type": "PINNED_IN_MEMORY" if entry.state == "sealed" else "LOCAL_REFERENCE",
                "call_site": "disabled", "type": "DRIVER" if owner is not None and owner.kind == "driver"
                else "WORKER", "pid": owner.pid if owner is not None else None, "ip": host,
                "node_id": node, "owner_worker_id": _hex(entry.owner) if entry.owner else None,
                "spilled": spilled, "num_holders": len(ctx.objects.holders_of(entry.object_id))})
        return rows

    def _logs_dir(self) -> str:
        return os.path.join(self.ctx.session_dir, "logs")

    def log_files(self) -> list[dict[str, Any]]:
        out = []
        logs = self._logs_dir()
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            try:
                out.append({"name": name, "size_bytes": os.path.getsize(os.path.join(logs, name))})
            except OSError:
                continue  # removed meanwhile
        return out

    def read_log(self, filename: str, offset: int | None, tail_lines: int) -> dict[str, Any]:
        """Part of a log file of this node: from ``offset`` (a follower's next read), or
        its last ``tail_lines`` lines (-1: all, up to MAX_LOG_READ_BYTES)."""
        if not filename or os.path.basename(filename) != filename or filename.startswith("."):
            raise InvalidStateQueryError(f"log file name {filename!r}", "is not a file name",
                                         "pass a name from `ember logs` (its list of files), not a path")
        path = os.path.join(self._logs_dir(), filename)
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if offset is None:
                    start = max(0, size - MAX_LOG_READ_BYTES)
                    f.seek(start)
                    data = f.read(size - start)
                    lines = data.splitlines(keepends=True)
                    if start > 0 and lines:
                        lines = lines[1:]  # a partial first line
                    if tail_lines >= 0:
                        lines = lines[len(lines) - tail_lines:] if tail_lines else []
                    return {"data": b"".join(lines).decode(errors="replace"), "offset": size,
                            "node_id": self.ctx.node_id.hex()}
                start = min(max(0, int(offset)), size)
                f.seek(start)
                data = f.read(min(MAX_LOG_READ_BYTES, size - start))
                return {"data": data.decode(errors="replace"), "offset": start + len(data),
                        "node_id": self.ctx.node_id.hex()}
        except FileNotFoundError:
            raise StateNotFoundError(f"log file {filename!r}", f"node {self.ctx.node_id.hex()}",
                                     "list the node's files with `ember logs --node-id ID`") from None


def _exit_type(record: Any) -> str:
    """Ray's exit type of a worker that exited: the node stopped it on purpose (its job
    ended, it was idle, a cancel with force), or it died (a crash, the memory monitor)."""
    if record.oom is not None:
        return "SYSTEM_ERROR"
    if record.killed or record.exit_detail == "exit code 0":
        return "INTENDED_SYSTEM_EXIT"
    return "SYSTEM_ERROR"


def _hex(value: bytes | None) -> str | None:
    return value.hex() if value else None


def _host(tcp_address: str) -> str:
    parts = tcp_address.split(":")
    return parts[1] if len(parts) >= 3 else "127.0.0.1"


def _namespace(ctx: NodeContext, job_id: bytes) -> str:
    job = ctx.control.jobs.get(job_id)
    return job.namespace if job is not None else ""


def _columns(row: dict[str, Any], kind: str, detail: bool) -> dict[str, Any]:
    if detail:
        return row
    return {k: row.get(k) for k in columns_of(kind, False)}


def _actor_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray's summarize_actors shape: per class, the count of actors in each state."""
    by_class: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_class.setdefault(row["class_name"], {"class_name": row["class_name"], "state_counts": {}})
        entry["state_counts"][row["state"]] = entry["state_counts"].get(row["state"], 0) + 1
    return {"cluster": {"summary": by_class, "total_actors": len(rows), "summary_by": "class"}}

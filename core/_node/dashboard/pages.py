"""The dashboard's pages: each a function (data, request) -> HTML.

List pages share one shape (``_list_page``): a filter form, a page of rows fetched with
offset/limit from the head (never the whole table: 100,000 tasks stay fast), a pager.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, Callable, Sequence

from starlette.requests import Request

from ..._wire.state_query import TASK_STATES
from .data import DashboardData, ListQuery
from .html import (bar, esc, filter_form, fmt_bytes, fmt_duration, fmt_time, link, num, page, pager,
                   state, table)

#: How many rows a list page shows unless ?limit= says otherwise (at most MAX_LIMIT).
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

#: The actor states the head's table uses (Ray's names), for the filter's choices.
ACTOR_STATES = ("PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")


def _short(hex_id: Any, n: int = 12) -> str:
    return str(hex_id or "")[:n]


def _query(request: Request, filter_names: Sequence[str]) -> ListQuery:
    params = request.query_params
    try:
        offset = max(0, int(params.get("offset", 0)))
        limit = min(MAX_LIMIT, max(1, int(params.get("limit", DEFAULT_LIMIT))))
    except ValueError:
        offset, limit = 0, DEFAULT_LIMIT
    filters = {name: params[name] for name in filter_names if params.get(name)}
    return ListQuery(filters, offset, limit)


def _ms_duration(row: dict) -> str:
    start, end = row.get("start_time_ms"), row.get("end_time_ms")
    if not start:
        return ""
    return fmt_duration(((end or time.time() * 1000) - start) / 1000)


def overview(data: DashboardData, _request: Request) -> str:
    nodes = data.nodes()
    rows = []
    for n in nodes:
        s = n["stats"]
        if s is None:
            usage = ["", "", "", "", ""]
        else:
            gpus = "<br>".join(f"GPU {g.index}: " + bar(g.utilization_percent / 100,
                                                          f"{g.utilization_percent:.0f}%, "
                                                          f"{fmt_bytes(g.memory_used_bytes)} / "
                                                          f"{fmt_bytes(g.memory_total_bytes)}")
                               for g in s.gpus) or '<span class="muted">none</span>'
            usage = [bar(s.cpu_percent / 100, f"{s.cpu_percent:.0f}%"),
                     bar(s.memory_used_bytes / max(1, s.memory_total_bytes),
                         f"{fmt_bytes(s.memory_used_bytes)} / {fmt_bytes(s.memory_total_bytes)}"),
                     gpus,
                     bar(s.store_used_bytes / max(1, s.store_capacity_bytes),
                         f"{fmt_bytes(s.store_used_bytes)} / {fmt_bytes(s.store_capacity_bytes)}"
                         + (f", {fmt_bytes(s.spilled_bytes)} spilled" if s.spilled_bytes else "")),
                     num(esc(sum(s.workers_by_state.values())))]
        resources = ", ".join(f"{esc(k)} {n['available'].get(k, 0):g}/{v:g}"
                              for k, v in sorted(n["totals"].items())
                              if "_group_" not in k and not k.startswith("node:") and k not in
                              ("memory", "object_store_memory"))
        rows.append([esc(_short(n["node_id"])) + (" (head)" if n["is_head"] else ""), esc(n["address"]),
                     state("ALIVE" if n["alive"] else "DEAD"), *usage, resources])
    head = next((n["stats"] for n in nodes if n["is_head"] and n["stats"] is not None), None)
    summary = head.tasks_by_state if head is not None else {}
    task_cells = _count_links("/tasks", "state", summary) or '<span class="muted">no tasks recorded</span>'
    actor_cells = _count_links("/actors", "state", data.counts("actors")) or '<span class="muted">none</span>'
    job_cells = _count_links("/jobs", "status", data.counts("jobs")) or '<span class="muted">none</span>'
    alive = sum(1 for n in nodes if n["alive"])
    body = (f'<p id="cluster-summary">{alive} node(s) alive'
            + (f", {len(nodes) - alive} dead" if len(nodes) > alive else "") + "</p>"
            + "<h2>Nodes</h2>"
            + table(["Node", "Address", "State", "CPU", "Memory", "GPUs", "Object store", "Workers",
                     "Resources (free/total)"], rows, "nodes")
            + f'<h2>Tasks</h2><p id="task-summary">{task_cells}</p>'
            + f'<h2>Actors</h2><p id="actor-summary">{actor_cells}</p>'
            + f'<h2>Jobs</h2><p id="job-summary">{job_cells}</p>')
    return page("Cluster overview", "/", body)


def _count_links(path: str, column: str, counts: dict[str, int]) -> str:
    return " &middot; ".join(link(f"{path}?{column}={urllib.parse.quote(k)}", f"{k}: {v}")
                             for k, v in sorted(counts.items()))


def _list_page(title: str, path: str, kind: str, filters: Sequence[tuple[str, str, Sequence[str] | None]],
               columns: Sequence[str], cells: Callable[[dict], list[str]], table_id: str,
               data: DashboardData, request: Request, intro: str = "") -> str:
    query = _query(request, [name for name, _, _ in filters])
    rows, total = data.list(kind, query)
    body = (intro + filter_form(path, filters, query.filters)
            + pager(path, query.filters, query.offset, query.limit, total)
            + table(columns, [cells(r) for r in rows], table_id))
    return page(title, path, body)


def jobs(data: DashboardData, request: Request) -> str:
    head = next((n["node_id"] for n in data.nodes() if n["is_head"]), "")
    submitted = table(
        ["Submission", "Status", "Entrypoint", "Started", "Ended", "Message", "Log"],
        [[esc(j["submission_id"]), state(j.get("status")), f"<code>{esc(j.get('entrypoint'))}</code>",
          esc(fmt_time((j.get("start_time") or 0) / 1000)), esc(fmt_time((j.get("end_time") or 0) / 1000)),
          f"<pre>{esc(j.get('message'))}</pre>" if j.get("message") else "",
          link("/logs/view?" + urllib.parse.urlencode(
              {"node_id": head, "filename": f"job-driver-{j['submission_id']}.log"}), "log")]
         for j in data.submitted_jobs()], "submitted-jobs")
    return _list_page(
        "Jobs", "/jobs", "jobs", [("status", "Status", None)],
        ["Job", "Type", "Status", "Entrypoint", "Started", "Ended"],
        lambda r: [esc(r.get("job_id")), esc(r.get("type")), state(r.get("status")),
                   esc(r.get("entrypoint")), esc(fmt_time((r.get("start_time") or 0) / 1000)),
                   esc(fmt_time((r.get("end_time") or 0) / 1000))],
        "jobs", data, request,
        intro="<h2>Submitted jobs</h2>" + submitted + "<h2>Drivers</h2>")


def tasks(data: DashboardData, request: Request) -> str:
    return _list_page(
        "Tasks", "/tasks", "tasks",
        [("state", "State", TASK_STATES), ("name", "Name", None), ("job_id", "Job", None),
         ("node_id", "Node", None)],
        ["Task", "Name", "State", "Type", "Node", "Worker", "Duration", "Error"],
        lambda r: [link(f"/tasks/{r['task_id']}", _short(r["task_id"], 16)), esc(r.get("name")),
                   state(r.get("state")), esc(r.get("type")), esc(_short(r.get("node_id"))),
                   esc(_short(r.get("worker_id"))), num(esc(_ms_duration(r))),
                   esc(r.get("error_type") or "")],
        "tasks", data, request)


def task_detail(data: DashboardData, request: Request) -> str:
    task_id = request.path_params["task_id"]
    task = data.get("tasks", task_id)
    if task is None:
        return page("Task not found", "/tasks", f"<p>No task {esc(task_id)} is recorded (it may have "
                    "been dropped: the head keeps the newest task events only).</p>")
    fields = [("Task", task.get("task_id")), ("Name", task.get("name")), ("State", task.get("state")),
              ("Type", task.get("type")), ("Function", task.get("func_or_class_name")),
              ("Job", task.get("job_id")), ("Actor", task.get("actor_id")), ("Node", task.get("node_id")),
              ("Worker", task.get("worker_id")), ("Worker pid", task.get("worker_pid")),
              ("Attempt", task.get("attempt_number")), ("Duration", _ms_duration(task)),
              ("Error type", task.get("error_type"))]
    body = table(["Field", "Value"], [[esc(k), state(v) if k == "State" else esc(v)]
                                      for k, v in fields if v not in (None, "")], "task")
    if task.get("worker_id"):
        body += "<p>" + link(f"/logs/view?worker_id={task['worker_id']}", "This worker's log") + "</p>"
    if task.get("state") == "FAILED":
        body += ('<h2>Error</h2><pre id="traceback">' + esc(task.get("error_message") or "(no message)")
                 + "</pre>" + "<h2>Replay it here</h2><p>Re-run the task in your own process (same function, "
                 "same arguments), e.g. under a debugger:</p>"
                 f'<pre id="replay">ember debug replay {esc(task["task_id"])}</pre>')
    events = task.get("events") or []
    if events:
        body += "<h2>Events</h2>" + table(
            ["State", "Time"], [[state(e.get("state")), esc(fmt_time((e.get("created_ms") or 0) / 1000))]
                                for e in events], "task-events")
    return page(f"Task {_short(task_id, 16)}", "/tasks", body)


def actors(data: DashboardData, request: Request) -> str:
    return _list_page(
        "Actors", "/actors", "actors",
        [("state", "State", ACTOR_STATES), ("class_name", "Class", None), ("name", "Name", None)],
        ["Actor", "Class", "Name", "State", "Node", "Pid", "Job", "Death cause"],
        _actor_cells, "actors", data, request)


def _actor_cells(r: dict) -> list[str]:
    return [link(f"/actors/{r['actor_id']}", _short(r["actor_id"], 16)), esc(r.get("class_name")),
            esc(r.get("name")), state(r.get("state")), esc(_short(r.get("node_id"))), esc(r.get("pid")),
            esc(r.get("job_id")), esc(_death(r))]


def _death(r: dict) -> str:
    cause = r.get("death_cause")
    if isinstance(cause, dict):
        return str(cause.get("error_message") or cause)
    return str(cause or "")


def actor_detail(data: DashboardData, request: Request) -> str:
    actor_id = request.path_params["actor_id"]
    actor = data.get("actors", actor_id)
    if actor is None:
        return page("Actor not found", "/actors", f"<p>No actor {esc(actor_id)}.</p>")
    body = table(["Field", "Value"], [[esc(k), esc(v)] for k, v in actor.items() if v not in (None, "", {}, [])],
                 "actor")
    if actor.get("worker_id"):
        body += "<p>" + link(f"/logs/view?worker_id={actor['worker_id']}", "This actor's log") + "</p>"
    body += "<h2>Its tasks</h2>" + link(f"/tasks?name={urllib.parse.quote(str(actor.get('class_name') or ''))}",
                                        "tasks of this class")
    return page(f"Actor {_short(actor_id, 16)}", "/actors", body)


def objects(data: DashboardData, request: Request) -> str:
    stores = table(["Node", "In memory", "Objects", "Spilled"],
                   [[esc(_short(n["node_id"])),
                     bar(n["stats"].store_used_bytes / max(1, n["stats"].store_capacity_bytes),
                         f"{fmt_bytes(n['stats'].store_used_bytes)} / {fmt_bytes(n['stats'].store_capacity_bytes)}"),
                     num(esc(n["stats"].num_objects)), num(esc(fmt_bytes(n["stats"].spilled_bytes)))]
                    for n in data.nodes() if n["stats"] is not None], "stores")
    return _list_page(
        "Objects", "/objects", "objects", [("reference_type", "Reference", None)],
        ["Object", "Size", "Reference", "Task status", "Pid", "Node"],
        lambda r: [esc(_short(r.get("object_id"), 20)), num(esc(fmt_bytes(r.get("object_size")))),
                   esc(r.get("reference_type")), esc(r.get("task_status")), esc(r.get("pid")),
                   esc(r.get("ip") or _short(r.get("node_id")))],
        "objects", data, request, intro="<h2>Object stores</h2>" + stores + "<h2>Objects</h2>")


def placement_groups(data: DashboardData, request: Request) -> str:
    return _list_page(
        "Placement groups", "/placement_groups", "placement_groups", [("state", "State", None)],
        ["Placement group", "Name", "State", "Strategy", "Bundles", "Job"],
        lambda r: [esc(_short(r.get("placement_group_id"), 20)), esc(r.get("name")), state(r.get("state")),
                   esc(r.get("strategy")), esc(r.get("bundles")), esc(r.get("creator_job_id"))],
        "placement_groups", data, request)


def logs(data: DashboardData, request: Request) -> str:
    rows = [[esc(_short(f["node_id"])), link(f"/logs/view?{urllib.parse.urlencode(f['query'])}", f["name"]),
             esc(f.get("worker_id") or ""), esc(f.get("pid") or ""), num(esc(fmt_bytes(f.get("size_bytes"))))]
            for f in data.log_files()]
    return page("Logs", "/logs", table(["Node", "Log", "Worker", "Pid", "Size"], rows, "log-files"))


def log_view(data: DashboardData, request: Request) -> str:
    params = dict(request.query_params)
    search = params.pop("q", "")
    try:
        tail = min(100_000, max(1, int(params.pop("tail", 1000))))
    except ValueError:
        tail = 1000
    lines, name = data.log_lines(params, tail, search)
    hidden = "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in params.items())
    form = (f'<form class="filters" method="get" action="/logs/view">{hidden}'
            f'<label>Search <input name="q" id="log-search" value="{esc(search)}"></label> '
            f'<label>Last <input name="tail" value="{tail}" size="6"> lines</label> '
            '<button type="submit">Show</button></form>'
            + '<p>' + link("/logs/view?" + urllib.parse.urlencode({**params, "q": search, "tail": tail,
                                                                   "refresh": 2}) + "#log-end",
                          "follow (reload every 2 s)")
            + '</p>')
    if lines is None:
        return page("Log not found", "/logs", form + f"<p>No log for {esc(params)}.</p>")
    shown = "\n".join(_highlight(line, search) for line in lines)
    return page(f"Log: {name}", "/logs", form + f'<pre id="log">{shown}</pre><span id="log-end"></span>')


def _highlight(line: str, search: str) -> str:
    if not search:
        return esc(line)
    parts = line.split(search)
    return f"<mark>{esc(search)}</mark>".join(esc(p) for p in parts)


def serve(data: DashboardData, request: Request) -> str:
    rows, _ = data.list("actors", ListQuery({"ray_namespace": "serve"}, 0, MAX_LIMIT))
    body = ("<p>Serve's controller, proxy and replicas as actors (<code>ember serve status</code> "
            "shows applications' status).</p>"
            + table(["Actor", "Class", "Name", "State", "Node", "Pid", "Job", "Death cause"],
                    [_actor_cells(r) for r in rows], "serve-actors"))
    return page("Serve", "/serve", body)


#: Class names of ember.train's workers (``RayTrainWorker(rank=N)``) and ember.tune's trials.
_TRAIN_CLASS = "RayTrainWorker"
_TUNE_CLASS = "TrialActor"


def train(data: DashboardData, request: Request) -> str:
    rows, _ = data.list("actors", ListQuery({}, 0, MAX_LIMIT))
    columns = ["Actor", "Class", "Name", "State", "Node", "Pid", "Job", "Death cause"]
    workers = [r for r in rows if str(r.get("class_name", "")).startswith(_TRAIN_CLASS)]
    trials = [r for r in rows if r.get("class_name") == _TUNE_CLASS]
    body = ("<p>ember.train's workers (one actor per rank) and ember.tune's trial actors, newest "
            "first; each links to its actor page and log.</p>"
            "<h2>Train workers</h2>" + table(columns, [_actor_cells(r) for r in workers], "train-workers")
            + "<h2>Tune trials</h2>" + table(columns, [_actor_cells(r) for r in trials], "tune-trials"))
    return page("Train and Tune", "/train", body)


#: (path, page function), for the app's routes.
PAGES: list[tuple[str, Callable[[DashboardData, Request], str]]] = [
    ("/", overview), ("/jobs", jobs), ("/tasks", tasks), ("/tasks/{task_id}", task_detail),
    ("/actors", actors), ("/actors/{actor_id}", actor_detail), ("/objects", objects),
    ("/placement_groups", placement_groups), ("/logs", logs), ("/logs/view", log_view),
    ("/serve", serve), ("/train", train)]

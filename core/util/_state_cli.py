"""``ember list | get | summary | logs | timeline``: the state API on the command line.

    ember list tasks --filter state=RUNNING --limit 20 [--detail] [--format json]
    ember get actors <actor id>
    ember summary tasks|actors|objects
    ember logs [FILENAME] [--node-id ID | --actor-id ID | --task-id ID | --worker-id ID | --pid PID]
               [--follow] [--tail N]
    ember timeline [--output FILE]

Each command asks this machine's cluster (or ``--address HOST:PORT``) as a short-lived
"peer" connection: it starts no job. Loaded by ``ember.cli`` only for these commands.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from typing import Any, Callable

from .._client.timeline import chrome_trace
from .._client.state_client import StateClient
from .._wire.state_query import KINDS, parse_filter
from ..exceptions import StateApiError, StateNotFoundError
from . import state

#: `ember get KIND ID` -> the function answering it.
_GETTERS: dict[str, Callable[..., Any]] = {
    "tasks": state.get_task, "actors": state.get_actor, "nodes": state.get_node, "jobs": state.get_job,
    "placement_groups": state.get_placement_group, "workers": state.get_worker,
    "objects": state.get_objects,
}
_LISTERS: dict[str, Callable[..., Any]] = {
    "tasks": state.list_tasks, "actors": state.list_actors, "nodes": state.list_nodes,
    "jobs": state.list_jobs, "placement_groups": state.list_placement_groups,
    "workers": state.list_workers, "objects": state.list_objects,
}
COMMANDS = ("list", "get", "summary", "logs", "timeline")


def add_parsers(sub: Any) -> None:
    """Add the state commands to ``ember``'s subcommand parser."""
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--address", help="HOST:PORT of the head (default: this machine's cluster)")
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for an answer")

    listing = sub.add_parser("list", help="list tasks, actors, nodes, jobs, placement groups, workers "
                             "or objects (Ray's `ray list`)")
    listing.add_argument("kind", choices=KINDS)
    listing.add_argument("-f", "--filter", action="append", default=[],
                         help="COLUMN=VALUE or COLUMN!=VALUE (repeat to combine), e.g. state=RUNNING")
    listing.add_argument("--limit", type=int, default=100, help="rows at most (default 100)")
    listing.add_argument("--detail", action="store_true", help="every column")
    listing.add_argument("--format", choices=("table", "json"), default="table")
    common(listing)
    listing.set_defaults(state_fn=_list)

    get = sub.add_parser("get", help="one task, actor, node, job, placement group, worker or object by id")
    get.add_argument("kind", choices=KINDS)
    get.add_argument("id", help="the hex id (as `ember list` prints it)")
    get.add_argument("--format", choices=("yaml", "json"), default="yaml")
    common(get)
    get.set_defaults(state_fn=_get)

    summary = sub.add_parser("summary", help="tasks, actors or objects counted by state")
    summary.add_argument("kind", choices=("tasks", "actors", "objects"))
    summary.add_argument("--format", choices=("table", "json"), default="table")
    common(summary)
    summary.set_defaults(state_fn=_summary)

    logs = sub.add_parser("logs", help="a node's, worker's, actor's or task's log; without a "
                          "selector: the log files of every node")
    logs.add_argument("filename", nargs="?", help="a log file name (on --node-id, default the head)")
    logs.add_argument("--node-id", help="the node (its node_manager.log unless a file is named)")
    logs.add_argument("--actor-id", help="the actor whose worker's log to show")
    logs.add_argument("--task-id", help="the task whose worker's log to show")
    logs.add_argument("--worker-id", help="the worker whose log to show")
    logs.add_argument("--pid", type=int, help="the worker process whose log to show")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--tail", type=int, default=1000, help="last N lines first (-1: all)")
    common(logs)
    logs.set_defaults(state_fn=_logs)

    timeline = sub.add_parser("timeline", help="write the recorded tasks as a Chrome trace JSON file "
                              "(open in chrome://tracing or ui.perfetto.dev)")
    timeline.add_argument("-o", "--output", help="file to write (default: a new file in the temp dir)")
    common(timeline)
    timeline.set_defaults(state_fn=_timeline)


def main(argv: list[str]) -> int:
    """Run one state command (``argv`` starts with the command name)."""
    parser = argparse.ArgumentParser(prog="ember")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.state_fn(args)
    except StateApiError as e:  # also the typed errors for bad filters and unknown ids
        print(f"ember {args.command}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # `ember logs --follow` ends with ^C
        return 130


def _list(args: argparse.Namespace) -> int:
    filters = [parse_filter(text) for text in args.filter]
    rows = _LISTERS[args.kind](address=args.address, filters=filters, limit=args.limit,
                               timeout=args.timeout, detail=args.detail)
    if args.format == "json":
        print(json.dumps(rows, indent=1, default=str))
    else:
        print(format_table(rows))
        print(f"\n{len(rows)} {args.kind} listed")
    return 0


def _get(args: argparse.Namespace) -> int:
    found = _GETTERS[args.kind](args.id, address=args.address, timeout=args.timeout)
    if not found:
        raise StateNotFoundError(f"{args.kind[:-1].replace('_', ' ')} {args.id}", "the cluster",
                                 f"list them with `ember list {args.kind}`")
    if args.format == "json":
        print(json.dumps(found, indent=1, default=str))
    else:
        for row in found if isinstance(found, list) else [found]:
            print(format_record(row))
    return 0


def _summary(args: argparse.Namespace) -> int:
    fn = {"tasks": state.summarize_tasks, "actors": state.summarize_actors,
          "objects": state.summarize_objects}[args.kind]
    result = fn(address=args.address, timeout=args.timeout)["cluster"]
    if args.format == "json":
        print(json.dumps(result, indent=1, default=str))
        return 0
    rows = []
    for name, entry in sorted(result["summary"].items()):
        counts = entry.get("state_counts") or entry.get("task_state_counts") or {}
        rows.append({"name": name, **({"type": entry["type"]} if "type" in entry else {}),
                     "state_counts": ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))})
    print(format_table(rows))
    totals = {k: v for k, v in result.items() if k.startswith("total")}
    print("\n" + ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}" for k, v in totals.items()))
    return 0


def _logs(args: argparse.Namespace) -> int:
    selectors = (args.filename, args.actor_id, args.task_id, args.worker_id, args.pid, args.node_id)
    if all(s is None for s in selectors):
        for node_id, files in state.list_logs(address=args.address, timeout=args.timeout).items():
            print(f"node {node_id}:")
            for name in files:
                print(f"  {name}")
        return 0
    for chunk in state.get_log(address=args.address, node_id=args.node_id, filename=args.filename,
                               actor_id=args.actor_id, task_id=args.task_id, worker_id=args.worker_id,
                               pid=args.pid, follow=args.follow, tail=args.tail, timeout=args.timeout):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


def _timeline(args: argparse.Namespace) -> int:
    path = args.output or tempfile.NamedTemporaryFile(
        prefix=f"ember-timeline-{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}-", suffix=".json",
        delete=False).name
    with StateClient(args.address, args.timeout) as client:
        events = chrome_trace(client.all_rows("tasks", detail=True))
    with open(path, "w") as f:
        json.dump(events, f)
    print(f"ember timeline: wrote {len(events)} trace events to {path}; open it in chrome://tracing "
          "or https://ui.perfetto.dev")
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


def format_table(rows: list[dict[str, Any]], max_width: int = 48) -> str:
    """Rows as a fixed-width text table (columns in the rows' order; long cells cut)."""
    if not rows:
        return "(none)"
    columns = list(rows[0])
    cells = [[_cell(row.get(c))[:max_width] for c in columns] for row in rows]
    widths = [max(len(c.upper()), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def format_record(row: dict[str, Any]) -> str:
    """One row as ``column: value`` lines (multi-line values, such as tracebacks, indented)."""
    lines = []
    for key, value in row.items():
        text = _cell(value)
        if "\n" in text:
            lines.append(f"{key}: |")
            lines += [f"  {line}" for line in text.rstrip("\n").splitlines()]
        else:
            lines.append(f"{key}: {text}")
    return "\n".join(lines)

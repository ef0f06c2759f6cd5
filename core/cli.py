"""The ``ember`` command: start, stop and inspect this machine's cluster."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import shutil
import signal
import sys
import time
from typing import Any, Callable


from ._wire.tokens import ClusterToken, given_token
from .exceptions import EmberError
from ._node.launcher import (clear_current, dead_head_session, find_by_tcp_address, find_current,
                             local_nodes, make_current, node_resources, process_running, read_http_urls,
                             start_node)


def _token_for_join(args: argparse.Namespace) -> ClusterToken:
    """The cluster token: --token-file, $EMBER_TOKEN, or the head's session on this machine.

    Raises:
        EmberError: none is given and the head does not run here; or the one given is not
            usable (InvalidOptionError).
    """
    token = given_token(args.token_file)
    if token is not None:
        return token
    try:
        return find_by_tcp_address(args.address)[2]
    except EmberError as e:
        raise EmberError(f"no head at {args.address} runs on this machine, so its cluster token must "
                         "be given: pass --token-file PATH (the head's <session>/token, or the secret "
                         "the head was started with) or set EMBER_TOKEN") from e


def _raise_fd_limit() -> None:
    """Raise this process's soft open-file limit to the hard one (the node manager inherits
    it): every driver, worker and peer is a connection, and 1,024 is easily reached."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # e.g. above the kernel's nr_open: keep the soft limit


def _start(args: argparse.Namespace) -> int:
    if args.head == bool(args.address):
        print("ember start: give either --head or --address HOST:PORT", file=sys.stderr)
        return 2
    if args.storage and not args.head:
        print("ember start: --storage is for the head (--head); worker nodes keep no control store",
              file=sys.stderr)
        return 2
    _raise_fd_limit()
    node_args = [f"--{flag}={value}" for flag, value in (
        ("heartbeat-period-s", args.heartbeat_period_s), ("node-timeout-s", args.node_timeout_s),
        ("head-reconnect-timeout-s", args.head_reconnect_timeout_s)) if value is not None]
    resources = json.loads(args.resources) if args.resources else None
    shape = node_resources(args.num_cpus, args.num_gpus, resources, args.object_store_memory)
    try:
        if args.head:
            # The operator's token when one is given (every node and driver gets the same
            # secret), else a new one; a short one is refused before anything starts.
            token = given_token(args.token_file)
            try:
                find_current()
                print("ember start: a head node is already running on this machine; `ember stop` "
                      "it first", file=sys.stderr)
                return 1
            except EmberError:
                pass
            port = args.port if args.port is not None else 6379
            # A head that died on this port left its session (token, SQLite storage): take it
            # over, so its nodes reconnect and its actors and placement groups are found.
            resumed = dead_head_session(port)
            node = start_node(*shape, exit_with_first_driver=False, host=args.node_ip_address,
                              port=port, started_by_cli=True,
                              dashboard=(args.dashboard_host, args.dashboard_port)
                              if args.include_dashboard else None,
                              metrics_export_port=args.metrics_export_port, token=token,
                              storage=args.storage or "session", resume_session=resumed,
                              node_args=node_args)
            make_current(node.session_dir)
            host_port = node.tcp_address.removeprefix("tcp:")
            token_hint = (f"with the same token ({token.source})" if token is not None else
                          f"--token-file {node.session_dir}/token")
            if resumed is not None:
                print(f"ember restarted the head node at {host_port} from the session of the one that "
                      "died there; its nodes reconnect on their own.")
            print(f"ember started a head node at {host_port} (session {node.session_dir}).\n"
                  f"Join other nodes with: ember start --address {host_port} {token_hint}\n"
                  "Connect from Python on this machine with: ember.init(address='auto')\n"
                  f"Connect from another machine with: ember.init('ember://{host_port}') and the "
                  "token in $EMBER_TOKEN (or token_file=)\n"
                  + (f"Dashboard: {node.dashboard_url} (log in with the token in {node.session_dir}/token)\n"
                     if node.dashboard_url else "")
                  + f"Prometheus metrics of this node: {node.metrics_url} (bearer token)\n"
                  "Stop every ember node on this machine with: ember stop")
        else:
            node = start_node(*shape, exit_with_first_driver=False, token=_token_for_join(args),
                              host=args.node_ip_address, port=args.port or 0,
                              head_address=f"tcp:{args.address}", started_by_cli=True,
                              dashboard=None, metrics_export_port=args.metrics_export_port,
                              node_args=node_args)
            print(f"ember joined {args.address} as a node at {node.tcp_address.removeprefix('tcp:')}; "
                  f"its Prometheus metrics: {node.metrics_url} (bearer token)")
    except EmberError as e:
        print(f"ember start: {e}", file=sys.stderr)
        return 1
    if args.block:
        signal.signal(signal.SIGTERM, lambda *_: node.proc.terminate())
        try:
            node.proc.wait()
        except KeyboardInterrupt:
            node.proc.terminate()
            node.proc.wait()
        _cleanup(node.session_dir)
    return 0


def _cleanup(session_dir: str) -> None:
    clear_current(session_dir)
    shutil.rmtree(session_dir, ignore_errors=True)


def _stop(_args: argparse.Namespace) -> int:
    """Stop the nodes `ember start` started on this machine (worker nodes first)."""
    for session_dir, node in local_nodes(include_dead=True):
        if node.get("cli") and not process_running(node["pid"]):
            _cleanup(session_dir)  # a node that died (e.g. SIGKILL) left its session behind
    nodes = [(d, n) for d, n in local_nodes() if n.get("cli")]
    if not nodes:
        print("ember stop: no ember node is running on this machine")
        return 0
    for session_dir, node in sorted(nodes, key=lambda dn: dn[1].get("head", False)):
        _stop_pid(node["pid"])
        _cleanup(session_dir)
    print(f"ember stopped {len(nodes)} node(s)")
    return 0


def _stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def _dashboard(_args: argparse.Namespace) -> int:
    """Where this machine's cluster (``ember start --head``) serves its dashboard and metrics."""
    try:
        session_dir = find_current()[0]
    except EmberError as e:
        print(f"ember dashboard: {e}", file=sys.stderr)
        return 1
    urls = read_http_urls(session_dir)
    if not urls.get("dashboard_url"):
        print("ember dashboard: this cluster serves no dashboard (started with --include-dashboard false)",
              file=sys.stderr)
        return 1
    print(f"dashboard: {urls['dashboard_url']} (log in with the token in {session_dir}/token)\n"
          f"Prometheus metrics of the head: {urls.get('metrics_url', '')} (the token as a bearer header)")
    return 0


def _ask_cluster(command: str, ask: Callable[[Any], Any]) -> Any:
    """Join this machine's cluster as a short-lived driver, run ``ask(ember)``, leave.
    None (after printing why) when there is no cluster."""
    import ember
    try:
        ember.init(address="auto")
    except EmberError as e:
        print(f"ember {command}: {e}", file=sys.stderr)
        return None
    try:
        return ask(ember)
    finally:
        ember.shutdown()


def _status(_args: argparse.Namespace) -> int:
    answer = _ask_cluster("status", lambda ember: (
        ember.cluster_resources(), ember.available_resources(), ember.nodes(),
        ember.object_store_stats(), _autoscaler_report(ember)))
    if answer is None:
        return 1
    total, free, nodes, store, autoscaler = answer
    alive = [n for n in nodes if n["Alive"]]
    print(f"nodes: {len(alive)} alive" + (f", {len(nodes) - len(alive)} dead" if len(nodes) > len(alive) else ""))
    for name in sorted(total):
        if "_group_" in name or name.startswith("node:"):
            continue
        used = total[name] - free.get(name, 0.0)
        print(f"  {name:<22} {used:g} / {total[name]:g} used")
    demand: dict[str, int] = {}
    for node in alive:
        for shape in node.get("PendingDemand", []):
            key = ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items()) if "_group_" not in k)
            demand[key] = demand.get(key, 0) + 1
    print("pending demand: " + ("none" if not demand else
                                "; ".join(f"{{{k}}} x {n}" for k, n in sorted(demand.items()))))
    mb = 1 << 20
    print(f"object store (this node): {store['used_bytes'] / mb:.1f} / {store['capacity_bytes'] / mb:.1f} "
          f"MiB in {store['num_objects']} objects, {store.get('pinned_bytes', 0) / mb:.1f} MiB pinned "
          f"by readers, {store['spilled_bytes'] / mb:.1f} MiB spilled")
    if autoscaler:
        from .autoscaler.monitor import format_report
        print(format_report(autoscaler))
    return 0


def _autoscaler_report(ember: Any) -> dict | None:
    """The autoscaler's latest report, when one runs on this cluster (``ember up``)."""
    from .autoscaler.state import find_state_actor
    actor = find_state_actor()
    return ember.get(actor.report.remote(), timeout=10) if actor is not None else None


def _up(args: argparse.Namespace) -> int:
    from .autoscaler.launcher import up
    try:
        state = up(args.config)
    except EmberError as e:
        print(f"ember up: {e}", file=sys.stderr)
        return 1
    print(f"ember up: head at {state['head_address']}, autoscaler running (pid {state['monitor_pid']}).\n"
          f"Connect with ember.init(address='{state['head_address']}'); stop with: ember down {args.config}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from .autoscaler.launcher import down
    try:
        stopped = down(args.config)
    except EmberError as e:
        print(f"ember down: {e}", file=sys.stderr)
        return 1
    print("ember down: the cluster is stopped" if stopped else "ember down: this cluster is not up")
    return 0


def _memory(args: argparse.Namespace) -> int:
    stats = _ask_cluster("memory", lambda ember: ember.object_store_stats())
    if stats is None:
        return 1
    print(format_memory(stats, args.top))
    return 0


def format_memory(stats: dict, top: int = 10) -> str:
    """``ember memory``'s report from ``ember.object_store_stats()``: node memory, store
    usage, spilled bytes, and the largest objects with who holds them."""
    mb, gb = 1 << 20, 1 << 30
    lines = []
    node = stats.get("node_memory")
    if node:
        monitor = (f"memory monitor kills a worker above {node['threshold']:.0%}" if node["monitor_on"]
                   else "memory monitor off")
        lines.append(f"node memory: {node['used_bytes'] / gb:.2f} / {node['total_bytes'] / gb:.2f} GiB "
                     f"used ({node['used_bytes'] / node['total_bytes']:.0%}; {monitor})")
    lines.append(f"object store: {stats['used_bytes'] / mb:.1f} / {stats['capacity_bytes'] / mb:.1f} MiB "
                 f"in memory, {stats['num_objects']} objects")
    if "free_bytes" in stats:
        lines.append(f"  free {stats['free_bytes'] / mb:.1f} MiB (largest block "
                     f"{stats['largest_free_bytes'] / mb:.1f} MiB); pinned by readers "
                     f"{stats['pinned_bytes'] / mb:.1f} MiB in {stats['num_pinned']} blocks")
    lines.append(f"spilled: {stats['spilled_bytes'] / mb:.1f} MiB in {stats.get('num_spilled', 0)} objects")
    if stats.get("spill_capacity_bytes"):
        lines.append(f"  spill file {stats['spill_file_bytes'] / mb:.1f} / "
                     f"{stats['spill_capacity_bytes'] / mb:.1f} MiB, being written "
                     f"{stats['spilling_bytes'] / mb:.1f} MiB")
    if "pulled_objects" in stats:
        lines.append(f"pulled from other nodes: {stats['pulled_objects']} objects, "
                     f"{stats['pulled_bytes'] / mb:.1f} MiB")
    largest = stats.get("largest_objects", [])[:top]
    if largest:
        lines.append("largest objects:")
        lines.append(f"  {'object id':<26} {'size':>11}  {'where':<8} held by")
        for item in largest:
            where = "spilled" if item["spilled"] else "pinned" if item.get("pinned") else "memory"
            holders = ", ".join(item["holders"]) or "-"
            lines.append(f"  {item['object_id']:<26.26} {item['size_bytes'] / mb:>7.1f} MiB  {where:<8} {holders}")
    return "\n".join(lines)


#: Commands of the state API (ember/util/_state_cli.py) -> their help line here.
_STATE_COMMANDS = {
    "list": "list tasks, actors, nodes, jobs, placement groups, workers or objects",
    "get": "one task, actor, node, job, placement group, worker or object by id",
    "summary": "tasks, actors or objects counted by state",
    "logs": "a node's, worker's, actor's or task's log",
    "timeline": "write the recorded tasks as a Chrome trace JSON file",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        # ember.serve is a library on top of the core with a CLI of its own: loaded only for
        # its subcommand, so `ember start` never pays for starlette and uvicorn.
        return importlib.import_module("ember.serve.cli").main(argv[1:])
    if argv[:1] == ["job"]:
        # Like serve: its own parser; `ember start` never imports the job client.
        return importlib.import_module("ember.job_submission").main(argv[1:])
    if argv[:1] == ["debug"]:
        return importlib.import_module("ember.util.debug").main(argv[1:])
    if argv[:1] and argv[0] in _STATE_COMMANDS:
        # The state API's commands load the client side of ember: not for `ember start`.
        return importlib.import_module("ember.util._state_cli").main(argv)
    parser = argparse.ArgumentParser(prog="ember", description="ember cluster control")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run, deploy, inspect and shut down ember.serve applications "
                   "(ember serve --help)")
    sub.add_parser("job", help="submit jobs to the cluster and follow, stop or list them "
                   "(ember job --help)")
    sub.add_parser("debug", help="replay a failed task here, or attach pdb to a task at breakpoint() "
                   "(ember debug --help)")
    for name, what in _STATE_COMMANDS.items():
        sub.add_parser(name, help=f"{what} (ember {name} --help)")
    start = sub.add_parser("start", help="start a node on this machine")
    start.add_argument("--head", action="store_true", help="start the head node")
    start.add_argument("--address", help="HOST:PORT of the head to join")
    start.add_argument("--port", type=int, help="TCP port (head default 6379; nodes: any free port)")
    start.add_argument("--node-ip-address", default="127.0.0.1",
                       help="address to bind this node's TCP port to (default: loopback only)")
    start.add_argument("--token-file", help="file holding the cluster token (default: $EMBER_TOKEN, "
                       "or the head's session when it runs on this machine)")
    start.add_argument("--num-cpus", type=float)
    start.add_argument("--num-gpus", type=float)
    start.add_argument("--resources", help='custom resources as JSON, e.g. \'{"TPU": 4}\'')
    start.add_argument("--object-store-memory", type=int)
    start.add_argument("--block", action="store_true", help="stay in the foreground; stop on SIGTERM")
    start.add_argument("--include-dashboard", type=lambda v: v.lower() not in ("false", "0", "no"),
                       default=True, metavar="true|false", help="serve the dashboard on the head (default true)")
    start.add_argument("--dashboard-host", default="127.0.0.1",
                       help="address the head's dashboard binds to (default: loopback only)")
    start.add_argument("--dashboard-port", type=int, default=8265,
                       help="the head's dashboard port (default 8265; any free port when taken)")
    start.add_argument("--metrics-export-port", type=int, default=0,
                       help="this node's Prometheus endpoint port (default: any free port)")
    start.add_argument("--storage", help="the head's persistent control store: sqlite:///PATH or "
                       "redis://HOST:PORT[/DB] (default: a SQLite file in the head's session, which "
                       "a head restarted on the same port takes over)")
    start.add_argument("--heartbeat-period-s", type=float,
                       help="seconds between node heartbeats (default: $EMBER_HEARTBEAT_S or 0.2)")
    start.add_argument("--node-timeout-s", type=float,
                       help="the head: a node silent this long is dead (default: "
                       "$EMBER_NODE_TIMEOUT_S or 2)")
    start.add_argument("--head-reconnect-timeout-s", type=float,
                       help="worker nodes: how long to wait for a lost head to come back before "
                       "stopping (default: $EMBER_HEAD_RECONNECT_TIMEOUT_S or 60)")
    start.set_defaults(fn=_start)
    sub.add_parser("stop", help="stop this machine's ember processes").set_defaults(fn=_stop)
    sub.add_parser("status", help="nodes, resources and object store usage").set_defaults(fn=_status)
    sub.add_parser("dashboard", help="where this machine's cluster serves its dashboard and metrics"
                   ).set_defaults(fn=_dashboard)
    memory = sub.add_parser("memory", help="object store usage, spilled bytes, largest objects "
                            "and who holds them")
    memory.add_argument("--top", type=int, default=10, help="how many of the largest objects to list")
    memory.set_defaults(fn=_memory)
    for name, fn, what in (("up", _up, "start a cluster's head and autoscaler from a cluster YAML"),
                           ("down", _down, "stop the autoscaler, worker nodes and head `ember up` started")):
        command = sub.add_parser(name, help=what)
        command.add_argument("config", help="the cluster YAML (see docs/autoscaler.md)")
        command.set_defaults(fn=fn)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

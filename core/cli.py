"""The ``ember`` command: start, stop and inspect this machine's cluster."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time

from .exceptions import EmberError
from .node_launcher import clear_current, find_current, make_current, node_resources, start_node


def _start(args: argparse.Namespace) -> int:
    if not args.head:
        print("ember start: joining another node (--address) is not supported yet; use --head",
              file=sys.stderr)
        return 2
    try:
        find_current()
        print("ember start: a cluster is already running on this machine; `ember stop` it first",
              file=sys.stderr)
        return 1
    except EmberError:
        pass
    resources = json.loads(args.resources) if args.resources else None
    node = start_node(*node_resources(args.num_cpus, args.num_gpus, resources, args.object_store_memory),
                      exit_with_first_driver=False)
    make_current(node.session_dir)
    print(f"ember started a head node (session {node.session_dir}).\n"
          "Connect from Python on this machine with: ember.init(address='auto')\n"
          "Stop it with: ember stop")
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
    try:
        session_dir, _address, _token, pid = find_current()
    except EmberError:
        print("ember stop: no cluster is running on this machine")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    _cleanup(session_dir)
    print("ember stopped")
    return 0


def _status(_args: argparse.Namespace) -> int:
    import ember
    try:
        ember.init(address="auto")
    except EmberError as e:
        print(f"ember status: {e}", file=sys.stderr)
        return 1
    try:
        total, free = ember.cluster_resources(), ember.available_resources()
        nodes = ember.nodes()
        store = ember.object_store_stats()
    finally:
        ember.shutdown()
    print(f"nodes: {len(nodes)} alive")
    for name in sorted(total):
        if "_group_" in name or name.startswith("node:"):
            continue
        used = total[name] - free.get(name, 0.0)
        print(f"  {name:<22} {used:g} / {total[name]:g} used")
    mb = 1 << 20
    print(f"object store: {store['used_bytes'] / mb:.1f} / {store['capacity_bytes'] / mb:.1f} MiB in "
          f"{store['num_objects']} objects")
    return 0


def _memory(args: argparse.Namespace) -> int:
    import ember
    try:
        ember.init(address="auto")
    except EmberError as e:
        print(f"ember memory: {e}", file=sys.stderr)
        return 1
    try:
        stats = ember.object_store_stats()
    finally:
        ember.shutdown()
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
    lines.append(f"spilled: {stats['spilled_bytes'] / mb:.1f} MiB in {stats.get('num_spilled', 0)} objects")
    largest = stats.get("largest_objects", [])[:top]
    if largest:
        lines.append("largest objects:")
        lines.append(f"  {'object id':<26} {'size':>11}  {'where':<8} held by")
        for item in largest:
            where = "spilled" if item["spilled"] else "memory"
            holders = ", ".join(item["holders"]) or "-"
            lines.append(f"  {item['object_id']:<26.26} {item['size_bytes'] / mb:>7.1f} MiB  {where:<8} {holders}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ember", description="ember cluster control")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start a node on this machine")
    start.add_argument("--head", action="store_true", help="start the head node")
    start.add_argument("--num-cpus", type=float)
    start.add_argument("--num-gpus", type=float)
    start.add_argument("--resources", help='custom resources as JSON, e.g. \'{"TPU": 4}\'')
    start.add_argument("--object-store-memory", type=int)
    start.add_argument("--block", action="store_true", help="stay in the foreground; stop on SIGTERM")
    start.set_defaults(fn=_start)
    sub.add_parser("stop", help="stop this machine's ember processes").set_defaults(fn=_stop)
    sub.add_parser("status", help="nodes, resources and object store usage").set_defaults(fn=_status)
    memory = sub.add_parser("memory", help="object store usage, spilled bytes, largest objects "
                            "and who holds them")
    memory.add_argument("--top", type=int, default=10, help="how many of the largest objects to list")
    memory.set_defaults(fn=_memory)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())

"""Debugging remote tasks: replay a failed task here, or attach pdb to a running one.

Replay: a task that raises leaves its function reference and its resolved arguments on
the head (bounded in count and size; ``debug_replay=False`` on a task, or
``EMBER_DEBUG_REPLAY=0`` in the driver's or the node's environment, turns it off).
``replay(ref)`` runs the same function on the same arguments in *this* process, so a
debugger (pdb, an IDE) can step through it::

    ref = flaky.remote(x)
    try:
        ember.get(ref)
    except ValueError:
        ember.util.debug.replay(ref, pdb=True)   # or: ember debug replay <task-id> --pdb

Remote pdb: ``breakpoint()`` inside a task or actor method opens a pdb session on a
loopback port of the worker's machine and waits; ``ember debug attach <task-id>`` (or
``attach(task_id)``) connects to it after proving the cluster token.

    worker: breakpoint() -> listen 127.0.0.1:0 -> RegisterBreakpoint -> head
    ember debug attach ID -> GetBreakpoint -> connect, send token -> pdb over the socket
"""

from __future__ import annotations

import argparse
import os
import pdb as _pdb
import select
import socket
import sys
import traceback
from typing import Any, TextIO

import cloudpickle

from .._client import context
from .._wire import protocol as p
from ..api import init, shutdown
from ..exceptions import EmberError
from ..object_ref import ObjectRef

__all__ = ["attach", "failed_tasks", "list_breakpoints", "replay"]


def _task_hex(target: ObjectRef | str | bytes) -> str:
    """The task id (hex) of a ref, of a task or object id, or a prefix of one."""
    if isinstance(target, ObjectRef):
        return target.id[:12].hex()
    if isinstance(target, bytes):
        return target[:12].hex()
    if isinstance(target, str) and target and all(c in "0123456789abcdef" for c in target.lower()):
        return target.lower()[:24]
    raise TypeError(f"expected an ObjectRef or a task id (hex), got {target!r}")


def failed_tasks() -> list[dict[str, Any]]:
    """The failed tasks kept for replay, oldest first: task_id, name, error, size_bytes."""
    rt = context.runtime()
    records, _ = rt.call(lambda rid: p.GetFailedTask(rid, None))
    return records


def _fetch(task: ObjectRef | str | bytes) -> dict[str, Any]:
    rt = context.runtime()
    record, _ = rt.call(lambda rid: p.GetFailedTask(rid, _task_hex(task)))
    return record


def replay(task: ObjectRef | str | bytes, *, pdb: bool = False) -> Any:
    """Run a failed task again in this process: the same function, the same arguments.

    Args:
        task: the failed task's ref (or its task id in hex, as errors and ``ember list
            tasks`` show it, or an unambiguous prefix).
        pdb: run it under pdb (stops at its first line).

    Returns:
        What the function returns this time (it usually raises again).

    Raises:
        EmberError: no failed task with that id was kept (it succeeded, its inputs were
            too large, replay was turned off for it, or it was dropped as one of the oldest).
    """
    record = _fetch(task)
    rt = context.runtime()
    blob, _ = rt.call(lambda rid: p.GetFunction(rid, record["function_id"]))
    # The worker's sys.path, after ours: modules next to the driver import here as there.
    for entry in record.get("sys_path") or []:
        if entry not in sys.path:
            sys.path.append(entry)
    fn = cloudpickle.loads(blob)
    args, kwargs = cloudpickle.loads(record["inputs"])
    if pdb:
        return _pdb.Pdb().runcall(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def list_breakpoints() -> list[dict[str, Any]]:
    """Tasks stopped at ``breakpoint()`` and waiting for ``attach``: task_id, name, pid."""
    rt = context.runtime()
    records, _ = rt.call(lambda rid: p.GetBreakpoint(rid, None))
    return records


def attach(task: ObjectRef | str | bytes, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
    """Attach this terminal to the pdb session of a task stopped at ``breakpoint()``;
    returns when the session ends (``c`` or ``q`` lets the task run on).

    Raises:
        EmberError: no task with that id is waiting at a breakpoint.
        ConnectionError: it stopped waiting meanwhile.
    """
    rt = context.runtime()
    record, _ = rt.call(lambda rid: p.GetBreakpoint(rid, _task_hex(task)))
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    with socket.create_connection((record["host"], record["port"]), timeout=10) as sock:
        sock.settimeout(None)
        sock.sendall(rt.token.hex().encode() + b"\n")
        sources: list[Any] = [sock, stdin.fileno()]
        while True:
            readable, _, _ = select.select(sources, [], [])
            if sock in readable:
                data = sock.recv(65536)
                if not data:
                    return
                stdout.write(data.decode(errors="replace"))
                stdout.flush()
            if stdin.fileno() in readable:
                line = os.read(stdin.fileno(), 65536)
                if line:
                    sock.sendall(line)
                else:  # our input ended: pdb sees EOF and lets the task go on
                    sock.shutdown(socket.SHUT_WR)
                    sources.remove(stdin.fileno())


def main(argv: list[str]) -> int:
    """``ember debug replay <task-id> [--pdb]``, ``ember debug attach <task-id>``, ``ember debug list``."""
    parser = argparse.ArgumentParser(prog="ember debug", description="debug remote tasks")
    parser.add_argument("--address", default="auto", help="the head's HOST:PORT (default: this machine's cluster)")
    sub = parser.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="run a failed task again in this process (same function, same inputs)")
    rp.add_argument("task_id", help="the task id (hex) shown in the error, `ember list tasks` or the dashboard")
    rp.add_argument("--pdb", action="store_true", help="step through it under pdb")
    at = sub.add_parser("attach", help="attach to a task stopped at breakpoint()")
    at.add_argument("task_id")
    sub.add_parser("list", help="failed tasks kept for replay, and tasks waiting at a breakpoint")
    args = parser.parse_args(argv)
    # Functions of modules in the current directory replay as they ran (a console script's
    # sys.path[0] is its bin directory, not the directory it was started from).
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        init(address=args.address)
    except EmberError as e:
        print(f"ember debug: {e}", file=sys.stderr)
        return 1
    try:
        if args.command == "replay":
            try:
                result = replay(args.task_id, pdb=args.pdb)
            except EmberError as e:
                print(f"ember debug replay: {e}", file=sys.stderr)
                return 1
            except Exception:  # noqa: BLE001  (the task's own error, shown as it happened here)
                traceback.print_exc()
                print(f"ember debug replay: the task raised again, in this process (pid {os.getpid()})",
                      file=sys.stderr)
                return 1
            print(f"ember debug replay: the task returned {result!r} this time")
            return 0
        if args.command == "attach":
            try:
                attach(args.task_id)
            except (EmberError, OSError) as e:
                print(f"ember debug attach: {e}", file=sys.stderr)
                return 1
            return 0
        for record in failed_tasks():
            print(f"failed      {record['task_id']}  {record['name']}: {record['error'][:100]}")
        for record in list_breakpoints():
            print(f"breakpoint  {record['task_id']}  {record['name']} (pid {record['pid']})")
        return 0
    finally:
        shutdown()

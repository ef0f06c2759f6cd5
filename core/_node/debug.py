"""Failed tasks kept for replay, and tasks waiting at ``breakpoint()`` (a node service;
the head keeps both tables, other nodes forward these messages to it).

    worker: task raised -> RecordFailedTask(function id, pickled inputs) -> head: kept,
            oldest dropped first beyond MAX_TASKS or MAX_TOTAL_BYTES (counted in ``dropped``)
    worker: breakpoint() -> RegisterBreakpoint(host, port) ... ClearBreakpoint once attached
    ember.util.debug: GetFailedTask / GetBreakpoint (by task id, or a prefix of it)
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

from .._wire import protocol as p
from ..exceptions import EmberError
from .context import Client, Handlers, NodeContext

#: Failed tasks kept for replay, and the bytes of their inputs in total.
MAX_TASKS = int(os.environ.get("EMBER_REPLAY_MAX_TASKS", "100"))
MAX_TOTAL_BYTES = int(os.environ.get("EMBER_REPLAY_MAX_TOTAL_BYTES", str(256 << 20)))


class DebugService:
    """The head's replay records and breakpoint directory (plain tables; handlers under the lock)."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.failed: collections.OrderedDict[str, dict[str, Any]] = collections.OrderedDict()
        self.total_bytes = 0
        #: Records dropped to stay within the bounds, oldest first.
        self.dropped = 0
        self.breakpoints: dict[str, dict[str, Any]] = {}

    def handlers(self) -> Handlers:
        return {p.RecordFailedTask: self.on_record_failed, p.GetFailedTask: self.on_get_failed,
                p.RegisterBreakpoint: self.on_register_breakpoint,
                p.ClearBreakpoint: self.on_clear_breakpoint, p.GetBreakpoint: self.on_get_breakpoint}

    def on_record_failed(self, client: Client, msg: p.RecordFailedTask) -> None:
        old = self.failed.pop(msg.task_hex, None)
        if old is not None:
            self.total_bytes -= len(old["inputs"])
        self.failed[msg.task_hex] = {"task_id": msg.task_hex, "name": msg.name,
                                     "function_id": msg.function_id, "inputs": msg.inputs,
                                     "sys_path": msg.sys_path, "error": msg.error,
                                     "size_bytes": len(msg.inputs), "time": time.time()}
        self.total_bytes += len(msg.inputs)
        while self.failed and (len(self.failed) > MAX_TASKS or self.total_bytes > MAX_TOTAL_BYTES):
            _key, gone = self.failed.popitem(last=False)
            self.total_bytes -= len(gone["inputs"])
            self.dropped += 1

    def on_get_failed(self, client: Client, msg: p.GetFailedTask) -> None:
        if msg.task_hex is None:
            self.ctx.reply(client, msg.rid, True, [
                {k: v for k, v in r.items() if k not in ("inputs", "function_id")}
                for r in self.failed.values()])
            return
        record = self._find(client, msg.rid, self.failed, msg.task_hex, "failed task kept for replay",
                            "it may have succeeded, had inputs too large to keep, had replay turned off "
                            "(debug_replay=False, EMBER_DEBUG_REPLAY=0), or was dropped as one of the "
                            "oldest")
        if record is not None:
            self.ctx.reply(client, msg.rid, True, record)

    def on_register_breakpoint(self, client: Client, msg: p.RegisterBreakpoint) -> None:
        self.breakpoints[msg.task_hex] = {"task_id": msg.task_hex, "name": msg.name, "host": msg.host,
                                          "port": msg.port, "pid": msg.pid, "time": time.time()}

    def on_clear_breakpoint(self, client: Client, msg: p.ClearBreakpoint) -> None:
        self.breakpoints.pop(msg.task_hex, None)

    def on_get_breakpoint(self, client: Client, msg: p.GetBreakpoint) -> None:
        if msg.task_hex is None:
            self.ctx.reply(client, msg.rid, True, list(self.breakpoints.values()))
            return
        record = self._find(client, msg.rid, self.breakpoints, msg.task_hex, "task waiting at breakpoint()",
                            "`ember debug list` shows the tasks waiting")
        if record is not None:
            self.ctx.reply(client, msg.rid, True, record)

    def _find(self, client: Client, rid: int, table: dict[str, dict[str, Any]], prefix: str, what: str,
              hint: str) -> dict[str, Any] | None:
        matches = [key for key in table if key.startswith(prefix)] if prefix else []
        if len(matches) == 1:
            return table[matches[0]]
        if not matches:
            error = EmberError(f"no {what} has id {prefix!r}: {hint}")
        else:
            error = EmberError(f"task id prefix {prefix!r} matches {len(matches)} tasks; give more of it")
        self.ctx.reply(client, rid, False, error)
        return None

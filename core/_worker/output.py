"""A worker's sys.stdout and sys.stderr: whole lines go to the driver, prefixed with the
task's name (or the actor's class) and the pid, and to the worker's own log file."""

from __future__ import annotations

import os
import sys
import threading
from typing import Callable, TextIO

from .._client.context import current_task
from .._client.runtime import Runtime
from .._wire import protocol as p


class LogForwarder:
    """sys.stdout/sys.stderr of a worker: whole lines go to the driver, prefixed."""

    #: Read by ember.experimental.tqdm_ray: a bar's state written here reaches the driver.
    forwards_to_driver = True

    def __init__(self, rt: Runtime, is_err: bool, fallback: TextIO,
                 actor_class: Callable[[], str | None]) -> None:
        self.rt = rt
        #: The class name of the actor this worker hosts (None: it runs tasks).
        self.actor_class = actor_class
        self.is_err = is_err
        self.fallback = fallback
        self.buf = ""
        self.lock = threading.Lock()

    def write(self, s: str) -> int:
        with self.lock:
            self.buf += s
            if "\n" not in self.buf:
                return len(s)
            *lines, self.buf = self.buf.split("\n")
        self._send(lines)
        return len(s)

    def _send(self, lines: list[str]) -> None:
        ctx = current_task.get()
        name = ctx.name if ctx is not None else "worker"
        if ctx is not None and ctx.actor_id is not None:
            name = self.actor_class() or name
        self.rt.send(p.LogLines(f"({name} pid={os.getpid()})", lines, self.is_err))
        self.fallback.write("\n".join(lines) + "\n")

    def flush(self) -> None:
        with self.lock:
            lines, self.buf = ([self.buf] if self.buf else []), ""
        if lines:
            self._send(lines)
        self.fallback.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fallback.fileno()

    @property
    def encoding(self) -> str:
        return "utf-8"


def flush_output() -> None:
    """Push what a task printed without a newline yet to the driver (its end, or the process's)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass

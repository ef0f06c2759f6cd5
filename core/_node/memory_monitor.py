"""The memory monitor: stop one worker before the kernel's OOM killer stops a random process.

    [monitor thread, every refresh_s] psutil -> MemoryPolicy.decide(usage, candidates)
                                          -> NodeManager kills the chosen worker,
                                             remembering why (WorkerRecord.oom)
    submitter: worker lost -> GetWorkerExit -> OutOfMemoryError or a retry

The kernel picks its victim by size and may take the node manager or the driver,
which loses every task on the node. Killing one task worker first loses at most that
task's attempt, and a task with retries left runs again.

``MemoryPolicy`` is pure (usage and candidates in, a victim out) so the choice is
tested with plain calls; ``MemoryMonitor`` is the thread that feeds it real numbers.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable

import psutil

log = logging.getLogger("ember._node.memory_monitor")

#: Fraction of the node's memory in use above which a worker is killed (Ray's default).
DEFAULT_USAGE_THRESHOLD = 0.95
#: How often memory is read. 0 turns the monitor off.
DEFAULT_REFRESH_S = 0.25


@dataclass(frozen=True)
class MemoryUsage:
    """The node's memory use at one reading."""
    used_bytes: int
    total_bytes: int

    @property
    def fraction(self) -> float:
        return self.used_bytes / self.total_bytes if self.total_bytes else 0.0


@dataclass(frozen=True)
class Candidate:
    """A worker the monitor may kill: one running a lease (task) or an actor."""
    worker_id: bytes
    pid: int
    #: Grant order: a larger id is a newer lease (or a newer actor placement).
    lease_id: int
    is_actor: bool
    #: Killing it costs a retry, not a failure: tasks with retries left, actors with
    #: restarts left.
    retriable: bool


class MemoryPolicy:
    """Which worker to kill, and when. One kill at a time.

    Ray's rule: prefer retriable work, and among it the newest (it has done the least
    and is the most likely to have caused the growth); tasks before actors, whose
    state a restart loses. Non-retriable work is killed only when nothing retriable is
    running, because the alternative is the kernel killing something at random.

    Invariant: while a kill is outstanding (the victim has not exited), no other
    worker is chosen, since the memory it frees is not visible yet.
    """

    def __init__(self, threshold: float) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"memory_usage_threshold must be in (0, 1], got {threshold!r}")
        self.threshold = threshold
        #: Worker id of the victim not yet reported dead, or None.
        self.outstanding: bytes | None = None

    def over_threshold(self, usage: MemoryUsage) -> bool:
        return usage.fraction > self.threshold

    def decide(self, usage: MemoryUsage, candidates: list[Candidate]) -> Candidate | None:
        """The worker to kill now, or None (memory is fine, a kill is pending, or no candidate)."""
        if self.outstanding is not None or not self.over_threshold(usage) or not candidates:
            return None
        victim = max(candidates, key=lambda c: (c.retriable, not c.is_actor, c.lease_id))
        self.outstanding = victim.worker_id
        return victim

    def worker_exited(self, worker_id: bytes) -> None:
        if self.outstanding == worker_id:
            self.outstanding = None


class _Meminfo:
    """/proc/meminfo opened once and re-read with pread: reading memory must keep working
    when the process is out of file descriptors (opening it anew then raised EMFILE and
    the monitor thread died for good, issue 19)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open it now (the monitor does at start, before any client can use up fds)."""
        with self._lock:
            if self._fd is None:
                try:
                    self._fd = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    pass  # not Linux (or no fd right now): psutil below

    def read(self) -> MemoryUsage | None:
        self.open()
        with self._lock:
            if self._fd is None:
                return None
            text = os.pread(self._fd, 1 << 14, 0).decode("ascii", "replace")
        fields = {}
        for line in text.splitlines():
            name, _, rest = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                fields[name] = int(rest.split()[0]) * 1024
        if len(fields) < 2:
            return None
        return MemoryUsage(fields["MemTotal"] - fields["MemAvailable"], fields["MemTotal"])


_MEMINFO = _Meminfo()


def read_usage() -> MemoryUsage:
    """The node's memory in use: total minus what the kernel could hand out (page cache is free)."""
    usage = _MEMINFO.read()
    if usage is not None:
        return usage
    vm = psutil.virtual_memory()
    return MemoryUsage(vm.total - vm.available, vm.total)


def threshold_from_env(default: float = DEFAULT_USAGE_THRESHOLD) -> float:
    return float(os.environ.get("EMBER_MEMORY_USAGE_THRESHOLD", default))


def refresh_s_from_env(default: float = DEFAULT_REFRESH_S) -> float:
    ms = os.environ.get("EMBER_MEMORY_MONITOR_REFRESH_MS")
    return default if ms is None else float(ms) / 1000.0


class MemoryMonitor:
    """The thread that reads memory and asks the node manager to act. Owned and joined by it.

    ``check`` is called with the usage every ``refresh_s`` seconds; it does the
    locking and killing (the node manager's ``_check_memory``).
    """

    def __init__(self, refresh_s: float, check: Callable[[MemoryUsage], None],
                 read: Callable[[], MemoryUsage] = read_usage) -> None:
        self.refresh_s = refresh_s
        self._check = check
        self._read = read
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="ember-memory-monitor")
        _MEMINFO.open()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self.refresh_s):
            try:
                self._check(self._read())
                failing = False
            except Exception:  # e.g. out of fds: keep watching, say so once per spell
                if not failing:
                    log.exception("the memory monitor could not read memory use; retrying")
                failing = True

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

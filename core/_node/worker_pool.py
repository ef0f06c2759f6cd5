"""The node manager's workers: started by the fork server, idle per job, reaped on exit."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import Callable

from .._types import Address, JobID, WorkerID

#: How many exited workers' records are kept for late questions about how they ended.
_EXITED_KEPT = 4096


@dataclass
class WorkerRecord:
    """One worker process of this node: its job, addresses, state and lease or actor."""
    worker_id: WorkerID
    job_id: JobID
    #: The key of the process env it runs in (working_dir, py_modules, pip); "" for none.
    env_key: str = ""
    pid: int = 0
    address: Address | None = None
    #: For submitters on other nodes.
    tcp_address: Address | None = None
    conn: object = None
    #: "starting" -> "idle" <-> "leased" | "actor" -> "dead"
    state: str = "starting"
    lease_id: int | None = None
    actor_id: bytes | None = None
    #: How the process ended ("killed by signal SIGKILL", "exit code 1"); "" while alive.
    exit_detail: str = ""
    #: Sent SIGKILL; dead as far as scheduling goes, whatever the socket says yet.
    killed: bool = False
    #: Set by the memory monitor before it kills the worker: (used_bytes, total_bytes,
    #: threshold), so the error its caller sees can say why.
    oom: tuple[int, int, float] | None = None
    #: Called with the record once ``exit_detail`` is known (GetWorkerExit answers).
    exit_waiters: list = field(default_factory=list)
    blocked: bool = False
    extra: dict = field(default_factory=dict)


class WorkerPool:
    """Starts workers through a warm fork server and tracks them by id and pid."""

    def __init__(self, session_dir: str, env: dict[str, str],
                 on_exit: Callable[[int, str], None]) -> None:
        self.session_dir = session_dir
        self.workers: dict[WorkerID, WorkerRecord] = {}
        #: Workers that exited and whose connection is gone, oldest first and bounded: kept
        #: only so that a late GetWorkerExit still learns how they ended (a node serving
        #: drivers for weeks must not keep a record per worker it ever started).
        self.exited: collections.OrderedDict[WorkerID, WorkerRecord] = collections.OrderedDict()
        self.by_pid: dict[int, WorkerRecord] = {}
        self._on_exit = on_exit
        self._lock = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "ember._worker.fork_server"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env=env, close_fds=True)
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_events, name="ember-forkserver-events",
                                        daemon=True)
        self._reader.start()

    def start_worker(self, worker_id: WorkerID, job_id: JobID, spec: dict, env_key: str = "") -> WorkerRecord:
        record = WorkerRecord(worker_id, job_id, env_key)
        self.workers[worker_id] = record
        line = json.dumps({**spec, "worker_id": worker_id.hex(), "session_dir": self.session_dir})
        self._ready.wait(30)
        with self._lock:
            self._proc.stdin.write(line.encode() + b"\n")
            self._proc.stdin.flush()
        return record

    def retire(self, record: WorkerRecord) -> None:
        """Forget a worker that exited and disconnected (kept in ``exited`` for a while)."""
        if self.workers.pop(record.worker_id, None) is not None:
            self.exited[record.worker_id] = record
            while len(self.exited) > _EXITED_KEPT:
                self.exited.popitem(last=False)

    def lookup(self, worker_id: WorkerID) -> WorkerRecord | None:
        """A live worker, or one that exited recently."""
        return self.workers.get(worker_id) or self.exited.get(worker_id)

    def _read_events(self) -> None:
        for raw in self._proc.stdout:
            kind, _, rest = raw.decode().strip().partition(" ")
            if kind == "ready":
                self._ready.set()
            elif kind == "started":
                hex_id, pid = rest.split()
                record = self.workers.get(bytes.fromhex(hex_id))
                if record is not None:
                    record.pid = int(pid)
                    self.by_pid[int(pid)] = record
                    if record.killed:
                        # Killed before its pid was known (its job ended while it was
                        # starting): the signal could not be sent then. Without this it
                        # registered later and idled forever, one process per short job.
                        self.kill(record)
            elif kind == "exited":
                pid_s, detail = rest.split(" ", 1)
                self._on_exit(int(pid_s), json.loads(detail))
        self._ready.set()

    def kill(self, record: WorkerRecord, sig: int = signal.SIGKILL) -> None:
        # Marked at once: a worker whose death is not yet noticed must never be handed
        # out again (it would take the next task or actor down with it).
        record.killed = True
        if record.pid:
            try:
                os.kill(record.pid, sig)
            except ProcessLookupError:
                pass

    def shutdown(self) -> None:
        for record in list(self.workers.values()):
            if record.state != "dead":
                self.kill(record)
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(5)

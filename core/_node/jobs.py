"""Submitted jobs: the head runs each one's entrypoint as a driver under a supervisor
process (a node service; ``ember job``, ``JobSubmissionClient``).

    SubmitJob  -> JobDetails "PENDING" -> thread: write the package, start the supervisor
               supervisor "running pid" -> "RUNNING"; "exited 0" -> "SUCCEEDED";
               "exited N" -> "FAILED" (exit code and the log's tail); "stopped" -> "STOPPED"
    StopJob    -> SIGTERM to the supervisor (it stops the entrypoint's process group)
    GetJobLogs -> bytes of logs/job-driver-<id>.log from an offset (clients follow it)

The job belongs to the head, not to the client that submitted it: the client may leave
at once, and the job runs on. Every supervisor is stopped with the node.

A head with storage (``ember start --head``) persists every record (table "submissions",
with where its log is): a head started again on the same storage lists them all. A job
that had not ended died with the old head (its supervisor stops the entrypoint when the
head's end of its stdin closes), so the new head marks it FAILED, saying so.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass

from .._types import JobStatus
from .._wire import protocol as p
from ..exceptions import EmberError
from .context import Client, Handlers, NodeContext
from .storage import decode

log = logging.getLogger("ember.node_manager")

#: How much of the log's end a failed job's message quotes.
LOG_TAIL_CHARS = 20_000
#: Most bytes one GetJobLogs answer carries (clients ask again from the new offset).
LOG_CHUNK_BYTES = 1 << 20
TERMINAL: frozenset[str] = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})


@dataclass(eq=False)
class _Running:
    """The head's handle on a job's supervisor (None until its thread started it)."""
    proc: subprocess.Popen | None = None
    thread: threading.Thread | None = None
    stop_requested: bool = False


class JobService:
    """The head's job table and supervisors. Handlers run under the node lock; each job's
    thread starts its supervisor and turns its status lines into the record's state."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.jobs: dict[str, p.JobDetails] = {}
        self._running: dict[str, _Running] = {}
        self._jobs_dir = os.path.join(ctx.session_dir, "jobs")
        #: Jobs an earlier head ran (restored from storage) -> the log file it wrote, which
        #: is in its session directory: this head's may be another one.
        self._old_logs: dict[str, str] = {}

    def handlers(self) -> Handlers:
        return {p.SubmitJob: self.on_submit, p.GetJobInfo: self.on_get_info,
                p.StopJob: self.on_stop, p.DeleteJob: self.on_delete, p.GetJobLogs: self.on_get_logs}

    def driver_registered(self, submission_id: str, job_id: bytes) -> None:
        """A driver of a submitted job connected: the job's record names its job id (the
        first one, if the entrypoint starts several drivers)."""
        record = self.jobs.get(submission_id)
        if record is not None and record.job_id is None:
            record.job_id = job_id.hex()
            self._changed(submission_id)

    def log_path(self, submission_id: str) -> str:
        old = self._old_logs.get(submission_id)
        return old if old is not None else os.path.join(self.ctx.session_dir, "logs",
                                                        f"job-driver-{submission_id}.log")

    # --- persistence (a head with storage) ----------------------------------------------

    def _changed(self, submission_id: str) -> None:
        """A record was added, changed or deleted (lock held): the head's storage gets it
        with the next flush (after each handler; the job threads flush their own)."""
        self.ctx.persist.mark("submissions", submission_id.encode())

    def stored(self, key: bytes) -> dict | None:
        """The "submissions" table's encoder: the record and its log's path, or None (deleted)."""
        sid = key.decode()
        record = self.jobs.get(sid)
        return None if record is None else {"details": asdict(record), "log_path": self.log_path(sid)}

    def restore(self, blobs: dict[bytes, bytes]) -> list[str]:
        """A restarted head: take the earlier head's records back (lock held, nothing is
        running yet). Returns the jobs that had not ended: they are marked FAILED, since
        their supervisor and entrypoint stopped with the old head."""
        fields = set(p.JobDetails.__dataclass_fields__)
        ended = []
        for blob in blobs.values():
            stored = decode(blob)
            record = p.JobDetails(**{k: v for k, v in stored["details"].items() if k in fields})
            sid = record.submission_id
            self.jobs[sid] = record
            self._old_logs[sid] = stored["log_path"]
            if record.status not in TERMINAL:
                self._finish(record, "FAILED", (
                    f"the head restarted while this job was {record.status}: the job's supervisor "
                    "stopped with the old head and stopped the entrypoint's processes, so the job "
                    f"did not finish. Submit it again (ember job submit) to run it; its log so far "
                    f"is in {stored['log_path']}"), "JOB_SUPERVISOR_ERROR")
                ended.append(sid)
        return ended

    # --- requests ---------------------------------------------------------------------

    def on_submit(self, client: Client, msg: p.SubmitJob) -> None:
        ctx = self.ctx
        if not ctx.is_head:
            ctx.reply(client, msg.rid, False, EmberError("jobs are submitted to the head node; connect "
                                                         "the JobSubmissionClient to the head's address"))
            return
        sid = msg.submission_id
        if sid in self.jobs:
            ctx.reply(client, msg.rid, False, EmberError(
                f"a job with submission_id {sid!r} already exists; pick another id or leave it out"))
            return
        record = self.jobs[sid] = p.JobDetails(sid, msg.entrypoint, start_time=int(time.time() * 1000),
                                            metadata=dict(msg.metadata or {}),
                                            runtime_env=dict(msg.runtime_env or {}))
        self._changed(sid)
        running = self._running[sid] = _Running()
        running.thread = threading.Thread(target=self._supervise, args=(record, running, msg),
                                          daemon=True, name=f"ember-job-{sid}")
        running.thread.start()
        ctx.reply(client, msg.rid, True, sid)

    def on_get_info(self, client: Client, msg: p.GetJobInfo) -> None:
        if msg.submission_id is None:
            self.ctx.reply(client, msg.rid, True, [asdict(r) for r in self.jobs.values()])
            return
        record = self._lookup(client, msg.rid, msg.submission_id)
        if record is not None:
            self.ctx.reply(client, msg.rid, True, asdict(record))

    def on_stop(self, client: Client, msg: p.StopJob) -> None:
        record = self._lookup(client, msg.rid, msg.submission_id)
        if record is None:
            return
        running = self._running.get(msg.submission_id)
        if record.status in TERMINAL or running is None:
            self.ctx.reply(client, msg.rid, True, False)
            return
        running.stop_requested = True
        if running.proc is not None:
            _signal(running.proc, signal.SIGTERM)
        self.ctx.reply(client, msg.rid, True, True)

    def on_delete(self, client: Client, msg: p.DeleteJob) -> None:
        record = self._lookup(client, msg.rid, msg.submission_id)
        if record is None:
            return
        if record.status not in TERMINAL:
            self.ctx.reply(client, msg.rid, False, EmberError(
                f"job {msg.submission_id!r} is {record.status}; stop it first (ember job stop "
                f"{msg.submission_id}), then delete it"))
            return
        self._running.pop(msg.submission_id, None)
        try:
            os.remove(self.log_path(msg.submission_id))
        except OSError:
            pass
        del self.jobs[msg.submission_id]
        self._old_logs.pop(msg.submission_id, None)
        self._changed(msg.submission_id)
        # Its package and spec: else the same submission_id could never be used again.
        # Inline, under the lock: a delete is a rare operator action on a finished job, and
        # a resubmission of the id right after must find the directory gone.
        shutil.rmtree(os.path.join(self._jobs_dir, msg.submission_id), ignore_errors=True)
        self.ctx.reply(client, msg.rid, True, True)

    def on_get_logs(self, client: Client, msg: p.GetJobLogs) -> None:
        record = self._lookup(client, msg.rid, msg.submission_id)
        if record is None:
            return
        data = b""
        path = self.log_path(msg.submission_id)
        try:
            with open(path, "rb") as f:
                f.seek(max(0, msg.offset))
                data = f.read(min(max(1, msg.max_bytes), LOG_CHUNK_BYTES))
        except OSError as e:
            if msg.submission_id in self._old_logs:
                # (A job of this head without a log yet is answered with no bytes.)
                self.ctx.reply(client, msg.rid, False, EmberError(
                    f"the log of job {msg.submission_id!r} was written by an earlier head to {path}, "
                    f"which cannot be read now ({e.strerror}): that head's session directory was "
                    "removed, or this head runs elsewhere. `ember job status "
                    f"{msg.submission_id}` still shows how the job ended"))
                return
        self.ctx.reply(client, msg.rid, True, (data, msg.offset + len(data), record.status))

    def _lookup(self, client: Client, rid: int, submission_id: str) -> p.JobDetails | None:
        record = self.jobs.get(submission_id)
        if record is None:
            known = ", ".join(sorted(self.jobs)[:5]) or "none"
            self.ctx.reply(client, rid, False, EmberError(
                f"no job with submission_id {submission_id!r} on this cluster (known: {known}); "
                "`ember job list` shows them"))
        return record

    # --- the supervisor ---------------------------------------------------------------

    def _supervise(self, record: p.JobDetails, running: _Running, msg: p.SubmitJob) -> None:
        """The job's thread: start its supervisor, follow its reports until the job ends."""
        sid = record.submission_id
        job_dir = os.path.join(self._jobs_dir, sid)
        try:
            os.makedirs(job_dir, mode=0o700)
            package = None
            if msg.package is not None:
                package = os.path.join(job_dir, "working_dir.zip")
                with open(package, "wb") as f:
                    f.write(msg.package)
            spec = {"job_dir": job_dir, "package": package, "entrypoint": msg.entrypoint,
                    "log_path": self.log_path(sid), "env": self._job_env(sid, msg)}
            spec_path = os.path.join(job_dir, "spec.json")
            with open(spec_path, "w") as f:
                json.dump(spec, f)
            with self.ctx.lock:
                if running.stop_requested or self.ctx.stopped.is_set():
                    self._finish(record, "STOPPED", "stopped before it started")
                    return
                # Started under the lock, so a StopJob sees either no process (and the
                # flag above) or this one.
                running.proc = subprocess.Popen(
                    [sys.executable, "-m", "ember._node.job_supervisor", spec_path],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    close_fds=True)
        except OSError as e:
            with self.ctx.lock:
                self._finish(record, "FAILED", f"the job could not be started: {e}", "JOB_SETUP_ERROR")
            return
        outcome: tuple[JobStatus, str, str | None, int | None] = (
            "FAILED", "the job's supervisor exited without reporting", "JOB_SUPERVISOR_ERROR", None)
        for raw in running.proc.stdout:
            kind, _, rest = raw.decode(errors="replace").strip().partition(" ")
            if kind == "running":
                with self.ctx.lock:
                    if record.status == "PENDING":
                        record.status, record.driver_pid = "RUNNING", int(rest)
                        record.message = "the job is running"
                        self._changed(sid)
                        self.ctx.persist.flush()
            elif kind == "exited":
                code = int(rest)
                if code == 0:
                    outcome = ("SUCCEEDED", "the job's entrypoint finished (exit code 0)", None, 0)
                elif running.stop_requested:
                    outcome = ("STOPPED", "the job was stopped", None, code)
                else:
                    outcome = ("FAILED", f"the job's entrypoint failed with exit code {code}; last "
                               f"lines of its log:\n{self._log_tail(sid)}", "JOB_ENTRYPOINT_COMMAND_ERROR",
                               code)
            elif kind == "stopped":
                outcome = ("STOPPED", "the job was stopped", None, None)
            elif kind == "failed":
                outcome = ("FAILED", f"the job could not be started: {json.loads(rest)}",
                           "JOB_SETUP_ERROR", None)
        running.proc.wait()
        running.proc.stdout.close()
        if running.proc.stdin is not None:
            try:
                running.proc.stdin.close()
            except OSError:
                pass
        status, message, error_type, code = outcome
        if running.stop_requested and status == "FAILED" and error_type == "JOB_SUPERVISOR_ERROR":
            status, message, error_type = "STOPPED", "the job was stopped", None
        with self.ctx.lock:
            self._finish(record, status, message, error_type, code)

    def _finish(self, record: p.JobDetails, status: JobStatus, message: str,
                error_type: str | None = None, code: int | None = None) -> None:
        record.status, record.message, record.error_type = status, message, error_type
        record.driver_exit_code = code
        record.end_time = int(time.time() * 1000)
        log.info("job %s %s: %s", record.submission_id, status, message.splitlines()[0])
        self._changed(record.submission_id)
        self.ctx.persist.flush()  # the job threads call this outside any handler

    def _job_env(self, sid: str, msg: p.SubmitJob) -> dict[str, str]:
        """What the entrypoint's environment adds: where the cluster is, and the job's env_vars."""
        env = dict((msg.runtime_env or {}).get("env_vars") or {})
        env["EMBER_ADDRESS"] = self.ctx.tcp_address.removeprefix("tcp:")
        env["EMBER_JOB_SUBMISSION_ID"] = sid
        env["PYTHONUNBUFFERED"] = "1"  # the log is followed live
        # `python` in the entrypoint is the node's own interpreter (where ember is installed).
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
        job_env = {k: v for k, v in (msg.runtime_env or {}).items() if k not in ("env_vars", "working_dir")}
        if job_env:  # pip, py_modules: the driver's ember.init() applies them to the job
            env["EMBER_JOB_RUNTIME_ENV"] = json.dumps(job_env)
        return env

    def _log_tail(self, sid: str) -> str:
        try:
            with open(self.log_path(sid), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - LOG_TAIL_CHARS))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """The node is stopping: stop every job's supervisor and wait for them."""
        with self.ctx.lock:
            running = list(self._running.values())
            for r in running:
                r.stop_requested = True
                if r.proc is not None:
                    _signal(r.proc, signal.SIGTERM)
        for r in running:
            if r.thread is not None:
                r.thread.join(10)


def _signal(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass

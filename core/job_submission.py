"""Job submission (Ray's ``ray.job_submission``): run a script on the cluster's head as a
driver, follow its logs, stop it.

    client: zip working_dir --SubmitJob--> head JobService --> supervisor --> entrypoint
            get_job_status / get_job_logs / tail_job_logs / stop_job / list_jobs / delete_job

The client talks to the head over its TCP port and proves the cluster token like every
other connection; the job belongs to the head, so the client may disconnect at once.

Example:
    >>> client = JobSubmissionClient("127.0.0.1:6379")
    >>> sid = client.submit_job(entrypoint="python script.py", runtime_env={"working_dir": "."})
    >>> client.get_job_status(sid)
    <JobStatus.RUNNING: 'RUNNING'>
"""

from __future__ import annotations

import argparse
import asyncio
import enum
import fnmatch
import io
import json
import os
import shlex
import sys
import time
import zipfile
from typing import Any, AsyncIterator, Iterator

from ._wire import protocol as p
from ._wire.node_link import NodeLink
from ._node.launcher import find_by_tcp_address, find_current
from ._wire.tokens import ClusterToken, given_token
from .exceptions import (AuthenticationError, ClusterConnectionError, EmberError, InvalidOptionError,
                         RuntimeEnvSetupError)
from .runtime_env import validate_runtime_env

__all__ = ["JobDetails", "JobInfo", "JobStatus", "JobSubmissionClient"]

#: A working_dir larger than this (zipped) is refused: ship data through the object store
#: or shared storage instead.
MAX_PACKAGE_BYTES = 100 << 20
#: Never packaged: version control and byte code.
DEFAULT_EXCLUDES = (".git", "__pycache__", "*.pyc", ".venv")
#: runtime_env keys a job accepts (passed on to its driver).
JOB_RUNTIME_ENV_KEYS = ("env_vars", "working_dir", "pip", "excludes")


class JobStatus(str, enum.Enum):
    """A job's state: PENDING -> RUNNING -> SUCCEEDED | FAILED | STOPPED."""
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        return self in (JobStatus.STOPPED, JobStatus.SUCCEEDED, JobStatus.FAILED)

    def __str__(self) -> str:
        return self.value


#: One job as the head reports it (Ray's fields; ``status`` is a ``JobStatus``).
JobDetails = p.JobDetails
JobInfo = JobDetails


class JobSubmissionClient:
    """Submit and manage jobs on a cluster.

    Args:
        address: the head's ``HOST:PORT`` (as ``ember start --head`` prints it), "auto"
            for this machine's cluster, or None: ``$EMBER_ADDRESS``, else "auto".
        token_file: a file holding the cluster token; default ``$EMBER_TOKEN``, else the
            head's session on this machine.

    Raises:
        AuthenticationError: the head refused the token (naming where it came from).
        VersionMismatchError: the head runs another ember or Python version.
        ClusterConnectionError: no ember head answers at ``address``.
        EmberError: no cluster found on this machine ("auto"), or an HTTP address.
    """

    def __init__(self, address: str | None = None, *, token_file: str | None = None) -> None:
        address = address or os.environ.get("EMBER_ADDRESS") or "auto"
        was_http = address.startswith(("http://", "https://"))
        for prefix in ("ember://", "http://", "https://", "tcp:"):
            address = address.removeprefix(prefix)
        self.address = address
        try:
            node_address, token = _resolve(address, token_file)
        except EmberError as e:
            if not was_http:
                raise
            # A Ray habit: RAY_ADDRESS=http://127.0.0.1:8265 names the dashboard.
            raise EmberError(f"{e}. ember's job client talks to the head's own address (HOST:PORT as "
                             "`ember start --head` prints it), not to the dashboard's HTTP port") from e
        try:
            self._link = NodeLink(node_address, token.secret, p.Register("peer", os.urandom(16), os.getpid()),
                                  name="ember-job-client")
        except AuthenticationError as e:  # only we know where the token came from
            raise AuthenticationError(e.address, token.source) from None
        except EmberError:
            raise  # typed already: another version, nothing ember listening
        except OSError as e:
            raise ClusterConnectionError(address, str(e), "Check the address: the HOST:PORT "
                                         "`ember start --head` printed") from e

    def close(self) -> None:
        self._link.close()

    def __enter__(self) -> JobSubmissionClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, make: Any, timeout_s: float = 60.0) -> Any:
        value, _ = self._link.call(make, timeout_s)
        return value

    # --- Ray's API --------------------------------------------------------------------

    def submit_job(self, *, entrypoint: str, job_id: str | None = None,
                   runtime_env: dict[str, Any] | None = None, metadata: dict[str, str] | None = None,
                   submission_id: str | None = None, entrypoint_num_cpus: float | None = None,
                   entrypoint_num_gpus: float | None = None, entrypoint_memory: int | None = None,
                   entrypoint_resources: dict[str, float] | None = None) -> str:
        """Run ``entrypoint`` (a shell command) on the head as a driver; returns its submission id.

        ``runtime_env["working_dir"]`` (a local directory) is zipped, shipped and unpacked
        on the head, where the entrypoint starts in it; ``env_vars`` are set for it.
        ``entrypoint_num_cpus``/``_gpus``/``_memory``/``_resources`` are accepted for Ray
        scripts and reserve nothing: the entrypoint is a driver process on the head, and
        what it runs asks for its own resources.

        Raises:
            RuntimeEnvSetupError: the working_dir cannot be read, or is too large.
            InvalidOptionError: a runtime_env key a job does not accept.
            EmberError: the submission id is taken.
        """
        if not isinstance(entrypoint, str) or not entrypoint.strip():
            raise ValueError(f"entrypoint must be a shell command, e.g. 'python script.py'; got {entrypoint!r}")
        runtime_env = dict(runtime_env or {})
        unknown = set(runtime_env) - set(JOB_RUNTIME_ENV_KEYS)
        if unknown:
            raise InvalidOptionError(f"runtime_env key(s) {', '.join(sorted(unknown))} are not supported "
                                     f"for a job; it accepts {', '.join(JOB_RUNTIME_ENV_KEYS)}")
        if "pip" in runtime_env:  # checked here, where the mistake is made
            validate_runtime_env({"pip": runtime_env["pip"]}, "the job")
        package = None
        working_dir = runtime_env.pop("working_dir", None)
        excludes = list(runtime_env.pop("excludes", None) or [])
        if working_dir is not None:
            package = package_working_dir(working_dir, excludes)
        sid = submission_id or job_id or f"embersubmit_{os.urandom(8).hex()}"
        return self._call(lambda rid: p.SubmitJob(rid, sid, entrypoint, package, runtime_env,
                                                  {str(k): str(v) for k, v in (metadata or {}).items()}))

    def get_job_info(self, job_id: str) -> JobDetails:
        """The job's details (status, message, exit code, times)."""
        return _details(self._call(lambda rid: p.GetJobInfo(rid, job_id)))

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def list_jobs(self) -> list[JobDetails]:
        return [_details(d) for d in self._call(lambda rid: p.GetJobInfo(rid, None))]

    def stop_job(self, job_id: str) -> bool:
        """Stop a running job (its entrypoint and everything it started); False if it had ended."""
        return self._call(lambda rid: p.StopJob(rid, job_id))

    def delete_job(self, job_id: str) -> bool:
        """Forget an ended job and its log.

        Raises:
            EmberError: the job is still running (stop it first).
        """
        return self._call(lambda rid: p.DeleteJob(rid, job_id))

    def get_job_logs(self, job_id: str) -> str:
        """Everything the job's entrypoint wrote so far (stdout and stderr)."""
        out = bytearray()
        offset = 0
        while True:
            data, offset, _status = self._call(lambda rid: p.GetJobLogs(rid, job_id, offset))
            out += data
            if not data:
                return out.decode(errors="replace")

    def follow_logs(self, job_id: str, poll_s: float = 0.2) -> Iterator[str]:
        """The job's log as it grows, chunk by chunk, until the job has ended and all is read."""
        offset = 0
        while True:
            data, offset, status = self._call(lambda rid: p.GetJobLogs(rid, job_id, offset))
            if data:
                yield data.decode(errors="replace")
                continue
            if JobStatus(status).is_terminal():
                # One more read: lines written just before the end.
                data, offset, _ = self._call(lambda rid: p.GetJobLogs(rid, job_id, offset))
                if data:
                    yield data.decode(errors="replace")
                return
            time.sleep(poll_s)

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """Ray's async log tail: ``async for lines in client.tail_job_logs(id)``."""
        chunks = self.follow_logs(job_id)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk

    def wait_until_finished(self, job_id: str, timeout_s: float = 300.0, poll_s: float = 0.2) -> JobStatus:
        """Poll until the job ended; returns its final status.

        Raises:
            TimeoutError: it was still running after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.get_job_status(job_id)
            if status.is_terminal():
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {status} after {timeout_s} s")
            time.sleep(poll_s)


def _details(d: dict[str, Any]) -> JobDetails:
    return JobDetails(**{**d, "status": JobStatus(d["status"])})


def _resolve(address: str, token_file: str | None) -> tuple[str, ClusterToken]:
    """(node address to connect to, token) for ``address``: the token from ``token_file``
    or $EMBER_TOKEN, else the head's session on this machine."""
    token = given_token(token_file, "token_file")
    if address == "auto":
        _session, node_address, session_token, _pid = find_current()
        return node_address, token or session_token
    if token is not None:
        return f"tcp:{address}", token
    _session, node_address, session_token, _pid = find_by_tcp_address(address)
    return node_address, session_token


def package_working_dir(path: str, excludes: list[str] | None = None) -> bytes:
    """Zip a local directory for shipping (``.git``, ``__pycache__`` and ``excludes`` left out).

    Raises:
        RuntimeEnvSetupError: not a readable local directory, or larger than MAX_PACKAGE_BYTES.
    """
    if not isinstance(path, str) or "://" in path:
        raise RuntimeEnvSetupError("working_dir", f"{path!r} is not a local directory",
                                   "ember ships local directories only: pass a path on this machine")
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise RuntimeEnvSetupError("working_dir", f"{path!r} does not exist or is not a directory",
                                   "pass an existing local directory, e.g. --working-dir .")
    if not os.access(root, os.R_OK | os.X_OK):
        raise RuntimeEnvSetupError("working_dir", f"{path!r} cannot be read (permission denied)",
                                   "make it readable or pass another directory")
    patterns = list(DEFAULT_EXCLUDES) + list(excludes or [])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not _excluded(d, patterns)]
            for name in filenames:
                if _excluded(name, patterns):
                    continue
                full = os.path.join(dirpath, name)
                try:
                    zf.write(full, os.path.relpath(full, root))
                except OSError as e:
                    raise RuntimeEnvSetupError("working_dir", f"cannot read {full} ({e})",
                                               "fix its permissions or exclude it with runtime_env"
                                               "['excludes']") from e
                if buf.tell() > MAX_PACKAGE_BYTES:
                    raise RuntimeEnvSetupError(
                        "working_dir", f"{path!r} is larger than {MAX_PACKAGE_BYTES >> 20} MiB zipped",
                        "leave data out with runtime_env['excludes'] and load it from shared storage")
    return buf.getvalue()


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


# --- the ``ember job`` command ------------------------------------------------------------


def main(argv: list[str]) -> int:
    """``ember job submit|status|logs|stop|list|delete``."""
    parser = argparse.ArgumentParser(prog="ember job", description="submit and manage jobs")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, what: str, with_id: bool = True) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("--address", help="the head's HOST:PORT (default: $EMBER_ADDRESS, else this "
                         "machine's cluster)")
        cmd.add_argument("--token-file", help="file holding the cluster token (default: $EMBER_TOKEN, "
                         "or the head's session on this machine)")
        if with_id:
            cmd.add_argument("submission_id")
        return cmd

    submit = command("submit", "run a command on the cluster's head as a job", with_id=False)
    submit.add_argument("--working-dir", help="local directory shipped to the head; the job starts in it")
    submit.add_argument("--runtime-env-json", help='runtime_env as JSON, e.g. \'{"env_vars": {"A": "1"}}\'')
    submit.add_argument("--submission-id", help="the job's id (default: a new one)")
    submit.add_argument("--metadata-json", help="metadata as a JSON object of strings")
    submit.add_argument("--no-wait", action="store_true", help="print the id and return; do not follow")
    submit.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- the command to run")
    command("status", "a job's status and message")
    logs = command("logs", "a job's output")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    command("stop", "stop a job (and everything it started)")
    command("delete", "forget an ended job and its log")
    command("list", "every job of the cluster", with_id=False)
    args = parser.parse_args(argv)
    try:
        with JobSubmissionClient(args.address, token_file=args.token_file) as client:
            return _run_command(client, args)
    except (EmberError, ValueError, TimeoutError) as e:
        print(f"ember job {args.command}: {e}", file=sys.stderr)
        return 1


def _run_command(client: JobSubmissionClient, args: argparse.Namespace) -> int:
    if args.command == "submit":
        entrypoint = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
        if not entrypoint:
            raise ValueError("give the command to run after --, e.g. ember job submit -- python script.py")
        runtime_env = json.loads(args.runtime_env_json) if args.runtime_env_json else {}
        if args.working_dir:
            runtime_env["working_dir"] = args.working_dir
        metadata = json.loads(args.metadata_json) if args.metadata_json else None
        sid = client.submit_job(entrypoint=shlex.join(entrypoint) if len(entrypoint) > 1 else entrypoint[0],
                                runtime_env=runtime_env, submission_id=args.submission_id, metadata=metadata)
        print(f"ember job: submitted {sid}", flush=True)
        if args.no_wait:
            print(f"follow it with: ember job logs --follow {sid}")
            return 0
        for chunk in client.follow_logs(sid):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        info = client.get_job_info(sid)
        print(f"ember job: {sid} {info.status}: {info.message.splitlines()[0] if info.message else ''}")
        return 0 if info.status == JobStatus.SUCCEEDED else 1
    if args.command == "status":
        info = client.get_job_info(args.submission_id)
        print(f"{info.submission_id}: {info.status}")
        if info.message:
            print(info.message)
        return 0
    if args.command == "logs":
        if args.follow:
            for chunk in client.follow_logs(args.submission_id):
                sys.stdout.write(chunk)
                sys.stdout.flush()
        else:
            sys.stdout.write(client.get_job_logs(args.submission_id))
        return 0
    if args.command == "stop":
        stopped = client.stop_job(args.submission_id)
        print(f"{args.submission_id}: {'stopping' if stopped else 'had already ended'}")
        if stopped:
            print(f"{args.submission_id}: {client.wait_until_finished(args.submission_id, timeout_s=60)}")
        return 0
    if args.command == "delete":
        client.delete_job(args.submission_id)
        print(f"{args.submission_id}: deleted")
        return 0
    jobs = client.list_jobs()
    if not jobs:
        print("no jobs")
    for job in jobs:
        print(f"{job.submission_id:<32} {job.status.value:<10} {job.entrypoint}")
    return 0

"""A submitted job's supervisor: one process per job, started by the head's job service.

    head JobService --spec.json--> supervisor: unzip the working_dir package
                                   entrypoint: /bin/sh -c ENTRYPOINT, its own process group,
                                               stdout+stderr -> logs/job-driver-<id>.log
    supervisor stdout lines ---->  "running <pid>" | "exited <code>" | "stopped" | "failed <json>"
    head stdin closed / SIGTERM -> the entrypoint's whole process group is stopped

The entrypoint is a driver like any other (its ``ember.init()`` joins the head through
``EMBER_ADDRESS``). It runs in a process group of its own, so stopping the job stops
everything the entrypoint started, and no process outlives a stopped job. The supervisor
reads its stdin only to learn that the node manager is gone (EOF): a head killed with
SIGKILL takes its jobs with it rather than leaving drivers behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import zipfile

#: Seconds between SIGTERM to the entrypoint's group and SIGKILL.
STOP_GRACE_S = 3.0


def _unpack(package: str, into: str) -> None:
    """Unzip the shipped working_dir (paths checked: nothing may land outside ``into``)."""
    os.makedirs(into, mode=0o700, exist_ok=True)
    root = os.path.realpath(into)
    with zipfile.ZipFile(package) as zf:
        for member in zf.infolist():
            target = os.path.realpath(os.path.join(root, member.filename))
            if target != root and not target.startswith(root + os.sep):
                raise ValueError(f"the working_dir package holds a path outside it: {member.filename!r}")
            zf.extract(member, root)
            mode = member.external_attr >> 16
            if mode and not member.is_dir():
                os.chmod(target, mode & 0o777)


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _report(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the entrypoint's group, then SIGKILL whatever is left of it."""
    _kill_group(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    _kill_group(proc.pid, signal.SIGKILL)
    proc.wait()


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    stop_requested = False

    def on_sigterm(_signum: int, _frame: object) -> None:
        nonlocal stop_requested
        stop_requested = True

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        cwd = spec["job_dir"]
        if spec.get("package"):
            cwd = os.path.join(spec["job_dir"], "working_dir")
            _unpack(spec["package"], cwd)
        log_fd = os.open(spec["log_path"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        env = {**os.environ, **spec["env"]}
        proc = subprocess.Popen(["/bin/sh", "-c", spec["entrypoint"]], cwd=cwd, env=env,
                                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd,
                                start_new_session=True)
        os.close(log_fd)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        _report("failed " + json.dumps(f"{type(e).__name__}: {e}"))
        return 1
    _report(f"running {proc.pid}")
    stdin = sys.stdin.fileno()
    while True:
        if stop_requested:
            _stop(proc)
            _report("stopped")
            return 0
        code = proc.poll()
        if code is not None:
            # Anything the entrypoint left running in its group goes with it.
            _kill_group(proc.pid, signal.SIGKILL)
            _report(f"exited {code}")
            return 0
        try:
            readable, _, _ = select.select([stdin], [], [], 0.1)
        except InterruptedError:
            continue
        if readable and not os.read(stdin, 4096):  # the node manager is gone
            _stop(proc)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

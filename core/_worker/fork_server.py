"""A warm fork server: a single-threaded process with the worker's imports done,
forking a new worker in milliseconds.

The node manager writes one JSON line per worker to start on our stdin and reads
``started``/``exited`` lines from our stdout. We exit when stdin closes, so a node
manager killed with SIGKILL never leaves a fork server behind.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import traceback


def _reap(out: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if os.WIFSIGNALED(status):
            detail = f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            detail = f"exit code {os.WEXITSTATUS(status)}"
        os.write(out, f"exited {pid} {json.dumps(detail)}\n".encode())


def _run_child(spec: dict, log_path: str) -> None:
    """In the forked child: detach from the fork server's pipes, become a worker."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(devnull)
    os.close(log_fd)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    from ember._worker.worker import main as run_worker
    code = 1
    try:
        code = run_worker(spec)
    except BaseException:
        # os._exit below skips the interpreter's own report: without this a worker that
        # fails before registering leaves an empty log, and its error says nothing.
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main() -> None:
    try:
        _serve()
    except BrokenPipeError:  # the node manager is gone; so are we
        pass


def _serve() -> None:
    import ember._worker.worker  # noqa: F401  (the point of a warm fork server)
    import numpy  # noqa: F401

    inp, out = sys.stdin.fileno(), sys.stdout.fileno()
    os.write(out, b"ready\n")
    buf = b""
    while True:
        readable, _, _ = select.select([inp], [], [], 0.2)
        _reap(out)
        if not readable:
            continue
        chunk = os.read(inp, 65536)
        if not chunk:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            spec = json.loads(line)
            log_path = os.path.join(spec["session_dir"], "logs", f"worker-{spec['worker_id']}.log")
            pid = os.fork()
            if pid == 0:
                os.close(inp)
                _run_child(spec, log_path)
            os.write(out, f"started {spec['worker_id']} {pid}\n".encode())


if __name__ == "__main__":
    main()

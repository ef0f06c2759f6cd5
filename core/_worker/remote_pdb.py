"""``breakpoint()`` in a worker: a pdb session served on a loopback socket.

    breakpoint() -> listen 127.0.0.1:0 -> RegisterBreakpoint(task, port) -> node -> head
                 -> accept: first line must be the cluster token (else closed, keep waiting)
                 -> pdb with the socket as its stdin/stdout, stopped in the caller's frame
    continue / quit / the client hanging up -> the socket closes, the task runs on

The task blocks until someone attaches (``ember debug attach <task-id>``); cancelling it
interrupts the wait like any other blocking call.
"""

from __future__ import annotations

import hmac
import os
import pdb
import socket
import sys
from types import FrameType
from typing import Any, Callable

from .._client.context import current_task
from .._client.runtime import Runtime
from .._wire import protocol as p

#: Bytes a connecting client may send before its token line is complete.
_TOKEN_LINE_BYTES = 256
#: Seconds a connecting client has to send its token.
_TOKEN_TIMEOUT_S = 10.0


class RemotePdb(pdb.Pdb):
    """pdb over one socket; the session ends (the task runs on) at continue, quit or EOF."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._file = conn.makefile("rw", buffering=1, encoding="utf-8", errors="replace", newline="\n")
        super().__init__(stdin=self._file, stdout=self._file, nosigint=True)
        self.use_rawinput = False
        self.prompt = "(ember-pdb) "

    def _end(self) -> None:
        for closer in (self._file.close, self._conn.close):
            try:
                closer()
            except OSError:
                pass

    def do_continue(self, arg: str) -> Any:
        result = super().do_continue(arg)
        self._end()
        return result

    do_c = do_cont = do_continue

    def do_quit(self, arg: str) -> Any:
        # Quitting the debugger lets the task go on (rather than failing it with BdbQuit):
        # the person debugging closed their session, not the program.
        self.clear_all_breaks()
        return self.do_continue(arg)

    do_q = do_exit = do_quit

    def do_EOF(self, arg: str) -> Any:
        return self.do_continue(arg)


def _authenticated(conn: socket.socket, token: bytes) -> bool:
    conn.settimeout(_TOKEN_TIMEOUT_S)
    line = b""
    try:
        # A byte at a time: what the client typed after its token line is pdb's input.
        while not line.endswith(b"\n") and len(line) < _TOKEN_LINE_BYTES:
            chunk = conn.recv(1)
            if not chunk:
                return False
            line += chunk
    except OSError:
        return False
    conn.settimeout(None)
    return hmac.compare_digest(line.split(b"\n", 1)[0].strip(), token.hex().encode())


def serve_breakpoint(token: bytes, announce: Callable[[int], None], done: Callable[[], None],
                     frame: FrameType | None) -> None:
    """Wait for an authenticated client on a loopback port, then debug ``frame`` with it.

    ``announce(port)`` tells the cluster where to attach; ``done()`` that nobody can anymore.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        announce(listener.getsockname()[1])
        while True:
            conn, _ = listener.accept()
            if _authenticated(conn, token):
                break
            conn.close()
    finally:
        listener.close()
        done()
    conn.sendall(f"ember: attached to pid {os.getpid()}\n".encode())
    RemotePdb(conn).set_trace(frame or sys._getframe().f_back)


def install(rt: Runtime, token: bytes) -> None:
    """Make ``breakpoint()`` in this worker open a remote pdb session (see the module)."""
    def hook(*_args: Any, **_kwargs: Any) -> None:
        ctx = current_task.get()
        task_hex = ctx.task_id.hex() if ctx is not None and ctx.task_id else rt.worker_id.hex()[:24]
        name = ctx.name if ctx is not None else "worker"

        def announce(port: int) -> None:
            rt.send(p.RegisterBreakpoint(task_hex, name, "127.0.0.1", port, os.getpid()))
            sys.stderr.write(f"breakpoint() in `{name}`: waiting for a debugger; attach with "
                             f"`ember debug attach {task_hex}`\n")
            sys.stderr.flush()

        serve_breakpoint(token, announce, lambda: rt.send(p.ClearBreakpoint(task_hex)), sys._getframe(1))

    sys.breakpointhook = hook

"""One connection of the node manager (``Peer``): its queue of frames out, its buffer of
bytes in, and the node lock that holds every write back until it is released.

    any thread: send(msg) pickles now and queues the frame (bounded: a peer that stops
                reading is disconnected; droppable log lines are dropped instead); the
                bytes leave at once when no node lock is held, else when it is released
    loop thread (server.Server): fill() reads what arrived, next_frame() cuts whole frames
                out of it, flush() writes what is queued when the socket is writable
"""

from __future__ import annotations

import array
import collections
import errno
import logging
import os
import pickle
import socket
import threading
import time
from typing import Any, Literal, Protocol

from .._wire import protocol as p
from .._wire.transport import _HEADER, ProtocolViolation

log = logging.getLogger("ember._node.manager")

#: A peer with more than this queued and unsent is not reading: it is disconnected.
MAX_QUEUED_BYTES = int(os.environ.get("EMBER_MAX_QUEUED_BYTES", str(256 << 20)))
#: Droppable messages (log lines) are dropped once this much is queued for the peer.
LOG_QUEUE_BYTES = 1 << 20
_RECV_BYTES = 1 << 18
_MAX_FDS_PER_RECV = 32
PeerState = Literal["hello", "register", "ready", "closed"]


class Loop(Protocol):
    """What a peer needs of the event loop that serves it (server.Server)."""

    #: Held by handlers: writes made under it leave once it is released.
    node_lock: NodeLock | None

    def want_write(self, peer: Peer) -> None:
        """Write ``peer``'s queued frames once its socket is writable."""

    def close_later(self, peer: Peer, reason: str) -> None:
        """Close ``peer`` on the loop thread, logging ``reason``."""


class NodeLock:
    """The node manager's lock: a re-entrant lock that also defers socket writes.

    Peers written to while it is held are flushed when the outermost ``with`` exits, so
    no write (not even a non-blocking one) happens while shared state is locked.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = threading.local()

    def __enter__(self) -> NodeLock:
        self._lock.acquire()
        self._local.depth = getattr(self._local, "depth", 0) + 1
        return self

    def __exit__(self, *exc: object) -> None:
        depth = self._local.depth = self._local.depth - 1
        pending: list[Peer] = []
        if depth == 0:
            pending = getattr(self._local, "dirty", [])
            self._local.dirty = []
        self._lock.release()
        for peer in pending:
            peer.flush()

    def held(self) -> bool:
        return getattr(self._local, "depth", 0) > 0

    def defer(self, peer: Peer) -> None:
        dirty = getattr(self._local, "dirty", None)
        if dirty is None:
            dirty = self._local.dirty = []
        dirty.append(peer)


def frame_of(msg: Any) -> memoryview:
    """``msg`` encoded as one wire frame, for ``Peer.send_frame`` to many peers (read-only:
    each peer's queue only slices it)."""
    body = pickle.dumps(msg, protocol=5)
    return memoryview(_HEADER.pack(len(body), 0) + body)


class _FileRange:
    """Queued object data: ``count`` bytes of ``fd`` from ``offset``, written by sendfile."""

    __slots__ = ("fd", "offset", "count", "last")

    def __init__(self, fd: int, offset: int, count: int, last: bool) -> None:
        self.fd, self.offset, self.count, self.last = fd, offset, count, last


class Peer:
    """One accepted connection: its read buffer, its bounded outgoing queue, its state.

    ``send`` may be called from any thread and never blocks; the loop owns reading and
    closing. ``client`` is what the node manager attached at registration.
    """

    def __init__(self, server: Loop, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.fileno_ = sock.fileno()
        self.can_pass_fds = sock.family == socket.AF_UNIX
        self.state: PeerState = "hello"
        self.accepted_at = time.monotonic()
        self.client: Any = None
        self._buf = bytearray()
        self._fds: collections.deque[int] = collections.deque()
        #: Frames not yet written: (bytes still to send, fds owned by the queue) or file ranges.
        self._out: collections.deque[Any] = collections.deque()
        self._out_lock = threading.Lock()
        self.queued_bytes = 0
        #: Log lines dropped because the peer was not reading (reported when it resumes).
        self.dropped_logs = 0
        self.close_reason = ""
        self.closed = False
        #: A PutChunk whose bytes are the next frame, taken raw (a remote driver's put).
        self.raw_for: p.PutChunk | None = None

    def fileno(self) -> int:
        return self.fileno_

    def has_output(self) -> bool:
        """Frames are queued for the socket (the loop then waits for it to be writable)."""
        return bool(self._out)

    # --- sending (any thread) ---------------------------------------------------------

    def send(self, msg: Any, fds: tuple[int, ...] | list[int] = (), droppable: bool = False) -> bool:
        """Queue one message (fds are duplicated: the caller keeps its own). Never blocks.

        Returns False when it was not queued: the peer is gone, or ``droppable`` and the
        peer is not keeping up (counted in ``dropped_logs``).
        """
        if self.closed:
            return False
        if droppable and self.queued_bytes > LOG_QUEUE_BYTES:
            self.dropped_logs += 1
            return False
        body = pickle.dumps(msg, protocol=5)
        if fds and not self.can_pass_fds:
            raise ValueError("file descriptors can only cross a Unix socket")
        owned = [os.dup(fd) for fd in fds]
        return self._queue(memoryview(_HEADER.pack(len(body), len(fds)) + body), owned)

    def send_frame(self, frame: memoryview) -> bool:
        """Queue a frame made once by ``frame_of`` for many peers (the head's view goes to
        every node: pickling it per node cost N pickles of an N-node view per round)."""
        if self.closed:
            return False
        return self._queue(frame, [])

    def send_with_file(self, msg: Any, fd: int, offset: int, count: int, last: bool = False) -> bool:
        """Queue ``msg`` then a raw frame of ``count`` bytes of ``fd`` (sent with sendfile:
        no copy through Python). ``last``: the queue closes ``fd`` once it is written."""
        if self.closed:
            if last:
                os.close(fd)
            return False
        body = pickle.dumps(msg, protocol=5)
        head = memoryview(_HEADER.pack(len(body), 0) + body + _HEADER.pack(count, 0))
        with self._out_lock:
            self._out.append((head, []))
            self._out.append(_FileRange(fd, offset, count, last))
            self.queued_bytes += len(head)
        self._kick()
        return True

    def _queue(self, frame: memoryview, fds: list[int]) -> bool:
        with self._out_lock:
            if self.closed:
                for fd in fds:
                    os.close(fd)
                return False
            self._out.append((frame, fds))
            self.queued_bytes += len(frame)
            over = self.queued_bytes > MAX_QUEUED_BYTES
        if over:
            self.server.close_later(self, f"it stopped reading: {self.queued_bytes} bytes queued for it "
                                          f"(limit {MAX_QUEUED_BYTES}, EMBER_MAX_QUEUED_BYTES)")
            return False
        self._kick()
        return True

    def _kick(self) -> None:
        lock = self.server.node_lock
        if lock is not None and lock.held():
            lock.defer(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write what the socket takes now; ask the loop to write the rest when it can."""
        with self._out_lock:
            if self.closed:
                return
            try:
                done = self._write_locked()
            except OSError as e:
                self.close_reason = self.close_reason or f"write failed: {e}"
                done = True
                self.server.close_later(self, self.close_reason)
            if done:
                return
        self.server.want_write(self)

    def _write_locked(self) -> bool:
        """Write queued frames until the socket would block; True when the queue is empty."""
        out = self._out
        while out:
            item = out[0]
            if isinstance(item, _FileRange):
                try:
                    sent = os.sendfile(self.fileno_, item.fd, item.offset, item.count)
                except BlockingIOError:
                    return False
                item.offset += sent
                item.count -= sent
                if item.count > 0:
                    if sent == 0:
                        raise OSError(errno.EIO, "object data ended early")
                    continue
                out.popleft()
                if item.last:
                    os.close(item.fd)
                continue
            frame, fds = item
            try:
                if fds:
                    sent = self.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                        array.array("i", fds))])
                    for fd in fds:
                        os.close(fd)
                    item[1].clear()
                else:
                    sent = self.sock.send(frame)
            except BlockingIOError:
                return False
            self.queued_bytes -= sent
            if sent < len(frame):
                out[0] = (frame[sent:], [])
                continue
            out.popleft()
        if self.dropped_logs:
            log.warning("dropped %d batches of log lines for %s pid %s while it was not reading",
                        self.dropped_logs, getattr(self.client, "kind", "a peer"),
                        getattr(self.client, "pid", "?"))
            self.dropped_logs = 0
        return True

    def answer_and_close(self, answer: bytes) -> None:
        """Write a handshake refusal now (loop thread, nothing queued yet: the small frame
        fits the empty socket buffer), before the loop closes the connection."""
        try:
            self.sock.send(_HEADER.pack(len(answer), 0) + answer)
        except OSError:
            pass  # the peer is gone already: there is nobody to tell

    def close(self) -> None:
        """Close from any thread: the loop unregisters and reports it."""
        self.server.close_later(self, "closed by the node manager")

    # --- receiving (loop thread) ------------------------------------------------------

    def fill(self) -> bool:
        """Read what is there; False on EOF."""
        try:
            if self.can_pass_fds:
                data, ancdata, _flags, _addr = self.sock.recvmsg(
                    _RECV_BYTES, socket.CMSG_SPACE(_MAX_FDS_PER_RECV * 4))
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        got = array.array("i")
                        got.frombytes(payload[: len(payload) - (len(payload) % got.itemsize)])
                        self._fds.extend(got)
            else:
                data = self.sock.recv(_RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        self._buf += data
        return True

    def next_frame(self, limit: int) -> tuple[bytes, list[int]] | None:
        """The next whole frame, if buffered. Raises ProtocolViolation over ``limit``."""
        buf = self._buf
        if len(buf) < _HEADER.size:
            return None
        length, nfds = _HEADER.unpack_from(buf)
        if length > limit:
            raise ProtocolViolation(f"a frame of {length} bytes (the limit here is {limit})")
        end = _HEADER.size + length
        if len(buf) < end:
            return None
        if len(self._fds) < nfds:
            raise ProtocolViolation("a frame announced file descriptors that never arrived")
        body = bytes(memoryview(buf)[_HEADER.size:end])
        del buf[:end]
        return body, [self._fds.popleft() for _ in range(nfds)]

    def release(self) -> None:
        with self._out_lock:
            self.closed = True
            for item in self._out:
                if isinstance(item, _FileRange):
                    if item.last:
                        os.close(item.fd)
                else:
                    for fd in item[1]:
                        os.close(fd)
            self._out.clear()
            self.queued_bytes = 0
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        try:
            self.sock.close()
        except OSError:
            pass

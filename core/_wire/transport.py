"""Socket framing shared by every ember process.

    sender                                    receiver
    ------                                    --------
    Connection.send(msg, fds)                 reader thread: Connection.recv()
      pickle(msg) -> [len u32][nfds u8][body]   recvmsg() into a buffer, fds into a FIFO
      sendmsg(frame, SCM_RIGHTS=fds)  ------->  parse whole frames, pop nfds fds per frame

Unix sockets carry file descriptors (the shared-memory object segments travel as
memfds); TCP carries everything else between nodes. Every connection opens with the
handshake (``handshake.py``): the cluster token and the versions, before any other message
is trusted.
"""

from __future__ import annotations

import array
import collections
import os
import pickle
import socket
import struct
import threading
from typing import Any

from .._types import Address

_HEADER = struct.Struct("<IB")
_MAX_FDS_PER_RECV = 32
_RECV_CHUNK = 1 << 18
#: Frames this large are received straight into their own buffer (no staging copy).
_DIRECT_BYTES = 1 << 20
#: Frames above this are refused: a peer sending garbage must not make us allocate GBs.
MAX_FRAME_BYTES = 1 << 31


class ConnectionClosed(EOFError):
    """The peer closed the connection (or died)."""


class ProtocolViolation(ConnectionError):
    """The peer sent bytes that are not an ember frame."""


class Connection:
    """A framed, thread-safe-for-send, single-reader message connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._send_lock = threading.Lock()
        self._buf = bytearray()
        self._fds: collections.deque[int] = collections.deque()
        self._can_pass_fds = sock.family == socket.AF_UNIX
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def can_pass_fds(self) -> bool:
        """True on a Unix socket: file descriptors (shared-memory segments) can travel."""
        return self._can_pass_fds

    def pending(self) -> bytes:
        """Bytes received but not yet parsed into a frame (what a non-ember peer sent)."""
        return bytes(self._buf)

    def send(self, msg: Any, fds: tuple[int, ...] | list[int] = ()) -> None:
        """Send one message (and file descriptors, Unix sockets only)."""
        body = pickle.dumps(msg, protocol=5)
        self.send_raw(body, fds)

    def send_raw(self, body: bytes, fds: tuple[int, ...] | list[int] = ()) -> None:
        frame = _HEADER.pack(len(body), len(fds)) + body
        with self._send_lock:
            try:
                if fds:
                    if not self._can_pass_fds:
                        raise ValueError("file descriptors can only cross a Unix socket")
                    sent = self.sock.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                         array.array("i", fds))])
                    if sent < len(frame):
                        self.sock.sendall(memoryview(frame)[sent:])
                else:
                    self.sock.sendall(frame)
            except OSError as e:
                raise ConnectionClosed(str(e)) from e

    def recv(self) -> tuple[Any, list[int]]:
        """Block until one whole message arrives; returns it with its fds."""
        body, fds = self.recv_raw()
        try:
            return pickle.loads(body), fds
        except Exception as e:
            raise ProtocolViolation(f"undecodable frame: {e}") from e

    def recv_raw(self, max_bytes: int = MAX_FRAME_BYTES) -> tuple[bytes | bytearray, list[int]]:
        """One whole frame's body, undecoded (the handshake is checked before any unpickling)."""
        buf = self._buf
        while True:
            if len(buf) >= _HEADER.size:
                length, nfds = _HEADER.unpack_from(buf)
                if length > max_bytes:
                    raise ProtocolViolation(f"frame of {length} bytes")
                end = _HEADER.size + length
                if length >= _DIRECT_BYTES and nfds == 0 and len(buf) < end:
                    return self._recv_direct(length), []
                if len(buf) >= end:
                    if len(self._fds) < nfds:
                        raise ProtocolViolation("frame announced fds that never arrived")
                    body = bytes(memoryview(buf)[_HEADER.size:end])
                    del buf[:end]
                    return body, [self._fds.popleft() for _ in range(nfds)]
                self._fill(end - len(buf))
            else:
                self._fill(_RECV_CHUNK)

    def recv_raw_into(self, out: bytearray | memoryview) -> memoryview:
        """The next frame's body read into ``out`` (a reused buffer, or the block of the
        store the bytes belong in: no allocation, no copy after); returns the view of the
        bytes received.

        Raises:
            ProtocolViolation: the frame is larger than ``out``.
        """
        buf = self._buf
        while len(buf) < _HEADER.size:
            self._fill(_RECV_CHUNK)
        length, nfds = _HEADER.unpack_from(buf)
        if length > len(out) or nfds:
            raise ProtocolViolation(f"raw frame of {length} bytes does not fit a {len(out)}-byte buffer")
        view = memoryview(out)[:length]
        have = min(len(buf) - _HEADER.size, length)
        view[:have] = memoryview(buf)[_HEADER.size:_HEADER.size + have]
        del buf[:_HEADER.size + have]
        self._recv_exactly(view[have:])
        return view

    def _recv_exactly(self, view: memoryview) -> None:
        try:
            while view:
                n = self.sock.recv_into(view)
                if n == 0:
                    raise ConnectionClosed("peer closed the connection")
                view = view[n:]
        except OSError as e:
            raise ConnectionClosed(str(e)) from e

    def _recv_direct(self, length: int) -> bytearray:
        """The rest of a large frame, read into its own buffer with recv_into."""
        out = bytearray(length)
        have = len(self._buf) - _HEADER.size
        out[:have] = memoryview(self._buf)[_HEADER.size:]
        self._buf.clear()
        self._recv_exactly(memoryview(out)[have:])
        return out

    def send_with_bytes(self, msg: Any, data: memoryview) -> None:
        """Send ``msg`` and then ``data`` as a raw frame, without copying ``data`` into a
        frame (the receiver takes the second frame as bytes, never unpickled)."""
        body = pickle.dumps(msg, protocol=5)
        with self._send_lock:
            try:
                self.sock.sendall(_HEADER.pack(len(body), 0) + body + _HEADER.pack(len(data), 0))
                self.sock.sendall(data)
            except OSError as e:
                raise ConnectionClosed(str(e)) from e

    def send_with_file(self, msg: Any, fd: int, offset: int, count: int) -> None:
        """Send ``msg`` and then a raw frame of ``count`` bytes of ``fd`` (sendfile: no copy
        through Python). The two frames are adjacent; the receiver reads the second with
        recv_raw()."""
        body = pickle.dumps(msg, protocol=5)
        with self._send_lock:
            try:
                self.sock.sendall(_HEADER.pack(len(body), 0) + body + _HEADER.pack(count, 0))
                sent = 0
                while sent < count:
                    sent += os.sendfile(self.sock.fileno(), fd, offset + sent, count - sent)
            except OSError as e:
                raise ConnectionClosed(str(e)) from e

    def _fill(self, want: int) -> None:
        try:
            if self._can_pass_fds:
                data, ancdata, _flags, _addr = self.sock.recvmsg(
                    min(want, 1 << 26), socket.CMSG_SPACE(_MAX_FDS_PER_RECV * 4))
                for level, kind, payload in ancdata:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        fds = array.array("i")
                        fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
                        self._fds.extend(fds)
            else:
                data = self.sock.recv(min(want, 1 << 26))
        except OSError as e:
            raise ConnectionClosed(str(e)) from e
        if not data:
            raise ConnectionClosed("peer closed the connection")
        self._buf += data

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


_HELLO_MAGIC = b"EMBER/1 "


def send_hello(conn: Connection, token: bytes) -> None:
    """A bare hello: the token only, answered by nothing (raw-socket tools; ember's own
    processes use ``handshake.connect_to``, which also checks versions)."""
    conn.send_raw(_HELLO_MAGIC + token)


def _family_and_target(address: Address) -> tuple[int, Any]:
    scheme, _, rest = address.partition(":")
    if scheme == "unix":
        return socket.AF_UNIX, rest
    if scheme == "tcp":
        host, _, port = rest.rpartition(":")
        return socket.AF_INET, (host, int(port))
    raise ValueError(f"unknown address {address!r}: expected unix:PATH or tcp:HOST:PORT")


def connect(address: Address, timeout_s: float = 10.0) -> Connection:
    """Open a connection to ``address`` (``unix:PATH`` or ``tcp:HOST:PORT``)."""
    family, target = _family_and_target(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    sock.settimeout(None)
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Connection(sock)


def listen(address: Address) -> tuple[socket.socket, Address]:
    """Bind and listen; returns the socket and the concrete address (port resolved)."""
    family, target = _family_and_target(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_INET:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(target)
    sock.listen(512)
    if family == socket.AF_INET:
        host, port = sock.getsockname()[:2]
        return sock, f"tcp:{host}:{port}"
    return sock, address


def accept(listener: socket.socket) -> Connection:
    sock, _ = listener.accept()
    if sock.family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return Connection(sock)

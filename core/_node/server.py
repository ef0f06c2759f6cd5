"""The node manager's socket I/O: one event loop thread for every connection.

    listeners --accept (backs off on EMFILE)--> Peer (non-blocking socket)
    loop thread, selectors/epoll:
      readable -> recv into the peer's buffer (fds into a FIFO) -> whole frames
                  "hello":    the cluster token and versions, <= 2 KiB, nothing unpickled before
                              it; answered OK, or a fixed refusal / a version mismatch, then closed
                  "register": one Register frame -> on_register() answers it
                  "ready":    frames <= MAX_FRAME_BYTES, decoded -> per-type limit -> on_message()
      writable -> write the peer's queued frames (sendmsg with fds, sendfile for object data)
    any thread: Peer.send(msg) pickles now and queues; the bytes leave from the loop, or at
                once when the caller holds no node lock and the socket takes them

No peer can block another: a handler never waits in ``send`` (the queue is bounded, and a
peer whose queue overflows is disconnected with a logged reason), nothing is written while
the node lock is held (``NodeLock`` defers the writes to its release), and log lines for a
peer that is not reading are dropped and counted instead of queued. A whole handshake has
one deadline, and unauthenticated connections are capped, so a trickling or flooding
client costs only its own connection.
"""

from __future__ import annotations

import array
import collections
import errno
import logging
import os
import pickle
import resource
import selectors
import socket
import threading
import time
from typing import Any, Callable, Literal

from .._wire import protocol as p
from .._wire.handshake import HELLO_MAX_BYTES, judge_hello
from .._wire.transport import _HEADER, ProtocolViolation, listen

log = logging.getLogger("ember._node.manager")

#: Seconds a connection has to prove the token and register, in total (not per recv).
HANDSHAKE_TIMEOUT_S = float(os.environ.get("EMBER_HANDSHAKE_TIMEOUT_S", "10"))
#: Connections that have not proven the token yet; more are refused at once.
MAX_UNAUTHENTICATED = int(os.environ.get("EMBER_MAX_UNAUTHENTICATED", "256"))
#: Largest frame after the hello; the frame's bytes are buffered as they arrive, never
#: allocated from the header's claim, so a lying header costs nothing.
MAX_FRAME_BYTES = 256 << 20
#: Per message type, after decoding: control messages are small; only these may be large
#: (function blobs, actor constructor arguments inline, batched log lines, many ref ids).
CONTROL_FRAME_BYTES = 16 << 20
_LARGE_FRAME_TYPES: dict[type, int] = {
    p.RegisterFunction: MAX_FRAME_BYTES, p.CreateActor: MAX_FRAME_BYTES,
    p.Forwarded: MAX_FRAME_BYTES, p.PlaceActor: MAX_FRAME_BYTES, p.Reply: MAX_FRAME_BYTES,
    p.SubmitJob: MAX_FRAME_BYTES,
}
_REGISTER_BYTES = 4 << 20
#: A peer with more than this queued and unsent is not reading: it is disconnected.
MAX_QUEUED_BYTES = int(os.environ.get("EMBER_MAX_QUEUED_BYTES", str(256 << 20)))
#: Droppable messages (log lines) are dropped once this much is queued for the peer.
LOG_QUEUE_BYTES = 1 << 20
_RECV_BYTES = 1 << 18
_MAX_FDS_PER_RECV = 32
_ACCEPT_BACKOFF_S = (0.05, 1.0)

PeerState = Literal["hello", "register", "ready", "closed"]


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

    def __init__(self, server: Server, sock: socket.socket) -> None:
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

    def _fill(self) -> bool:
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

    def _frames(self, limit: int) -> tuple[bytes, list[int]] | None:
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

    def _release(self) -> None:
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


class Server:
    """The event loop serving a node manager's listeners and connections.

    Args:
        token: the cluster token every connection must prove first.
        on_register: called on the loop (the peer's first decoded frame, a Register); it
            answers the peer and returns what to attach as ``peer.client``; raising
            ProtocolViolation refuses it.
        on_message: called on the loop with each later message and its fds.
        on_close: called on the loop once a registered peer is gone.
    """

    def __init__(self, token: bytes, on_register: Callable[[Peer, p.Register], Any],
                 on_message: Callable[[Peer, Any, list[int]], None],
                 on_close: Callable[[Peer], None], node_lock: NodeLock | None = None) -> None:
        self.token = token
        self._on_register = on_register
        self._on_message = on_message
        self._on_close = on_close
        self.node_lock = node_lock
        self._selector = selectors.DefaultSelector()
        self._listeners: list[socket.socket] = []
        self._paused: dict[socket.socket, float] = {}
        self._backoff_s = _ACCEPT_BACKOFF_S[0]
        self._unauthenticated: dict[Peer, None] = {}
        self.peers: set[Peer] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending_lock = threading.Lock()
        self._to_write: set[Peer] = set()
        self._to_close: dict[Peer, str] = {}
        self._stopping = False
        self.loop_thread: threading.Thread | None = None
        self.refused_unauthenticated = 0

    def listen(self, address: str) -> tuple[socket.socket, str]:
        sock, concrete = listen(address)
        sock.setblocking(False)
        self._listeners.append(sock)
        self._selector.register(sock, selectors.EVENT_READ, sock)
        return sock, concrete

    def start(self) -> None:
        self.loop_thread = threading.Thread(target=self._run, daemon=True, name="ember-nm-loop")
        self.loop_thread.start()

    # --- requests from other threads ----------------------------------------------------

    def want_write(self, peer: Peer) -> None:
        with self._pending_lock:
            self._to_write.add(peer)
        self._wake()

    def close_later(self, peer: Peer, reason: str) -> None:
        with self._pending_lock:
            self._to_close.setdefault(peer, reason)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # a wake-up is already pending (or we are stopping)

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if self.loop_thread is not None and self.loop_thread is not threading.current_thread():
            self.loop_thread.join(5)

    # --- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping:
                for key, events in self._selector.select(timeout=0.25):
                    data = key.data
                    if data is None:
                        try:
                            while os.read(self._wake_r, 4096):
                                pass
                        except BlockingIOError:
                            pass
                    elif isinstance(data, Peer):
                        if events & selectors.EVENT_READ and not data.closed:
                            self._readable(data)
                        if events & selectors.EVENT_WRITE and not data.closed:
                            data.flush()
                            self._update_interest(data)
                    else:
                        self._accept(data)
                self._run_pending()
                self._expire_handshakes()
                self._resume_listeners()
        finally:
            for peer in list(self.peers):
                self._close(peer, "the node manager is stopping")
            for sock in self._listeners:
                try:
                    sock.close()
                except OSError:
                    pass
            self._selector.close()
            # The wake-up pipe stays open: other threads may still call _wake() (it is
            # closed with the process; closing it here could let a reused fd number be
            # written to).

    def _run_pending(self) -> None:
        with self._pending_lock:
            to_write, self._to_write = self._to_write, set()
            to_close, self._to_close = self._to_close, {}
        for peer in to_write:
            if not peer.closed:
                self._update_interest(peer)
        for peer, reason in to_close.items():
            self._close(peer, reason)

    def _update_interest(self, peer: Peer) -> None:
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer._out else 0)
        try:
            self._selector.modify(peer.sock, events, peer)
        except (KeyError, ValueError, OSError):
            pass

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(64):  # a bounded batch, so connections cannot starve the others
            try:
                sock, _addr = listener.accept()
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self._pause(listener, e)
                    return
                if e.errno in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    continue
                if self._stopping:
                    return
                log.error("accept failed on %s: %s; retrying", listener, e)
                self._pause(listener, e)
                return
            self._backoff_s = _ACCEPT_BACKOFF_S[0]
            if len(self._unauthenticated) >= MAX_UNAUTHENTICATED:
                self.refused_unauthenticated += 1
                if self.refused_unauthenticated in (1, 10, 100) or self.refused_unauthenticated % 1000 == 0:
                    log.warning("refused a connection: %d connections have not proven the cluster token "
                                "yet (limit %d, EMBER_MAX_UNAUTHENTICATED); %d refused so far",
                                len(self._unauthenticated), MAX_UNAUTHENTICATED,
                                self.refused_unauthenticated)
                sock.close()
                continue
            sock.setblocking(False)
            if sock.family == socket.AF_INET:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _keep_alive(sock)
            peer = Peer(self, sock)
            self.peers.add(peer)
            self._unauthenticated[peer] = None
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _pause(self, listener: socket.socket, error: OSError) -> None:
        """Out of file descriptors: stop accepting for a while, then try again (before, the
        accept loop returned and the node never accepted anything again)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        log.warning("cannot accept connections: %s (open file limit: soft %d, hard %d). Retrying in "
                    "%.2f s. Raise the limit with `ulimit -n %d` before `ember start` (ember start "
                    "raises the soft limit to the hard one), or run fewer clients per node.",
                    error.strerror or error, soft, hard, self._backoff_s, hard)
        try:
            self._selector.unregister(listener)
        except (KeyError, ValueError):
            pass
        self._paused[listener] = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, _ACCEPT_BACKOFF_S[1])

    def _resume_listeners(self) -> None:
        if not self._paused:
            return
        now = time.monotonic()
        for listener, at in list(self._paused.items()):
            if now >= at:
                del self._paused[listener]
                try:
                    self._selector.register(listener, selectors.EVENT_READ, listener)
                except (KeyError, ValueError, OSError):
                    pass

    def _expire_handshakes(self) -> None:
        if not self._unauthenticated:
            return
        deadline = time.monotonic() - HANDSHAKE_TIMEOUT_S
        for peer in list(self._unauthenticated):
            if peer.accepted_at > deadline:
                break  # in accept order: the rest are younger
            self._close(peer, f"no complete handshake within {HANDSHAKE_TIMEOUT_S:.0f} s")

    def _readable(self, peer: Peer) -> None:
        try:
            alive = peer._fill()
            while not peer.closed:
                if peer.state == "hello":
                    frame = peer._frames(HELLO_MAX_BYTES)
                    if frame is None:
                        break
                    body, fds = frame
                    for fd in fds:
                        os.close(fd)
                    verdict, answer, difference = judge_hello(body, self.token)
                    if verdict != "ok":
                        peer.answer_and_close(answer)
                        if difference is None:
                            raise ProtocolViolation("bad cluster token")
                        what, ours, other = difference
                        log.warning("refused a connection: it runs %s %s, this node %s %s", what, other,
                                    what, ours)
                        raise ProtocolViolation(f"it runs {what} {other}, this node {what} {ours}")
                    if answer is not None:
                        peer.send_frame(memoryview(_HEADER.pack(len(answer), 0) + answer))
                    peer.state = "register"
                elif peer.state == "register":
                    frame = peer._frames(_REGISTER_BYTES)
                    if frame is None:
                        break
                    msg = _decode(frame[0])
                    for fd in frame[1]:
                        os.close(fd)
                    if not isinstance(msg, p.Register):
                        raise ProtocolViolation("expected Register")
                    peer.client = self._on_register(peer, msg)
                    peer.state = "ready"
                    self._unauthenticated.pop(peer, None)
                else:
                    frame = peer._frames(MAX_FRAME_BYTES)
                    if frame is None:
                        break
                    body, fds = frame
                    if peer.raw_for is not None:  # the bytes a PutChunk announced: never unpickled
                        msg, peer.raw_for = peer.raw_for, None
                        msg.data = body
                        self._on_message(peer, msg, fds)
                        continue
                    msg = _decode(body)
                    limit = _LARGE_FRAME_TYPES.get(type(msg), CONTROL_FRAME_BYTES)
                    if len(body) > limit:
                        for fd in fds:
                            os.close(fd)
                        raise ProtocolViolation(f"a {type(msg).__name__} of {len(body)} bytes "
                                                f"(limit {limit})")
                    if isinstance(msg, p.PutChunk) and msg.data is None:
                        peer.raw_for = msg  # its bytes are the next frame
                        continue
                    self._on_message(peer, msg, fds)
            if not alive:
                self._close(peer, "")
        except ProtocolViolation as e:
            self._close(peer, f"protocol violation: {e}")
        except ConnectionResetError:
            self._close(peer, "")  # a killed process: as ordinary as a clean close
        except OSError as e:
            self._close(peer, f"connection error: {e}")

    def _close(self, peer: Peer, reason: str) -> None:
        if peer not in self.peers:
            return
        self.peers.discard(peer)
        self._unauthenticated.pop(peer, None)
        try:
            self._selector.unregister(peer.sock)
        except (KeyError, ValueError, OSError):
            pass
        if reason and peer.state == "ready" and not self._stopping:
            client = peer.client
            log.warning("disconnected %s pid %s: %s", getattr(client, "kind", "peer"),
                        getattr(client, "pid", "?"), reason)
        elif reason and peer.state != "ready":
            log.info("closed an unregistered connection: %s", reason)
        peer.close_reason = reason
        peer._release()
        if peer.state == "ready" and not self._stopping:
            peer.state = "closed"
            try:
                self._on_close(peer)
            except Exception:  # a bug in the cleanup must not stop the loop for everyone
                log.exception("cleaning up after a disconnect failed")
        peer.state = "closed"


#: A TCP peer that vanished without a FIN (a laptop closed mid-session, a cable pulled) is
#: found by keepalive probes: idle this long, then probes this often, this many times.
_KEEPALIVE = (30, 10, 3)


def _keep_alive(sock: socket.socket) -> None:
    """Probe an idle TCP connection, so a driver on a machine that vanished is noticed
    (about 60 s) and its job ends, returning what it held, instead of lasting forever."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    idle_s, interval_s, count = _KEEPALIVE
    for name, value in (("TCP_KEEPIDLE", idle_s), ("TCP_KEEPINTVL", interval_s), ("TCP_KEEPCNT", count)):
        option = getattr(socket, name, None)
        if option is not None:  # Linux; elsewhere the system's defaults apply
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _decode(body: bytes) -> Any:
    try:
        return pickle.loads(body)
    except Exception as e:
        raise ProtocolViolation(f"undecodable frame: {e}") from e

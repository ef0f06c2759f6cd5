"""The node manager's socket I/O: one event loop thread for every connection.

    listeners --accept (backs off on EMFILE)--> Peer (peer.py: a non-blocking socket)
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

import errno
import logging
import os
import pickle
import resource
import selectors
import socket
import threading
import time
from typing import Any, Callable

from .._wire import protocol as p
from .._wire.handshake import HELLO_MAX_BYTES, judge_hello
from .._wire.transport import _HEADER, ProtocolViolation, listen
from .peer import NodeLock, Peer

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
_ACCEPT_BACKOFF_S = (0.05, 1.0)



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
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if peer.has_output() else 0)
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
            alive = peer.fill()
            while not peer.closed:
                if peer.state == "hello":
                    frame = peer.next_frame(HELLO_MAX_BYTES)
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
                    frame = peer.next_frame(_REGISTER_BYTES)
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
                    frame = peer.next_frame(MAX_FRAME_BYTES)
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
        peer.release()
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

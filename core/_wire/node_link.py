"""A request/reply connection to a node manager, shared by every kind of client.

Drivers and workers hold one to their own node manager (Unix socket, file
descriptors allowed); submitters hold one to each remote node manager they lease
workers from, and node managers hold them to peers they pull objects from (TCP).
Replies are matched to requests by ``rid``; everything else goes to ``on_message``.
"""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any, Callable

from . import protocol as p
from ..exceptions import EmberSystemError, GetTimeoutError
from .handshake import connect_to
from .transport import ConnectionClosed

ReplyCallback = Callable[[p.Reply, list[int]], None]

#: Bytes per ObjectChunk: large enough to amortize framing, small enough to interleave.
CHUNK_BYTES = 8 << 20


class Received(bytearray):
    """The bytes of one streamed answer. A subclass only so that it can be weakly
    referenced: the object table tracks whether values still use them (as it tracks
    mappings of the store)."""


class NodeLink:
    """One registered connection to a node manager: ``call`` waits for the reply,
    ``call_async`` hands it to a callback on the reader thread, ``send`` expects none."""

    def __init__(self, address: str, token: bytes, register: p.Register,
                 on_message: Callable[[Any, list[int]], None] | None = None,
                 on_lost: Callable[[], None] | None = None, name: str = "ember-node-link",
                 chunk_target: Callable[[p.ObjectChunk], memoryview | None] | None = None) -> None:
        self.address = address
        # The handshake raises typed errors (refused token, other versions, not ember):
        # all ConnectionErrors, so every caller still handles an unreachable node as one.
        self.conn = connect_to(address, token)
        try:
            self.conn.send(register)
            self.registered, _ = self.conn.recv()
        except ConnectionClosed as e:
            # A peer that dies mid-registration is an unreachable node to every caller,
            # like a refused connect: one exception type (OSError) to handle.
            self.conn.close()
            raise ConnectionError(f"the node manager at {address} closed the connection: {e}") from e
        self._rpc: dict[int, ReplyCallback] = {}
        self._rids = itertools.count(1)
        self._on_message = on_message
        self._on_lost = on_lost
        #: Where an ObjectChunk's raw bytes go (a store block): received straight into it.
        self._chunk_target = chunk_target
        self.closed = False
        self._chunk_buf: bytearray | None = None
        #: Requests answered by streamed object bytes (``call_streamed``): rid -> the buffer
        #: the chunks are received into (None until the first chunk says the size).
        self._streams: dict[int, Received | None] = {}
        self._reader = threading.Thread(target=self._read_loop, daemon=True, name=name)
        self._reader.start()

    def _read_loop(self) -> None:
        try:
            while True:
                msg, fds = self.conn.recv()
                if isinstance(msg, p.Reply):
                    slot = self._rpc.pop(msg.rid, None)
                    if slot is not None:
                        slot(msg, fds)
                    else:
                        for fd in fds:
                            os.close(fd)
                elif isinstance(msg, p.ObjectChunk) and msg.rid in self._streams:
                    self._receive_chunk(msg)
                elif self._on_message is not None:
                    if isinstance(msg, p.ObjectChunk) and msg.data is None:
                        # The chunk's bytes follow as a raw frame: straight into the object's
                        # block when the receiver has one, else into one reused buffer.
                        target = self._chunk_target(msg) if self._chunk_target else None
                        if target is not None:
                            self.conn.recv_raw_into(target)
                        else:
                            if self._chunk_buf is None:
                                self._chunk_buf = bytearray(CHUNK_BYTES)
                            msg.data = self.conn.recv_raw_into(self._chunk_buf)
                    self._on_message(msg, fds)
        except (ConnectionClosed, OSError, EOFError):
            pass
        finally:
            self._lost()

    def _receive_chunk(self, msg: p.ObjectChunk) -> None:
        """Part of a streamed answer: its bytes go straight into the request's buffer."""
        buf = self._streams[msg.rid]
        if buf is None:
            buf = self._streams[msg.rid] = Received(msg.total)
        if msg.data is None:  # the bytes follow as a raw frame
            self.conn.recv_raw_into(memoryview(buf)[msg.offset:])
        else:
            buf[msg.offset:msg.offset + len(msg.data)] = msg.data

    def call_streamed(self, make: Callable[[int], Any],
                      on_reply: Callable[[p.Reply, Received | None], None]) -> None:
        """Like ``call_async`` for a request answered with ObjectChunks before its Reply
        (an object sent to a process that cannot map shared memory): ``on_reply`` gets the
        reply and the received bytes (None if no chunk came)."""
        def made(rid: int) -> Any:
            self._streams[rid] = None
            return make(rid)

        def replied(reply: p.Reply, _fds: list[int]) -> None:
            on_reply(reply, self._streams.pop(reply.rid, None))

        self.call_async(made, replied)

    def _lost(self) -> None:
        self.closed = True
        slots = list(self._rpc.values())
        self._rpc.clear()
        lost = p.Reply(0, False, EmberSystemError(f"lost the connection to the node manager at "
                                                  f"{self.address}"))
        for slot in slots:
            slot(lost, [])
        if self._on_lost is not None:
            self._on_lost()

    def call_async(self, make: Callable[[int], Any], on_reply: ReplyCallback) -> None:
        rid = next(self._rids)
        self._rpc[rid] = on_reply
        if self.closed:
            self._rpc.pop(rid, None)
            on_reply(p.Reply(rid, False, EmberSystemError("ember is shut down")), [])
            return
        try:
            self.conn.send(make(rid))
        except ConnectionClosed:
            if self._rpc.pop(rid, None) is not None:
                on_reply(p.Reply(rid, False, EmberSystemError(
                    f"lost the connection to the node manager at {self.address}")), [])

    def call(self, make: Callable[[int], Any], timeout_s: float | None = None,
             fds: tuple[int, ...] = ()) -> tuple[Any, list[int]]:
        """Send a request and wait for its reply. Raises the error a failed reply carries."""
        done = threading.Event()
        box: list[Any] = []

        def on_reply(reply: p.Reply, reply_fds: list[int]) -> None:
            box.append((reply, reply_fds))
            done.set()

        rid = next(self._rids)
        self._rpc[rid] = on_reply
        try:
            self.conn.send(make(rid), fds)
        except ConnectionClosed as e:
            self._rpc.pop(rid, None)
            raise EmberSystemError(f"lost the connection to the node manager at {self.address}") from e
        if not done.wait(timeout_s):
            self._rpc.pop(rid, None)
            raise GetTimeoutError(f"no answer from the node manager within {timeout_s} s")
        reply, reply_fds = box[0]
        if not reply.ok:
            if isinstance(reply.value, BaseException):
                raise reply.value
            raise EmberSystemError(f"request failed: {reply.value!r}")
        return reply.value, reply_fds

    def on_reader_thread(self) -> bool:
        """True on the thread that reads replies: it must never wait for one."""
        return threading.current_thread() is self._reader

    def send(self, msg: Any) -> None:
        try:
            self.conn.send(msg)
        except ConnectionClosed:
            pass

    def send_with_bytes(self, msg: Any, data: memoryview) -> None:
        """``msg`` then ``data`` as a raw frame (no reply; dropped if the link is gone)."""
        try:
            self.conn.send_with_bytes(msg, data)
        except ConnectionClosed:
            pass

    def close(self) -> None:
        self.conn.close()
        if threading.current_thread() is not self._reader:
            self._reader.join(5)

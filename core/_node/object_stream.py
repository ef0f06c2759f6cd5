"""Objects for processes that cannot map the node's store: drivers on other machines.

A driver on another machine reaches the head over TCP only, so it cannot map the store's
arena. Its objects use the same requests as everyone's, with the bytes on its link:

    put:  CreateObject -> a block reserved for it
          PutChunk + raw frame x N -> StreamService writes each into that block (reserved
                           by this process for this object, and inside it: checked)
          PutObject     -> sealed by the object service, as for any writer
    get:  GetObject(fetch) -> the object service pins the block for the driver and
          send_object queues ObjectChunk + raw frame (sendfile from the arena) x N, then
          the Reply; the driver's Unpin (or its disconnect) releases the pin

This module only moves bytes; references, waiting and pulls from other nodes are the
object service's, as for any client.
"""

from __future__ import annotations

import logging
import os

from .._wire import protocol as p
from .._wire.node_link import CHUNK_BYTES
from .context import Client, Handlers, NodeContext
from .peer import Peer

log = logging.getLogger("ember.node_manager")


def can_map(client: Client) -> bool:
    """True when ``client`` can map the node's store (its socket carries fds)."""
    return client.conn.can_pass_fds


def send_object(conn: Peer, rid: int, fd: int, at: int, size: int, reply_value: object) -> None:
    """Queue ``size`` bytes of ``fd`` from ``at`` as ObjectChunks, then the Reply. Nothing is
    written here (the caller may hold the node lock): the loop sends them with sendfile."""
    if size:
        fd = os.dup(fd)  # closed by the queue after the last chunk
        for offset in range(0, size, CHUNK_BYTES):
            count = min(CHUNK_BYTES, size - offset)
            conn.send_with_file(p.ObjectChunk(rid, offset, size, None), fd, at + offset, count,
                                last=offset + count >= size)
    conn.send(p.Reply(rid, True, reply_value))


class StreamService:
    """Writes the chunks remote drivers put into the blocks reserved for them."""

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx

    def handlers(self) -> Handlers:
        return {p.PutChunk: self.on_put_chunk}

    def on_put_chunk(self, client: Client, msg: p.PutChunk) -> None:
        objects = self.ctx.objects
        block = objects.creating_block(msg.block, client.worker_id, msg.object_id)
        if block is None or msg.offset < 0 or msg.offset + len(msg.data) > block.size:
            # Its PutObject fails the same way, and the driver hears of it there.
            log.warning("dropped a chunk of object %s from %s pid %d: not inside a block it "
                        "reserved for it", msg.object_id.hex()[:12], client.kind, client.pid)
            return
        objects.arena.block(block.offset + msg.offset, len(msg.data))[:] = msg.data

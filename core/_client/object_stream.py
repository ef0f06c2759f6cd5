"""Stored objects for a process that cannot map its node's store: a driver on another
machine, reached over TCP only.

A process on the node's machine writes and maps the store's arena directly (see
``_wire/segments.py``). A remote driver has no mapping, so its objects' bytes travel on
its TCP link instead, in CHUNK_BYTES pieces, through the same requests:

    put:  CreateObject -> a block reserved for it --PutChunk + raw frame x N--> written
          into the block by its node --PutObject--> sealed, as for a process that wrote
          the block itself
    get:  GetObject(fetch) --> its node pins the block and streams it: ObjectChunk + raw
          frame x N (sendfile there, recv_into one buffer here), then the Reply with the
          block's offset --Unpin--> the node may reuse the block

The object table calls ``put`` and ``fetch_async`` when it has no store mapping, so the
store's layout stays the node's business.
"""

from __future__ import annotations

import threading
from typing import Callable

from .._types import ObjectID
from .._wire import protocol as p
from .._wire.node_link import CHUNK_BYTES, NodeLink, Received
from .._wire.serialization import Serialized
from ..exceptions import EmberSystemError

#: Called with the reply and, when the object's bytes came with it, a view of them.
OnFetched = Callable[[p.Reply, memoryview | None], None]


class StreamedObjects:
    """Moves stored objects between a remote driver and its node over the link's TCP."""

    def __init__(self, link: NodeLink) -> None:
        self.link = link

    def put(self, oid: ObjectID, value: Serialized | bytes | bytearray, flags: int, holder: bytes,
            contained: list[bytes]) -> None:
        """Seal ``value`` in the node's store as ``oid`` (waits for the node's answer).

        Raises:
            ObjectStoreFullError: the node has no room for it.
        """
        data = memoryview(value.to_bytes() if isinstance(value, Serialized) else value)
        size = len(data)
        block, _ = self.link.call(lambda rid: p.CreateObject(rid, oid, size, holder))
        if block is None:
            return  # sealed already (a retried task): the holder now holds that copy
        for at in range(0, size, CHUNK_BYTES):
            self.link.send_with_bytes(p.PutChunk(oid, block, at, None), data[at:at + CHUNK_BYTES])
        self.link.call(lambda rid: p.PutObject(rid, oid, size, flags, holder, contained, block))

    def fetch_async(self, make: Callable[[int], p.GetObject], on_reply: OnFetched) -> None:
        """Send the GetObject ``make`` builds; ``on_reply`` gets the answer and the bytes
        (None without ``fetch``: then only size and flags come)."""
        def received(reply: p.Reply, data: bytearray | None) -> None:
            view = None
            if reply.ok:
                size, _flags, block = reply.value
                if block >= 0:  # fetched: the node pinned the block while it streamed it
                    self.link.send(p.Unpin([block]))
                    view = memoryview(data if data is not None else Received(size))
            on_reply(reply, view)

        self.link.call_streamed(make, received)

    def fetch(self, make: Callable[[int], p.GetObject]) -> memoryview:
        """The object's bytes, waiting for them.

        Raises:
            The error the node answered with (e.g. ObjectLostError), or EmberSystemError.
        """
        done = threading.Event()
        box: list[tuple[p.Reply, memoryview | None]] = []

        def on_reply(reply: p.Reply, view: memoryview | None) -> None:
            box.append((reply, view))
            done.set()

        self.fetch_async(make, on_reply)
        done.wait()
        reply, view = box[0]
        if not reply.ok:
            raise reply.value if isinstance(reply.value, BaseException) else \
                EmberSystemError(f"fetching an object failed: {reply.value!r}")
        if view is None:
            raise EmberSystemError("the node answered a fetch without the object's bytes")
        return view

"""A process's side of its node's object store: one writable mapping, pinned read maps.

    put:  CreateObject -> offset; Serialized.write_into(the mapping at offset) (one
          memcpy per buffer, into pages that stay resident); PutObject seals it
    get:  GetObject -> offset, and the node pins the block for this process;
          map_object() maps just that block read-only. numpy arrays from ``get`` view
          that mapping; when the last view is collected the mapping goes, and a weakref
          callback queues an Unpin (sent at the next safe point, never from the callback)

The node reuses a block only when its object is unreferenced and no process pins it, so
a view stays valid for as long as it lives, whatever happens to the object meanwhile.
The writable mapping is made once per process and reused: a put into a block this
process wrote before costs no page faults.
"""

from __future__ import annotations

import collections
import mmap
import os
import weakref

from .serialization import Serialized


class StoreMapping:
    """This process's mapping of its node's arena (``fd`` from ``MapStore``, kept open).

    ``unpins`` collects the offsets of blocks whose read mapping was collected; the
    owner sends them to the node (``drain``) from a thread that may take locks.
    """

    def __init__(self, fd: int, capacity_bytes: int) -> None:
        self.fd = fd
        self.capacity_bytes = capacity_bytes
        self._map = mmap.mmap(fd, max(capacity_bytes, mmap.ALLOCATIONGRANULARITY))
        self._view = memoryview(self._map)
        #: Offsets to unpin, one per collected read mapping (appended from any thread).
        self.unpins: collections.deque[int] = collections.deque()
        #: The weakrefs of live read mappings (a weakref must outlive its referent to fire).
        self._live: set[weakref.ref] = set()

    def write(self, offset: int, value: Serialized | bytes | bytearray | memoryview) -> None:
        """Copy a serialized value into the block at ``offset`` (reserved for it)."""
        if isinstance(value, Serialized):
            value.write_into(self._view[offset:offset + value.total_bytes])
        else:
            self._view[offset:offset + len(value)] = value

    def map_object(self, offset: int, size: int) -> memoryview:
        """A read-only view of the ``size`` bytes at ``offset``, which this process pins.

        The pin is released (queued in ``unpins``) when the mapping is collected, i.e.
        once every view of it, numpy arrays included, is gone.
        """
        mm = mmap.mmap(self.fd, max(size, 1), prot=mmap.PROT_READ, offset=offset)
        live = self._live
        unpins = self.unpins

        def collected(ref: weakref.ref, offset: int = offset) -> None:
            # Runs wherever the last view died (any thread, maybe inside GC): no locks here.
            live.discard(ref)
            unpins.append(offset)

        live.add(weakref.ref(mm, collected))
        return memoryview(mm)[:size]

    def drain(self) -> list[int]:
        """Offsets to unpin now (each at most once)."""
        out = []
        unpins = self.unpins
        while unpins:
            out.append(unpins.popleft())
        return out

    def close(self) -> None:
        self._view.release()
        try:
            self._map.close()
        except BufferError:  # a value being written still views it
            pass
        os.close(self.fd)

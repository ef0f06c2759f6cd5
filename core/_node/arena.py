"""The node's shared-memory arena: one memfd mapped once, carved into page-aligned blocks.

Measured on wave 1: a fresh memfd per object caps ``put`` at ~20% of memcpy, because the
kernel allocates and zeroes every page of every new object. The arena is one memfd of
``object_store_memory`` bytes whose pages, once touched, stay resident and are handed
out again: a ``put`` into a recycled block is a memcpy into pages that already exist.

    node manager                       clients (drivers, workers)
    Arena(capacity): memfd + RW map    MapStore -> the memfd (once) -> one RW mapping
    Extents: free list, first fit      put: CreateObject -> offset; memcpy; PutObject
    block freed when unreferenced      get: GetObject -> offset (+1 pin); a read-only
      AND unpinned (object_store.py)        mmap of just that block; the pin goes when
                                            the mapping is collected (Unpin)

The kernel frees the memfd when the last descriptor and mapping go, so a crash of every
process leaves nothing behind (no /dev/shm name, nothing to unlink). Allocation is
first fit from the lowest address, so a store that is mostly empty keeps its resident
pages at the front and reuses them.
"""

from __future__ import annotations

import bisect
import mmap
import os

#: Blocks start on a page: readers map one block at its own offset.
PAGE_BYTES = mmap.ALLOCATIONGRANULARITY


def block_bytes(size: int) -> int:
    """The bytes a block for a ``size``-byte object takes (whole pages, at least one)."""
    return max(PAGE_BYTES, (size + PAGE_BYTES - 1) & ~(PAGE_BYTES - 1))


class Extents:
    """A first-fit allocator of page-aligned ranges of ``[0, capacity_bytes)``.

    Invariant: free extents are disjoint, sorted by offset and never adjacent (freeing
    coalesces with both neighbours), so ``largest_free`` is the biggest block that fits.
    Not thread-safe: its owner locks.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes - capacity_bytes % PAGE_BYTES
        self._starts: list[int] = [0] if self.capacity_bytes else []
        self._sizes: dict[int, int] = {0: self.capacity_bytes} if self.capacity_bytes else {}
        self.free_bytes = self.capacity_bytes

    def alloc(self, size: int) -> int | None:
        """Offset of a new block of ``block_bytes(size)``, or None if no free extent fits."""
        need = block_bytes(size)
        for i, start in enumerate(self._starts):
            have = self._sizes[start]
            if have < need:
                continue
            del self._sizes[start]
            if have == need:
                del self._starts[i]
            else:
                self._starts[i] = start + need
                self._sizes[start + need] = have - need
            self.free_bytes -= need
            return start
        return None

    def free(self, offset: int, size: int) -> None:
        """Return a block from ``alloc(size)``; it merges with free neighbours."""
        length = block_bytes(size)
        self.free_bytes += length
        i = bisect.bisect_left(self._starts, offset)
        if i > 0:
            prev = self._starts[i - 1]
            if prev + self._sizes[prev] == offset:  # grow the previous extent
                self._sizes[prev] += length
                nxt = self._starts[i] if i < len(self._starts) else None
                if nxt is not None and prev + self._sizes[prev] == nxt:
                    self._sizes[prev] += self._sizes.pop(nxt)
                    del self._starts[i]
                return
        if i < len(self._starts) and offset + length == self._starts[i]:
            nxt = self._starts[i]
            self._sizes[offset] = length + self._sizes.pop(nxt)
            self._starts[i] = offset
            return
        self._starts.insert(i, offset)
        self._sizes[offset] = length

    def largest_free(self) -> int:
        return max(self._sizes.values(), default=0)

    def reset(self) -> None:
        """Everything is free again (the spill file truncated when it emptied)."""
        self.__init__(self.capacity_bytes)  # type: ignore[misc]


class Arena:
    """The node's memfd and the node manager's own read-write mapping of all of it.

    Pages are faulted in on first use, not at start: a node whose store stays small
    takes little memory, and recycled blocks are resident from their second use on.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.extents = Extents(capacity_bytes)
        self.capacity_bytes = self.extents.capacity_bytes
        self.fd = os.memfd_create("ember-store", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, max(self.capacity_bytes, PAGE_BYTES))
            self._map = mmap.mmap(self.fd, max(self.capacity_bytes, PAGE_BYTES))
        except BaseException:
            os.close(self.fd)
            raise
        self.view = memoryview(self._map)

    def block(self, offset: int, size: int) -> memoryview:
        """The ``size`` bytes of the block at ``offset`` (the node manager's mapping)."""
        return self.view[offset:offset + size]

    def close(self) -> None:
        self.view.release()
        try:
            self._map.close()
        except BufferError:  # a chunk being received still views it: the kernel frees it at exit
            pass
        os.close(self.fd)

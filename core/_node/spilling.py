"""Spilling: which objects go to disk and come back, decided under the node lock and
carried out by the table's ``run_io`` (the object service's spill thread, no lock).

    room needed -> _spill(entry): write it out; its block is freed once written (evict),
                   or it stays in memory with a copy on disk (write-behind, _write_behind)
    a reader wants a spilled object -> _restore: a block, read back, waiters answered;
                   then _read_ahead restores the next object in the spill file

The table (object_store.ObjectTable) mixes this in; the attributes below are its own.
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING

from .._types import ObjectID
from .arena import Arena, block_bytes
from ..exceptions import ObjectLostError
from .spill_file import SpillFile
from .store_entries import CACHE_HOLDER, Block, ObjectEntry, Reserved, RunIO


class Spilling:
    """The spilling half of the node's object table (not thread-safe: the node locks)."""

    arena: Arena
    spill: SpillFile | None
    objects: dict[ObjectID, ObjectEntry]
    run_io: RunIO
    _holders: dict[bytes, set[bytes]]
    _requests: collections.deque
    _spilling_bytes: int
    _spilled_bytes: int
    _pressure_bytes: int
    _pressure_until: float
    _spill_refused: bool

    if TYPE_CHECKING:  # the table's own methods (declared for type checkers only)
        def release_block(self, block: Block) -> None: ...

        def _serve_requests(self) -> None: ...

        def reserve(self, size: int, done: Reserved, creator: bytes | None = None,
                    wait_s: float = 0.0) -> None: ...

    def _write_behind(self, exclude: ObjectEntry | None = None) -> None:
        """Under spilling pressure, start writing least recently used objects to disk
        (they stay in memory) until the room the last waiting request needed is ready.
        ``exclude``: an object just restored for a reader (its room is not ready)."""
        if self.spill is None or time.monotonic() > self._pressure_until:
            return
        memory = [e for e in self.objects.values() if e.state == "sealed" and e.block is not None
                  and not e.block.pins and e.location in ("memory", "spilling") and e is not exclude]
        ready = self.arena.extents.free_bytes + self._spilling_bytes + sum(
            e.block.size for e in memory if (e.location == "memory" and e.spill_offset >= 0)
            or (e.location == "spilling" and not e.evict))
        for entry in sorted((e for e in memory if e.location == "memory" and e.spill_offset < 0
                             and self._holders.get(e.object_id) != {CACHE_HOLDER}),
                            key=lambda e: e.last_access):
            if ready >= self._pressure_bytes:
                break
            self._spill(entry, evict=False)
            ready += entry.block.size

    def _spill(self, entry: ObjectEntry, evict: bool = True) -> None:
        """Start writing ``entry`` to the spill file (I/O on the spill thread); ``evict``:
        free its block once written (else it stays in memory with a copy on disk).

        An object restored earlier still has its copy on disk (objects never change):
        spilling it again only lets its block go, with no write.
        """
        if self.spill is None:
            return
        if entry.spill_offset >= 0:
            if not evict:
                return
            entry.location, block, entry.block = "disk", entry.block, None
            self._spilled_bytes += entry.size
            self.release_block(block)
            return
        offset = self.spill.alloc(entry.size)
        if offset is None:
            self._spill_refused = True
            return
        self._spill_refused = False
        block = entry.block
        entry.location, entry.spill_offset, entry.evict = "spilling", offset, evict
        if evict:
            self._spilling_bytes += block.size
        # Whole pages: the spill file may bypass the page cache (O_DIRECT).
        data = self.arena.block(block.offset, block_bytes(entry.size))
        spill = self.spill

        def finish(ok: bool) -> None:
            if entry.evict:
                self._spilling_bytes -= block.size
            freed = self.objects.get(entry.object_id) is not entry
            if freed or not ok:  # freed meanwhile, or the disk failed
                spill.free(offset, entry.size)
                entry.spill_offset = -1
                if freed:
                    self.release_block(block)
                else:
                    entry.location, entry.evict = "memory", True
            elif block.pins or not entry.evict:  # stays in memory, with a copy on disk
                entry.location, entry.evict = "memory", True
            else:
                entry.location, entry.block = "disk", None
                self._spilled_bytes += entry.size
                self.release_block(block)
            self._serve_requests()

        self.run_io(lambda: spill.write(offset, data), finish)

    def _read_ahead(self, after: ObjectEntry) -> None:
        """A reader restored ``after``: restore the object that follows it in the spill file
        too, if room costs no write (free space, or blocks of objects with a copy on disk).

        Spill order follows put order, so a reader going through its objects in order
        finds the next one in memory; the read happens on the spill thread meanwhile.
        """
        if self.spill is None or after.spill_offset < 0:
            return
        following = [e for e in self.objects.values()
                     if e.location == "disk" and e.spill_offset > after.spill_offset]
        if not following:
            return
        nxt = min(following, key=lambda e: e.spill_offset)
        need = block_bytes(nxt.size)
        extents = self.arena.extents
        clean = sorted((e for e in self.objects.values()
                        if e.location == "memory" and e.spill_offset >= 0 and e is not after
                        and not e.block.pins and not e.read_ahead), key=lambda e: e.last_access)
        for entry in clean:
            if extents.largest_free() >= need:
                break
            self._spill(entry)  # a copy is on disk: its block goes at once
        if extents.largest_free() >= need and not self._requests:
            self._restore(nxt)

    def _restore(self, entry: ObjectEntry) -> None:
        """Read a spilled object back into a new block, then answer its waiters."""
        entry.location = "restoring"
        spill = self.spill

        def reserved(block: Block | None, error: BaseException | None) -> None:
            if self.objects.get(entry.object_id) is not entry:  # freed while waiting for room
                if block is not None:
                    self.release_block(block)
                spill.free(entry.spill_offset, entry.size)
                self._spilled_bytes -= entry.size
                return
            if block is None:
                entry.location = "disk"
                waiters, entry.waiters = entry.waiters, []
                failed = ObjectEntry(entry.object_id, state="failed", error=error)
                for waiter in waiters:
                    waiter("failed", failed)
                return
            out = self.arena.block(block.offset, block_bytes(entry.size))

            def finish(ok: bool) -> None:
                if self.objects.get(entry.object_id) is not entry:
                    self.release_block(block)
                    spill.free(entry.spill_offset, entry.size)
                    self._spilled_bytes -= entry.size
                    return
                if not ok:
                    self.release_block(block)
                    entry.location = "disk"
                    error = ObjectLostError(entry.object_id.hex(), "its spilled copy could not "
                                            "be read back from disk")
                    waiters, entry.waiters = entry.waiters, []
                    for waiter in waiters:
                        waiter("failed", ObjectEntry(entry.object_id, state="failed", error=error))
                    return
                # The copy on disk stays: spilling the object again costs no write.
                self._spilled_bytes -= entry.size
                entry.location, entry.block = "memory", block
                entry.last_access = time.monotonic()
                waiters, entry.waiters = entry.waiters, []
                entry.read_ahead = not waiters
                for waiter in waiters:
                    waiter("sealed", entry)
                self._write_behind(exclude=entry)  # readers waiting for restores are pressure too
                if waiters:
                    self._read_ahead(entry)

            self.run_io(lambda: spill.read_into(entry.spill_offset, out), finish)

        self.reserve(entry.size, reserved)

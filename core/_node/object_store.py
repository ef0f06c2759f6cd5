"""The node manager's object table: objects in the arena, reader pins, references, spilling.

    CreateObject -> reserve(size): a block now, or once spilling made room (FIFO)
    PutObject    -> seal: the block becomes the object's; waiters fire
    GetObject    -> wait (restoring from disk if spilled) -> pin(holder) -> offset
    Unpin / the holder's connection closes -> unpin: an orphaned block goes with its last pin
    last reference dropped -> the block is freed, or orphaned while readers still pin it

A block is reused only when its object is unreferenced *and* unpinned, so a reader's
zero-copy view never sees another object's bytes. Spilling (mixed in from ``spilling``)
is decided here (lock held) and carried out by ``run_io`` (the object service's spill thread, no lock): an object
being written out is still served from memory; its block is freed once the write is
done, unless a reader pinned it meanwhile (then it stays in memory).

References are holder sets: a process (by worker id) holds an id at most once, and an
object that contains refs holds each of them until it is freed itself. Ids of actors
live in the same table, so an actor handle keeps its actor alive the same way.
"""

from __future__ import annotations

import collections
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Literal

from .._types import ObjectID
from .arena import Arena, block_bytes
from ..exceptions import ObjectLostError, ObjectStoreFullError
from .spill_file import SpillFile, default_spill_bytes
from .spilling import Spilling
from .store_entries import CACHE_HOLDER, Block, ObjectEntry, Reserved, RunIO, Waiter

#: How long a request for room waits for readers to let go of pinned objects before it
#: fails with ObjectStoreFullError (spills in progress are always waited for).
STORE_FULL_WAIT_S = float(os.environ.get("EMBER_STORE_FULL_WAIT_S", "10"))

#: After a request had to wait for a spill, for this long the store writes objects
#: behind (to disk, keeping them in memory) so that the next such request finds room it
#: can take without waiting for a write.
WRITE_BEHIND_S = 5.0

@dataclass(eq=False)
class _Request:
    """Someone waiting for room: a put (its creator), a restore, or a pull."""
    size: int
    done: Reserved
    deadline: float
    creator: bytes | None = None


def _run_inline(io: Callable[[], None], finish: Callable[[bool], None]) -> None:
    """Disk I/O without a spill thread (tables used with plain calls)."""
    try:
        io()
    except OSError:
        finish(False)
        return
    finish(True)


class ObjectTable(Spilling):
    """Objects, blocks, pins and references of one node. Not thread-safe: the node locks.

    Args:
        capacity_bytes: the arena's size (``object_store_memory``).
        spill_dir: where the spill file lives; None: nothing spills (full means full).
        spill_bytes: the most the spill file may hold (default: half the free disk).
    """

    def __init__(self, capacity_bytes: int, spill_dir: str | None = None,
                 spill_bytes: int | None = None) -> None:
        self.arena = Arena(capacity_bytes)
        self.capacity_bytes = self.arena.capacity_bytes
        self.spill: SpillFile | None = None
        if spill_dir is not None:
            self.spill = SpillFile(spill_dir, spill_bytes if spill_bytes is not None
                                   else default_spill_bytes(spill_dir))
        self.objects: dict[ObjectID, ObjectEntry] = {}
        self._holders: dict[bytes, set[bytes]] = defaultdict(set)
        self._held_by: dict[bytes, set[bytes]] = defaultdict(set)
        #: Allocated blocks by offset (objects', orphaned, being created or restored).
        self._blocks: dict[int, Block] = {}
        #: Blocks handed to a creator that has not sealed them yet: offset -> (block, creator, id).
        self._creating: dict[int, tuple[Block, bytes, ObjectID]] = {}
        #: holder -> arena offset -> pins it holds there.
        self._pins: dict[bytes, collections.Counter[int]] = defaultdict(collections.Counter)
        self._requests: collections.deque[_Request] = collections.deque()
        self._serving = False
        #: Bytes of blocks being written to disk: room that is on its way.
        self._spilling_bytes = 0
        self._spilled_bytes = 0
        #: Write-behind: the room the last waiting request needed, and until when to keep
        #: that much ready (free, or held by objects with a copy on disk).
        self._pressure_bytes = 0
        self._pressure_until = 0.0
        #: The spill file refused an object: named in the store-full error.
        self._spill_refused = False
        #: Called with an id whose last holder went away and that is not an object here.
        self.on_unreferenced: Callable[[bytes], None] = lambda _id: None
        #: Called with the id of a sealed object freed here (other nodes drop their copies).
        self.on_freed: Callable[[ObjectID], None] = lambda _id: None
        self.run_io: RunIO = _run_inline

    @property
    def used_bytes(self) -> int:
        """Arena bytes allocated (objects, blocks being written, orphaned pinned blocks)."""
        return self.capacity_bytes - self.arena.extents.free_bytes

    @property
    def spilled_bytes(self) -> int:
        """Bytes of objects whose copy is on disk only ("disk", "restoring")."""
        return self._spilled_bytes

    # --- creating objects ------------------------------------------------------------

    def declare(self, object_id: ObjectID, owner: bytes) -> None:
        """A pending object that borrowers may wait for until its owner seals it."""
        if object_id not in self.objects:
            self.objects[object_id] = ObjectEntry(object_id, owner=owner)
        self.add_ref(object_id, owner)

    def create(self, object_id: ObjectID, size: int, creator: bytes, holder: bytes,
               done: Callable[[int | None, BaseException | None], None]) -> None:
        """Reserve a block for ``creator`` to write ``object_id`` into; ``done(offset, None)``.

        ``done(None, None)``: the object is sealed already (a retried task): ``holder``
        now holds it and nothing is to be written. ``done(None, error)``: no room.

        The object exists from now on, pending and held by ``holder``: a reader that asks
        for it before the seal arrives (the seal may be sent without waiting for an
        answer, and readers learn of the object on other connections) waits for it.
        """
        entry = self.objects.get(object_id)
        if entry is not None and entry.state == "sealed":
            self.add_ref(object_id, holder)
            done(None, None)
            return
        if entry is None:
            entry = self.objects[object_id] = ObjectEntry(object_id, owner=holder, creator=creator)
            self.add_ref(object_id, holder)

        def reserved(block: Block | None, error: BaseException | None) -> None:
            if block is None:
                self._abandon(object_id, creator)
                done(None, error)
                return
            self._creating[block.offset] = (block, creator, object_id)
            done(block.offset, None)

        self.reserve(size, reserved, creator)

    def seal(self, object_id: ObjectID, offset: int, size: int, flags: int, creator: bytes,
             holder: bytes, contained: list[bytes]) -> list[tuple[Waiter, ObjectEntry]]:
        """The creator wrote the block at ``offset``: it becomes the object.

        Raises:
            ValueError: ``offset`` is not a block this creator reserved for this object.
        """
        creating = self._creating.get(offset)
        if creating is None or creating[1] != creator or creating[2] != object_id \
                or size > creating[0].size:
            raise ValueError(f"no block at offset {offset} was reserved for object "
                             f"{object_id.hex()} of {size} bytes by this process")
        del self._creating[offset]
        return self.seal_block(object_id, creating[0], size, flags, holder, contained)

    def seal_block(self, object_id: ObjectID, block: Block, size: int, flags: int, holder: bytes,
                   contained: list[bytes]) -> list[tuple[Waiter, ObjectEntry]]:
        """Make a filled block an object. Re-sealing a sealed object (a retried task, a
        second pull) keeps the first copy."""
        entry = self.objects.get(object_id)
        if entry is not None and entry.state == "sealed":
            self.release_block(block)
            self.add_ref(object_id, holder)
            return []
        if entry is None:
            entry = self.objects[object_id] = ObjectEntry(object_id, owner=holder)
        entry.state, entry.size, entry.flags = "sealed", size, flags
        entry.block, entry.location = block, "memory"
        entry.contained = list(contained)
        entry.last_access = time.monotonic()
        for inner in entry.contained:
            self.add_ref(inner, object_id)
        self.add_ref(object_id, holder)
        fired = [(w, entry) for w in entry.waiters]
        entry.waiters.clear()
        self._write_behind()
        return fired

    def creating_block(self, offset: int, creator: bytes, object_id: ObjectID) -> Block | None:
        """The block at ``offset`` if ``creator`` reserved it for ``object_id`` and has not
        sealed it yet (a remote driver's chunks are written into it by the node)."""
        creating = self._creating.get(offset)
        if creating is None or creating[1] != creator or creating[2] != object_id:
            return None
        return creating[0]

    def release_creating(self, creator: bytes) -> None:
        """A process exited: blocks it was writing, its requests for room, and the pending
        objects it created (a retried task creates them again) go."""
        for offset, (block, who, _oid) in list(self._creating.items()):
            if who == creator:
                del self._creating[offset]
                self.release_block(block)
        self._requests = collections.deque(r for r in self._requests if r.creator != creator)
        for entry in [e for e in self.objects.values() if e.state == "pending" and e.creator == creator]:
            self._abandon(entry.object_id, creator)
        self._serve_requests()

    def _abandon(self, object_id: ObjectID, creator: bytes) -> None:
        """A pending object its creator will not seal: the hold ``create`` took goes."""
        entry = self.objects.get(object_id)
        if entry is not None and entry.state == "pending" and entry.creator == creator:
            entry.creator = None
            self.remove_ref(object_id, entry.owner)

    # --- reading ---------------------------------------------------------------------

    def wait(self, object_id: ObjectID, waiter: Waiter, in_memory: bool = True) -> ObjectEntry | None:
        """The entry if settled now; else ``waiter`` is called when it settles.

        ``in_memory``: a spilled object is restored first (the caller will map it).
        """
        entry = self.objects.get(object_id)
        if entry is None:
            return ObjectEntry(object_id, state="failed", error=ObjectLostError(
                object_id.hex(), "no reference to it was left, so it was freed"))
        if entry.state == "pending" or (in_memory and entry.location in ("disk", "restoring")):
            entry.waiters.append(waiter)
            if entry.state == "sealed" and entry.location == "disk":
                self._restore(entry)
            return None
        entry.last_access = time.monotonic()
        if entry.read_ahead and in_memory:
            entry.read_ahead = False
            self._read_ahead(entry)
        return entry

    def pin(self, holder: bytes, entry: ObjectEntry) -> int:
        """``holder`` maps ``entry``'s block: it is not reused until unpinned. Its offset."""
        block = entry.block
        block.pins += 1
        self._pins[holder][block.offset] += 1
        return block.offset

    def unpin(self, holder: bytes, offsets: list[int]) -> None:
        """``holder`` no longer maps these blocks (once per pin; unknown ones are ignored)."""
        pins = self._pins.get(holder)
        if pins is None:
            return
        for offset in offsets:
            if pins.get(offset, 0) <= 0:
                continue
            pins[offset] -= 1
            if not pins[offset]:
                del pins[offset]
            self._unpin_block(self._blocks[offset], 1)
        if not pins:
            del self._pins[holder]
        self._serve_requests()

    def release_pins(self, holder: bytes) -> None:
        """A process (or peer) went away: every pin it held goes with it."""
        for offset, count in self._pins.pop(holder, {}).items():
            self._unpin_block(self._blocks[offset], count)
        self._serve_requests()

    def _unpin_block(self, block: Block, count: int) -> None:
        block.pins -= count
        if block.pins == 0 and block.orphaned:
            self._free_block(block)

    def fail_owned_by(self, owner: bytes, make_error: Callable[[ObjectID], object]
                      ) -> list[tuple[Waiter, ObjectEntry]]:
        """The owner died: its objects that will never be sealed fail for every waiter."""
        fired = []
        for entry in self.objects.values():
            if entry.state == "pending" and entry.owner == owner:
                entry.state, entry.error = "failed", make_error(entry.object_id)
                fired += [(w, entry) for w in entry.waiters]
                entry.waiters.clear()
        return fired

    # --- references ------------------------------------------------------------------

    def add_ref(self, ref_id: bytes, holder: bytes) -> None:
        self._holders[ref_id].add(holder)
        self._held_by[holder].add(ref_id)

    def remove_ref(self, ref_id: bytes, holder: bytes) -> None:
        holders = self._holders.get(ref_id)
        if holders is None or holder not in holders:
            return
        holders.discard(holder)
        held = self._held_by.get(holder)
        if held is not None:
            held.discard(ref_id)
            if not held:
                del self._held_by[holder]
        if not holders:
            del self._holders[ref_id]
            self._free(ref_id)

    def release_holder(self, holder: bytes) -> None:
        """A process exited: drop every reference it held."""
        for ref_id in list(self._held_by.get(holder, ())):
            self.remove_ref(ref_id, holder)

    def holders_of(self, ref_id: bytes) -> set[bytes]:
        return set(self._holders.get(ref_id, ()))

    def _free(self, ref_id: bytes) -> None:
        entry = self.objects.get(ref_id)
        if entry is None:
            self.on_unreferenced(ref_id)
            return
        del self.objects[ref_id]
        if entry.waiters:
            error = ObjectLostError(ref_id.hex(), "its last reference was dropped before it was "
                                    "ready")
            entry.state, entry.error = "failed", error
            for waiter in entry.waiters:
                waiter("failed", entry)
            entry.waiters.clear()
        if entry.state != "sealed":
            return
        # "spilling" and "restoring" are finished by their I/O's completion, which sees the
        # entry gone and frees what it holds.
        if entry.location == "memory":
            self.release_block(entry.block)
            if entry.spill_offset >= 0:  # its clean copy on disk goes too
                self.spill.free(entry.spill_offset, entry.size)
        elif entry.location == "disk":
            self.spill.free(entry.spill_offset, entry.size)
            self._spilled_bytes -= entry.size
        for inner in entry.contained:
            self.remove_ref(inner, ref_id)
        self.on_freed(ref_id)
        self._serve_requests()

    # --- blocks and room -------------------------------------------------------------

    def reserve(self, size: int, done: Reserved, creator: bytes | None = None,
                wait_s: float = STORE_FULL_WAIT_S) -> None:
        """A block of ``size`` bytes for ``done``: now, or once spilling made room.

        Requests are served in order. ``done(None, ObjectStoreFullError)`` when the object
        can never fit, or nothing more can be spilled and no reader let go in ``wait_s``.
        """
        if block_bytes(size) > self.capacity_bytes:
            done(None, self._full_error(size))
            return
        self._requests.append(_Request(size, done, time.monotonic() + wait_s, creator))
        self._serve_requests()

    def expire(self, now: float) -> None:
        """Fail requests that waited past their deadline (called by the spill thread)."""
        expired = [r for r in self._requests if r.deadline <= now]
        if not expired:
            return
        self._requests = collections.deque(r for r in self._requests if r.deadline > now)
        for request in expired:
            request.done(None, self._full_error(request.size))
        self._serve_requests()

    def _serve_requests(self) -> None:
        if self._serving:  # re-entered from a callback or inline I/O: the outer loop goes on
            return
        self._serving = True
        try:
            while self._requests:
                request = self._requests[0]
                offset = self.arena.extents.alloc(request.size)
                if offset is not None:
                    self._requests.popleft()
                    block = self._blocks[offset] = Block(offset, block_bytes(request.size))
                    request.done(block, None)
                    continue
                outlook = self._make_room(request.size)
                if outlook == "later":
                    return
                if outlook == "never":
                    self._requests.popleft()
                    request.done(None, self._full_error(request.size))
        finally:
            self._serving = False

    def _make_room(self, size: int) -> Literal["now", "later", "never"]:
        """Evict cached copies, then spill objects that still have a copy on disk (no write),
        then start writing least recently used ones out, until a block of ``size`` fits or
        will once the writes in progress finish."""
        need = block_bytes(size)
        extents = self.arena.extents
        now = time.monotonic()
        self._pressure_bytes = max(need, self._pressure_bytes if now < self._pressure_until else 0)
        self._pressure_until = now + WRITE_BEHIND_S
        for entry in [e for e in self.objects.values()
                      if e.location == "spilling" and not e.evict and not e.block.pins]:
            if self._spilling_bytes and extents.free_bytes + self._spilling_bytes >= need:
                break
            entry.evict = True  # a copy being written behind: its block goes when written
            self._spilling_bytes += entry.block.size
        candidates = sorted((e for e in self.objects.values()
                             if e.state == "sealed" and e.location == "memory" and e.block.pins == 0),
                            key=lambda e: (e.spill_offset < 0, e.last_access))
        for entry in candidates:
            if self._holders.get(entry.object_id) == {CACHE_HOLDER}:
                self.remove_ref(entry.object_id, CACHE_HOLDER)
                if extents.largest_free() >= need:
                    return "now"
        for entry in candidates:
            if extents.largest_free() >= need:
                return "now"
            if self._spilling_bytes and extents.free_bytes + self._spilling_bytes >= need:
                break  # enough is on its way to disk
            if self.objects.get(entry.object_id) is entry and entry.location == "memory" \
                    and not entry.block.pins:
                self._spill(entry)
        if extents.largest_free() >= need:
            return "now"
        if self._spilling_bytes or any(b.pins for b in self._blocks.values()) or self._creating:
            return "later"  # writes finishing, readers letting go, or new objects to spill
        return "never"

    def _full_error(self, size: int) -> ObjectStoreFullError:
        pinned = sum(b.size for b in self._blocks.values() if b.pins)
        spill = self.spill
        return ObjectStoreFullError(
            size, self.used_bytes, self.capacity_bytes, pinned_bytes=pinned,
            spill_used_bytes=spill.used_bytes if spill is not None else None,
            spill_capacity_bytes=spill.capacity_bytes if spill is not None else None,
            spill_full=self._spill_refused)

    def release_block(self, block: Block) -> None:
        """The block's object (or a pull that failed) no longer needs it: freed now, or when
        its last pin goes."""
        if block.pins:
            block.orphaned = True
        else:
            self._free_block(block)

    def _free_block(self, block: Block) -> None:
        del self._blocks[block.offset]
        self.arena.extents.free(block.offset, block.size)
        self._serve_requests()

    # --- reporting -------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        sealed = [e for e in self.objects.values() if e.state == "sealed"]
        largest = sorted(sealed, key=lambda e: e.size, reverse=True)[:10]
        pinned = [b for b in self._blocks.values() if b.pins]
        spill = self.spill
        return {
            "capacity_bytes": self.capacity_bytes,
            "used_bytes": self.used_bytes,
            "free_bytes": self.arena.extents.free_bytes,
            "largest_free_bytes": self.arena.extents.largest_free(),
            "pinned_bytes": sum(b.size for b in pinned),
            "num_pinned": len(pinned),
            "num_objects": len(sealed),
            "spilled_bytes": self._spilled_bytes,
            "num_spilled": sum(1 for e in sealed if e.location in ("disk", "restoring")),
            "spilling_bytes": self._spilling_bytes,
            "spill_file_bytes": spill.used_bytes if spill is not None else 0,
            "spill_capacity_bytes": spill.capacity_bytes if spill is not None else 0,
            "waiting_for_room": len(self._requests),
            "largest": [(e.object_id.hex(), e.size, sorted(h.hex() for h in self.holders_of(e.object_id)))
                        for e in largest],
            "largest_objects": [{"object_id": e.object_id.hex(), "size_bytes": e.size,
                                 "spilled": e.location in ("disk", "restoring"),
                                 "pinned": bool(e.block is not None and e.block.pins),
                                 "holders": sorted(h.hex() for h in self.holders_of(e.object_id))}
                                for e in largest],
        }

    def close(self) -> None:
        self._requests.clear()
        self.objects.clear()
        self.arena.close()
        if self.spill is not None:
            self.spill.close()

"""The node manager's object table: objects in the arena, reader pins, references, spilling.

    CreateObject -> reserve(size): a block now, or once spilling made room (FIFO)
    PutObject    -> seal: the block becomes the object's; waiters fire
    GetObject    -> wait (restoring from disk if spilled) -> pin(holder) -> offset
    Unpin / the holder's connection closes -> unpin: an orphaned block goes with its last pin
    last reference dropped -> the block is freed, or orphaned while readers still pin it

A block is reused only when its object is unreferenced *and* unpinned, so a reader's
zero-copy view never sees another object's bytes. Spilling is decided here (lock held)
and carried out by ``run_io`` (the object service's spill thread, no lock): an object
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
from dataclasses import dataclass, field
from typing import Callable, Literal

from .._types import ObjectID
from .arena import Arena, block_bytes
from ..exceptions import ObjectLostError, ObjectStoreFullError
from .spill_file import SpillFile, default_spill_bytes

#: Holder of copies pulled from other nodes: nobody's; evicted first when room is needed.
CACHE_HOLDER = b"cache"

#: How long a request for room waits for readers to let go of pinned objects before it
#: fails with ObjectStoreFullError (spills in progress are always waited for).
STORE_FULL_WAIT_S = float(os.environ.get("EMBER_STORE_FULL_WAIT_S", "10"))

#: After a request had to wait for a spill, for this long the store writes objects
#: behind (to disk, keeping them in memory) so that the next such request finds room it
#: can take without waiting for a write.
WRITE_BEHIND_S = 5.0

#: Called with ("sealed", entry) or ("failed", error) when a waited-for object settles.
Waiter = Callable[[str, object], None]

Location = Literal["memory", "spilling", "disk", "restoring"]


@dataclass(eq=False)
class Block:
    """A range of the arena that holds (or is being filled with) one object."""
    offset: int
    size: int
    #: Readers (and peers streaming it) that map it now; the block is not reused before 0.
    pins: int = 0
    #: Its object is gone (freed or spilled) but readers still pin it: freed at 0 pins.
    orphaned: bool = False


@dataclass
class ObjectEntry:
    """One object of the node: where its bytes are, its owner and its waiters."""
    object_id: ObjectID
    state: Literal["pending", "sealed", "failed"] = "pending"
    size: int = 0
    flags: int = 0
    owner: bytes = b""
    contained: list[bytes] = field(default_factory=list)
    error: object = None
    waiters: list[Waiter] = field(default_factory=list)
    last_access: float = 0.0
    #: The arena block while the bytes are in memory ("memory", "spilling").
    block: Block | None = None
    location: Location = "memory"
    #: Offset in the spill file while on disk ("disk", "restoring"; also "spilling"), or
    #: of a clean copy of an object in memory (restored, or written behind).
    spill_offset: int = -1
    #: While "spilling": free the block once written. False: a write-behind copy (the
    #: object stays in memory, and evicting it later costs no write).
    evict: bool = True
    #: The process that created this pending entry with CreateObject (it seals it).
    creator: bytes | None = None
    #: Restored ahead of a reader (read-ahead): its first reader reads the next one ahead.
    read_ahead: bool = False


#: Told the reserved block, or the error that ends the wait (exactly one is None).
Reserved = Callable[[Block | None, BaseException | None], None]

#: Runs ``io`` off the node lock, then ``finish(ok)`` with the lock held.
RunIO = Callable[[Callable[[], None], Callable[[bool], None]], None]


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


class ObjectTable:
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

    # --- spilling --------------------------------------------------------------------

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

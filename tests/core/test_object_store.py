"""ObjectTable (ember/_node/object_store.py) and its arena with plain calls: blocks are
reused only when unreferenced and unpinned, spilling is decided under the node lock and
written outside it (``run_io``), and a full store says what it holds."""

from __future__ import annotations

from typing import Callable

import pytest

from ember._node.arena import PAGE_BYTES, Extents
from ember._node.object_store import ObjectTable
from ember.exceptions import ObjectStoreFullError

pytestmark = pytest.mark.timeout(30)

OWNER = b"owner"
READER = b"reader"
KiB = 1 << 10


class _Table:
    """An ObjectTable whose disk I/O waits in a list until the test runs it."""

    def __init__(self, tmp_path, capacity: int, spill_bytes: int | None = 1 << 30) -> None:
        self.table = ObjectTable(capacity, str(tmp_path), spill_bytes=spill_bytes)
        self.io: list[tuple[Callable[[], None], Callable[[bool], None]]] = []
        self.table.run_io = lambda io, finish: self.io.append((io, finish))

    def run_io(self) -> None:
        while self.io:
            io, finish = self.io.pop(0)
            io()
            finish(True)

    def put(self, oid: bytes, data: bytes) -> int:
        """Create, write and seal ``oid``; returns its offset. Raises the store's error."""
        got: list = []
        self.table.create(oid, len(data), OWNER, OWNER, lambda off, err: got.append((off, err)))
        self.run_io()
        (offset, error), = got
        if error is not None:
            raise error
        self.table.arena.block(offset, len(data))[:] = data
        self.table.seal(oid, offset, len(data), 0, OWNER, OWNER, [])
        return offset

    def read(self, oid: bytes) -> bytes:
        entry = self.table.wait(oid, lambda *_: None)
        if entry is None:
            self.run_io()
            entry = self.table.objects[oid]
        return bytes(self.table.arena.block(entry.block.offset, entry.size))


def test_extents_first_fit_and_merge_with_both_neighbours() -> None:
    ext = Extents(10 * PAGE_BYTES)
    a, b, c = ext.alloc(1), ext.alloc(PAGE_BYTES * 2), ext.alloc(PAGE_BYTES)
    assert (a, b, c) == (0, PAGE_BYTES, 3 * PAGE_BYTES)
    ext.free(a, 1)
    ext.free(c, PAGE_BYTES)
    assert ext.largest_free() == 7 * PAGE_BYTES  # c merged with the tail (pages 3-9)
    ext.free(b, 2 * PAGE_BYTES)
    assert ext.free_bytes == ext.largest_free() == 10 * PAGE_BYTES
    assert ext.alloc(11 * PAGE_BYTES) is None


def test_a_pinned_block_is_not_reused_after_its_object_is_freed(tmp_path) -> None:
    t = _Table(tmp_path, capacity=64 * KiB)
    first = t.put(b"a" * 16, b"A" * 1000)
    entry = t.table.wait(b"a" * 16, lambda *_: None)
    assert t.table.pin(READER, entry) == first
    t.table.remove_ref(b"a" * 16, OWNER)  # freed by its owner while the reader maps it
    second = t.put(b"b" * 16, b"B" * 1000)
    assert second != first
    assert bytes(t.table.arena.block(first, 1000)) == b"A" * 1000
    t.table.unpin(READER, [first])
    assert t.put(b"c" * 16, b"C" * 1000) == first  # reused only now
    t.table.close()


def test_a_reader_that_goes_away_releases_its_pins(tmp_path) -> None:
    t = _Table(tmp_path, capacity=64 * KiB)
    offset = t.put(b"a" * 16, b"A" * 100)
    entry = t.table.objects[b"a" * 16]
    t.table.pin(READER, entry)
    t.table.pin(READER, entry)
    t.table.remove_ref(b"a" * 16, OWNER)
    assert t.table.used_bytes == PAGE_BYTES
    t.table.unpin(READER, [offset, offset, offset])  # more unpins than pins: ignored
    assert t.table.used_bytes == 0
    t.put(b"b" * 16, b"B" * 100)
    t.table.pin(READER, t.table.objects[b"b" * 16])
    t.table.remove_ref(b"b" * 16, OWNER)
    t.table.release_pins(READER)
    assert t.table.used_bytes == 0
    t.table.close()


def test_a_full_store_spills_outside_the_lock_and_serves_the_victim_meanwhile(tmp_path) -> None:
    t = _Table(tmp_path, capacity=2 * PAGE_BYTES)
    t.put(b"a" * 16, b"A" * PAGE_BYTES)
    t.put(b"b" * 16, b"B" * PAGE_BYTES)
    got: list = []
    t.table.create(b"c" * 16, PAGE_BYTES, OWNER, OWNER, lambda off, err: got.append((off, err)))
    assert got == [] and len(t.io) == 1  # a is being written out; the put waits for its room
    victim = t.table.objects[b"a" * 16]
    assert victim.location == "spilling"
    assert t.table.wait(b"a" * 16, lambda *_: None) is victim  # still served from memory
    t.run_io()
    assert victim.location == "disk" and got and got[0][1] is None
    t.table.arena.block(got[0][0], PAGE_BYTES)[:] = b"C" * PAGE_BYTES
    t.table.seal(b"c" * 16, got[0][0], PAGE_BYTES, 0, OWNER, OWNER, [])
    assert t.read(b"a" * 16) == b"A" * PAGE_BYTES  # restored bit-exactly (b spilled for it)
    assert t.table.objects[b"b" * 16].location == "disk"
    assert t.table.spilled_bytes == PAGE_BYTES  # b; a is back, its copy kept on disk
    assert t.table.spill.used_bytes >= 2 * PAGE_BYTES  # (c may be written behind too)
    assert t.read(b"b" * 16) == b"B" * PAGE_BYTES  # a goes again, with no write this time
    assert t.io == [] and t.table.objects[b"a" * 16].location == "disk"
    assert t.read(b"a" * 16) == b"A" * PAGE_BYTES
    assert t.table.spilled_bytes == sum(e.size for e in t.table.objects.values()
                                        if e.location == "disk")
    for oid in (b"a" * 16, b"b" * 16, b"c" * 16):
        t.table.remove_ref(oid, OWNER)
    assert t.table.spill.used_bytes == 0 and t.table.used_bytes == 0
    t.table.close()


def test_under_pressure_objects_are_written_behind_and_later_evicted_without_a_write(tmp_path) -> None:
    t = _Table(tmp_path, capacity=3 * PAGE_BYTES)
    for name in (b"a", b"b", b"c"):
        t.put(name * 16, name.upper() * PAGE_BYTES)
    t.put(b"d" * 16, b"D" * PAGE_BYTES)  # had to wait for a's write: pressure
    assert t.table.objects[b"a" * 16].location == "disk"
    # Sealing d starts writing b behind; it is served from memory all along.
    b = t.table.objects[b"b" * 16]
    assert b.location == "spilling" and not b.evict and len(t.io) == 1
    t.run_io()
    assert b.location == "memory" and b.spill_offset >= 0  # and now has a copy on disk
    got: list = []
    t.table.create(b"e" * 16, PAGE_BYTES, OWNER, OWNER, lambda off, err: got.append(err))
    assert got == [None] and t.io == []  # room at once: b's block went without a write
    assert b.location == "disk" and t.read(b"b" * 16) == b"B" * PAGE_BYTES
    t.table.close()


def test_a_reader_going_through_spilled_objects_in_order_finds_the_next_read_ahead(tmp_path) -> None:
    t = _Table(tmp_path, capacity=2 * PAGE_BYTES)
    names = (b"a", b"b", b"c", b"d", b"e")
    for name in names:
        t.put(name * 16, name.upper() * PAGE_BYTES)
    t.run_io()
    assert t.read(b"a" * 16) == b"A" * PAGE_BYTES  # restored for a reader
    t.run_io()  # meanwhile the other object in memory was written behind
    assert t.read(b"b" * 16) == b"B" * PAGE_BYTES  # restored for a reader, and then ...
    t.run_io()
    c = t.table.objects[b"c" * 16]
    assert c.location == "memory" and c.read_ahead  # ... c after it, for nobody yet
    assert t.table.wait(b"c" * 16, lambda *_: None) is c and not c.read_ahead  # no wait
    t.run_io()
    assert [t.read(n * 16) for n in names] == [n.upper() * PAGE_BYTES for n in names]
    t.table.close()


def test_an_object_freed_while_it_is_written_out_frees_its_block_and_disk(tmp_path) -> None:
    t = _Table(tmp_path, capacity=PAGE_BYTES)
    t.put(b"a" * 16, b"A" * 100)
    t.table.create(b"b" * 16, 100, OWNER, OWNER, lambda off, err: None)
    t.table.remove_ref(b"a" * 16, OWNER)  # freed before the write finished
    t.run_io()
    assert t.table.spill.used_bytes == 0
    assert t.table.stats()["spilled_bytes"] == 0
    t.table.close()


def test_a_pinned_object_is_not_spilled_and_a_full_store_names_the_sizes(tmp_path) -> None:
    t = _Table(tmp_path, capacity=PAGE_BYTES)
    t.put(b"a" * 16, b"A" * 100)
    t.table.pin(READER, t.table.objects[b"a" * 16])
    errors: list = []
    t.table.reserve(100, lambda block, err: errors.append(err), wait_s=0)
    assert errors == []  # waits: the reader may let go
    t.table.expire(now=float("inf"))
    error, = errors
    assert isinstance(error, ObjectStoreFullError)
    assert error.pinned_bytes == PAGE_BYTES and error.capacity_bytes == PAGE_BYTES
    assert "mapped by readers" in str(error)
    t.table.close()


def test_an_object_larger_than_the_store_fails_at_once(tmp_path) -> None:
    t = _Table(tmp_path, capacity=PAGE_BYTES)
    with pytest.raises(ObjectStoreFullError, match="object_store_memory"):
        t.put(b"a" * 16, b"A" * (PAGE_BYTES + 1))
    t.table.close()


def test_a_full_spill_file_is_named_in_the_error(tmp_path) -> None:
    t = _Table(tmp_path, capacity=PAGE_BYTES, spill_bytes=0)
    t.put(b"a" * 16, b"A" * 100)
    with pytest.raises(ObjectStoreFullError, match="spill file is full"):
        t.put(b"b" * 16, b"B" * 100)
    t.table.close()


def test_sealing_a_block_someone_else_reserved_is_refused(tmp_path) -> None:
    t = _Table(tmp_path, capacity=4 * PAGE_BYTES)
    got: list = []
    t.table.create(b"a" * 16, 100, OWNER, OWNER, lambda off, err: got.append(off))
    with pytest.raises(ValueError, match="reserved"):
        t.table.seal(b"a" * 16, got[0], 100, 0, b"someone else", OWNER, [])
    t.table.release_creating(OWNER)  # the creator exits without sealing: the block goes
    assert t.table.used_bytes == 0
    t.table.close()

"""ObjectTable (core/object_store.py) with plain calls: spilling is decided under the node
lock but written to disk outside it (``spill_later`` / ``finish_spill``)."""

from __future__ import annotations

import os

import pytest

from ember._node.objects import _write_file
from ember._node.object_store import ObjectEntry, ObjectTable

pytestmark = pytest.mark.timeout(30)


def _segment(data: bytes) -> int:
    fd = os.memfd_create("test-object", os.MFD_CLOEXEC)
    os.write(fd, data)
    return fd


def _table(tmp_path, capacity: int) -> tuple[ObjectTable, list[tuple[ObjectEntry, int, str]]]:
    table = ObjectTable(capacity, str(tmp_path))
    queued: list[tuple[ObjectEntry, int, str]] = []
    table.spill_later = lambda entry, fd, path: queued.append((entry, fd, path))
    return table, queued


def test_a_full_store_hands_its_victim_to_the_spill_thread_and_serves_it_meanwhile(tmp_path) -> None:
    table, queued = _table(tmp_path, capacity=200)
    table.seal(b"a" * 16, _segment(b"A" * 100), 100, 0, b"owner", [])
    table.seal(b"b" * 16, _segment(b"B" * 100), 100, 0, b"owner", [])
    table.seal(b"c" * 16, _segment(b"C" * 100), 100, 0, b"owner", [])  # needs room: a goes
    (entry, fd, path), = queued
    assert entry.object_id == b"a" * 16 and entry.spilling and table.used_bytes == 200
    assert not os.path.exists(path)  # nothing written under the lock
    assert os.pread(table.wait(entry.object_id, lambda *_: None).fd, 100, 0) == b"A" * 100
    assert _write_file(fd, path, entry.size)
    os.close(fd)
    table.finish_spill(entry, path, ok=True)
    assert entry.fd == -1 and entry.spilled_path == path and not entry.spilling
    restored = table.wait(entry.object_id, lambda *_: None)  # read back, bit-exact
    assert os.pread(restored.fd, 100, 0) == b"A" * 100
    table.close()


def test_an_object_freed_while_it_is_written_leaves_no_file(tmp_path) -> None:
    table, queued = _table(tmp_path, capacity=100)
    table.seal(b"a" * 16, _segment(b"A" * 100), 100, 0, b"owner", [])
    table.seal(b"b" * 16, _segment(b"B" * 100), 100, 0, b"owner", [])
    (entry, fd, path), = queued
    table.remove_ref(entry.object_id, b"owner")  # freed before the write finished
    assert table.spilled_bytes == 0
    assert _write_file(fd, path, entry.size)
    os.close(fd)
    table.finish_spill(entry, path, ok=True)
    assert not os.path.exists(path)
    table.close()

"""The shared-memory store with real processes: zero-copy views stay valid while held, a
dead reader's pins go with it, a full store spills or says what it holds, spilled
objects come back bit-exactly, and nothing is left behind."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import psutil
import pytest

import ember
from ember.cli import format_memory
from ember.exceptions import ObjectStoreFullError
from conftest import assert_no_leaked_processes, process_gone, wait_for

MiB = 1 << 20


def _stats() -> dict:
    return ember.object_store_stats()


@pytest.fixture
def small_store(monkeypatch):
    """A 64 MiB store that waits 1 s (not 10) for readers before it reports it is full,
    with at most 32 MiB of spill file."""
    monkeypatch.setenv("EMBER_STORE_FULL_WAIT_S", "1")
    monkeypatch.setenv("EMBER_MAX_SPILL_BYTES", str(32 * MiB))
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=1, object_store_memory=64 * MiB)
    yield info
    ember.shutdown()
    assert_no_leaked_processes()


@ember.remote
class Reader:
    """Keeps the value of a ref it was given (a zero-copy view of the store)."""

    def hold(self, refs: list) -> int:
        self.value = ember.get(refs[0])
        return os.getpid()

    def intact(self, fill: int) -> bool:
        return bool((self.value == fill).all())


@ember.remote
def digest(array: np.ndarray) -> str:
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(array.tobytes(), digest_size=16).hexdigest()


@pytest.mark.timeout(60)
def test_a_held_view_stays_valid_after_its_object_is_freed_and_memory_is_reused(fresh_ember):
    ref = ember.put(np.full(8 * MiB, 7, dtype=np.uint8))
    view = ember.get(ref)
    reader = Reader.remote()
    ember.get(reader.hold.remote([ref]))  # a worker holds a view of the same block
    del ref  # the owner drops it: freed at the node, but two processes still map it
    wait_for(lambda: _stats()["num_objects"] == 0, what="the dropped object to be freed")
    for fill in range(1, 30):  # reuse every free block of the store many times over
        ember.get(ember.put(np.full(8 * MiB, fill, dtype=np.uint8)))
    assert (view == 7).all()
    assert ember.get(reader.intact.remote(7))
    assert _stats()["pinned_bytes"] >= 8 * MiB
    del view
    ember.kill(reader)
    wait_for(lambda: _stats()["used_bytes"] == 0, what="the block to be freed with its last view")


@pytest.mark.timeout(60)
def test_a_reader_killed_with_sigkill_releases_its_pins(fresh_ember):
    ref = ember.put(np.full(16 * MiB, 3, dtype=np.uint8))
    reader = Reader.remote()
    pid = ember.get(reader.hold.remote([ref]))
    del ref
    wait_for(lambda: _stats()["num_objects"] == 0 and _stats()["pinned_bytes"] >= 16 * MiB,
             what="the object to be freed while the reader still maps it")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _stats()["pinned_bytes"] == 0 and _stats()["used_bytes"] == 0,
             what="the dead reader's pin and block to be released")
    assert int(ember.get(ember.put(np.ones(MiB, dtype=np.uint8))).sum()) == MiB


@pytest.mark.timeout(60)
def test_a_store_full_of_pinned_objects_raises_with_the_sizes_and_keeps_working(small_store):
    views = [ember.get(ember.put(np.ones(16 * MiB, dtype=np.uint8))) for _ in range(3)]
    with pytest.raises(ObjectStoreFullError) as info:
        ember.put(np.zeros(32 * MiB, dtype=np.uint8))
    error = info.value
    assert error.size_bytes >= 32 * MiB and error.capacity_bytes == 64 * MiB
    assert error.pinned_bytes >= 48 * MiB
    assert "mapped by readers" in str(error) and "object_store_memory" in str(error)
    text = format_memory(_stats())
    assert "pinned" in text and "free" in text
    del views
    assert int(ember.get(ember.put(np.ones(32 * MiB, dtype=np.uint8)))[-1]) == 1


@pytest.mark.timeout(60)
def test_a_full_spill_file_raises_a_typed_error_naming_it(small_store):
    size = 16 * MiB - 8 * 1024  # with its header, one object is exactly a quarter of the store
    kept = [ember.put(np.full(size, i, dtype=np.uint8)) for i in range(5)]  # one spills
    assert _stats()["spilled_bytes"] >= size
    with pytest.raises(ObjectStoreFullError, match="spill file is full") as info:
        for i in range(5):
            kept.append(ember.put(np.full(size, i, dtype=np.uint8)))
    assert len(kept) == 6  # the second spill filled the 32 MiB spill file
    assert info.value.spill_capacity_bytes == 32 * MiB
    del kept[2:]  # room again: the spilled ones come back
    assert [int(ember.get(r)[0]) for r in kept] == [0, 1]


@pytest.mark.timeout(90)
def test_spilled_objects_come_back_bit_exactly(fresh_ember):
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, 24 * MiB, dtype=np.uint8) for _ in range(16)]  # 384 MiB
    digests = [_digest(a) for a in arrays]
    refs = [ember.put(a) for a in arrays]
    del arrays
    assert _stats()["spilled_bytes"] > 0
    assert [_digest(ember.get(r)) for r in refs] == digests  # the driver restores them
    assert ember.get([digest.remote(r) for r in refs]) == digests  # and workers do


_DRIVER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    import ember

    info = ember.init(num_cpus=1, object_store_memory=64 << 20)
    refs = [ember.put(np.full(16 << 20, i, dtype=np.uint8)) for i in range(6)]  # spills
    view = ember.get(refs[0])

    @ember.remote
    def hold(refs):
        global kept
        kept = ember.get(refs[0])
        return os.getpid()

    worker = ember.get(hold.remote([refs[1]]))
    print(json.dumps({"session_dir": info["session_dir"], "worker": worker,
                      "spilled_bytes": ember.object_store_stats()["spilled_bytes"]}), flush=True)
    time.sleep(600)
""")


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


@pytest.mark.timeout(90)
def test_nothing_is_left_after_every_process_is_killed_with_sigkill(tmp_path):
    """No /dev/shm entry and no spilled bytes on disk, although nobody could clean up."""
    before = _shm()
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, cwd=str(tmp_path),
                            start_new_session=True)
    session_dir = None
    try:
        state = json.loads(proc.stdout.readline())
        session_dir = state["session_dir"]
        assert state["spilled_bytes"] > 0
        everyone = [psutil.Process(proc.pid)] + psutil.Process(proc.pid).children(recursive=True)
        assert state["worker"] in {p.pid for p in everyone}
        for process in everyone:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        proc.wait(10)
        wait_for(lambda: all(process_gone(p.pid) for p in everyone), timeout_s=20,
                 what="every process of the killed cluster to exit")
        assert _shm() - before == set()
        spill_dir = os.path.join(session_dir, "spill")
        leftover = [os.path.join(d, f) for d, _, files in os.walk(spill_dir) for f in files]
        assert leftover == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        if session_dir is not None:
            subprocess.run(["rm", "-rf", session_dir], check=False)


@pytest.mark.timeout(60)
def test_nothing_is_left_in_dev_shm_after_shutdown():
    before = _shm()
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=1, object_store_memory=64 * MiB)
    refs = [ember.put(np.full(16 * MiB, i, dtype=np.uint8)) for i in range(6)]  # spills
    assert _stats()["spilled_bytes"] > 0
    del refs
    ember.shutdown()
    assert not os.path.exists(info["session_dir"])
    assert _shm() - before == set()
    assert_no_leaked_processes()

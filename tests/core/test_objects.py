"""Objects: put/get, zero-copy reads, lifetimes and memory, the store's bound, wait."""

from __future__ import annotations

import gc
import time
from typing import Any

import numpy as np
import pytest

import ember

from conftest import wait_for
from ember.exceptions import GetTimeoutError, ObjectStoreFullError, TaskError

pytestmark = pytest.mark.timeout(30)

MiB = 1 << 20



def _address(arr: np.ndarray) -> int:
    return arr.__array_interface__["data"][0]


def _used_bytes() -> int:
    return ember.object_store_stats()["used_bytes"]


@ember.remote
def identity(value: Any) -> Any:
    return value


@ember.remote
def make_array(n_bytes: int, fill: int) -> np.ndarray:
    return np.full(n_bytes, fill, dtype=np.uint8)


@ember.remote
def array_info(arr: np.ndarray) -> tuple:
    return arr.flags.writeable, int(arr.sum()), arr.shape


@ember.remote
def get_nested(box: list) -> Any:
    return ember.get(box[0])


@ember.remote
def blocked_until(path: str) -> str:
    import os
    deadline = time.monotonic() + 20
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.005)
    return path


# --- put and get ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1, "text", None, {"a": [1, 2]}, b"x" * (200 * 1024)],
                         ids=["int", "str", "none", "dict", "200KiB-bytes"])
def test_put_then_get_returns_an_equal_value(ember_local, value) -> None:
    assert ember.get(ember.put(value)) == value


def test_get_of_a_stored_array_is_a_read_only_view_not_a_copy(ember_local) -> None:
    """Two gets of one stored array map the same shared memory: same buffer address."""
    arr = np.arange(4 * MiB // 8, dtype=np.float64)
    ref = ember.put(arr)
    first, second = ember.get(ref), ember.get(ref)
    np.testing.assert_array_equal(first, arr)
    assert not first.flags.writeable and not second.flags.writeable
    assert _address(first) == _address(second)
    assert _address(first) != _address(arr)
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    copy = first.copy()
    copy[0] = 1.0  # copying is the way to mutate
    assert copy[0] == 1.0


def test_arrays_returned_by_tasks_are_read_only_views(ember_local) -> None:
    ref = make_array.remote(2 * MiB, 7)
    first, second = ember.get(ref), ember.get(ref)
    assert not first.flags.writeable
    assert _address(first) == _address(second)
    assert int(first[-1]) == 7


def test_tasks_read_a_put_array_without_copying_it(ember_local) -> None:
    ref = ember.put(np.ones(MiB, dtype=np.uint8))
    infos = ember.get([array_info.remote(ref) for _ in range(4)])
    assert infos == [(False, MiB, (MiB,))] * 4


def test_put_of_an_object_ref_is_refused(ember_local) -> None:
    with pytest.raises(TypeError, match="pass the ref itself"):
        ember.put(ember.put(1))


# --- lifetimes and memory ---------------------------------------------------------------


def test_memory_returns_after_refs_are_dropped(ember_local) -> None:
    """Objects are freed when the last ref goes; used_bytes falls back to where it was."""
    gc.collect()
    baseline = wait_for(lambda: _stable_used_bytes(), what="a stable store") - 1
    refs = [ember.put(np.zeros(8 * MiB, dtype=np.uint8)) for _ in range(4)]
    refs.append(make_array.remote(8 * MiB, 1))
    ember.get(refs[-1])
    ids = {ref.hex() for ref in refs}
    assert ids <= _stored_ids()
    del refs
    gc.collect()
    wait_for(lambda: not ids & _stored_ids(), what="the objects to be freed")
    wait_for(lambda: _used_bytes() <= baseline + MiB, what="the store to shrink back")


def _stored_ids() -> set[str]:
    return {oid for oid, _size, _holders in ember.object_store_stats()["largest"]}


def _stable_used_bytes() -> int | None:
    first = _used_bytes()
    ember.get(identity.remote(None))
    return first + 1 if _used_bytes() == first else None  # +1: 0 is a valid answer


def test_a_value_read_by_get_keeps_its_memory_alive(ember_local) -> None:
    """The array returned by get maps the object: reading it after del ref is safe."""
    ref = ember.put(np.full(4 * MiB, 3, dtype=np.uint8))
    arr = ember.get(ref)
    del ref
    gc.collect()
    ember.get(identity.remote(None))
    assert int(arr[::4096].sum()) == 3 * len(arr[::4096])


def test_an_object_lives_while_another_object_refers_to_it(ember_local) -> None:
    inner = ember.put(np.arange(200_000))
    outer = ember.put([inner])
    del inner
    gc.collect()
    ember.get(identity.remote(None))
    (got,) = ember.get(outer)
    assert int(ember.get(got)[-1]) == 199_999
    assert int(ember.get(get_nested.remote(ember.get(outer)))[-1]) == 199_999


def test_an_object_lives_while_an_actor_holds_a_ref_to_it(ember_local) -> None:
    @ember.remote
    class Keeper:
        def keep(self, box: list) -> None:
            self.ref = box[0]

        def read(self) -> int:
            return int(ember.get(self.ref).sum())

    keeper = Keeper.remote()
    ref = ember.put(np.ones(300_000, dtype=np.int64))
    ember.get(keeper.keep.remote([ref]))
    del ref
    gc.collect()
    ember.get(identity.remote(None))
    assert ember.get(keeper.read.remote()) == 300_000


def test_a_result_nobody_references_is_freed_when_it_arrives(ember_local) -> None:
    gc.collect()
    baseline = wait_for(lambda: _stable_used_bytes(), what="a stable store") - 1
    make_array.remote(16 * MiB, 2)  # the ref is dropped at once
    ember.get(identity.remote(None))
    wait_for(lambda: _used_bytes() <= baseline + MiB, what="the unreferenced result to be freed")


# --- the store's bound ------------------------------------------------------------------


def test_an_object_bigger_than_the_store_fails_and_the_store_keeps_working(fresh_ember) -> None:
    capacity = ember.object_store_stats()["capacity_bytes"]
    with pytest.raises(ObjectStoreFullError) as info:
        ember.put(np.zeros(capacity + MiB, dtype=np.uint8))
    assert info.value.capacity_bytes == capacity
    assert "object_store_memory" in str(info.value)
    assert ember.get(ember.put(np.ones(MiB)))[0] == 1.0
    assert ember.get(identity.remote(5)) == 5


def test_a_task_result_bigger_than_the_store_fails_the_task(fresh_ember) -> None:
    """As in Ray, the task's error wraps the store's error (an ember error is not mixed in)."""
    capacity = ember.object_store_stats()["capacity_bytes"]
    with pytest.raises(TaskError, match="make_array") as info:
        ember.get(make_array.remote(capacity + MiB, 1), timeout=20)
    assert isinstance(info.value.cause, ObjectStoreFullError)
    assert int(ember.get(make_array.remote(MiB, 1)).sum()) == MiB


# --- wait -------------------------------------------------------------------------------


def test_wait_returns_ready_refs_in_the_order_they_were_passed(ember_local, tmp_path) -> None:
    gate = str(tmp_path / "go")
    slow = blocked_until.remote(gate)
    fast = [identity.remote(i) for i in range(3)]
    ember.get(fast)
    refs = [fast[2], slow, fast[0], fast[1]]
    ready, not_ready = ember.wait(refs, num_returns=3, timeout=10)
    assert ready == [fast[2], fast[0], fast[1]]
    assert not_ready == [slow]
    open(gate, "w").close()
    ready, not_ready = ember.wait(refs, num_returns=4, timeout=20)
    assert ready == refs and not_ready == []


def test_wait_returns_at_most_num_returns_refs(ember_local) -> None:
    refs = [identity.remote(i) for i in range(5)]
    ember.get(refs)
    ready, not_ready = ember.wait(refs, num_returns=2)
    assert ready == refs[:2] and not_ready == refs[2:]


def test_wait_with_a_timeout_returns_what_is_ready(ember_local, tmp_path) -> None:
    slow = blocked_until.remote(str(tmp_path / "never"))
    done = identity.remote(1)
    ember.get(done)
    start = time.monotonic()
    ready, not_ready = ember.wait([slow, done], num_returns=2, timeout=0.3)
    elapsed = time.monotonic() - start
    assert ready == [done] and not_ready == [slow]
    assert 0.25 <= elapsed < 5
    ready, not_ready = ember.wait([slow], timeout=0)
    assert ready == [] and not_ready == [slow]
    ember.cancel(slow)


def test_wait_with_num_returns_above_the_number_of_refs_is_an_error(ember_local) -> None:
    refs = [identity.remote(1)]
    with pytest.raises(ValueError, match="num_returns"):
        ember.wait(refs, num_returns=2)
    assert ember.wait(refs, num_returns=1, timeout=10)[0] == refs


def test_wait_accepts_fetch_local(ember_local) -> None:
    ref = make_array.remote(MiB, 1)
    ready, _ = ember.wait([ref], fetch_local=False, timeout=10)
    assert ready == [ref]
    assert int(ember.get(ref).sum()) == MiB


# --- get timeout ------------------------------------------------------------------------


def test_get_with_a_timeout_raises_get_timeout_error(ember_local, tmp_path) -> None:
    slow = blocked_until.remote(str(tmp_path / "never"))
    start = time.monotonic()
    with pytest.raises(GetTimeoutError) as info:
        ember.get(slow, timeout=0.3)
    assert 0.25 <= time.monotonic() - start < 5
    assert isinstance(info.value, TimeoutError)
    with pytest.raises(TimeoutError):
        ember.get([identity.remote(1), slow], timeout=0)
    ember.cancel(slow)
    assert ember.get(identity.remote(2)) == 2

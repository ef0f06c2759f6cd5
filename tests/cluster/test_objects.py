"""Large objects move between nodes intact."""

from __future__ import annotations

import functools
import hashlib

import numpy as np

import ember
from conftest import wait_for

_SIZE_BYTES = 200 << 20
_TIMEOUT_S = 60


def _payload() -> np.ndarray:
    """200 MB of seeded random bytes: every chunk differs, so a misplaced chunk shows."""
    return np.random.default_rng(1234).integers(0, 256, size=_SIZE_BYTES, dtype=np.uint8)


@ember.remote(num_cpus=1)
def make_payload() -> tuple[str, np.ndarray]:
    return ember.get_runtime_context().get_node_id(), _payload()


@ember.remote(num_cpus=1)
def digest(array: np.ndarray) -> tuple[str, str, int]:
    return ember.get_runtime_context().get_node_id(), hashlib.blake2b(array).hexdigest(), array.nbytes


@functools.lru_cache(maxsize=1)
def _payload_digest() -> str:
    return hashlib.blake2b(_payload()).hexdigest()


def test_an_array_returned_on_node_b_reaches_the_driver_bit_for_bit(three_nodes) -> None:
    node, array = ember.get(make_payload.options(resources={"node_b": 1}).remote(), timeout=_TIMEOUT_S)
    assert three_nodes.role_of(node) == "b"
    assert array.dtype == np.uint8 and array.shape == (_SIZE_BYTES,)
    assert np.array_equal(array, _payload())


def test_an_array_put_by_the_driver_reaches_a_task_on_node_c_bit_for_bit(three_nodes) -> None:
    array = _payload()
    ref = ember.put(array)
    node, remote_digest, nbytes = ember.get(digest.options(resources={"node_c": 1}).remote(ref),
                                            timeout=_TIMEOUT_S)
    assert three_nodes.role_of(node) == "c"
    assert nbytes == _SIZE_BYTES
    assert remote_digest == _payload_digest()


def test_an_object_made_on_node_b_is_read_by_a_task_on_node_c(three_nodes) -> None:
    """Neither end is the driver's node: the ref only passes through the driver."""
    ref = make_payload.options(resources={"node_b": 1}).remote()

    @ember.remote(num_cpus=1)
    def digest_second(pair: tuple[str, np.ndarray]) -> tuple[str, str, str]:
        return (pair[0], ember.get_runtime_context().get_node_id(), hashlib.blake2b(pair[1]).hexdigest())

    maker, reader, remote_digest = ember.get(digest_second.options(resources={"node_c": 1}).remote(ref),
                                             timeout=_TIMEOUT_S)
    assert (three_nodes.role_of(maker), three_nodes.role_of(reader)) == ("b", "c")
    assert remote_digest == _payload_digest()


@ember.remote(num_cpus=1)
def pulled_here(_wait: list) -> int:
    """Bytes this node has copied from other nodes so far."""
    return ember.object_store_stats()["pulled_bytes"]


@ember.remote(num_cpus=1)
def objects_here(_wait: list) -> list[str]:
    return [o["object_id"] for o in ember.object_store_stats()["largest_objects"]]


@ember.remote(num_cpus=1)
def digest_of_nested(refs: list) -> str:
    return hashlib.blake2b(ember.get(refs[0])[1]).hexdigest()


def test_several_tasks_reading_one_remote_object_transfer_it_once(three_nodes) -> None:
    """Two tasks on node c ask for a 200 MB array that lives on node b at the same time:
    the second request joins the first pull (or finds its copy), so node c copies it once."""
    on_c = {"resources": {"node_c": 0.01}}
    ref = make_payload.options(resources={"node_b": 1}).remote()
    ember.wait([ref])
    before = ember.get(pulled_here.options(**on_c).remote([]), timeout=_TIMEOUT_S)
    digests = ember.get([digest_of_nested.options(**on_c).remote([ref]) for _ in range(2)],
                        timeout=_TIMEOUT_S)
    assert digests == [hashlib.blake2b(ember.get(ref)[1]).hexdigest()] * 2
    pulled = ember.get(pulled_here.options(**on_c).remote([]), timeout=_TIMEOUT_S) - before
    # The array once, plus each task's small argument list (a value holding a ref is stored).
    assert _SIZE_BYTES <= pulled < _SIZE_BYTES + (1 << 20)
    # Freed at its home, the object goes from node c too (not only when c runs out of room).
    object_id = ref.hex()
    assert object_id in ember.get(objects_here.options(**on_c).remote([]), timeout=_TIMEOUT_S)
    del ref
    wait_for(lambda: object_id not in ember.get(objects_here.options(**on_c).remote([]),
                                                timeout=_TIMEOUT_S),
             timeout_s=20, what="node c's copy of the freed object to go")

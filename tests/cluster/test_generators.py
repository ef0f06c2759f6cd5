"""Generators across nodes: a generator task (or actor method) on another node streams its
values to the driver on the head; small ones travel inline over TCP, large ones stay in
that node's store and are pulled when got."""

from __future__ import annotations

import numpy as np
import pytest

import ember

pytestmark = pytest.mark.timeout(120)

_TIMEOUT_S = 30


@ember.remote
def where_and_what(n: int, nbytes: int):
    node = ember.get_runtime_context().get_node_id()
    for i in range(n):
        yield node, np.full(nbytes, i, dtype=np.uint8)


@ember.remote
class Remote:
    def count(self, n: int):
        yield from range(n)


@pytest.mark.parametrize("nbytes", [16, 1 << 20], ids=["inline", "stored"])
def test_a_generator_on_another_node_streams_to_the_driver(three_nodes, nbytes: int) -> None:
    gen = where_and_what.options(resources={"node_c": 0.5},
                                 _generator_backpressure_num_objects=2).remote(4, nbytes)
    values = [ember.get(ref, timeout=_TIMEOUT_S) for ref in gen]
    assert {three_nodes.role_of(node) for node, _ in values} == {"c"}
    assert [int(array[0]) for _, array in values] == [0, 1, 2, 3]
    assert all(array.nbytes == nbytes for _, array in values)


def test_an_actor_generator_on_another_node_streams_to_the_driver(three_nodes) -> None:
    actor = Remote.options(resources={"node_b": 0.5}).remote()
    assert [ember.get(r, timeout=_TIMEOUT_S) for r in actor.count.remote(5)] == list(range(5))
    ember.kill(actor)

"""Node loss with work in flight: results rebuilt by lineage, actors restarted elsewhere."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import ember
from ember.exceptions import ObjectLostError
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .conftest import Cluster, wait_for


@ember.remote
def make(seed: int) -> tuple[np.ndarray, str]:
    return np.full(2_000_000, seed, dtype=np.int64), ember.get_runtime_context().get_node_id()


def _kill_node(cluster: Cluster, role: str) -> None:
    os.kill(cluster.pids[role], signal.SIGKILL)
    wait_for(lambda: not any(n["NodeID"] == cluster.node_ids[role] and n["Alive"] for n in ember.nodes()),
             what=f"node {role} to be reported dead")


@pytest.mark.timeout(90)
def test_a_result_whose_node_died_is_rebuilt_by_rerunning_its_task(fresh_three_nodes: Cluster) -> None:
    """The 16 MB result lives only on node b; b dies; get re-runs `make` on another node."""
    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    ref = make.options(scheduling_strategy=on_b).remote(7)
    ember.wait([ref], fetch_local=False, timeout=30)
    _kill_node(fresh_three_nodes, "b")
    array, node = ember.get(ref, timeout=60)
    assert node != fresh_three_nodes.node_ids["b"]
    assert array.shape == (2_000_000,) and int(array.min()) == int(array.max()) == 7


@pytest.mark.timeout(90)
def test_a_put_whose_node_died_raises_object_lost(fresh_three_nodes: Cluster) -> None:
    """A put has no task to re-run: its loss is reported, typed, instead of hanging."""
    @ember.remote(resources={"node_b": 1})
    def put_on_b() -> list:
        return [ember.put(np.ones(1_000_000))]

    [inner] = ember.get(put_on_b.remote(), timeout=30)
    _kill_node(fresh_three_nodes, "b")
    with pytest.raises(ObjectLostError):
        ember.get(inner, timeout=30)


@pytest.mark.timeout(90)
def test_an_actor_on_a_dead_node_restarts_on_another(fresh_three_nodes: Cluster) -> None:
    @ember.remote(max_restarts=1)
    class Where:
        def node(self) -> str:
            return ember.get_runtime_context().get_node_id()

    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    actor = Where.options(scheduling_strategy=on_b).remote()
    assert ember.get(actor.node.remote(), timeout=30) == fresh_three_nodes.node_ids["b"]
    _kill_node(fresh_three_nodes, "b")
    assert ember.get(actor.node.remote(), timeout=30) != fresh_three_nodes.node_ids["b"]

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


@ember.remote
def double(pair: tuple[np.ndarray, str]) -> tuple[np.ndarray, str]:
    return pair[0] * 2, ember.get_runtime_context().get_node_id()


@pytest.mark.timeout(120)
def test_lineage_is_rebuilt_recursively_when_inputs_were_lost_too(fresh_three_nodes: Cluster) -> None:
    """x and y = double(x) both live only on node b; after b dies, get(y) re-runs double,
    whose input x is gone as well, so x is rebuilt first."""
    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    x = make.options(scheduling_strategy=on_b).remote(3)
    y = double.options(scheduling_strategy=on_b).remote(x)
    ember.wait([y], fetch_local=False, timeout=30)
    _kill_node(fresh_three_nodes, "b")
    array, node = ember.get(y, timeout=90)
    assert node != fresh_three_nodes.node_ids["b"]
    assert int(array.min()) == int(array.max()) == 6


@pytest.mark.timeout(120)
def test_a_job_losing_a_node_midway_still_returns_every_result(fresh_three_nodes: Cluster) -> None:
    """Tasks spread over three nodes; node c dies while they run; every result comes back
    (running ones are retried, finished ones living on c are rebuilt by lineage)."""
    @ember.remote(num_cpus=1, max_retries=5)
    def square_slowly(i: int) -> np.ndarray:
        import time
        time.sleep(0.05)
        return np.full(50_000, i * i, dtype=np.int64)  # 400 KB: stored, not inline

    refs = [square_slowly.options(scheduling_strategy="SPREAD").remote(i) for i in range(60)]
    ember.wait(refs, num_returns=20, fetch_local=False, timeout=60)
    _kill_node(fresh_three_nodes, "c")
    values = ember.get(refs, timeout=100)
    assert [int(v[0]) for v in values] == [i * i for i in range(60)]

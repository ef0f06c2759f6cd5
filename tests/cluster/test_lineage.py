"""Node loss with work in flight: results rebuilt by lineage (by their owner, also for the
processes that borrowed them), actors restarted elsewhere, and typed errors naming the lost
node and the owner when an object cannot come back."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

import ember
from ember.exceptions import ObjectLostError, OwnerDiedError
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
def test_an_object_whose_owner_died_with_its_node_raises_owner_died(fresh_three_nodes: Cluster) -> None:
    """A put on node b is owned by the worker that made it: node b takes both the object and
    its owner, so the driver that borrowed it gets OwnerDiedError naming the node."""
    @ember.remote(resources={"node_b": 1})
    def put_on_b() -> list:
        return [ember.put(np.ones(1_000_000))]

    [inner] = ember.get(put_on_b.remote(), timeout=30)
    _kill_node(fresh_three_nodes, "b")
    b_port = fresh_three_nodes.tcp_addresses["b"].rsplit(":", 1)[1]
    with pytest.raises(OwnerDiedError, match=f"owner's node .*:{b_port}"):
        ember.get(inner, timeout=30)


@ember.remote(resources={"node_c": 1})
class Maker:
    """Lives on node c and makes results on node b: it owns them, the driver borrows them."""

    def make_on_b(self, node_b: str, count: int, max_retries: int = 3) -> list:
        on_b = NodeAffinitySchedulingStrategy(node_b, soft=True)
        refs = [make.options(scheduling_strategy=on_b, max_retries=max_retries).remote(i)
                for i in range(count)]
        ember.wait(refs, num_returns=count, fetch_local=False, timeout=30)
        return refs  # the actor keeps no ref: it only shared them


@pytest.mark.timeout(120)
def test_a_result_an_actor_owns_is_rebuilt_by_it_for_the_driver_that_borrowed_it(
        fresh_three_nodes: Cluster) -> None:
    """Node b held the only copies of two results owned by an actor on node c; after b dies
    the driver reads one (get) and passes the other to a task, and the actor re-runs both."""
    maker = Maker.remote()
    first, second = ember.get(maker.make_on_b.remote(fresh_three_nodes.node_ids["b"], 2), timeout=60)
    _kill_node(fresh_three_nodes, "b")
    array, node = ember.get(first, timeout=60)
    assert int(array[0]) == 0 and node != fresh_three_nodes.node_ids["b"]
    doubled, _node = ember.get(double.remote(second), timeout=60)
    assert int(doubled.min()) == int(doubled.max()) == 2


@pytest.mark.timeout(90)
def test_an_object_its_living_owner_cannot_rebuild_names_the_node_and_the_owner(
        fresh_three_nodes: Cluster) -> None:
    """The actor's task ran with max_retries=0, so there is nothing to re-run: the driver's
    ObjectLostError names the lost node, the owner, and why."""
    maker = Maker.remote()
    [lost] = ember.get(maker.make_on_b.remote(fresh_three_nodes.node_ids["b"], 1, 0), timeout=60)
    _kill_node(fresh_three_nodes, "b")
    b_port = fresh_three_nodes.tcp_addresses["b"].rsplit(":", 1)[1]
    with pytest.raises(ObjectLostError) as raised:
        ember.get(lost, timeout=60)
    assert not isinstance(raised.value, OwnerDiedError)
    message = str(raised.value)
    assert f":{b_port}" in message and "worker pid" in message and "max_retries=0" in message


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


@ember.remote(resources={"node_c": 1})
def first_value(refs: list) -> int:
    array, _node = ember.get(refs[0])
    return int(array[0])


@pytest.mark.timeout(90)
def test_a_task_reading_a_lost_object_the_driver_owns_has_the_driver_rebuild_it(
        fresh_three_nodes: Cluster) -> None:
    """The ref travels inside a list to a task on node c; its only copy died with node b;
    the task's get asks the driver (the owner, on the head), which re-runs `make`."""
    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    ref = make.options(scheduling_strategy=on_b).remote(4)
    ember.wait([ref], fetch_local=False, timeout=30)
    _kill_node(fresh_three_nodes, "b")
    assert ember.get(first_value.remote([ref]), timeout=60) == 4


@ember.remote(max_restarts=1, max_task_retries=1)
class Source:
    def block(self, seed: int) -> tuple[np.ndarray, str]:
        return np.full(2_000_000, seed, dtype=np.int64), ember.get_runtime_context().get_node_id()


@pytest.mark.timeout(120)
def test_an_actor_call_result_lost_with_its_node_is_rebuilt_by_calling_again(
        fresh_three_nodes: Cluster) -> None:
    """As in Ray, a method with max_task_retries is called again when its result is lost:
    here on the actor restarted on another node after node b died with both."""
    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    source = Source.options(scheduling_strategy=on_b).remote()
    ref = source.block.remote(9)
    ember.wait([ref], fetch_local=False, timeout=30)
    _kill_node(fresh_three_nodes, "b")
    array, node = ember.get(ref, timeout=90)
    assert node != fresh_three_nodes.node_ids["b"]
    assert int(array.min()) == int(array.max()) == 9


@ember.remote
def make_slowly(seed: int) -> np.ndarray:
    import time
    time.sleep(1.5)
    return np.full(1_000_000, seed, dtype=np.int64)


@pytest.mark.timeout(90)
def test_a_get_timeout_holds_while_a_lost_result_is_rebuilt(fresh_three_nodes: Cluster) -> None:
    """The re-run takes 1.5 s: a get with a shorter timeout says the object is being
    rebuilt instead of blocking past its timeout, and a later get has the value."""
    on_b = NodeAffinitySchedulingStrategy(fresh_three_nodes.node_ids["b"], soft=True)
    ref = make_slowly.options(scheduling_strategy=on_b).remote(5)
    ember.wait([ref], fetch_local=False, timeout=30)
    _kill_node(fresh_three_nodes, "b")
    with pytest.raises(ember.exceptions.GetTimeoutError, match="still being rebuilt"):
        ember.get(ref, timeout=0.2)
    assert int(ember.get(ref, timeout=60)[0]) == 5

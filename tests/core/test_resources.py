"""Resources: what the cluster reports, GPUs per task, fractional packing, infeasible requests."""

from __future__ import annotations

import asyncio
import os
import time
import warnings
from typing import Any, Callable, Iterator

import pytest

import ember
from conftest import assert_no_leaked_processes, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[dict]:
    """A cluster that declares 2 GPUs (no real GPU needed) and a custom resource."""
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=2, num_gpus=2, resources={"accel": 2},
                      object_store_memory=128 << 20)
    yield info
    ember.shutdown()
    assert_no_leaked_processes()



@ember.remote(num_cpus=0)
class Rendezvous:
    """Calls to ``arrive(n)`` return once n callers arrived: proves they overlap in time."""

    def __init__(self) -> None:
        self.arrived = 0
        self.event = asyncio.Event()

    async def arrive(self, n: int) -> None:
        self.arrived += 1
        if self.arrived >= n:
            self.event.set()
        await asyncio.wait_for(self.event.wait(), 15)


@ember.remote(num_cpus=0)
def gpu_view(rendezvous: Any = None, n: int = 0) -> tuple[list[int], str]:
    if rendezvous is not None:
        ember.get(rendezvous.arrive.remote(n))
    return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@ember.remote
def add(x: int, y: int = 0) -> int:
    return x + y


@ember.remote
class GpuHolder:
    def view(self) -> tuple[list[int], str]:
        return ember.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


# --- what the cluster reports -----------------------------------------------------------


def test_cluster_resources_report_what_init_declared(gpu_cluster) -> None:
    total = ember.cluster_resources()
    assert total["CPU"] == 2 and total["GPU"] == 2 and total["accel"] == 2
    assert total["object_store_memory"] == 128 << 20
    assert total["memory"] > 0


def test_nodes_lists_the_live_node_with_its_resources(gpu_cluster) -> None:
    nodes = ember.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True
    assert node["NodeID"] == ember.get_runtime_context().get_node_id()
    assert node["Resources"]["CPU"] == 2 and node["Resources"]["GPU"] == 2


def test_available_resources_drop_while_a_task_holds_them(gpu_cluster, tmp_path) -> None:
    @ember.remote(num_cpus=1, num_gpus=1, resources={"accel": 1})
    def hold_until(path: str) -> None:
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)

    wait_for(lambda: ember.available_resources().get("GPU") == 2, what="all GPUs to be free")
    gate = str(tmp_path / "go")
    ref = hold_until.remote(gate)
    held = wait_for(lambda: _available_if(lambda a: a.get("GPU") == 1), what="the task's resources")
    assert held["CPU"] == 1 and held["accel"] == 1
    open(gate, "w").close()
    ember.get(ref)
    wait_for(lambda: _available_if(lambda a: a.get("GPU") == 2 and a.get("CPU") == 2
                                    and a.get("accel") == 2), what="the resources to come back")


def _available_if(check: Callable[[dict], bool]) -> dict | None:
    available = ember.available_resources()
    return available if check(available) else None


# --- GPUs -------------------------------------------------------------------------------


def test_a_task_without_gpus_sees_none(gpu_cluster) -> None:
    ids, visible = ember.get(gpu_view.remote())
    assert ids == [] and visible == ""


def test_a_gpu_task_sees_exactly_its_gpu(gpu_cluster) -> None:
    ids, visible = ember.get(gpu_view.options(num_gpus=1).remote())
    assert len(ids) == 1
    assert visible == str(ids[0])


def test_a_two_gpu_task_sees_both_gpus(gpu_cluster) -> None:
    ids, visible = ember.get(gpu_view.options(num_gpus=2).remote())
    assert len(set(ids)) == 2
    assert visible == ",".join(str(i) for i in ids)


def test_concurrent_gpu_tasks_get_different_gpus(gpu_cluster) -> None:
    meet = Rendezvous.remote()
    views = ember.get([gpu_view.options(num_gpus=1).remote(meet, 2) for _ in range(2)], timeout=25)
    (ids_a, visible_a), (ids_b, visible_b) = views
    assert len(ids_a) == len(ids_b) == 1 and ids_a != ids_b
    assert visible_a == str(ids_a[0]) and visible_b == str(ids_b[0])


def test_fractional_gpu_tasks_pack_onto_one_gpu(gpu_cluster) -> None:
    """Two concurrent half-GPU tasks share one device; four use both, two per device."""
    meet = Rendezvous.remote()
    halves = ember.get([gpu_view.options(num_gpus=0.5).remote(meet, 2) for _ in range(2)], timeout=25)
    assert halves[0][0] == halves[1][0] and len(halves[0][0]) == 1
    meet = Rendezvous.remote()
    quarters = ember.get([gpu_view.options(num_gpus=0.5).remote(meet, 4) for _ in range(4)],
                         timeout=25)
    ids = [view[0][0] for view in quarters]
    assert sorted(ids.count(i) for i in set(ids)) == [2, 2]
    assert all(visible == str(gid[0]) for gid, visible in quarters)


def test_a_gpu_actor_holds_its_gpu_for_life(gpu_cluster) -> None:
    wait_for(lambda: ember.available_resources().get("GPU") == 2, what="all GPUs to be free")
    holder = GpuHolder.options(num_gpus=1).remote()
    ids, visible = ember.get(holder.view.remote())
    assert len(ids) == 1 and visible == str(ids[0])
    assert ember.get(holder.view.remote()) == (ids, visible)
    wait_for(lambda: ember.available_resources().get("GPU") == 1, what="the actor's GPU to be held")
    other, _ = ember.get(gpu_view.options(num_gpus=1).remote())
    assert other != ids
    ember.kill(holder)
    wait_for(lambda: ember.available_resources().get("GPU") == 2, what="the GPU to come back")


def test_custom_resources_are_scheduled(gpu_cluster) -> None:
    assert ember.get(add.options(resources={"accel": 2}).remote(1, 2)) == 3
    assert ember.get(add.options(memory=1 << 20).remote(3, 4)) == 7


# --- infeasible requests ----------------------------------------------------------------


def _warned(record: list, text: str) -> bool:
    return any(text in str(w.message) for w in record)


def test_an_infeasible_task_warns_instead_of_hanging(gpu_cluster) -> None:
    with pytest.warns(RuntimeWarning) as record:
        ref = add.options(num_gpus=3).remote(1)
        wait_for(lambda: _warned(record, "cannot be scheduled"), what="the infeasible warning")
        ready, not_ready = ember.wait([ref], timeout=0.5)
    assert ready == [] and not_ready == [ref]
    message = next(str(w.message) for w in record if "cannot be scheduled" in str(w.message))
    assert "'GPU': 3.0" in message and "'GPU': 2.0" in message  # the shape and the totals
    ember.cancel(ref)
    assert ember.get(add.remote(1)) == 1


def test_an_unknown_custom_resource_warns(gpu_cluster) -> None:
    with pytest.warns(RuntimeWarning, match="unobtainium") as record:
        ref = add.options(resources={"unobtainium": 1}).remote(1)
        wait_for(lambda: _warned(record, "unobtainium"), what="the infeasible warning")
    assert ember.wait([ref], timeout=0.2)[0] == []
    ember.cancel(ref)


def test_an_infeasible_actor_warns_with_its_class_name(gpu_cluster) -> None:
    with pytest.warns(RuntimeWarning, match="GpuHolder") as record:
        holder = GpuHolder.options(num_gpus=4).remote()
        ref = holder.view.remote()
        wait_for(lambda: _warned(record, "GpuHolder"), what="the infeasible warning")
    assert ember.wait([ref], timeout=0.2)[0] == []
    ember.kill(holder)
    assert ember.get(add.remote(2)) == 2


def test_a_request_that_only_has_to_wait_does_not_warn(gpu_cluster, tmp_path) -> None:
    @ember.remote(num_gpus=2)
    def hold_both(path: str) -> None:
        deadline = time.monotonic() + 20
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.005)

    gate = str(tmp_path / "go")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        first = hold_both.remote(gate)
        wait_for(lambda: ember.available_resources().get("GPU", 0) == 0, what="both GPUs held")
        second = gpu_view.options(num_gpus=1).remote()
        assert ember.wait([second], timeout=0.3)[0] == []
        open(gate, "w").close()
        ember.get([first, second], timeout=20)
    assert not _warned(record, "cannot be scheduled")

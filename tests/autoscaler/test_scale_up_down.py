"""End to end with the local provider: a burst that needs 3 nodes brings 2 more up, they
run the work, never more than max_workers exist, and they go after the idle timeout."""

from __future__ import annotations

import os
import threading
import time

import pytest

import ember
from conftest import wait_for

from .conftest import autoscaled_cluster

pytestmark = pytest.mark.timeout(240)

STORE = 64 << 20
CONFIG = {"cluster_name": "burst", "max_workers": 3, "idle_timeout_s": 2, "update_interval_s": 0.3,
          "provider": {"type": "local"}, "head": {"resources": {"CPU": 0, "object_store_memory": STORE}},
          "available_node_types": {"small": {"resources": {"CPU": 1, "object_store_memory": STORE},
                                             "min_workers": 1, "max_workers": 3}}}


@ember.remote(num_cpus=1)
def meet(rendezvous: str, expected: int) -> str:
    """Hold a CPU until ``expected`` of these run at once (a file each in ``rendezvous``):
    with 1-CPU nodes, that proves they run on ``expected`` different nodes."""
    node = ember.get_runtime_context().get_node_id()
    open(os.path.join(rendezvous, f"{node}-{os.getpid()}"), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(rendezvous)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return node


@ember.remote(num_cpus=1)
def short() -> str:
    time.sleep(0.3)
    return ember.get_runtime_context().get_node_id()


def test_a_burst_brings_nodes_up_within_max_workers_and_idle_ones_go(tmp_path) -> None:
    with autoscaled_cluster(CONFIG) as cluster:
        wait_for(lambda: len(cluster.workers()) == 1, timeout_s=60, what="min_workers=1 node to join")
        most = [0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                most[0] = max(most[0], len(cluster.workers()))
                stop.wait(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            rendezvous = tmp_path / "meet"
            rendezvous.mkdir()
            met = [meet.remote(str(rendezvous), 3) for _ in range(3)]
            extra = [short.remote() for _ in range(4)]  # demand beyond max_workers
            nodes = ember.get(met, timeout=120)
            assert len(set(nodes)) == 3, nodes
            ember.get(extra, timeout=120)
            report = cluster.report()
            assert sum(1 for n in report["nodes"] if n["status"] == "running") == 3, report
        finally:
            stop.set()
            sampler.join()
        assert most[0] == 3, f"worker nodes peaked at {most[0]} with max_workers=3"
        status = cluster.cli("status")
        assert "autoscaler (burst)" in status.stdout, status.stdout + status.stderr
        wait_for(lambda: len(cluster.workers()) == 1, timeout_s=60,
                 what="the two extra nodes to be removed after idle_timeout_s=2")
        assert "terminating node" in cluster.monitor_log()
        assert ember.get(short.remote(), timeout=60)  # the remaining node still works

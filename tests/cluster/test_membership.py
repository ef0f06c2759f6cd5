"""Membership under load: a saturated machine does not make the head declare nodes dead."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil
import pytest

import ember
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ._driver_on_node import cluster_with_driver_on_a_node
from .conftest import _read_nodes, wait_for

#: Busy processes per CPU: the node managers get a small share of a core, as on a machine
#: whose every core runs a training step.
_BUSY_PER_CPU = 3
_SATURATED_S = 6.0


@ember.remote(num_cpus=1)
def spin(seconds: float) -> int:
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


@pytest.mark.timeout(120)
def test_no_node_is_declared_dead_while_busy_processes_saturate_every_cpu() -> None:
    """The nodes' heartbeat threads and the head's membership loop compete with
    3 busy processes per core (and with busy tasks in the cluster's own workers); with
    the tests' short timeout (1.5 s, half the default) no node may be declared dead."""
    with cluster_with_driver_on_a_node(roles=("b", "c"), node_timeout_s="1.5") as cluster:
        busy = [subprocess.Popen([sys.executable, "-c", f"import time\nend = time.monotonic() + {_SATURATED_S}\n"
                                  "while time.monotonic() < end: pass"])
                for _ in range(_BUSY_PER_CPU * (os.cpu_count() or 2))]
        try:
            work = [spin.remote(_SATURATED_S / 2) for _ in range(4)]
            deadline = time.monotonic() + _SATURATED_S
            while time.monotonic() < deadline:
                dead = [n["NodeID"][:12] for n in ember.nodes() if not n["Alive"]]
                assert not dead, f"declared dead on a saturated machine: {dead}"
                time.sleep(0.1)
            assert all(n > 0 for n in ember.get(work, timeout=60))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        (head_session,) = [d for d, info in _read_nodes(cluster["tmpdir"]) if info["head"]]
        with open(os.path.join(head_session, "logs", "node_manager.log"), errors="replace") as f:
            assert "marked dead" not in f.read()


@ember.remote(num_cpus=1)
def stuck_on(frozen_node: str) -> str:
    """Hangs on the frozen node (as a task on a partitioned machine would); quick elsewhere."""
    here = ember.get_runtime_context().get_node_id()
    if here == frozen_node:
        time.sleep(600)
    return here


@pytest.mark.timeout(120)
def test_tasks_on_a_frozen_node_are_rescheduled_once_it_is_declared_dead() -> None:
    """SIGSTOP keeps the node's connections open, so its workers' channels never drop: the
    driver learns of the death from its node manager (NodeDead) and retries elsewhere."""
    with cluster_with_driver_on_a_node(roles=("b", "c"), node_timeout_s="1.5") as cluster:
        mine = ember.get_runtime_context().get_node_id()
        (other,) = [n for n in ember.nodes() if not n["IsHead"] and n["NodeID"] != mine]
        (pid,) = [info["pid"] for _d, info in _read_nodes(cluster["tmpdir"])
                  if info["tcp_address"].endswith(f":{other['NodeManagerPort']}")]
        on_other = NodeAffinitySchedulingStrategy(other["NodeID"], soft=True)
        refs = [stuck_on.options(scheduling_strategy=on_other).remote(other["NodeID"]) for _ in range(2)]
        manager = psutil.Process(pid)
        wait_for(lambda: len(manager.children(recursive=True)) >= 3, timeout_s=30,
                 what="the fork server and two workers on the other node")
        frozen = [manager] + manager.children(recursive=True)
        for proc in frozen:
            proc.suspend()
        try:
            ready, _ = ember.wait(refs, num_returns=2, timeout=30)
            assert len(ready) == 2, "tasks on the frozen node were never rescheduled"
            assert other["NodeID"] not in ember.get(refs)
            assert not any(n["Alive"] for n in ember.nodes() if n["NodeID"] == other["NodeID"])
        finally:
            for proc in frozen:
                with contextlib.suppress(psutil.Error):
                    proc.kill()

"""Drivers from any machine: ``ember.init("ember://HOST:PORT")`` with the token only.

"Another machine" is a driver process with a $TMPDIR of its own (no session directory of
the cluster is visible to it) that reaches the cluster only over TCP on loopback: the
test checks it holds no Unix socket, so no shared-memory segment can have reached it.
The cluster is a head plus one worker node started with the CLI, given one operator
token, as a team running a real cluster would.
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest

import ember
from conftest import wait_for
from ember._node.store_entries import CACHE_HOLDER

from .conftest import OperatorCluster, operator_cluster

pytestmark = pytest.mark.timeout(180)

_DRIVER = r"""
import json, os, sys
import numpy as np
import psutil
import ember
import ember.data

ember.init(f"ember://{ADDRESS}")


@ember.remote
def add(a, b):
    return a + b


@ember.remote
def filled(n):
    return np.full(n, 7, dtype=np.uint8)


@ember.remote
def total(x):
    return int(x.sum())


@ember.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self, k=1):
        self.n += k
        return self.n


out = {"task": ember.get(add.remote(1, 2))}
out["small"] = ember.get(ember.put({"a": 1}))
arr = np.arange(6_000_000, dtype=np.int64)              # 48 MB: up in chunks over TCP
ref = ember.put(arr)
out["large_put_used_by_a_task"] = ember.get(total.options(resources={"node_b": 1}).remote(ref))
out["large_roundtrip"] = bool((ember.get(ref) == arr).all())
made = filled.options(resources={"node_b": 1}).remote(30 << 20)   # stored on the other node
ready, _ = ember.wait([made], timeout=60)
out["wait"] = len(ready)
out["large_get_from_another_node"] = int(ember.get(made, timeout=60).sum())
counter = Counter.remote()
out["actor"] = ember.get([counter.incr.remote() for _ in range(3)])
keeper = Counter.options(name="keeper", namespace="ops", lifetime="detached").remote()
out["detached"] = ember.get(keeper.incr.remote(5))
ds = ember.data.range(200).map_batches(lambda b: {"id": b["id"] * 2})
out["data"] = int(sum(row["id"] for row in ds.take_all()))
out["unix_sockets"] = len(psutil.Process().net_connections(kind="unix"))
print(json.dumps(out))
ember.shutdown()
"""

_SECOND_DRIVER = r"""
import json
import ember
ember.init(f"ember://{ADDRESS}")
keeper = ember.get_actor("keeper", namespace="ops")
out = {"detached_again": ember.get(keeper.incr.remote(1))}
ember.kill(keeper)
print(json.dumps(out))
ember.shutdown()
"""


def _run_remote_driver(cluster: OperatorCluster, source: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="laptop-") as laptop_tmp:
        done = cluster.run_driver(source, tmpdir=laptop_tmp)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
        assert not os.listdir(laptop_tmp), "the remote driver wrote a session of its own"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_driver_on_another_machine_runs_tasks_actors_objects_and_data(tmp_path) -> None:
    with operator_cluster(tmp_path) as cluster:
        out = _run_remote_driver(cluster, _DRIVER)
        assert out["task"] == 3 and out["small"] == {"a": 1}
        assert out["large_put_used_by_a_task"] == sum(range(6_000_000))
        assert out["large_roundtrip"] is True
        assert out["wait"] == 1
        assert out["large_get_from_another_node"] == 7 * (30 << 20)
        assert out["actor"] == [1, 2, 3]
        assert out["detached"] == 5
        assert out["data"] == 2 * sum(range(200))
        assert out["unix_sockets"] == 0, "a remote driver must reach the cluster over TCP only"

        # The detached actor outlives its creator and is found by name from another driver.
        assert _run_remote_driver(cluster, _SECOND_DRIVER) == {"detached_again": 6}

        # Both drivers left: everything they held is released on the cluster. This process
        # is a remote driver too (token_file=, no session directory).
        ember.init(f"ember://{cluster.address}", token_file=cluster.token_file)
        try:
            wait_for(lambda: ember.available_resources().get("CPU") == ember.cluster_resources().get("CPU"),
                     timeout_s=30, what="every CPU free after the remote drivers left")
            # What is left is at most the head's cached copy of the array it pulled from the
            # other node for the driver: cached copies belong to no process and are evicted
            # first when the store needs room.
            wait_for(lambda: all(holders == [CACHE_HOLDER.hex()]
                                 for _oid, _size, holders in ember.object_store_stats()["largest"]),
                     timeout_s=30, what="no object held for the remote drivers after they left")
        finally:
            ember.shutdown()

"""Recovery times on a loopback cluster started with the CLI: node loss and head restart.

    python benchmarks/recovery.py [--rounds 3] [--node-timeout-s 2]

Each round starts a head (1 CPU) and nodes b and c (2 CPUs each) under a private $TMPDIR,
with the driver attached to one of the nodes ("b", so that it outlives the head; the other
is "c"), and measures:

- task_node_loss_to_results_s: 2 tasks of 1 s run on node c (soft node affinity); node c's
  node manager, fork server and workers are SIGKILLed together 0.3 s in; time from the kill to both results (the re-runs'
  own 1 s included);
- silent_node_to_results_s: the same with node c frozen (SIGSTOP) rather than killed, so
  only the heartbeat timeout reveals it (default --node-timeout-s 2); its processes are
  killed once it is declared dead (a partitioned machine's workers are unreachable);
- actor_node_loss_to_call_s: an actor (max_restarts=1, max_task_retries=1) on node c;
  node c's processes are SIGKILLed; time from the kill until a call made right after it returns
  (from the restarted actor on another node);
- lineage_owned_rebuild_s: a 50 MB result made on node c (soft affinity), owned by the
  driver; node c is SIGKILLed; time from the kill until `get` returns it, rebuilt by
  re-running its task elsewhere;
- lineage_borrowed_rebuild_s: the same, but the result is owned by an actor on node b
  that made it and returned its ref: the driver's `get` asks the actor to rebuild it;
- head_restart_to_actor_call_s: a detached named actor on node c; the head is SIGKILLed
  and started again at once with `ember start --head`; time from the kill until
  `get_actor(name)` and a call on it return; head_restart_cli_s is the part spent in the
  `ember start` command itself.

Ray is not run here (a multi-node Ray binds the machine's network address; this project
keeps all traffic on loopback); docs/benchmarks.md puts the numbers next to Ray 2.60's
recorded ones. Medians over rounds; the machine's load is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator

import numpy as np
import psutil

import ember
from ember.util.scheduling_strategies import NodeAffinitySchedulingStrategy

_CLI = [sys.executable, "-m", "ember.cli"]


@ember.remote(num_cpus=1, max_retries=3)
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return ember.get_runtime_context().get_node_id()


@ember.remote
def block_of(megabytes: int) -> np.ndarray:
    return np.ones(megabytes * 2**20 // 8)


@ember.remote
class Owner:
    """Makes results on node c and hands out their refs: it owns them, the driver borrows."""

    def make(self, node_c: str, megabytes: int) -> list:
        ref = block_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_c, soft=True)) \
            .remote(megabytes)
        ember.wait([ref], fetch_local=False)
        return [ref]


@ember.remote(max_restarts=1, max_task_retries=1)
class Where:
    def node(self) -> str:
        return ember.get_runtime_context().get_node_id()


def _free_port() -> int:
    import socket  # noqa: PLC0415 - a benchmark script, not library code
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nodes(tmpdir: str) -> list[dict]:
    root = os.path.join(tmpdir, "ember-sessions")
    out = []
    for name in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(root, name, "node.json")) as f:
                out.append(json.load(f))
    return out


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(f"waited {timeout_s} s for {what}")


@contextlib.contextmanager
def cluster(node_timeout_s: float) -> Iterator[dict]:
    tmpdir = tempfile.mkdtemp(prefix="eb-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir}
    env.pop("EMBER_TOKEN", None)
    port = _free_port()
    head = _CLI + ["start", "--head", "--port", str(port), "--num-cpus", "1",
                   "--node-timeout-s", str(node_timeout_s)]
    saved = tempfile.tempdir
    try:
        subprocess.run(head, env=env, check=True, stdout=subprocess.DEVNULL)
        for role in ("b", "c"):
            subprocess.run(_CLI + ["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2",
                                   "--resources", json.dumps({f"node_{role}": 1})],
                           env=env, check=True, stdout=subprocess.DEVNULL)
        tempfile.tempdir = tmpdir
        first = [n for n in _nodes(tmpdir) if not n["head"]][0]
        ember.init(address=first["tcp_address"].removeprefix("tcp:"))
        _wait(lambda: sum(n["Alive"] and bool(n["Resources"]) for n in ember.nodes()) == 3, 30, "3 nodes")
        roles = {}
        mine = ember.get_runtime_context().get_node_id()
        for node in ember.nodes():
            # "b": the node the driver is attached to; "c": the other one, which is killed.
            role = "head" if node["IsHead"] else "b" if node["NodeID"] == mine else "c"
            roles[role] = node["NodeID"]
            for info in _nodes(tmpdir):
                if info["tcp_address"].endswith(f":{node['NodeManagerPort']}"):
                    roles[role + "_pid"] = info["pid"]
        yield {"env": env, "head_argv": head, "tmpdir": tmpdir, **roles}
    finally:
        ember.shutdown()
        tempfile.tempdir = saved
        pids = [n["pid"] for n in _nodes(tmpdir)]
        subprocess.run(_CLI + ["stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("TMPDIR") == tmpdir:
                    proc.kill()
        shutil.rmtree(tmpdir, ignore_errors=True)


def _kill_node(pid: int) -> None:
    """The machine is gone: its node manager, fork server and workers at once."""
    manager = psutil.Process(pid)
    for proc in [manager] + manager.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            proc.kill()


def task_node_loss(c: dict) -> float:
    on_c = NodeAffinitySchedulingStrategy(c["c"], soft=True)
    refs = [nap.options(scheduling_strategy=on_c).remote(1.0) for _ in range(2)]
    time.sleep(0.3)  # the tasks are running on c
    killed = time.perf_counter()
    _kill_node(c["c_pid"])
    ember.get(refs, timeout=60)
    return time.perf_counter() - killed


def silent_node_loss(c: dict) -> float:
    """As task_node_loss, but node c is frozen (SIGSTOP: connected, silent) instead of killed:
    only the heartbeat timeout reveals it."""
    on_c = NodeAffinitySchedulingStrategy(c["c"], soft=True)
    refs = [nap.options(scheduling_strategy=on_c).remote(1.0) for _ in range(2)]
    time.sleep(0.3)
    manager = psutil.Process(c["c_pid"])
    frozen = [manager] + manager.children(recursive=True)
    stopped = time.perf_counter()
    for proc in frozen:
        proc.suspend()
    try:
        # A frozen node's tasks are lost to the driver only when their workers' connections
        # drop: the head declares the node dead, and the driver then learns it. Kill them
        # once declared dead, as a partitioned machine's processes would be unreachable.
        _wait(lambda: not any(n["Alive"] for n in ember.nodes() if n["NodeID"] == c["c"]), 30,
              "the frozen node to be declared dead")
        noticed = time.perf_counter() - stopped
        for proc in frozen:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        ember.get(refs, timeout=60)
        print(f"  silent node declared dead after {noticed:.2f} s")
        return time.perf_counter() - stopped
    finally:
        for proc in frozen:
            with contextlib.suppress(psutil.Error):
                proc.kill()


def actor_node_loss(c: dict) -> float:
    actor = Where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(c["c"], soft=True)).remote()
    assert ember.get(actor.node.remote(), timeout=30) == c["c"]
    killed = time.perf_counter()
    _kill_node(c["c_pid"])
    ember.get(actor.node.remote(), timeout=60)
    return time.perf_counter() - killed


def lineage_owned(c: dict) -> float:
    ref = block_of.options(scheduling_strategy=NodeAffinitySchedulingStrategy(c["c"], soft=True)).remote(50)
    ember.wait([ref], fetch_local=False, timeout=30)
    killed = time.perf_counter()
    _kill_node(c["c_pid"])
    ember.get(ref, timeout=60)
    return time.perf_counter() - killed


def lineage_borrowed(c: dict) -> float:
    owner = Owner.options(scheduling_strategy=NodeAffinitySchedulingStrategy(c["b"], soft=False)).remote()
    [ref] = ember.get(owner.make.remote(c["c"], 50), timeout=60)
    killed = time.perf_counter()
    _kill_node(c["c_pid"])
    ember.get(ref, timeout=60)
    return time.perf_counter() - killed


def head_restart(c: dict) -> tuple[float, float]:
    actor = Where.options(name="kept", lifetime="detached", namespace="bench",
                          scheduling_strategy=NodeAffinitySchedulingStrategy(c["c"], soft=False)).remote()
    ember.get(actor.node.remote(), timeout=30)
    killed = time.perf_counter()
    os.kill(c["head_pid"], signal.SIGKILL)
    _wait(lambda: not psutil.pid_exists(c["head_pid"]) or
          psutil.Process(c["head_pid"]).status() == psutil.STATUS_ZOMBIE, 10, "the head to die")
    cli = time.perf_counter()
    subprocess.run(c["head_argv"], env=c["env"], check=True, stdout=subprocess.DEVNULL)
    cli_s = time.perf_counter() - cli
    found = ember.get_actor("kept", namespace="bench")
    ember.get(found.node.remote(), timeout=60)
    total_s = time.perf_counter() - killed
    ember.kill(found)
    return total_s, cli_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--node-timeout-s", type=float, default=2.0)
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, run in (("task_node_loss_to_results_s", task_node_loss),
                          ("silent_node_to_results_s", silent_node_loss),
                          ("actor_node_loss_to_call_s", actor_node_loss),
                          ("lineage_owned_rebuild_s", lineage_owned),
                          ("lineage_borrowed_rebuild_s", lineage_borrowed)):
            with cluster(args.node_timeout_s) as c:
                results.setdefault(name, []).append(run(c))
        with cluster(args.node_timeout_s) as c:
            total_s, cli_s = head_restart(c)
            results.setdefault("head_restart_to_actor_call_s", []).append(total_s)
            results.setdefault("head_restart_cli_s", []).append(cli_s)
    print(f"load average: {os.getloadavg()}")
    for name, values in results.items():
        print(f"{name:32s} median {statistics.median(values):6.2f} s   "
              f"rounds {', '.join(f'{v:.2f}' for v in values)}")


if __name__ == "__main__":
    main()

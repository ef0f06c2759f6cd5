"""Soak: many concurrent drivers against one ``ember start --head`` node, for minutes.

    python benchmarks/soak.py                       # 10 minutes, 50 drivers x 200 tasks
    python benchmarks/soak.py --minutes 2 --actors 2000 --json soak.json

Not run in CI. Each round starts ``--drivers`` driver processes at once; each joins the
head, submits ``--tasks`` tiny tasks, gets them (recording each task's submit-to-result
latency) and exits. Rounds repeat until ``--minutes`` have passed. Reported: tasks/s,
p50/p99 latency, the node manager's RSS and thread count at the start and the end (they
must not grow), and free == total CPUs once the last driver is gone (nothing leaked).
Then one driver creates ``--actors`` actors (``num_cpus=0``, tiny bodies) and calls each
once, reporting the creation time per 250 actors (creation must stay linear).

The head runs with EMBER_DEBUG_LEDGER=1, so a resource-accounting slip is logged; the
report counts such lines.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

_DRIVER = """
import json, sys, time, ember
ember.init(address=sys.argv[1])

@ember.remote
def f(i):
    return i

n = int(sys.argv[2])
t0 = time.perf_counter()
refs = [f.remote(i) for i in range(n)]
lat = []
pending = list(refs)
while pending:
    ready, pending = ember.wait(pending, num_returns=1)
    lat.append(time.perf_counter() - t0)
assert sum(ember.get(refs)) == n * (n - 1) // 2
print(json.dumps({"latencies_s": lat, "wall_s": time.perf_counter() - t0}))
"""

_ACTORS = """
import json, sys, time, ember
ember.init(address=sys.argv[1])

@ember.remote(num_cpus=0)
class A:
    def ping(self):
        return 1

n, step = int(sys.argv[2]), 250
actors, per_step = [], []
t = time.perf_counter()
for i in range(n):
    actors.append(A.remote())
    if (i + 1) % step == 0:
        ember.get([a.ping.remote() for a in actors[-step:]])
        per_step.append(round(time.perf_counter() - t, 2))
        t = time.perf_counter()
t = time.perf_counter()
assert sum(ember.get([a.ping.remote() for a in actors])) == n
print(json.dumps({"created_per_250_s": per_step, "call_all_s": round(time.perf_counter() - t, 2)}))
"""

_IDLE = """
import json, sys, time, ember
ember.init(address=sys.argv[1])
deadline = time.monotonic() + 30
while True:
    free, total = ember.available_resources().get("CPU", 0.0), ember.cluster_resources().get("CPU")
    if free == total or time.monotonic() > deadline:
        break
    time.sleep(0.1)
print(json.dumps({"free": free, "total": total}))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_stats(pid: int) -> dict[str, Any]:
    proc = psutil.Process(pid)
    return {"rss_mib": round(proc.memory_info().rss / (1 << 20), 1), "threads": proc.num_threads(),
            "fds": proc.num_fds()}


def _settled_stats(pid: int, baseline_fds: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """The node's stats once the connections of exiting processes are closed (2,000 killed
    actors take a while to go), or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    stats = _node_stats(pid)
    while stats["fds"] > baseline_fds + 5 and time.monotonic() < deadline:
        time.sleep(0.5)
        stats = _node_stats(pid)
    return stats


def _run_json(argv: list[str], env: dict[str, str], timeout_s: float) -> dict[str, Any]:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[2][:40]!r}... exited {done.returncode}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--drivers", type=int, default=50)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--actors", type=int, default=2000, help="0 skips the actor phase")
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args()

    py = sys.executable
    tmpdir = tempfile.mkdtemp(prefix="soak-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir, "EMBER_DEBUG_LEDGER": "1"}
    env.pop("EMBER_TOKEN", None)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    subprocess.run([py, "-m", "ember.cli", "start", "--head", "--port", str(port),
                    "--num-cpus", str(args.num_cpus)], env=env, check=True, capture_output=True)
    root = Path(tmpdir, "ember-sessions")
    session = next(p for p in root.iterdir() if p.name.startswith("session-"))
    node_pid = json.loads((session / "node.json").read_text())["pid"]
    report: dict[str, Any] = {"drivers": args.drivers, "tasks_per_driver": args.tasks,
                              "minutes": args.minutes, "num_cpus": args.num_cpus}
    try:
        report["node_start"] = _node_stats(node_pid)
        latencies: list[float] = []
        tasks = rounds = failures = 0
        t_start = time.monotonic()
        while time.monotonic() - t_start < args.minutes * 60:
            procs = [subprocess.Popen([py, "-c", _DRIVER, address, str(args.tasks)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(args.drivers)]
            for proc in procs:
                out, err = proc.communicate(timeout=600)
                if proc.returncode != 0:
                    failures += 1
                    sys.stderr.write(err[-1000:])
                    continue
                latencies += json.loads(out.strip().splitlines()[-1])["latencies_s"]
                tasks += args.tasks
            rounds += 1
            elapsed = time.monotonic() - t_start
            sys.stderr.write(f"round {rounds}: {tasks} tasks in {elapsed:.0f} s, "
                             f"node {_node_stats(node_pid)}\n")
        elapsed = time.monotonic() - t_start
        latencies.sort()
        report.update({
            "rounds": rounds, "tasks": tasks, "failed_drivers": failures,
            "tasks_per_s": round(tasks / elapsed, 1),
            "p50_latency_s": round(statistics.median(latencies), 3) if latencies else None,
            "p99_latency_s": round(latencies[int(len(latencies) * 0.99) - 1], 3) if latencies else None,
            "node_end": _node_stats(node_pid),
            "idle": _run_json([py, "-c", _IDLE, address], env, 60),
        })
        if args.actors:
            report["actors"] = args.actors
            report["actors_result"] = _run_json([py, "-c", _ACTORS, address, str(args.actors)], env, 1800)
            report["idle_after_actors"] = _run_json([py, "-c", _IDLE, address], env, 60)
            report["node_after_actors"] = _settled_stats(node_pid, report["node_start"]["fds"])
        log = (session / "logs" / "node_manager.log").read_text(errors="replace")
        report["ledger_violations"] = log.count("ledger invariant violated")
        report["disconnects_logged"] = log.count("disconnected ")
    finally:
        subprocess.run([py, "-m", "ember.cli", "stop"], env=env, capture_output=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()

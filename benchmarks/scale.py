"""The control plane and the data plane at scale, measured by simulation on one machine.

    python benchmarks/scale.py                 # every figure, sized to this machine
    python benchmarks/scale.py --quick         # smaller counts (a smoke run, ~1 min)
    python benchmarks/scale.py --only nodes --nodes 100,500,1000

Figures (issue 18), each printed next to its target:

  nodes      N simulated node agents join one head over TCP and speak the real protocol
             (token hello, Register, Heartbeat every HEARTBEAT_S; they read and drop the
             head's view broadcasts). Head CPU and memory at steady state, the latency of
             a real spillback decision (RequestLease answered with Spillback) and of
             ember.nodes(), and the bytes per second the head sends each agent.
  tasks      Many queued no-op tasks on one node: driver memory per queued task, submit
             and drain rates.
  actors     num_cpus=0 actors alive on one node: creation rate, memory per actor (USS of
             their worker processes), the latency of a named-actor lookup and of
             ember.nodes() with all of them alive. Each actor is a process, so the count
             is capped by memory (see --actors).
  put_get    One large numpy array through put/get on one node (sized to free memory).
  broadcast  A 1 GiB object read by one task on each of 4 loopback nodes.

Agents, extra nodes and the head run on this machine's CPUs, so at 1,000 agents the
head competes with its own load generators: the figures are an upper bound on cost.
Results go to stdout (a markdown table) and benchmarks/results/scale-<date>-<commit>.json.
ember only: no Ray side is asked for these figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import multiprocessing as mp
import os
import pickle
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import psutil

import ember

HERE = os.path.dirname(os.path.abspath(__file__))
GiB = 1 << 30
MiB = 1 << 20


@dataclass
class Figure:
    name: str
    measured: str
    target: str = "-"
    ok: bool | None = None
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


# --- helpers -----------------------------------------------------------------------------


def _runtime() -> Any:
    """The driver's connection to its node manager (private: the benchmark speaks the
    protocol directly to time one decision; it moves with the client code)."""
    from ember._client import context
    return context.runtime()


def _node_manager() -> psutil.Process:
    """The node manager ember.init() started for this driver."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "ember._node.manager" in " ".join(child.cmdline()):
                return child
    raise RuntimeError("no node manager among this driver's children")


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc] + proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _cpu_percent(proc: psutil.Process, seconds: float) -> float:
    """Percent of one core ``proc`` used over ``seconds`` (threads included)."""
    start = proc.cpu_times()
    time.sleep(seconds)
    end = proc.cpu_times()
    return 100.0 * ((end.user - start.user) + (end.system - start.system)) / seconds


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


# --- nodes: simulated node agents ---------------------------------------------------------


def _agents_main(head_tcp: str, token_hex: str, first: int, count: int, stop_path: str, out_path: str,
                 ready: Any) -> None:
    """One process hosting ``count`` agents on one selector thread (see the module doc)."""
    from ember._wire import protocol as p
    from ember._node.membership import HEARTBEAT_S
    from ember._wire.transport import connect, send_hello
    token = token_hex.encode()  # the token file holds the token as text
    shape = {"CPU": 4.0, "memory": 8.0 * GiB, "object_store_memory": 1.0 * GiB}
    conns = []
    for i in range(first, first + count):
        conn = connect(head_tcp)
        send_hello(conn, token)
        node_id = i.to_bytes(4, "big") + os.urandom(12)
        # Never dialled: nothing is scheduled onto agents (a spillback to one is only timed).
        conn.send(p.Register("node", node_id, os.getpid(), f"tcp:127.0.0.1:{20000 + i}",
                             node_unix_address=f"unix:/nonexistent/agent-{i}"))
        conn.recv()  # Registered
        conn.send(p.Heartbeat(shape, dict(shape), []))
        conn.sock.setblocking(False)
        conns.append(conn)
    ready.put(count)
    selector = selectors.DefaultSelector()
    for conn in conns:
        selector.register(conn.sock, selectors.EVENT_READ, conn)
    received = 0
    beats = 0
    next_beat = time.monotonic() + HEARTBEAT_S
    started = time.monotonic()
    while not os.path.exists(stop_path):
        for key, _ in selector.select(timeout=max(0.0, next_beat - time.monotonic())):
            with contextlib.suppress(BlockingIOError, InterruptedError):
                chunk = key.fileobj.recv(1 << 20)
                received += len(chunk)
        if time.monotonic() >= next_beat:
            next_beat += HEARTBEAT_S
            for conn in conns:
                conn.sock.setblocking(True)
                conn.send(p.Heartbeat(shape, dict(shape), []))
                conn.sock.setblocking(False)
                beats += 1
    with open(out_path, "w") as f:
        json.dump({"received_bytes": received, "seconds": time.monotonic() - started, "beats": beats,
                   "agents": count}, f)
    for conn in conns:
        conn.close()


def bench_nodes(counts: list[int], steady_s: float, procs: int) -> list[Figure]:
    from ember._wire import protocol as p
    from ember._node.decisions import choose_node
    from ember._node.membership import NodeInfo
    ember.init(num_cpus=2, object_store_memory=256 * MiB)
    figures = []
    try:
        info = ember.nodes()[0]
        head_tcp = f"tcp:127.0.0.1:{info['NodeManagerPort']}"
        with open(os.path.join(_runtime().session_dir, "token")) as f:
            token_hex = f.read().strip()
        head = _node_manager()
        base_rss = head.memory_info().rss
        base_cpu = _cpu_percent(head, 2.0)
        figures.append(Figure("head alone: CPU, RSS", f"{base_cpu:.1f}% of a core, {base_rss / MiB:.0f} MB",
                              note="no agents; the baseline for the rows below"))
        ctx = mp.get_context("spawn")
        workdir = tempfile.mkdtemp(prefix="scale-")
        try:
            for n in counts:
                stop_path = os.path.join(workdir, f"stop-{n}")
                ready = ctx.Queue()
                per = [n // procs + (1 if i < n % procs else 0) for i in range(procs)]
                children, first = [], 0
                for i, count in enumerate(per):
                    if count:
                        child = ctx.Process(target=_agents_main, args=(
                            head_tcp, token_hex, first + n * 10, count, stop_path,
                            os.path.join(workdir, f"out-{n}-{i}.json"), ready), daemon=True)
                        child.start()
                        children.append(child)
                        first += count
                t0 = time.monotonic()
                for _ in children:
                    ready.get(timeout=300)  # each agent process reports once all its nodes registered
                join_s = time.monotonic() - t0
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    alive = sum(1 for node in ember.nodes() if node["Alive"] and node["Resources"])
                    if alive >= n + 1:
                        break
                    time.sleep(0.2)
                time.sleep(min(3.0, steady_s))  # settle: every agent has beaten a few times
                cpu = _cpu_percent(head, steady_s)
                rss = head.memory_info().rss
                threads = head.num_threads()
                alive = sum(1 for node in ember.nodes() if node["Alive"] and node["Resources"])
                # ember.nodes(): one round trip through the head's whole view.
                t_nodes = []
                for _ in range(10):
                    t = time.perf_counter()
                    ember.nodes()
                    t_nodes.append(time.perf_counter() - t)
                # A real spillback: {"CPU": 3} cannot fit the 2-CPU head, fits any agent.
                rt = _runtime()
                request = p.SchedulingRequest({"CPU": 3.0})
                t_spill, kinds = [], set()
                for _ in range(100):
                    t = time.perf_counter()
                    reply, _ = rt.call(lambda rid: p.RequestLease(rid, request, "probe"))
                    t_spill.append(time.perf_counter() - t)
                    kinds.add(type(reply).__name__)
                # The decision alone, as the head makes it, over an N+1-node view.
                view = {}
                for i in range(n + 1):
                    node_id = i.to_bytes(16, "big")
                    view[node_id] = NodeInfo(node_id, f"tcp:127.0.0.1:{20000 + i}", "", {"CPU": 4.0},
                                             {"CPU": 4.0})
                here = (0).to_bytes(16, "big")
                decide_s = float("inf")
                for _ in range(5):  # best of 5 batches: the agents share these CPUs
                    t = time.perf_counter()
                    for _ in range(40):
                        choose_node({"CPU": 3.0}, None, here, {"CPU": 2.0}, view, totals_here={"CPU": 2.0})
                    decide_s = min(decide_s, (time.perf_counter() - t) / 40)
                # The profile of the broadcast: the head sends this whole view to every
                # node every HEARTBEAT_S, so its bytes (and, pickled per node, its CPU)
                # grow with N squared.
                body = pickle.dumps(p.ClusterViewUpdate(list(view.values())), protocol=5)
                t = time.perf_counter()
                pickle.dumps(p.ClusterViewUpdate(list(view.values())), protocol=5)
                pickle_s = time.perf_counter() - t
                agent_cpu = sum(_cpu_percent_safe(c.pid) for c in children)
                with open(stop_path, "w"):
                    pass
                for child in children:
                    child.join(30)
                outs = []
                for i in range(len(children)):
                    with contextlib.suppress(OSError, ValueError):
                        with open(os.path.join(workdir, f"out-{n}-{i}.json")) as f:
                            outs.append(json.load(f))
                recv_rate = sum(o["received_bytes"] / o["seconds"] for o in outs) / max(1, n)
                spill_med = statistics.median(t_spill)
                raw = {"agents": n, "alive_seen": alive, "join_s": join_s, "head_cpu_pct": cpu,
                       "head_rss_bytes": rss, "head_threads": threads,
                       "nodes_call_s_median": statistics.median(t_nodes),
                       "spillback_rtt_s_median": spill_med, "spillback_rtt_s_p99": sorted(t_spill)[98],
                       "spillback_replies": sorted(kinds), "choose_node_s": decide_s,
                       "view_bytes_per_agent_per_s": recv_rate, "agent_processes_cpu_pct": agent_cpu,
                       "view_bytes": len(body), "view_pickle_s": pickle_s}
                figures.append(Figure(
                    f"{n} nodes: head CPU at steady state", f"{cpu:.0f}% of a core", "< 10% of a core",
                    cpu < 10, f"{alive}/{n + 1} nodes alive; head threads {threads}; the view is "
                    f"{len(body) / 1e3:.0f} kB ({_ms(pickle_s)} to pickle), sent to {n} nodes 5x/s = "
                    f"{len(body) * n * 5 / 1e6:.0f} MB/s asked; each agent got {recv_rate / 1e3:.0f} kB/s", raw))
                figures.append(Figure(f"{n} nodes: head memory (RSS)", f"{rss / MiB:.0f} MB", "< 500 MB",
                                      rss < 500 * MiB, f"+{(rss - base_rss) / MiB:.0f} MB over the idle head"))
                figures.append(Figure(
                    f"{n} nodes: spillback decision", f"{_ms(decide_s)} decision, {_ms(spill_med)} round trip",
                    "< 1 ms", decide_s < 1e-3,
                    f"choose_node over {n + 1} nodes in-process (best of 5 batches); round trip = RequestLease -> Spillback "
                    f"through the loaded head (median of 100; p99 {_ms(sorted(t_spill)[98])}); "
                    f"ember.nodes() {_ms(statistics.median(t_nodes))}"))
                print(f"[nodes] {n}: {json.dumps(raw)}", file=sys.stderr, flush=True)
                # Let the head notice the agents left before the next count joins.
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and \
                        sum(1 for node in ember.nodes() if node["Alive"]) > 1:
                    time.sleep(0.2)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        ember.shutdown()
    return figures


def _cpu_percent_safe(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        return _cpu_percent(psutil.Process(pid), 1.0)
    return 0.0


# --- tasks: a million queued tasks ------------------------------------------------------------


@ember.remote(num_cpus=1)
def noop() -> None:
    return None


def bench_tasks(count: int) -> list[Figure]:
    ember.init(num_cpus=2, object_store_memory=512 * MiB)
    try:
        ember.get([noop.remote() for _ in range(100)])  # warm workers and the function
        gc.collect()
        me = psutil.Process()
        before = me.memory_info().rss
        t = time.perf_counter()
        refs = [noop.remote() for _ in range(count)]
        submit_s = time.perf_counter() - t
        after = me.memory_info().rss
        per_task = (after - before) / count
        t = time.perf_counter()
        ready, pending = ember.wait(refs, num_returns=len(refs), timeout=3600)
        drain_s = time.perf_counter() - t
        drained = len(ready)
        del refs, ready, pending
    finally:
        ember.shutdown()
    raw = {"tasks": count, "submit_s": submit_s, "drain_s": drain_s, "drained": drained,
           "driver_rss_before": before, "driver_rss_after_submit": after, "bytes_per_task": per_task}
    return [Figure(f"{count:,} queued tasks: driver memory per task", f"{per_task:,.0f} B", "< 1,536 B",
                   per_task < 1536, f"driver RSS {before / MiB:.0f} -> {after / MiB:.0f} MB (refs held)", raw),
            Figure(f"{count:,} queued tasks: submit, drain", f"{count / submit_s:,.0f}/s submit, "
                   f"{drained / drain_s:,.0f}/s drain", "they drain", drained == count,
                   f"{drained:,} of {count:,} finished in {drain_s:.0f} s on 2 CPUs")]


# --- actors ---------------------------------------------------------------------------------


@ember.remote(num_cpus=0)
class Idle:
    def ping(self) -> int:
        return os.getpid()


def bench_actors(count: int) -> list[Figure]:
    ember.init(num_cpus=2, object_store_memory=256 * MiB)
    try:
        head = _node_manager()
        before = _uss_of_workers(head)
        t = time.perf_counter()
        actors = [Idle.options(name=f"idle-{i}").remote() for i in range(count)]
        pids = ember.get([a.ping.remote() for a in actors], timeout=3600)
        create_s = time.perf_counter() - t
        after = _uss_of_workers(head)
        per_actor = (after - before) / count
        lookups = []
        for i in range(20):
            t = time.perf_counter()
            ember.get_actor(f"idle-{(i * 7919) % count}")
            lookups.append(time.perf_counter() - t)
        t = time.perf_counter()
        ember.nodes()
        nodes_s = time.perf_counter() - t
        head_rss = head.memory_info().rss
        alive = len(set(pids))
        for actor in actors:
            ember.kill(actor)
    finally:
        ember.shutdown()
    raw = {"actors": count, "alive": alive, "create_s": create_s, "uss_per_actor": per_actor,
           "lookup_s_median": statistics.median(lookups), "nodes_s": nodes_s, "head_rss": head_rss}
    return [Figure(f"{count:,} actors (num_cpus=0): creation rate", f"{count / create_s:,.0f}/s",
                   note=f"{alive:,} alive at once, each its own worker process", raw=raw),
            Figure(f"{count:,} actors: memory per actor", f"{per_actor / MiB:.1f} MB (USS)",
                   note=f"head node manager RSS {head_rss / MiB:.0f} MB"),
            Figure(f"{count:,} actors: actor table query", f"{_ms(statistics.median(lookups))} get_actor, "
                   f"{_ms(nodes_s)} ember.nodes()", "< 1 s (`ember list actors`)",
                   statistics.median(lookups) < 1.0,
                   "ember has no `ember list actors` yet: the named-actor lookup is the head's actor-table query")]


def _uss_of_workers(head: psutil.Process) -> int:
    total = 0
    for child in head.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            total += child.memory_full_info().uss
    return total


# --- put/get of one large object --------------------------------------------------------------


def bench_put_get(size_bytes: int | None) -> list[Figure]:
    free = psutil.virtual_memory().available
    # The array lives twice (driver heap + store segment) while put copies it.
    size = size_bytes or min(10 * GiB, int(free * 0.30) // GiB * GiB)
    note = "" if size >= 10 * GiB else (f"10 GB asked; {free / GiB:.0f} GB free on this shared machine "
                                        f"allows {size / GiB:.3g} GB (the array and its store copy)")
    ember.init(num_cpus=2, object_store_memory=size + GiB)
    try:
        array = np.ones(size // 8, dtype=np.float64)
        t = time.perf_counter()
        ref = ember.put(array)
        put_s = time.perf_counter() - t
        del array
        t = time.perf_counter()
        view = ember.get(ref)
        get_s = time.perf_counter() - t
        ok = view.nbytes == size and float(view[-1]) == 1.0
        del view, ref
    finally:
        ember.shutdown()
    raw = {"bytes": size, "put_s": put_s, "get_s": get_s}
    return [Figure(f"{size / GiB:.3g} GB put / get", f"put {size / GiB / put_s:.2f} GB/s ({put_s:.1f} s), "
                   f"get {_ms(get_s)}", "10 GB through put/get", ok if size >= 10 * GiB else None,
                   (note + "; " if note else "") + "get maps the store segment (zero copy)", raw)]


# --- broadcast to 4 loopback nodes ---------------------------------------------------------------


@ember.remote(num_cpus=0)
def nbytes_of(array: np.ndarray) -> int:
    return int(array.nbytes)


def bench_broadcast(size: int, nodes: int) -> list[Figure]:
    tmpdir = tempfile.mkdtemp(prefix="eb-", dir="/tmp")
    env = {**os.environ, "TMPDIR": tmpdir}
    env.pop("EMBER_TOKEN", None)
    cli = [os.path.join(os.path.dirname(sys.executable), "ember")]
    store = str(size + 512 * MiB)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    saved = tempfile.tempdir
    try:
        subprocess.run(cli + ["start", "--head", "--port", str(port), "--num-cpus", "1",
                              "--object-store-memory", store], env=env, check=True, capture_output=True)
        for i in range(nodes):
            subprocess.run(cli + ["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                                  "--object-store-memory", store, "--resources", json.dumps({f"n{i}": 1})],
                           env=env, check=True, capture_output=True)
        tempfile.tempdir = tmpdir
        ember.init(address=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 60
        while sum(1 for n in ember.nodes() if n["Alive"] and n["Resources"]) < nodes + 1:
            if time.monotonic() > deadline:
                raise RuntimeError("the broadcast cluster did not come up")
            time.sleep(0.1)
        ref = ember.put(np.ones(size // 8, dtype=np.float64))
        warm = [nbytes_of.options(resources={f"n{i}": 1}).remote(np.zeros(8)) for i in range(nodes)]
        ember.get(warm)
        t = time.perf_counter()
        got = ember.get([nbytes_of.options(resources={f"n{i}": 1}).remote(ref) for i in range(nodes)])
        seconds = time.perf_counter() - t
        ok = got == [size] * nodes
        del ref
    finally:
        ember.shutdown()
        tempfile.tempdir = saved
        subprocess.run(cli + ["stop"], env=env, capture_output=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    raw = {"bytes": size, "nodes": nodes, "seconds": seconds}
    return [Figure(f"{size / GiB:.3g} GiB broadcast to {nodes} nodes", f"{seconds:.2f} s "
                   f"({size * nodes / seconds / GiB:.2f} GiB/s delivered)",
                   "Ray: 1 GiB to 50 nodes in 16.9 s (0.34 s/node)",
                   (seconds / nodes <= 16.9 / 50 * size / GiB) if ok else False,
                   f"{seconds / nodes:.2f} s/node on loopback, all nodes on this machine's 2 cores", raw)]


# --- main ---------------------------------------------------------------------------------------


def _table(figures: list[Figure]) -> str:
    rows = ["| figure | measured | target | met | note |", "|---|---|---|---|---|"]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.ok]
        rows.append(f"| {f.name} | {f.measured} | {f.target} | {met} | {f.note} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    parser.add_argument("--only", help="comma-separated: nodes,tasks,actors,put_get,broadcast")
    parser.add_argument("--nodes", help="agent counts, e.g. 100,500,1000")
    parser.add_argument("--agent-procs", type=int, default=4)
    parser.add_argument("--steady-s", type=float, default=5.0)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--actors", type=int)
    parser.add_argument("--put-gb", type=float)
    parser.add_argument("--broadcast-gib", type=float, default=1.0)
    parser.add_argument("--broadcast-nodes", type=int, default=4)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else {"nodes", "tasks", "actors", "put_get", "broadcast"}
    counts = [int(c) for c in args.nodes.split(",")] if args.nodes else ([50] if args.quick else [100, 500, 1000])
    plan: list[tuple[str, Callable[[], list[Figure]]]] = [
        ("nodes", lambda: bench_nodes(counts, 2.0 if args.quick else args.steady_s, args.agent_procs)),
        ("tasks", lambda: bench_tasks(args.tasks or (20_000 if args.quick else 1_000_000))),
        ("actors", lambda: bench_actors(args.actors or (20 if args.quick else 300))),
        ("put_get", lambda: bench_put_get(int(args.put_gb * GiB) if args.put_gb else
                                          (256 * MiB if args.quick else None))),
        ("broadcast", lambda: bench_broadcast(int((0.125 if args.quick else args.broadcast_gib) * GiB),
                                              args.broadcast_nodes)),
    ]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip() or "unknown"
    path = os.path.join(HERE, "results", f"scale-{datetime.date.today().isoformat()}-{commit}.json")
    figures: list[Figure] = []
    for name, run in plan:
        if name in only:
            t = time.monotonic()
            new = run()
            figures += new
            # Each section's rows as soon as it ends: a long run cut short keeps what it measured.
            print(_table(new), file=sys.stderr, flush=True)
            print(f"[{name}] done in {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
            if not args.no_save:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    json.dump({"commit": commit, "cpus": os.cpu_count(),
                               "memory_bytes": psutil.virtual_memory().total,
                               "load_average": os.getloadavg(), "figures": [f.__dict__ for f in figures]},
                              f, indent=1, default=str)
    print(_table(figures))
    if not args.no_save:
        print(f"saved {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

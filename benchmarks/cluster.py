"""Multi-node benchmarks on one machine: nodes on loopback, side by side with plain TCP.

    python benchmarks/cluster.py [--rounds 3] [--size-mb 512]

Starts a head and a worker node with the real CLI (separate node managers, separate
stores, talking TCP on 127.0.0.1), then measures:

- cross-node transfer: the driver (on the head) gets a stored array that lives on the
  other node, GB/s, next to the same machine's plain loopback TCP bandwidth (one Python
  sender with sendall, one receiver with recv_into, the same byte count);
- tasks/s across two nodes: no-op tasks with SPREAD, so half run on the remote node;
- a driver on another machine next to a driver on the head's machine: task round trip
  (``get(f.remote())`` one at a time) and ``get`` of a 100 MB array stored on the head.
  The "remote" driver is a process with a $TMPDIR of its own that reaches the head over
  TCP only (``ember.init("ember://...")``, objects streamed in chunks); the local one
  attaches over the head's Unix socket (objects mapped from shared memory). Each runs in
  a fresh process (``--probe``). ``--drivers-only`` runs just this part.

Ray is not run here: a multi-node Ray binds the machine's network address, and this
project keeps all traffic on loopback. Medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil


def loopback_tcp_gbps(nbytes: int) -> float:
    """Plain TCP on 127.0.0.1: sendall from one thread, recv_into in another."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    payload = memoryview(bytearray(8 << 20))

    def send() -> None:
        with socket.create_connection(server.getsockname()) as s:
            sent = 0
            while sent < nbytes:
                s.sendall(payload[: min(len(payload), nbytes - sent)])
                sent += min(len(payload), nbytes - sent)

    sender = threading.Thread(target=send)
    start = time.perf_counter()
    sender.start()
    conn, _ = server.accept()
    buf = memoryview(bytearray(8 << 20))
    got = 0
    while got < nbytes:
        got += conn.recv_into(buf)
    elapsed = time.perf_counter() - start
    sender.join()
    conn.close()
    server.close()
    return nbytes / elapsed / 1e9


def start_nodes(port: int) -> list[tuple[int, str]]:
    """Start a head and one worker node; returns their node managers' (pid, session dir)."""
    from ember._node.launcher import local_nodes
    before = {session for session, _ in local_nodes()}
    ember_cli = [sys.executable, "-m", "ember.cli"]
    subprocess.run(ember_cli + ["start", "--head", "--port", str(port), "--num-cpus", "1"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(ember_cli + ["start", "--address", f"127.0.0.1:{port}", "--num-cpus", "2",
                                "--resources", json.dumps({"remote": 100})],
                   check=True, stdout=subprocess.DEVNULL)
    return [(n["pid"], session) for session, n in local_nodes() if session not in before]


def _is_head(session_dir: str) -> bool:
    with open(os.path.join(session_dir, "node.json")) as f:
        return bool(json.load(f).get("head"))


def probe(address: str, get_mb: int, rounds: int, calls: int) -> dict[str, float]:
    """One driver's figures (run in a process of its own): median task round trip (ms)
    and median ``get`` of a ``get_mb`` MB array stored on the head (s)."""
    import ember
    ember.init(address)
    try:
        @ember.remote
        def noop() -> None:
            return None

        @ember.remote
        def make(n: int) -> np.ndarray:
            return np.ones(n, dtype=np.uint8)

        ember.get([noop.remote() for _ in range(20)])  # a warm worker and lease
        round_trips = []
        for _ in range(calls):
            t = time.perf_counter()
            ember.get(noop.remote())
            round_trips.append(time.perf_counter() - t)
        gets = []
        for _ in range(rounds):
            ref = make.remote(get_mb << 20)
            ember.wait([ref], fetch_local=False)
            t = time.perf_counter()
            value = ember.get(ref)
            gets.append(time.perf_counter() - t)
            assert value[-1] == 1
            del value, ref
        return {"round_trip_ms": statistics.median(round_trips) * 1e3, "get_s": statistics.median(gets)}
    finally:
        ember.shutdown()


def compare_drivers(port: int, head_session: str, get_mb: int, rounds: int, calls: int) -> None:
    """Run ``probe`` as a local driver and as a remote one; print them side by side."""
    with open(os.path.join(head_session, "token")) as f:
        token = f.read().strip()
    results = {}
    with tempfile.TemporaryDirectory(prefix="laptop-") as laptop_tmp:
        for kind, address, env in (
                ("local", f"127.0.0.1:{port}", dict(os.environ)),
                ("remote", f"ember://127.0.0.1:{port}", {**os.environ, "TMPDIR": laptop_tmp,
                                                         "EMBER_TOKEN": token})):
            done = subprocess.run([sys.executable, os.path.abspath(__file__), "--probe", address,
                                   "--get-mb", str(get_mb), "--rounds", str(rounds), "--calls", str(calls)],
                                  env=env, capture_output=True, text=True, timeout=600, check=True)
            results[kind] = json.loads(done.stdout.strip().splitlines()[-1])
    local, remote = results["local"], results["remote"]
    print(f"{'driver':<44} {'local':>10} {'remote':>10} {'ratio':>7}")
    print(f"{'task round trip (ms, median of ' + str(calls) + ')':<44} {local['round_trip_ms']:>10.2f} "
          f"{remote['round_trip_ms']:>10.2f} {remote['round_trip_ms'] / local['round_trip_ms']:>7.2f}")
    print(f"{'get of ' + str(get_mb) + ' MB stored on the head (s)':<44} {local['get_s']:>10.3f} "
          f"{remote['get_s']:>10.3f} {remote['get_s'] / local['get_s']:>7.1f}")
    print(f"{'  as GB/s':<44} {get_mb / 1024 / local['get_s']:>10.2f} {get_mb / 1024 / remote['get_s']:>10.2f}")
    # The remote driver's ceiling on this machine now: plain Python TCP on loopback.
    print(f"{'  plain loopback TCP, same bytes (GB/s)':<44} {'':>10} {loopback_tcp_gbps(get_mb << 20):>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--port", type=int, default=16399)
    parser.add_argument("--get-mb", type=int, default=100, help="size of the array drivers get")
    parser.add_argument("--calls", type=int, default=300, help="task round trips per driver")
    parser.add_argument("--drivers-only", action="store_true", help="only compare the drivers")
    parser.add_argument("--probe", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps(probe(args.probe, args.get_mb, args.rounds, args.calls)))
        return
    nbytes = args.size_mb << 20
    pids = start_nodes(args.port)
    import ember
    try:
        head_session = next(session for _pid, session in pids if _is_head(session))
        if args.drivers_only:
            compare_drivers(args.port, head_session, args.get_mb, args.rounds, args.calls)
            return
        ember.init(address=f"127.0.0.1:{args.port}")
        deadline = time.monotonic() + 10
        while len([n for n in ember.nodes() if n["Alive"]]) < 2:
            if time.monotonic() > deadline:
                raise SystemExit("the worker node did not join")
            time.sleep(0.05)

        @ember.remote(resources={"remote": 1})
        def make(n: int) -> np.ndarray:
            return np.ones(n, dtype=np.uint8)

        @ember.remote
        def noop() -> None:
            return None

        transfer, tcp, tasks = [], [], []
        ember.get([noop.options(scheduling_strategy="SPREAD").remote() for _ in range(200)])
        for _ in range(args.rounds):
            ref = make.remote(nbytes)
            ember.wait([ref], fetch_local=False)
            t = time.perf_counter()
            value = ember.get(ref)
            transfer.append(nbytes / (time.perf_counter() - t) / 1e9)
            assert value[-1] == 1
            del value, ref
            tcp.append(loopback_tcp_gbps(nbytes))
            t = time.perf_counter()
            ember.get([noop.options(scheduling_strategy="SPREAD").remote() for _ in range(args.tasks)])
            tasks.append(args.tasks / (time.perf_counter() - t))
        med = statistics.median
        print(f"{'workload':<40} {'ember':>10} {'loopback TCP':>13} {'ratio':>7}")
        print(f"{'cross-node transfer (GB/s, ' + str(args.size_mb) + ' MB)':<40} {med(transfer):>10.2f} "
              f"{med(tcp):>13.2f} {med(transfer) / med(tcp):>7.2f}")
        print(f"{'tasks/s across two nodes (SPREAD)':<40} {med(tasks):>10.0f} {'':>13} {'':>7}")
        ember.shutdown()
        compare_drivers(args.port, head_session, args.get_mb, args.rounds, args.calls)
    finally:
        ember.shutdown()
        for pid, session_dir in pids:  # only the nodes this run started
            os.kill(pid, signal.SIGTERM)
        for pid, session_dir in pids:
            deadline = time.monotonic() + 10
            while psutil.pid_exists(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            shutil.rmtree(session_dir, ignore_errors=True)


if __name__ == "__main__":
    main()

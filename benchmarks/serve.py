"""Serving benchmark: ember.serve vs Ray Serve 2.60 vs the same handler on bare uvicorn.

    python benchmarks/serve.py --ray-python .ray-venv/bin/python --duration-s 30

Each system runs as its own subprocess (``--child``; Ray's with Ray's interpreter) and
prints ``READY <port>`` once it serves; this process then drives it with ``wrk`` (Debian's
package; the default where installed) or an asyncio httpx client (``--loadgen httpx``),
keeping ``--concurrency`` requests in flight for ``--duration-s``, and records
requests/s, p50 and p99 latency and errors. On a 2-core machine the httpx client itself
needs about as much CPU as the server, so it caps every system near the same rate;
wrk shows what the servers can do. Workloads:

- ``noop``: one replica, a handler that returns "ok" (bare: the same handler in a starlette app);
- ``pipeline``: an ingress deployment that calls a second deployment through a handle;
- ``batched``: a model behind ``@serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)``.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

from _runner import environment_for_ray

HERE = os.path.dirname(os.path.abspath(__file__))


# -- the child: one system serving one workload ----------------------------------------

def _apps(serve: Any) -> dict[str, Any]:
    """The three workloads, written once against Ray Serve's API (works on ember and Ray)."""

    @serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
    class Noop:
        async def __call__(self, request: Any) -> str:
            return "ok"

    @serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
    class Doubler:
        async def __call__(self, x: int) -> int:
            return 2 * x

    @serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
    class Pipeline:
        def __init__(self, doubler: Any) -> None:
            self.doubler = doubler

        async def __call__(self, request: Any) -> str:
            return str(await self.doubler.remote(21))

    @serve.deployment(max_ongoing_requests=100, ray_actor_options={"num_cpus": 0})
    class Batched:
        def __init__(self) -> None:
            import numpy as np
            self.w = np.random.default_rng(0).random((64, 64))

        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)
        async def predict(self, xs: list) -> list:
            import numpy as np
            out = np.asarray(xs) @ self.w
            return [float(v) for v in out.sum(axis=1)]

        async def __call__(self, request: Any) -> str:
            import numpy as np
            return str(await self.predict(np.full(64, 0.5)))

    return {"noop": Noop.bind(), "pipeline": Pipeline.bind(Doubler.bind()), "batched": Batched.bind()}


def _bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def noop(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", noop)])


def _child(args: argparse.Namespace) -> None:
    port = args.port
    if args.system == "bare":
        import uvicorn
        sys.stdout.write(f"READY {port}\n")
        sys.stdout.flush()
        uvicorn.run(_bare_app(), host="127.0.0.1", port=port, log_level="warning", access_log=False)
        return
    if args.system == "ray":
        import ray
        from ray import serve
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    else:
        import ember
        import ember.serve as serve
        ember.init(num_cpus=2)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(_apps(serve)[args.workload], name="bench", route_prefix="/")
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    sys.stdin.read()  # the parent closes stdin when done
    serve.shutdown()


# -- the parent: load generation and the table -------------------------------------------

async def _httpx_load(url: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    import httpx
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        for _ in range(20):  # warm up connections and the first-request paths
            await client.get(url)
        end = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal errors
            while True:
                t0 = time.perf_counter()
                if t0 > end:
                    return
                try:
                    r = await client.get(url)
                    if r.status_code != 200:
                        errors += 1
                except Exception:  # counted, not fatal: a benchmark reports failures
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {"requests": n, "requests_per_s": n / elapsed, "p50_ms": latencies[n // 2] * 1e3,
            "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1e3, "errors": errors, "loadgen": "httpx"}


def _wrk_load(url: str, concurrency: int, duration_s: float) -> dict[str, Any]:
    out = subprocess.run(["wrk", "-t", "1", "-c", str(concurrency), "-d", f"{int(duration_s)}s", "--latency",
                          url], capture_output=True, text=True, timeout=duration_s + 60).stdout

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    total = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests": total, "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": ms("50%"), "p99_ms": ms("99%"), "errors": int(errors.group(1)) if errors else 0,
            "loadgen": "wrk"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _measure(python: str, system: str, workload: str, args: argparse.Namespace) -> Optional[dict[str, Any]]:
    port = _free_port()
    env = dict(os.environ)
    home = None
    if system == "ray":
        home = tempfile.mkdtemp(prefix="serve-bench-home-")
        env = environment_for_ray(home)
    env["PYTHONPATH"] = os.path.dirname(HERE)
    proc = subprocess.Popen([python, os.path.abspath(__file__), "--child", "--system", system,
                             "--workload", workload, "--port", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=os.path.dirname(HERE))
    try:
        deadline = time.monotonic() + 180
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None or time.monotonic() > deadline:
                sys.stderr.write(f"{system}/{workload} did not start:\n{proc.stderr.read()[-3000:]}\n")
                return None
        time.sleep(1.0 if system != "bare" else 0.5)
        url = f"http://127.0.0.1:{port}/"
        load_before = os.getloadavg()[0]
        if args.loadgen == "wrk":
            result = _wrk_load(url, args.concurrency, args.duration_s)
        else:
            result = asyncio.run(_httpx_load(url, args.concurrency, args.duration_s))
        # The machine may be shared: say how busy it was, since every number depends on it.
        result["load_avg_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
        return result
    finally:
        try:
            proc.stdin.close()
            proc.wait(timeout=60)
        except Exception:  # a stuck server must not hang the benchmark
            proc.kill()
            proc.wait()
        if home is not None:
            shutil.rmtree(home, ignore_errors=True)


def _table(results: dict[str, dict[str, Any]]) -> str:
    rows = ["| workload | system | requests/s | p50 ms | p99 ms | errors | vs Ray | vs bare | load avg |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for workload, by_system in results.items():
        ray = by_system.get("ray")
        bare = results.get("noop", {}).get("bare")
        for system, r in by_system.items():
            if r is None:
                rows.append(f"| {workload} | {system} | failed | | | | | | |")
                continue
            vs_ray = f"{r['requests_per_s'] / ray['requests_per_s']:.1f}x" if ray and system != "ray" else ""
            vs_bare = f"{r['requests_per_s'] / bare['requests_per_s']:.0%}" if bare and system == "ember" \
                and workload == "noop" else ""
            if system == "bare":
                vs_ray = ""
            load = "->".join(str(v) for v in r.get("load_avg_1m", []))
            rows.append(f"| {workload} | {system} | {r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | "
                        f"{r['p99_ms']:.1f} | {r['errors']} | {vs_ray} | {vs_bare} | {load} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray-python", help="interpreter of a virtualenv with ray[serve]==2.60")
    parser.add_argument("--workloads", default="noop,pipeline,batched")
    parser.add_argument("--systems", default="ember,ray,bare")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--loadgen", choices=["httpx", "wrk"], default="wrk" if shutil.which("wrk") else "httpx",
                        help="wrk (C, barely uses CPU, so it measures the server; default where installed) "
                        "or an asyncio httpx client (needs ~1 ms of CPU per request itself)")
    parser.add_argument("--out", help="write the table and JSON here (default benchmarks/results/serve-<date>)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--system", default="ember", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="noop", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=8000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.loadgen == "wrk" and shutil.which("wrk") is None:
        parser.error("--loadgen wrk needs wrk on PATH (apt-get install wrk); or use --loadgen httpx")
    systems = [s for s in args.systems.split(",") if s]
    results: dict[str, dict[str, Any]] = {}
    for workload in [w for w in args.workloads.split(",") if w]:
        results[workload] = {}
        for system in systems:
            if system == "bare" and workload != "noop":
                continue
            if system == "ray" and not args.ray_python:
                continue
            python = args.ray_python if system == "ray" else sys.executable
            results[workload][system] = _measure(python, system, workload, args)
            sys.stderr.write(f"{workload}/{system}: {results[workload][system]}\n")
    header = (f"{args.concurrency} requests in flight, {args.duration_s:g} s per system, load generator "
              f"{args.loadgen}, {os.cpu_count()} CPUs\n\n")
    text = header + _table(results) + "\n"
    sys.stdout.write(text)
    out = args.out or os.path.join(HERE, "results", f"serve-{datetime.date.today().isoformat()}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".txt", "w") as f:
        f.write(text)
    with open(out + ".json", "w") as f:
        json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()

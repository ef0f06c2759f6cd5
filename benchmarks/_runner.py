"""Runs one round of workloads under one runtime; executed by ember's or Ray's interpreter.

    python benchmarks/_runner.py --runtime ray --only single_client_tasks_sync --config '{...}'
    python benchmarks/_runner.py --runtime ember --cold-start

Each result is printed as one line `@@bench {json}` on stdout, so Ray's own log lines
never confuse the parent. benchmarks/core.py calls `run_round` directly for ember (in
its own process) and starts this file as a subprocess for Ray and the plain-Python
baseline. Only this file knows how each runtime is started.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

import workloads
from workloads import Config, Result

RESULT_PREFIX = "@@bench "
Runtime = str  # "ember" | "ray" | "baseline"

#: Same object-store size on both runtimes, large enough for a few 256 MB arrays.
OBJECT_STORE_BYTES = 2 * 1024**3
NUM_CPUS = 2


def init_runtime(name: Runtime) -> ModuleType:
    """Imports and starts `name` as a single local node with 2 CPUs; returns the module."""
    rt = importlib.import_module(name)
    if name == "ray":
        # A single local instance bound to loopback only: core.py also sets
        # RAY_USAGE_STATS_ENABLED=0, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 (node IP resolves
        # to 127.0.0.1, so every Ray server listens on loopback) and a private HOME (so
        # the dashboard head's cloud-metadata probe finds a bootstrap config and never
        # reaches 169.254.169.254 or DNS).
        rt.init(
            address="local",
            num_cpus=NUM_CPUS,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
    else:
        rt.init(num_cpus=NUM_CPUS, object_store_memory=OBJECT_STORE_BYTES)
    return rt


#: Called (in order) before a stuck workload ends the process, e.g. to remove temp dirs.
on_abort: list[Callable[[], None]] = []


def _abort(timeout_s: float) -> None:
    print(f"workload stuck for {timeout_s:g} s; stacks of every thread:", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for cleanup in on_abort:
        try:
            cleanup()
        except Exception:  # noqa: BLE001 - we are exiting anyway
            pass
    sys.stderr.flush()
    os._exit(3)  # a hung runtime thread would block a normal exit


def _guarded(fn: Callable[[], Result], timeout_s: float) -> Result:
    """Runs `fn`; a stuck workload dumps every thread's stack and ends the process."""
    watchdog = threading.Timer(timeout_s, _abort, args=(timeout_s,))
    watchdog.daemon = True
    watchdog.start()
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - one broken workload must not hide the rest
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    finally:
        watchdog.cancel()
    result["wall_s"] = time.perf_counter() - start  # setup and warm-up included
    return result


def run_round(
    runtime: Runtime,
    names: Iterable[str],
    cfg: Config,
    emit: Callable[[str, Result], None] | None = None,
) -> dict[str, Result]:
    """Runs each named workload once on `runtime` (init, workloads, shutdown).

    `runtime="baseline"` runs the plain-Python counterparts instead. Results are also
    passed to `emit` as they arrive, so a crash later in the round loses nothing.
    """
    wanted = set(names)
    chosen = [w for w in workloads.WORKLOADS if w.name in wanted]
    results: dict[str, Result] = {}

    def record(name: str, result: Result) -> None:
        results[name] = result
        if emit is not None:
            emit(name, result)

    if runtime == "baseline":
        for w in chosen:
            if w.baseline is not None:
                record(w.name, _guarded(lambda w=w: w.baseline(cfg), w.timeout_s))
        return results

    in_round = [w for w in chosen if w.run is not None]
    if not in_round:
        return results
    try:
        rt = init_runtime(runtime)
    except Exception as exc:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        for w in in_round:
            record(w.name, {"error": f"init failed: {type(exc).__name__}: {exc}"[:500]})
        return results
    try:
        for w in in_round:
            record(w.name, _guarded(lambda w=w: w.run(rt, cfg), w.timeout_s))
    finally:
        rt.shutdown()
    return results


def cold_start(runtime: Runtime) -> Result:
    """Times import, init() until a trivial task's result is back, and shutdown."""
    start = time.perf_counter()
    rt = importlib.import_module(runtime)
    imported = time.perf_counter()
    rt = init_runtime(runtime)

    @rt.remote
    def one() -> int:
        return 1

    if rt.get(one.remote()) != 1:
        raise RuntimeError("trivial task returned the wrong value")
    first_result = time.perf_counter()
    rt.shutdown()
    done = time.perf_counter()
    return {
        "value": (first_result - imported) * 1e3,
        "import_ms": (imported - start) * 1e3,
        "shutdown_ms": (done - first_result) * 1e3,
    }


def _print_result(name: str, result: Result) -> None:
    print(RESULT_PREFIX + json.dumps({"name": name, "result": result}), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", required=True, choices=["ember", "ray", "baseline"])
    parser.add_argument("--only", nargs="*", default=[w.name for w in workloads.WORKLOADS])
    parser.add_argument("--config", default="{}", help="JSON of workloads.Config fields")
    parser.add_argument("--cold-start", action="store_true", help="time init_to_first_result")
    args = parser.parse_args(argv)
    if args.cold_start:
        _print_result("init_to_first_result", _guarded(lambda: cold_start(args.runtime), 120))
        return 0
    cfg = Config(**json.loads(args.config))
    run_round(args.runtime, args.only, cfg, emit=_print_result)
    return 0


def config_to_json(cfg: Config) -> str:
    return json.dumps(dataclasses.asdict(cfg))


def environment_for_ray(home_dir: str) -> dict[str, Any]:
    """Environment of the Ray subprocess: loopback only, no usage stats, private HOME.

    Ray's session directories (logs, sockets) go under `home_dir` too, so they are
    removed with it instead of piling up in /tmp/ray.
    """
    env = dict(os.environ)
    env.update(
        RAY_USAGE_STATS_ENABLED="0",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        HOME=home_dir,
        RAY_TMPDIR=os.path.join(home_dir, "tmp"),
    )
    return env


if __name__ == "__main__":
    sys.exit(main())

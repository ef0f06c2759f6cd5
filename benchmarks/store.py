"""The object store under spilling, ember and Ray 2.60 side by side in one run.

    python benchmarks/store.py [--ray-python .ray-venv/bin/python] [--total-mb 2048]
                               [--store-mb 512] [--chunk-mb 128] [--rounds 1]

`spill_through`: put --total-mb of distinct arrays (--chunk-mb each) into a store of
--store-mb, so most of them spill, then get every one back and check it bit-exactly
(blake2b of every array, computed before the put and after the get, outside the timer).
The figure is the seconds spent in `put` and `get` (restores included). Each runtime runs
in a fresh child process (ember with this checkout, Ray with --ray-python), one node,
2 CPUs, loopback only; the ratio is Ray/ember (above 1: ember is faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_RAY_PYTHON = REPO_ROOT / ".ray-venv" / "bin" / "python"
_PREFIX = "@@store "
_MiB = 1 << 20


def _digest(array: np.ndarray) -> str:
    return hashlib.blake2b(memoryview(array).cast("B"), digest_size=16).hexdigest()


def _chunk(base: np.ndarray, i: int) -> np.ndarray:
    """The i-th array: distinct bytes per chunk, made without a second random draw."""
    return np.bitwise_xor(base, np.uint8(i & 0xFF)) if i else base.copy()


def _spill_through(rt: Any, total_mb: int, chunk_mb: int) -> dict[str, Any]:
    base = np.random.default_rng(0).integers(0, 256, chunk_mb * _MiB, dtype=np.uint8)
    n = total_mb // chunk_mb
    timed_s = 0.0
    refs, digests = [], []
    for i in range(n):
        array = _chunk(base, i)
        digests.append(_digest(array))
        start = time.perf_counter()
        refs.append(rt.put(array))
        timed_s += time.perf_counter() - start
        del array
    mismatched = 0
    for i, ref in enumerate(refs):
        start = time.perf_counter()
        value = rt.get(ref)
        timed_s += time.perf_counter() - start
        mismatched += _digest(value) != digests[i]
        del value
    return {"seconds": timed_s, "objects": n, "mismatched": mismatched,
            "gb_per_s": 2 * n * chunk_mb * _MiB / timed_s / 1e9}


def _child(args: argparse.Namespace) -> None:
    store_bytes = args.store_mb * _MiB
    if args.child == "ray":
        import ray  # noqa: PLC0415 (only in Ray's own interpreter)
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", object_store_memory=store_bytes)
        rt = ray
    else:
        import ember  # noqa: PLC0415 (the child imports the runtime it measures)
        ember.init(num_cpus=2, object_store_memory=store_bytes)
        rt = ember
    try:
        result = _spill_through(rt, args.total_mb, args.chunk_mb)
    finally:
        rt.shutdown()
    print(_PREFIX + json.dumps(result), flush=True)


def _run(python: str, runtime: str, args: argparse.Namespace, home: str) -> dict[str, Any]:
    sys.path.insert(0, str(BENCH_DIR))
    import _child as child_runner  # noqa: PLC0415 (benchmarks/ is not a package)
    import _runner  # noqa: PLC0415

    env = _runner.environment_for_ray(home) if runtime == "ray" else dict(os.environ)
    argv = [python, __file__, "--child", runtime, "--total-mb", str(args.total_mb),
            "--store-mb", str(args.store_mb), "--chunk-mb", str(args.chunk_mb)]
    log_path = Path(home) / f"{runtime}.log"
    result = child_runner.run_child(argv, env, log_path, 900, _PREFIX, REPO_ROOT, runtime)
    if "error" in result and log_path.exists():
        result["log_tail"] = log_path.read_text(errors="replace")[-2000:]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON))
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--total-mb", type=int, default=2048)
    parser.add_argument("--store-mb", type=int, default=512)
    parser.add_argument("--chunk-mb", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", choices=("ember", "ray"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    home = tempfile.mkdtemp(prefix="ember-store-bench-")
    try:
        runtimes = ["ember"] + ([] if args.no_ray or not os.path.exists(args.ray_python) else ["ray"])
        results: dict[str, list[dict[str, Any]]] = {rt: [] for rt in runtimes}
        for r in range(args.rounds):
            order = runtimes if r % 2 == 0 else runtimes[::-1]
            for runtime in order:
                python = sys.executable if runtime == "ember" else args.ray_python
                result = _run(python, runtime, args, home)
                print(f"round {r + 1} {runtime}: {result} (load {os.getloadavg()[0]:.2f})",
                      file=sys.stderr, flush=True)
                results[runtime].append(result)
        best = {rt: min((x for x in rs if "seconds" in x), key=lambda x: x["seconds"], default=None)
                for rt, rs in results.items()}
        print(f"spill_through: {args.total_mb} MiB in {args.chunk_mb} MiB arrays through a "
              f"{args.store_mb} MiB store (best of {args.rounds})")
        for runtime, result in best.items():
            if result is None:
                print(f"  {runtime:<6} failed: {results[runtime]}")
                continue
            print(f"  {runtime:<6} {result['seconds']:.2f} s  ({result['gb_per_s']:.2f} GB/s put+get, "
                  f"{result['mismatched']} of {result['objects']} arrays differ)")
        if best.get("ember") and best.get("ray"):
            print(f"  ratio (Ray/ember): {best['ray']['seconds'] / best['ember']['seconds']:.2f}x")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()

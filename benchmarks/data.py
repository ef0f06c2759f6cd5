"""ember.data vs Ray Data, side by side, on the workloads of issue 6.

Usage::

    .venv/bin/python benchmarks/data.py                       # ember only
    .venv/bin/python benchmarks/data.py --ray-python /work/main/.ray-venv/bin/python

Workloads (each run in a fresh subprocess per engine, best of ``--repeats`` runs after
the cluster is up, so worker start-up is paid once in both):

- ``range``: ``range(20_000_000) -> map_batches(numpy add) -> count``: rows/s.
- ``parquet``: ``read_parquet -> map_batches -> iter_batches`` over ~2 GB of Parquet
  (batches of ``--batch-size`` rows everywhere): rows/s and GB/s, next to a
  single-process pyarrow loop doing the same work times the number of CPUs, and to
  that many pyarrow processes actually run at once.
- ``memory``: a ``range_tensor -> map_batches -> iter_batches`` pipeline over 4x the
  object store: wall time and the peak memory of the driver's process tree
  (proportional set size, so shared memory is counted once).

ember never imports Ray: Ray's side runs as a subprocess with the interpreter given by
``--ray-python``; the workload code is the same for both, only the import differs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Optional

_MiB = 1 << 20


# -- child side: runs one workload on one engine and prints one JSON line ------------

def _engine(name: str) -> tuple[Any, Any]:
    if name == "ray":
        import ray
        import ray.data as rd
        return ray, rd
    import ember
    import ember.data as rd
    return ember, rd


def _init(runtime: Any, name: str, num_cpus: int, store_bytes: int) -> None:
    kwargs: dict[str, Any] = {"num_cpus": num_cpus, "object_store_memory": store_bytes}
    if name == "ray":
        kwargs.update(include_dashboard=False, log_to_driver=False)
    runtime.init(**kwargs)


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _PeakMemory:
    """Samples the PSS of this process and all its descendants on a thread."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._interval_s = interval_s
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> list[int]:
        import psutil
        me = psutil.Process()
        return [me.pid] + [c.pid for c in me.children(recursive=True)]

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_pss_bytes(pid) for pid in self._tree())
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self._interval_s)

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def _best_of(repeats: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    runs = [fn() for _ in range(repeats)]
    return min(runs, key=lambda r: r["seconds"])


def _workload_range(rd: Any, args: argparse.Namespace) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        start = time.perf_counter()
        ds = rd.range(args.rows).map_batches(lambda batch: {"id": batch["id"] + 1})
        count = ds.count()
        seconds = time.perf_counter() - start
        assert count == args.rows
        return {"seconds": seconds, "rows_per_s": count / seconds}
    return _best_of(args.repeats, run)


def _add_column(batch: dict) -> dict:
    batch["total"] = batch["c0"] + batch["c1"]
    return batch


def _workload_parquet(rd: Any, args: argparse.Namespace) -> dict[str, Any]:
    data_bytes = sum(os.path.getsize(os.path.join(args.data_dir, f)) for f in os.listdir(args.data_dir))

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        rows = 0
        ds = rd.read_parquet(args.data_dir).map_batches(_add_column, batch_size=args.batch_size)
        for batch in ds.iter_batches(batch_size=args.batch_size):
            rows += len(batch["total"])
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "rows_per_s": rows / seconds,
                "gb_per_s": data_bytes / seconds / 1e9, "rows": rows}
    return _best_of(args.repeats, run)


def _workload_memory(rd: Any, args: argparse.Namespace) -> dict[str, Any]:
    row_bytes = 1024 * 8
    rows = 4 * args.store_mb * _MiB // row_bytes
    with _PeakMemory() as peak:
        start = time.perf_counter()
        ds = rd.range_tensor(rows, shape=(1024,), override_num_blocks=256).map_batches(
            lambda batch: {"data": batch["data"] * 2.0})
        seen = 0
        for batch in ds.iter_batches(batch_size=args.batch_size):
            seen += len(batch["data"])
        seconds = time.perf_counter() - start
    assert seen == rows
    return {"seconds": seconds, "data_mb": rows * row_bytes // _MiB,
            "peak_memory_mb": peak.peak_bytes // _MiB}


def _pyarrow_loop(files: list[str], batch_size: int) -> int:
    """Read and transform ``files`` with pyarrow and numpy in this process; rows seen."""
    import pyarrow.parquet as pq

    rows = 0
    for path in files:
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size,
                                                               use_threads=False):
            batch = {name: record_batch.column(i).to_numpy()
                     for i, name in enumerate(record_batch.schema.names)}
            rows += len(_add_column(batch)["total"])
    return rows


def _pyarrow_baseline(args: argparse.Namespace, processes: int) -> dict[str, Any]:
    """The same work without a runtime: one process, or ``processes`` at once.

    One process times the CPU count is the issue's yardstick; running the processes
    at once measures what this machine really delivers in parallel (memory bandwidth,
    other load), which can be well below that product.
    """
    from concurrent.futures import ProcessPoolExecutor

    files = sorted(os.path.join(args.data_dir, f) for f in os.listdir(args.data_dir))
    data_bytes = sum(os.path.getsize(f) for f in files)
    start = time.perf_counter()
    if processes == 1:
        rows = _pyarrow_loop(files, args.batch_size)
    else:
        with ProcessPoolExecutor(max_workers=processes) as pool:
            shares = [files[i::processes] for i in range(processes)]
            rows = sum(pool.map(_pyarrow_loop, shares, [args.batch_size] * processes))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows_per_s": rows / seconds, "gb_per_s": data_bytes / seconds / 1e9}


def _child(args: argparse.Namespace) -> None:
    if args.engine == "pyarrow":
        result = _pyarrow_baseline(args, 1)
    elif args.engine == "pyarrow-parallel":
        result = _pyarrow_baseline(args, args.num_cpus)
    else:
        runtime, rd = _engine(args.engine)
        store = args.store_mb * _MiB if args.workload == "memory" else args.big_store_mb * _MiB
        _init(runtime, args.engine, args.num_cpus, store)
        rd.DataContext.get_current().enable_progress_bars = False
        workload = {"range": _workload_range, "parquet": _workload_parquet,
                    "memory": _workload_memory}[args.workload]
        result = workload(rd, args)
        runtime.shutdown()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")


# -- parent side: data generation, subprocesses, the table ----------------------------

def _make_parquet(directory: str, target_gb: float) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if os.path.isdir(directory) and os.listdir(directory):
        return
    os.makedirs(directory, exist_ok=True)
    columns, files = 16, 16
    rows_per_file = int(target_gb * 1e9 / (columns * 8) / files)
    rng = np.random.default_rng(0)
    for i in range(files):
        table = pa.table({f"c{j}": rng.random(rows_per_file) for j in range(columns)})
        pq.write_table(table, os.path.join(directory, f"part-{i:03d}.parquet"),
                       row_group_size=256 * 1024, compression="none")


def _run_child(python: str, engine: str, workload: str, args: argparse.Namespace) -> Optional[dict[str, Any]]:
    command = [python, os.path.abspath(__file__), "--child", "--engine", engine,
               "--workload", workload, "--rows", str(args.rows), "--data-dir", args.data_dir,
               "--num-cpus", str(args.num_cpus), "--store-mb", str(args.store_mb),
               "--big-store-mb", str(args.big_store_mb), "--repeats", str(args.repeats),
               "--batch-size", str(args.batch_size)]
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout_s)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    sys.stderr.write(f"{engine}/{workload} failed (exit {done.returncode}):\n{done.stderr[-3000:]}\n")
    return None


def _fmt(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:,.2f}M{unit}"
    return f"{value:,.2f}{unit}"


def _table(results: dict[str, dict[str, Optional[dict[str, Any]]]], args: argparse.Namespace) -> str:
    lines = ["| workload | metric | ember | Ray Data | ember / Ray |", "|---|---|---|---|---|"]

    def row(workload: str, metric: str, key: str, higher_better: bool = True, unit: str = "") -> None:
        ember_r, ray_r = results[workload].get("ember"), results[workload].get("ray")
        e = ember_r.get(key) if ember_r else None
        r = ray_r.get(key) if ray_r else None
        ratio = "-"
        if e and r:
            ratio = f"{(e / r) if higher_better else (r / e):.2f}x"
        lines.append(f"| {workload} | {metric} | {_fmt(e, unit)} | {_fmt(r, unit)} | {ratio} |")

    if "range" in results:
        row("range", f"rows/s, range({args.rows:,})->map_batches->count", "rows_per_s")
    if "parquet" in results:
        row("parquet", "rows/s, read_parquet->map_batches->iter_batches", "rows_per_s")
        row("parquet", "GB/s of parquet", "gb_per_s")
        base = results["parquet"].get("pyarrow")
        if base and results["parquet"].get("ember"):
            ideal = base["rows_per_s"] * args.num_cpus
            share = results["parquet"]["ember"]["rows_per_s"] / ideal
            lines.append(f"| parquet | single-process pyarrow x {args.num_cpus} CPUs (rows/s) | "
                         f"{_fmt(ideal)} | | ember at {share:.2f} of it |")
        parallel = results["parquet"].get("pyarrow-parallel")
        if parallel and results["parquet"].get("ember"):
            share = results["parquet"]["ember"]["rows_per_s"] / parallel["rows_per_s"]
            lines.append(f"| parquet | {args.num_cpus} pyarrow processes at once (rows/s) | "
                         f"{_fmt(parallel['rows_per_s'])} | | ember at {share:.2f} of it |")
    if "memory" in results:
        row("memory", f"seconds, {4 * args.store_mb} MiB through a {args.store_mb} MiB store",
            "seconds", higher_better=False)
        row("memory", "peak memory of the process tree (MiB, PSS)", "peak_memory_mb",
            higher_better=False)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ray-python", help="interpreter of a virtualenv with ray[data]")
    parser.add_argument("--workloads", default="range,parquet,memory")
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--parquet-gb", type=float, default=2.0)
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "ember-bench-parquet"))
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--store-mb", type=int, default=512, help="object store of the memory workload")
    parser.add_argument("--big-store-mb", type=int, default=2048, help="object store of the others")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout-s", type=int, default=1800)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="ember", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="range", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    workloads = [w for w in args.workloads.split(",") if w]
    if "parquet" in workloads:
        _make_parquet(args.data_dir, args.parquet_gb)
    results: dict[str, dict[str, Optional[dict[str, Any]]]] = {}
    for workload in workloads:
        results[workload] = {"ember": _run_child(sys.executable, "ember", workload, args)}
        if args.ray_python:
            results[workload]["ray"] = _run_child(args.ray_python, "ray", workload, args)
        if workload == "parquet":
            results[workload]["pyarrow"] = _run_child(sys.executable, "pyarrow", workload, args)
            results[workload]["pyarrow-parallel"] = _run_child(sys.executable, "pyarrow-parallel",
                                                               workload, args)
    sys.stdout.write(f"{args.num_cpus} CPUs, best of {args.repeats} runs per engine\n\n")
    sys.stdout.write(_table(results, args) + "\n\n")
    sys.stdout.write(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()

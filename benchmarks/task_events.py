"""What recording task events costs: core.py's single_client_tasks_async with recording on
and off (EMBER_ENABLE_TASK_EVENTS), interleaved round by round, next to Ray 2.60.

    python benchmarks/task_events.py                    # 7 rounds, Ray from .ray-venv if present
    python benchmarks/task_events.py --rounds 3 --no-ray --budget-s 2
    python benchmarks/task_events.py --by-process --rounds 9   # CPU per task, by process

Each round runs the workload three times, each in a fresh subprocess (benchmarks/_runner.py,
the same code core.py runs): ember with recording on, ember with it off, and Ray; the order
rotates every round so drift on a shared machine hits all three. Figures are medians over
rounds; "cost" is 1 - on/off (issue 17's target: at most 5%).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
RUNNER = BENCH_DIR / "_runner.py"
DEFAULT_RAY_PYTHON = BENCH_DIR.parent / ".ray-venv" / "bin" / "python"
WORKLOAD = "single_client_tasks_async"

sys.path.insert(0, str(BENCH_DIR))
import _runner  # noqa: E402
import psutil  # noqa: E402

import ember  # noqa: E402  (reads EMBER_ENABLE_TASK_EVENTS at init, not at import)


def _run(python: str, runtime: str, env: dict[str, str], budget_s: float, timeout_s: float
         ) -> tuple[float, float] | None:
    """One fresh-process run of the workload: (tasks/s, CPU seconds of the whole process
    tree per task, start-up included), or None (reason on stderr). Every process of the
    tree is reaped by its parent, so RUSAGE_CHILDREN ends up counting all of them."""
    config = json.dumps({"budget_s": budget_s})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run([python, str(RUNNER), "--runtime", runtime, "--only", WORKLOAD, "--config", config],
                              env=env, capture_output=True, text=True, timeout=timeout_s, cwd=str(BENCH_DIR))
    except subprocess.TimeoutExpired:
        print(f"  {runtime}: timed out after {timeout_s:g} s", file=sys.stderr)
        return None
    for line in done.stdout.splitlines():
        if line.startswith(_runner.RESULT_PREFIX):
            result = json.loads(line[len(_runner.RESULT_PREFIX):])["result"]
            if "value" in result:
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu_s = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
                tasks = float(result["value"]) * float(result["elapsed_s"]) * 1.0
                return float(result["value"]), cpu_s / max(tasks, 1.0)
            print(f"  {runtime}: {result.get('error')}", file=sys.stderr)
    print(f"  {runtime}: no result (exit {done.returncode}): {done.stderr[-500:]}", file=sys.stderr)
    return None


def _child(budget_s: float) -> None:
    """--child: the workload in this process, then CPU per task of the driver, the node
    manager and the workers (fork server included), printed as one JSON line."""
    ember.init(num_cpus=2)

    @ember.remote
    def small_value() -> bytes:
        return b"ok"

    ember.get([small_value.remote() for _ in range(2000)])  # warm: workers started
    me = psutil.Process()

    def cpu_by_role() -> dict[str, float]:
        out: dict[str, float] = {"driver": 0.0, "node manager": 0.0, "workers": 0.0}
        for proc in [me, *me.children(recursive=True)]:
            try:
                role = ("driver" if proc.pid == me.pid else
                        "node manager" if "_node.manager" in " ".join(proc.cmdline()) else "workers")
                times = proc.cpu_times()
                out[role] += times.user + times.system
            except psutil.Error:
                continue
        return out

    before, start, tasks = cpu_by_role(), time.perf_counter(), 0
    while time.perf_counter() - start < budget_s:
        ember.get([small_value.remote() for _ in range(1000)])
        tasks += 1000
    elapsed_s, after = time.perf_counter() - start, cpu_by_role()
    ember.shutdown()
    print(json.dumps({"tasks_per_s": tasks / elapsed_s,
                      **{role: 1e6 * (after[role] - before[role]) / tasks for role in after}}))


def by_process(rounds: int, budget_s: float) -> int:
    """--by-process: recording on and off alternately, CPU per task split by process (a
    figure that stays readable on a loaded machine, where throughput does not)."""
    rows: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    for round_ in range(rounds):
        for kind in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
            env = {**os.environ, "EMBER_ENABLE_TASK_EVENTS": "1" if kind == "on" else "0"}
            done = subprocess.run([sys.executable, __file__, "--child", "--budget-s", str(budget_s)],
                                  env=env, capture_output=True, text=True, timeout=120)
            line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
            if done.returncode != 0 or not line.startswith("{"):
                print(f"  {kind}: failed: {done.stderr[-300:]}", file=sys.stderr)
                continue
            rows[kind].append(json.loads(line))
            print(f"round {round_ + 1}/{rounds} {kind:<4} {line}", file=sys.stderr, flush=True)
    print(f"\nCPU per task (us), medians of {rounds} alternating runs; load average {os.getloadavg()}")
    print("| recording | tasks/s | driver | node manager | workers | all |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in ("on", "off"):
        med = {k: statistics.median(r[k] for r in rows[kind]) for k in rows[kind][0]} if rows[kind] else {}
        if med:
            total = med["driver"] + med["node manager"] + med["workers"]
            print(f"| {kind} | {med['tasks_per_s']:,.0f} | {med['driver']:.1f} | {med['node manager']:.1f} | "
                  f"{med['workers']:.1f} | {total:.1f} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=3.0, help="timed seconds per run")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON))
    parser.add_argument("--by-process", action="store_true",
                        help="ember only: CPU per task of the driver, node manager and workers")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.budget_s)
        return 0
    if args.by_process:
        return by_process(args.rounds, args.budget_s)
    base = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH_DIR), os.environ.get("PYTHONPATH", "")])}
    runs = {"on": {**base, "EMBER_ENABLE_TASK_EVENTS": "1"}, "off": {**base, "EMBER_ENABLE_TASK_EVENTS": "0"}}
    with_ray = not args.no_ray and os.path.exists(args.ray_python)
    home = tempfile.mkdtemp(prefix="ember-bench-ray-")
    kinds = ["on", "off"] + (["ray"] if with_ray else [])
    figures: dict[str, list[float]] = {k: [] for k in kinds}
    cpu_us: dict[str, list[float]] = {k: [] for k in kinds}
    timeout_s = 60 + 4 * args.budget_s
    for round_ in range(args.rounds):
        order = kinds[round_ % len(kinds):] + kinds[:round_ % len(kinds)]
        for kind in order:
            if kind == "ray":
                got = _run(args.ray_python, "ray", _runner.environment_for_ray(home), args.budget_s, timeout_s)
            else:
                got = _run(sys.executable, "ember", runs[kind], args.budget_s, timeout_s)
            if got is not None:
                figures[kind].append(got[0])
                cpu_us[kind].append(got[1] * 1e6)
            print(f"round {round_ + 1}/{args.rounds} {kind:<4} "
                  + (f"{got[0]:>9,.0f} tasks/s, {got[1] * 1e6:6.1f} us CPU/task" if got else "failed"),
                  file=sys.stderr, flush=True)
    med = {k: statistics.median(v) if v else float("nan") for k, v in figures.items()}
    cpu = {k: statistics.median(v) if v else float("nan") for k, v in cpu_us.items()}
    print(f"\n{WORKLOAD}, medians of {args.rounds} interleaved rounds; load average {os.getloadavg()}")
    print("| recording | ember tasks/s | Ray tasks/s | ratio (ember/Ray) | CPU per task, all processes |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ray = med.get("ray", float("nan"))
    for kind in ("on", "off"):
        print(f"| {kind} | {med[kind]:,.0f} | {ray:,.0f} | {med[kind] / ray:.2f} | {cpu[kind]:.0f} us |")
    print(f"\ncost of recording: throughput {1 - med['on'] / med['off']:.1%} (1 - on/off), "
          f"CPU {cpu['on'] / cpu['off'] - 1:.1%} (on/off - 1)\n"
          f"per round, on: {[round(v) for v in figures['on']]}, off: {[round(v) for v in figures['off']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

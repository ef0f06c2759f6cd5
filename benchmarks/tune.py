"""ember.tune vs Ray Tune 2.60, side by side, on the workloads of issue 10.

Usage::

    .venv/bin/python benchmarks/tune.py                     # ember and Ray (.ray-venv)
    .venv/bin/python benchmarks/tune.py --no-ray            # ember only
    .venv/bin/python benchmarks/tune.py --only trivial asha

Workloads (the same code for both engines, only the import differs; each run is a fresh
interpreter with a single local 2-CPU instance, Ray on loopback with usage stats off and a
private HOME; the wall time is ``Tuner.fit()`` alone, after ``init``):

- ``trivial``: 200 trials, each reporting once: trials/s (over the trials finished within
  a 600 s budget). Baseline: the same function called 200 times in a plain Python loop.
- ``asha``: 100 trials of 20 cheap iterations under ASHA (max_t=20, grace_period=1,
  reduction_factor=2): wall time. Baseline: the same iterations in a plain loop.
- ``sleep``: 200 trials that each sleep 1 s and report once, on 2 CPUs: wall time and
  the overhead over the ideal 100 s.

Results go to benchmarks/results/tune-<date>-<commit>.{json,txt}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _child import run_child
from _runner import environment_for_ray

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAY_PYTHON = REPO_ROOT / ".ray-venv" / "bin" / "python"
RESULT_PREFIX = "@@tune "
RUN_TIMEOUT_S = 1500
#: The trivial sweep's time budget: under heavy load Ray may not finish 200 trials in
#: reasonable time, so its rate is taken over the trials it finished by then.
TRIVIAL_BUDGET_S = 600

TRIVIAL_TRIALS = 200
ASHA_TRIALS, ASHA_ITERS = 100, 20
SLEEP_TRIALS, SLEEP_S = 200, 1.0


# -- child side: one workload on one engine ---------------------------------------------

def _engine(name: str) -> tuple[Any, Any, Any]:
    if name == "ray":
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        ray.init(address="local", num_cpus=2, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
        return ray, tune, ASHAScheduler
    import ember
    from ember import tune
    from ember.tune.schedulers import ASHAScheduler
    ember.init(num_cpus=2)
    return ember, tune, ASHAScheduler


def _curve(quality: float, step: int) -> float:
    return quality * (1 - 1 / (step + 1))


def _workload(name: str, engine: str, storage: str) -> dict[str, Any]:
    runtime, tune, asha_cls = _engine(engine)
    run_config = tune.RunConfig(storage_path=storage, verbose=0)
    try:
        if name == "trivial":
            def trivial(config: dict) -> None:
                tune.report({"score": config["x"]})

            tuner = tune.Tuner(trivial, param_space={"x": tune.uniform(0, 1)},
                               tune_config=tune.TuneConfig(num_samples=TRIVIAL_TRIALS,
                                                           time_budget_s=TRIVIAL_BUDGET_S),
                               run_config=run_config)
        elif name == "asha":
            def curve(config: dict) -> None:
                for step in range(1, ASHA_ITERS + 1):
                    tune.report({"acc": _curve(config["quality"], step)})

            tuner = tune.Tuner(curve, param_space={"quality": tune.uniform(0, 1)},
                               tune_config=tune.TuneConfig(
                                   metric="acc", mode="max", num_samples=ASHA_TRIALS,
                                   scheduler=asha_cls(max_t=ASHA_ITERS, grace_period=1,
                                                      reduction_factor=2)),
                               run_config=run_config)
        else:
            def sleeper(config: dict) -> None:
                time.sleep(SLEEP_S)  # the trial's "work"
                tune.report({"x": config["x"]})

            tuner = tune.Tuner(sleeper, param_space={"x": tune.uniform(0, 1)},
                               tune_config=tune.TuneConfig(num_samples=SLEEP_TRIALS),
                               run_config=run_config)
        start = time.perf_counter()
        grid = tuner.fit()
        wall_s = time.perf_counter() - start
        out: dict[str, Any] = {"wall_s": wall_s, "trials": len(grid), "errors": grid.num_errors}
        if name == "trivial":
            finished = sum(1 for r in grid if r.metrics and "score" in r.metrics)
            out["finished"] = finished
            out["trials_per_s"] = finished / wall_s
        if name == "asha":
            out["iterations"] = int(sum(r.metrics["training_iteration"] for r in grid))
        if name == "sleep":
            ideal = SLEEP_TRIALS * SLEEP_S / 2
            out["ideal_s"] = ideal
            out["overhead_pct"] = 100 * (wall_s - ideal) / ideal
        return out
    finally:
        runtime.shutdown()


def _baseline(name: str) -> dict[str, Any]:
    start = time.perf_counter()
    if name == "trivial":
        import random
        results = [{"score": random.random()} for _ in range(TRIVIAL_TRIALS)]
        wall_s = time.perf_counter() - start
        return {"wall_s": wall_s, "trials_per_s": len(results) / wall_s}
    if name == "asha":
        import random
        for _ in range(ASHA_TRIALS):
            quality = random.random()
            for step in range(1, ASHA_ITERS + 1):
                _curve(quality, step)
        return {"wall_s": time.perf_counter() - start}
    return {"wall_s": SLEEP_TRIALS * SLEEP_S / 2, "note": "ideal: trials x 1 s / 2 CPUs"}


# -- parent side ---------------------------------------------------------------------------

def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT,
                              capture_output=True, text=True).stdout.strip() or "nogit"
    except OSError:
        return "nogit"


def _table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = [f"{'workload':<34}{'unit':<10}{'ember':>10}{'ray':>10}{'baseline':>14}"
             f"{'ember/ray':>11}  target"]

    def cell(engine: str, workload: str, key: str, digits: int = 1) -> tuple[str, Any]:
        value = results.get(engine, {}).get(workload, {}).get(key)
        if value is not None and 0 < abs(value) < 10:
            digits = max(digits, 2)  # Ray's trivial rate is well under 1 trial/s
        return ("n/a" if value is None else f"{value:,.{digits}f}"), value

    rows = [("trivial", "200 trivial trials, 1 report each", "trials/s", "trials_per_s",
             "higher", ">= 20x Ray"),
            ("asha", "100 trials x 20 iters under ASHA", "s", "wall_s", "lower",
             ">= 5x shorter than Ray"),
            ("sleep", "200 one-second trials on 2 CPUs", "s", "wall_s", "lower",
             "<= 105 s (ideal 100 s + 5%)")]
    for workload, title, unit, key, better, target in rows:
        if not any(workload in results.get(e, {}) for e in results):
            continue
        e_text, e_val = cell("ember", workload, key)
        r_text, r_val = cell("ray", workload, key)
        b_text, _ = cell("baseline", workload, key, 3 if workload == "asha" else 1)
        ratio = "n/a"
        if e_val and r_val:
            ratio = f"{(e_val / r_val if better == 'higher' else r_val / e_val):.1f}x"
        lines.append(f"{title:<34}{unit:<10}{e_text:>10}{r_text:>10}{b_text:>14}{ratio:>11}  "
                     f"{target}")
    sleep = results.get("ember", {}).get("sleep", {})
    if "overhead_pct" in sleep:
        lines.append(f"ember overhead over the ideal 100 s: {sleep['overhead_pct']:.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON))
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--only", nargs="*", default=["trivial", "asha", "sleep"])
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "results"))
    parser.add_argument("--child", choices=["ember", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="tune-bench-") as storage:
            result = _workload(args.workload, args.child, storage)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return 0

    engines = ["ember"] + ([] if args.no_ray or not Path(args.ray_python).exists() else ["ray"])
    results: dict[str, dict[str, dict[str, Any]]] = {e: {} for e in engines}
    results["baseline"] = {w: _baseline(w) for w in args.only}
    # Short paths: Ray's session sockets live under RAY_TMPDIR and AF_UNIX paths are
    # limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="tb", dir="/tmp") as tmp:
        home = Path(tmp) / "h"
        (home / "t").mkdir(parents=True)
        (home / "ray_bootstrap_config.yaml").write_text("{}\n")
        for workload in args.only:
            for engine in engines:
                python = sys.executable if engine == "ember" else args.ray_python
                env = dict(os.environ) if engine == "ember" else \
                    dict(environment_for_ray(str(home)), RAY_TMPDIR=str(home / "t"),
                         RAY_AIR_NEW_OUTPUT="0")
                print(f"{workload}: {engine} (load average {os.getloadavg()[0]:.2f})",
                      file=sys.stderr, flush=True)
                result = run_child([python, str(Path(__file__).resolve()), "--child", engine,
                                    "--workload", workload], env, Path(tmp) / f"{engine}.log",
                                   RUN_TIMEOUT_S, RESULT_PREFIX, REPO_ROOT, engine)
                result["load_average"] = os.getloadavg()[0]
                results[engine][workload] = result
                print(f"    {json.dumps(result)}", file=sys.stderr, flush=True)
                if "error" in result:
                    log = (Path(tmp) / f"{engine}.log").read_text(errors="replace")[-3000:]
                    print(f"--- {engine} log tail ---\n{log}", file=sys.stderr)
    table = _table(results)
    print(table)
    stem = f"tune-{datetime.date.today():%Y-%m-%d}-{_commit()}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    header = (f"ember.tune vs Ray Tune ({os.cpu_count()} cores, 2 CPUs per instance, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    (out / f"{stem}.txt").write_text(header + table + "\n")
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

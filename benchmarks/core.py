"""ember's core benchmarks side by side with Ray and plain Python, as one table.

    python benchmarks/core.py                      # all workloads, Ray from .ray-venv if present
    python benchmarks/core.py --quick --no-ray --only single_client_tasks_sync
    python benchmarks/core.py --ray-python /path/to/ray-venv/bin/python --rounds 5 --json out.json

Rounds alternate ember and Ray (ember first in odd rounds, Ray first in even ones) so
drift on the machine hits both; every figure is the median over rounds. ember runs in
this process; Ray runs in a subprocess started with its own interpreter (ember never
imports Ray), as a single local node on loopback. init_to_first_result and the
queued-tasks memory workload get a fresh interpreter per runtime and round. The
plain-Python baseline (ProcessPoolExecutor with 2 processes, or in-process memcpy) runs
in a subprocess too. benchmarks/run_pinned.sh runs all this on a snapshot of one commit.

The ratio column is oriented so that above 1 means ember is better: ember/Ray for
throughput, Ray/ember for times and bytes. Set up Ray with benchmarks/setup_ray_venv.sh.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RUNNER = BENCH_DIR / "_runner.py"
DEFAULT_RAY_PYTHON = REPO_ROOT / ".ray-venv" / "bin" / "python"

sys.path.insert(0, str(BENCH_DIR))
import _runner  # noqa: E402
import workloads  # noqa: E402
from workloads import Config, Result, Workload  # noqa: E402

Rounds = dict[str, dict[str, list[Result]]]  # runtime -> workload -> one result per round


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _show(runtime: str, name: str, result: Result) -> None:
    if "value" in result:
        unit = workloads.BY_NAME[name].unit
        _log(f"    {runtime:<8} {name:<34} {_fmt(result['value'])} {unit}")
    else:
        reason = str(result.get("error") or result.get("skipped")).splitlines()[0]
        _log(f"    {runtime:<8} {name:<34} {reason}")


class _Subprocess:
    """Runs _runner.py with another interpreter and collects its `@@bench` lines.

    The child gets its own session, so on timeout the whole group (Ray's raylet, GCS and
    workers included) is killed by the child's pid, and nothing outlives the suite.
    """

    def __init__(self, python: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.python = python
        self.args = args
        self.env = env
        self.log_path = log_path

    def run(self, runtime: str, timeout_s: float) -> dict[str, Result]:
        results: dict[str, Result] = {}
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [self.python, str(RUNNER), *self.args],
                stdout=subprocess.PIPE,
                stderr=log,
                env=self.env,
                cwd=REPO_ROOT,
                start_new_session=True,
                text=True,
            )
            timer = threading.Timer(timeout_s, self._kill_group, args=(proc.pid,))
            timer.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith(_runner.RESULT_PREFIX):
                        item = json.loads(line[len(_runner.RESULT_PREFIX):])
                        results[item["name"]] = item["result"]
                        _show(runtime, item["name"], item["result"])
                returncode = proc.wait()
            finally:
                timer.cancel()
                # Whatever the runtime left in the child's session goes with it.
                self._kill_group(proc.pid)
        if returncode != 0:
            _log(f"    {runtime} subprocess exited with {returncode}; log: {self.log_path}")
            _log(_tail(self.log_path))
        return results

    @staticmethod
    def _kill_group(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run_round_in_subprocess(
    runtime: str, python: str, env: dict[str, str], names: list[str], config_json: str, log_path: Path
) -> dict[str, Result]:
    """One round in a child interpreter; a workload that hangs or crashes costs only itself.

    The runner works through `names` in registry order and exits (dumping stacks to the
    log) when one overruns its timeout_s, so the first name without a result is the one
    that died: it is recorded as an error and a fresh child carries on with the rest.
    """
    order = [w.name for w in workloads.WORKLOADS if w.name in set(names)]
    results: dict[str, Result] = {}
    while order:
        timeout_s = sum(workloads.BY_NAME[n].timeout_s for n in order) + 120
        args = ["--runtime", runtime, "--config", config_json, "--only", *order]
        results.update(_Subprocess(python, args, env, log_path).run(runtime, timeout_s))
        order = [n for n in order if n not in results]
        if order:
            died = order.pop(0)
            results[died] = {"error": f"{runtime} runner died during this workload (timeout "
                                      f"{workloads.BY_NAME[died].timeout_s:g} s or crash)"}
            _show(runtime, died, results[died])
    return results


def run_suite(
    names: list[str],
    cfg: Config,
    rounds: int,
    ray_python: str | None,
    with_ember: bool,
    with_baseline: bool,
    work_dir: Path,
    ember_subprocess: bool = False,
) -> Rounds:
    """Alternates ember and Ray rounds (plus the baseline) and returns every result."""
    chosen = [workloads.BY_NAME[n] for n in names]
    cold = any(w.run is None for w in chosen)
    in_round = [w.name for w in chosen if w.run is not None and not w.isolated]
    isolated = [w.name for w in chosen if w.run is not None and w.isolated]
    round_timeout_s = sum(w.timeout_s for w in chosen) + 120
    config_json = _runner.config_to_json(cfg)

    ray_home = work_dir / "ray-home"
    ray_home.mkdir()
    # The dashboard head probes cloud metadata servers unless this file exists.
    (ray_home / "ray_bootstrap_config.yaml").write_text("{}\n")
    ray_env = _runner.environment_for_ray(str(ray_home))
    plain_env = dict(os.environ)

    collected: Rounds = {"ember": {}, "ray": {}, "baseline": {}}

    def keep(runtime: str, name: str, result: Result) -> None:
        collected[runtime].setdefault(name, []).append(result)

    runtimes = (["ember"] if with_ember else []) + (["ray"] if ray_python else [])
    for r in range(rounds):
        order = runtimes if r % 2 == 0 else runtimes[::-1]
        for runtime in order:
            start = time.perf_counter()
            _log(f"round {r + 1}/{rounds}: {runtime} (load average {os.getloadavg()[0]:.2f})")
            python = sys.executable if runtime == "ember" else str(ray_python)
            env = plain_env if runtime == "ember" else ray_env
            log_path = work_dir / f"{runtime}.log"
            if cold:
                cold_run = _Subprocess(python, ["--runtime", runtime, "--cold-start"], env, log_path)
                cold_result = cold_run.run(runtime, 180).get("init_to_first_result")
                keep(runtime, "init_to_first_result", cold_result or {"error": "cold start died"})
            results: dict[str, Result] = {}
            if in_round and runtime == "ember" and not ember_subprocess:
                results = _runner.run_round(
                    "ember", in_round, cfg, emit=lambda n, res: _show("ember", n, res)
                )
            elif in_round:
                results = _run_round_in_subprocess(runtime, python, env, in_round, config_json, log_path)
            for name in isolated:
                results.update(_run_round_in_subprocess(runtime, python, env, [name], config_json, log_path))
            for name in in_round + isolated:
                keep(runtime, name, results.get(name, {"error": "no result (crash or timeout)"}))
            _log(f"  {runtime} round took {time.perf_counter() - start:.1f} s")
        if with_baseline and any(w.baseline for w in chosen):
            _log(f"round {r + 1}/{rounds}: baseline")
            args = ["--runtime", "baseline", "--config", config_json, "--only", *names]
            baseline_run = _Subprocess(sys.executable, args, plain_env, work_dir / "baseline.log")
            for name, result in baseline_run.run("baseline", round_timeout_s).items():
                keep("baseline", name, result)
    return collected


# --------------------------------------------------------------------------- summary


def _median(results: list[Result]) -> float | None:
    values = [r["value"] for r in results if isinstance(r.get("value"), (int, float))]
    return statistics.median(values) if values else None


def _status(results: list[Result]) -> str:
    for r in results:
        if "skipped" in r:
            return "skipped"
    return "error" if results else "-"


def _ratio(w: Workload, ember: float | None, ray: float | None) -> float | None:
    if ember is None or ray is None or ember <= 0 or ray <= 0:
        return None
    return ember / ray if w.better == "higher" else ray / ember


def _targets(w: Workload, ember: float | None, ratio: float | None, baseline: float | None) -> str:
    """Issue 3's targets for this row, each `met` / `missed` / `n/a`."""

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("met" if ok else "MISSED")

    need = 5.0 if "ratio>=5" in w.targets else 3.0 if "ratio>=3" in w.targets else 2.0
    parts = [f">={need:g}x Ray: {verdict(None if ratio is None else ratio >= need)}"]
    for target in w.targets:
        if target == "<1 ms":
            parts.append(f"<1 ms: {verdict(None if ember is None else ember < 1.0)}")
        elif target == ">=70% memcpy":
            ok = None if ember is None or not baseline else ember >= 0.7 * baseline
            share = "" if ember is None or not baseline else f" ({ember / baseline:.0%})"
            parts.append(f">=70% memcpy: {verdict(ok)}{share}")
        elif target == "<2 KB/task":
            parts.append(f"<2 KB/task: {verdict(None if ember is None else ember < 2048)}")
    return "; ".join(parts)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def summarize(names: list[str], collected: Rounds) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        w = workloads.BY_NAME[name]
        runs = {rt: collected[rt].get(name, []) for rt in collected}
        ember, ray, baseline = (_median(runs[rt]) for rt in ("ember", "ray", "baseline"))
        ratio = _ratio(w, ember, ray)
        rows.append({
            "workload": name,
            "unit": w.unit,
            "better": w.better,
            "ember": ember,
            "ray": ray,
            "ratio": ratio,
            "baseline": baseline,
            "ember_status": _status(runs["ember"]) if ember is None else "ok",
            "ray_status": _status(runs["ray"]) if ray is None else "ok",
            "targets": _targets(w, ember, ratio, baseline),
        })
    return rows


def render_table(rows: list[dict[str, Any]], with_ember: bool, with_ray: bool) -> str:
    """A Markdown table (pasted as-is into docs/benchmarks.md)."""
    header = ["workload", "unit", "ember", "Ray", "ratio", "plain Python", "targets"]
    body = []
    for row in rows:
        ember = _fmt(row["ember"]) if row["ember"] is not None else (row["ember_status"] if with_ember else "not run")
        ray = _fmt(row["ray"]) if row["ray"] is not None else (row["ray_status"] if with_ray else "not run")
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        body.append([row["workload"], row["unit"], ember, ray, ratio, _fmt(row["baseline"]), row["targets"]])
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    right = {2, 3, 4, 5}

    def line(cells: list[str]) -> str:
        padded = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if i in right else "-" * w for i, w in enumerate(widths)]
    return "\n".join([line(header), line(rule), *(line(b) for b in body)])


def _versions(ray_python: str | None) -> dict[str, str]:
    import numpy

    def dist_version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    commit = os.environ.get("EMBER_BENCH_COMMIT") or subprocess.run(
        ["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
        capture_output=True, text=True,
    ).stdout.strip()
    spec = importlib.util.find_spec("ember")
    info = {
        "ember": f"{dist_version('ember')} (git {commit or 'unknown'})",
        "ember_from": str(Path(spec.origin).parent) if spec and spec.origin else "not importable",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "machine": f"{os.cpu_count()} cores, {_total_memory_gb():.0f} GB, {platform.platform()}",
    }
    if ray_python:
        probe = subprocess.run(
            [ray_python, "-c", "import ray, numpy, sys; print(ray.__version__, numpy.__version__, sys.version.split()[0])"],
            capture_output=True, text=True, timeout=120,
        )
        info["ray"] = probe.stdout.strip() and "ray {} (numpy {}, python {})".format(*probe.stdout.split())
    return info


def _total_memory_gb() -> float:
    import psutil

    return psutil.virtual_memory().total / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray-python", default=None,
                        help=f"Ray's interpreter (default: {DEFAULT_RAY_PYTHON.relative_to(REPO_ROOT)} if present)")
    parser.add_argument("--no-ray", action="store_true", help="run ember (and the baseline) only")
    parser.add_argument("--no-ember", action="store_true", help="run Ray (and the baseline) only")
    parser.add_argument("--no-baseline", action="store_true", help="skip the plain-Python baseline")
    parser.add_argument("--ember-subprocess", action="store_true",
                        help="run ember's rounds in a child interpreter too, so a hung workload "
                             "costs only itself (default: in this process)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per runtime (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and budgets: a smoke run")
    parser.add_argument("--budget-s", type=float, default=None, help="timed seconds per workload per round")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="workloads to run (see --list)")
    parser.add_argument("--list", action="store_true", help="list workload names and exit")
    parser.add_argument("--json", type=Path, help="write every round's raw results here")
    args = parser.parse_args(argv)

    if args.list:
        for w in workloads.WORKLOADS:
            print(f"{w.name:<34} {w.unit:<9} {w.description}")
        return 0
    names = args.only or [w.name for w in workloads.WORKLOADS]
    unknown = [n for n in names if n not in workloads.BY_NAME]
    if unknown:
        parser.error(f"unknown workload(s) {unknown}; --list shows the names")

    ray_python: str | None = None
    if not args.no_ray:
        ray_python = args.ray_python or (str(DEFAULT_RAY_PYTHON) if DEFAULT_RAY_PYTHON.exists() else None)
        if ray_python is None:
            _log("no Ray interpreter (run benchmarks/setup_ray_venv.sh or pass --ray-python); ember only")
        elif not Path(ray_python).exists():
            parser.error(f"--ray-python {ray_python} does not exist")

    cfg = Config.quick() if args.quick else Config()
    if args.budget_s is not None:
        cfg = Config(**{**dataclasses.asdict(cfg), "budget_s": args.budget_s})
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)

    versions = _versions(ray_python)
    _log("versions: " + json.dumps(versions))
    work_dir = Path(tempfile.mkdtemp(prefix="ember-bench-"))
    _runner.on_abort.append(lambda: shutil.rmtree(work_dir, ignore_errors=True))
    started = time.time()
    try:
        collected = run_suite(
            names, cfg, rounds, ray_python, not args.no_ember, not args.no_baseline, work_dir,
            ember_subprocess=args.ember_subprocess,
        )
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    rows = summarize(names, collected)

    print(f"\n{rounds} round(s), medians; ratio > 1 means ember is better "
          f"(throughput ember/Ray, times and bytes Ray/ember)")
    print(render_table(rows, with_ember=not args.no_ember, with_ray=ray_python is not None))
    if args.json:
        args.json.write_text(json.dumps({
            "versions": versions,
            "config": dataclasses.asdict(cfg),
            "rounds": rounds,
            "started_unix_s": started,
            "load_average_at_end": os.getloadavg(),
            "wall_s": time.time() - started,
            "command": " ".join(sys.argv),
            "summary": rows,
            "raw": collected,
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

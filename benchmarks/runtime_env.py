"""What a pip runtime_env costs: the first task of a new env (virtualenv built, package
installed from a local wheel with --no-index, worker started), then tasks in the warm env
next to plain tasks, ember and Ray 2.60 side by side (each in a fresh subprocess).

    python benchmarks/runtime_env.py              # 3 rounds, Ray from .ray-venv if present
    python benchmarks/runtime_env.py --rounds 1 --no-ray

Figures are medians over rounds; ratio = ember / Ray (for cold_s, lower is better).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_RAY_PYTHON = BENCH_DIR.parent / ".ray-venv" / "bin" / "python"
RESULT_PREFIX = "@@bench "

sys.path.insert(0, str(BENCH_DIR))
import _runner  # noqa: E402

#: Runs in the child (ember's or Ray's interpreter): one round of the three measures.
CHILD = r'''
import base64, hashlib, json, os, sys, tempfile, time, zipfile
import _runner

def build_wheel(directory, name):
    dist = f"{name}-1.0.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 1\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    with zipfile.ZipFile(os.path.join(directory, f"{name}-1.0-py3-none-any.whl"), "w") as zf:
        for member, text in files.items():
            data = text.encode()
            zf.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        zf.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")

name = "bench_env_pkg_" + os.urandom(4).hex()
wheels = tempfile.mkdtemp()
build_wheel(wheels, name)
rt = _runner.init_runtime(sys.argv[1])
env = {"pip": {"packages": [name], "pip_install_options": ["--no-index", "--find-links", wheels]}}
n = int(sys.argv[2])

@rt.remote
def probe():
    return __import__(name).VALUE

@rt.remote
def plain():
    return 1

start = time.perf_counter()
rt.get(probe.options(runtime_env=env).remote())
cold_s = time.perf_counter() - start
in_env = probe.options(runtime_env=env)
rt.get([in_env.remote() for _ in range(20)])
start = time.perf_counter()
rt.get([in_env.remote() for _ in range(n)])
env_rate = n / (time.perf_counter() - start)
rt.get([plain.remote() for _ in range(20)])
start = time.perf_counter()
rt.get([plain.remote() for _ in range(n)])
plain_rate = n / (time.perf_counter() - start)
print("@@bench " + json.dumps({"cold_s": cold_s, "env_tasks_per_s": env_rate, "plain_tasks_per_s": plain_rate}),
      flush=True)
rt.shutdown()
'''


def _round(python: str, runtime: str, env: dict[str, str] | None, tasks: int, timeout_s: float) -> dict | None:
    try:
        done = subprocess.run([python, "-c", CHILD, runtime, str(tasks)], env=env, capture_output=True, text=True,
                              timeout=timeout_s, cwd=str(BENCH_DIR))
    except subprocess.TimeoutExpired:
        print(f"  {runtime}: timed out after {timeout_s:g} s", file=sys.stderr)
        return None
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    print(f"  {runtime}: no result (exit {done.returncode}): {done.stderr[-800:]}", file=sys.stderr)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--ray-python", default=str(DEFAULT_RAY_PYTHON))
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, list[dict]] = {"ember": [], "ray": []}
    with tempfile.TemporaryDirectory(prefix="bench-ray-home-") as home:
        for _ in range(args.rounds):
            got = _round(sys.executable, "ember", None, args.tasks, 600)
            if got:
                results["ember"].append(got)
            if not args.no_ray and Path(args.ray_python).exists():
                got = _round(args.ray_python, "ray", _runner.environment_for_ray(home), args.tasks, 900)
                if got:
                    results["ray"].append(got)
    print(f"{'measure':<20} {'ember':>10} {'ray':>10} {'ember/ray':>10}")
    for key in ("cold_s", "env_tasks_per_s", "plain_tasks_per_s"):
        values = {rt: statistics.median(r[key] for r in rs) if rs else None for rt, rs in results.items()}
        ratio = values["ember"] / values["ray"] if values["ember"] and values["ray"] else None
        print(f"{key:<20} {values['ember'] or float('nan'):>10.2f} {values['ray'] or float('nan'):>10.2f} "
              f"{ratio if ratio is not None else float('nan'):>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

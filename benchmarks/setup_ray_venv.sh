#!/usr/bin/env bash
# Creates the separate Ray virtualenv that benchmarks/core.py compares ember against.
#
# ember never imports Ray: Ray lives in its own interpreter at .ray-venv/ (gitignored),
# and benchmarks/core.py runs the Ray side of each round in a subprocess with it.
#
#   bash benchmarks/setup_ray_venv.sh            # -> .ray-venv/bin/python
#   RAY_VERSION="2.59.*" bash benchmarks/setup_ray_venv.sh
#
# psutil is listed explicitly because the shared runner measures the driver's RSS with it.
# The library benchmarks (train, tune, serve, rl) need Ray's library extras and their
# peers: torch is pinned first to the local CPU build (an unpinned torch pulls a CUDA
# build of several GB), then Stable-Baselines3 (rl.py's third column), httpx, optuna.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${RAY_VENV:-$repo_root/.ray-venv}"
ray_version="${RAY_VERSION:-2.60.*}"

python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "torch==2.13.0"
"$venv/bin/pip" install --quiet "ray[train,tune,serve,rllib]==$ray_version" "torch==2.13.0" numpy psutil \
    httpx optuna scikit-learn gymnasium stable-baselines3
"$venv/bin/python" -c 'import ray, numpy, sys; print(f"ray {ray.__version__}, numpy {numpy.__version__}, python {sys.version.split()[0]} -> " + sys.executable)'

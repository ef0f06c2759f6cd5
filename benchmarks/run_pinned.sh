#!/usr/bin/env bash
# Runs benchmarks/core.py against a frozen copy of one commit (default HEAD).
#
# The tree may change while a 10-minute suite runs (ember's workers import the code on
# disk each time a cluster starts), so for a table that belongs to one commit, export
# that commit with `git archive` and put its core/ first on PYTHONPATH as `ember`.
#
#   bash benchmarks/run_pinned.sh [COMMIT] -- [core.py arguments...]
#   bash benchmarks/run_pinned.sh HEAD -- --rounds 5 --json /tmp/core.json
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
commit="HEAD"
if [[ $# -gt 0 && "$1" != "--" ]]; then commit="$1"; shift; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
sha="$(git -C "$repo_root" rev-parse --short "$commit")"

snapshot="$(mktemp -d "${TMPDIR:-/tmp}/ember-bench-$sha-XXXXXX")"
trap 'rm -rf "$snapshot"' EXIT
git -C "$repo_root" archive "$sha" | tar -x -C "$snapshot"
mkdir "$snapshot/.pypath"
ln -s "$snapshot/core" "$snapshot/.pypath/ember"

python="${EMBER_PYTHON:-$repo_root/.venv/bin/python}"
ray_python="${RAY_PYTHON:-$repo_root/.ray-venv/bin/python}"
ray_args=()
[[ -x "$ray_python" ]] && ray_args=(--ray-python "$ray_python")
EMBER_BENCH_COMMIT="$sha (pinned snapshot)" PYTHONPATH="$snapshot/.pypath${PYTHONPATH:+:$PYTHONPATH}" \
    "$python" "$snapshot/benchmarks/core.py" "${ray_args[@]}" "$@"

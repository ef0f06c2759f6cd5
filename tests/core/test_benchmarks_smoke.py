"""benchmarks/core.py still runs: one quick workload on ember, no Ray, no timing asserted.

The benchmark suite is run by hand (never as a timed test), so without this a change in
ember's API or in the runner would only show up the next time someone benchmarks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_suite_prints_a_table_for_one_quick_workload() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "core.py"),
            "--quick",
            "--no-ray",
            "--no-baseline",
            "--only",
            "single_client_tasks_sync",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("|")]
    assert table[0].split("|")[1].strip() == "workload", proc.stdout
    row = next(line for line in table if "single_client_tasks_sync" in line)
    ember_cell = row.split("|")[3].strip()
    assert ember_cell.replace(",", "").replace(".", "").isdigit(), (row, proc.stderr[-3000:])

"""benchmarks/serve.py still runs: one short ember workload, no Ray, no timing asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_serve_benchmark_prints_a_row(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "benchmarks" / "serve.py"), "--duration-s", "1",
                           "--workloads", "noop", "--systems", "ember", "--loadgen", "httpx",
                           "--out", str(tmp_path / "serve")],
                          capture_output=True, text=True, timeout=170, cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| noop")]
    assert len(rows) == 1, (proc.stdout, proc.stderr[-3000:])
    for row in rows:
        cells = [c.strip() for c in row.split("|")]
        assert cells[3].replace(",", "").isdigit() and cells[6] == "0", row  # requests/s, no errors
    assert (tmp_path / "serve.json").exists()

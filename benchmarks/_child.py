"""One measurement in a fresh interpreter, read back from its stdout.

The library benchmarks (rl.py, tune.py) start each (runtime, workload) as a child process
in a session of its own, so a runtime's leftovers never reach the next measurement and a
hung child is killed with everything it started. The child prints its result as one line
``PREFIX {json}``; everything else it prints goes to the log file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any


def run_child(argv: list[str], env: dict[str, str], log_path: Path, timeout_s: float,
              prefix: str, cwd: Path, what: str) -> dict[str, Any]:
    """Run ``argv``; return the JSON of its last ``prefix`` line, or ``{"error": ...}``
    naming ``what`` ran."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=env, cwd=cwd,
                                start_new_session=True, text=True)
        timer = threading.Timer(timeout_s, os.killpg, args=(proc.pid, signal.SIGKILL))
        timer.start()
        result: dict[str, Any] = {"error": f"{what} run died (see {log_path})"}
        try:
            assert proc.stdout is not None  # set by stdout=PIPE
            for line in proc.stdout:
                if line.startswith(prefix):
                    result = json.loads(line[len(prefix):])
            proc.wait()
        finally:
            timer.cancel()
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the child left running
            except ProcessLookupError:
                pass
    return result

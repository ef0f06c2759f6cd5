"""Resumable sweeps: a driver SIGKILLed mid-sweep, then ``Tuner.restore`` finishes the rest."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys

import psutil
import pytest

from ember import tune

from conftest import process_gone, wait_for
from _tune_trainables import logged_counter

DRIVER = os.path.join(os.path.dirname(__file__), "_tune_sweep_driver.py")


def _finished(run_path: str) -> list[str]:
    done = []
    for path in glob.glob(os.path.join(run_path, "*", "trial_state.json")):
        try:
            state = json.load(open(path))
        except (OSError, ValueError):
            continue
        if state["status"] == "TERMINATED":
            done.append(state["trial_id"])
    return done


@pytest.mark.timeout(180)
def test_restore_after_sigkill_finishes_only_the_remaining_trials(ember_local, tmp_path) -> None:
    log = tmp_path / "starts.log"
    driver = subprocess.Popen([sys.executable, DRIVER, str(tmp_path), str(log)],
                              start_new_session=True)
    run_path = str(tmp_path / "killed")
    try:
        wait_for(lambda: len(_finished(run_path)) >= 3, timeout_s=90,
                 what="three trials of the driven sweep to finish")
        # Kill mid-sweep: some trials done, some running with checkpoints.
        family = [driver.pid] + [c.pid for c in psutil.Process(driver.pid).children(True)]
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    for pid in family:
        wait_for(lambda pid=pid: process_gone(pid), timeout_s=30, what=f"process {pid} to exit")
    finished_before = set(_finished(run_path))
    starts_before = log.read_text().splitlines()
    assert 3 <= len(finished_before) < 8

    checkpointed = set()
    for path in glob.glob(os.path.join(run_path, "*", "trial_state.json")):
        state = json.load(open(path))
        if state["status"] != "TERMINATED" and state["checkpoint"]:
            checkpointed.add(state["config"]["i"])

    assert tune.Tuner.can_restore(run_path)
    grid = tune.Tuner.restore(run_path, logged_counter).fit()
    assert len(grid) == 8 and grid.num_errors == 0
    assert sorted(r.config["i"] for r in grid) == list(range(8))
    assert all(r.metrics["step"] == 4 for r in grid)

    starts_after = log.read_text().splitlines()[len(starts_before):]
    rerun = {int(line.split()[0]) for line in starts_after}
    finished_configs = {r.config["i"] for r in grid if r.metrics["trial_id"] in finished_before}
    assert finished_configs and not (rerun & finished_configs), \
        "a trial that had finished before the kill ran again"
    assert len(rerun) == 8 - len(finished_before)
    # Trials that had checkpointed resume from their checkpoint rather than from scratch.
    for i, start in (map(int, line.split()) for line in starts_after):
        if i in checkpointed:
            assert start > 0, f"trial i={i} had a checkpoint but restarted from scratch"

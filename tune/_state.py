"""The experiment's files: what ``Tuner.restore`` reads back after any interruption.

    storage_path/name/
        tuner.pkl                the Tuner's param_space, TuneConfig and RunConfig (once)
        experiment_state.json    trial list + how many trials the searcher had suggested
        searcher_state.pkl       the searcher and scheduler, pickled at that same moment
        <trial dir>/trial_state.json   one trial's status, config, latest checkpoint
        <trial dir>/params.json, progress.csv, result.json, checkpoint_NNNNNN/, error.txt

The experiment-wide files are written at most every ``STATE_INTERVAL_S`` and at the end,
so a sweep of thousands of short trials does not rewrite a growing file per event. A
trial's own ``trial_state.json`` is written when it starts, checkpoints and ends — small,
atomic, per trial — so after a SIGKILL the restore still knows exactly which trials
finished, even those that finished after the last experiment-wide write.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import cloudpickle
import pyarrow.fs as pafs

from ember.train._storage import StorageContext

from .errors import TuneRestoreError
from .trial import Trial

STATE_FILE = "experiment_state.json"
SEARCHER_FILE = "searcher_state.pkl"
TUNER_FILE = "tuner.pkl"
TRIAL_STATE_FILE = "trial_state.json"
STATE_INTERVAL_S = 2.0


def _write_bytes(storage: StorageContext, relative: str, payload: bytes) -> None:
    # Through StorageContext.write_text because it is atomic; base64 makes bytes text.
    storage.write_text(relative, base64.b64encode(payload).decode("ascii"))


def _read_bytes(storage: StorageContext, relative: str) -> bytes | None:
    text = storage.read_text(relative)
    return None if text is None else base64.b64decode(text)


class ExperimentState:
    """Writes (throttled) and reads the experiment's state files."""

    def __init__(self, storage: StorageContext) -> None:
        self.storage = storage
        self._last_write = 0.0

    def save_tuner(self, tuner_state: dict[str, Any]) -> None:
        _write_bytes(self.storage, TUNER_FILE, cloudpickle.dumps(tuner_state))

    def save_trial(self, trial: Trial) -> None:
        self.storage.write_text(f"{trial.dirname}/{TRIAL_STATE_FILE}",
                                json.dumps(trial.to_state(), default=str))

    def save(self, trials: list[Trial], num_suggested: int, searcher: Any, scheduler: Any,
             force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_write < STATE_INTERVAL_S:
            return
        self._last_write = now
        _write_bytes(self.storage, SEARCHER_FILE,
                     cloudpickle.dumps({"searcher": searcher, "scheduler": scheduler,
                                        "num_suggested": num_suggested}))
        self.storage.write_text(STATE_FILE, json.dumps({
            "version": 1, "timestamp": time.time(), "num_suggested": num_suggested,
            "trials": [t.dirname for t in trials]}))

    @staticmethod
    def exists(storage: StorageContext) -> bool:
        return storage.read_text(STATE_FILE) is not None \
            and _read_bytes(storage, TUNER_FILE) is not None

    def load(self) -> tuple[dict[str, Any], dict[str, Any], list[Trial]]:
        """(tuner state, searcher state, trials) of the experiment in this folder."""
        raw_tuner = _read_bytes(self.storage, TUNER_FILE)
        raw_state = self.storage.read_text(STATE_FILE)
        if raw_tuner is None or raw_state is None:
            raise TuneRestoreError(
                f"{self.storage.run_path!r} holds no ember.tune experiment (no {TUNER_FILE} / "
                f"{STATE_FILE}); pass the folder a Tuner wrote: storage_path/name")
        tuner_state = cloudpickle.loads(raw_tuner)
        raw_searcher = _read_bytes(self.storage, SEARCHER_FILE)
        searcher_state = cloudpickle.loads(raw_searcher) if raw_searcher else {}
        trials = []
        selector = self.storage.filesystem.get_file_info(
            pafs.FileSelector(self.storage.run_path))
        for info in selector:
            if info.type.name != "Directory":
                continue
            text = self.storage.read_text(f"{info.base_name}/{TRIAL_STATE_FILE}")
            if text:
                trials.append(Trial.from_state(json.loads(text)))
        trials.sort(key=lambda t: t.index)
        return tuner_state, searcher_state, trials

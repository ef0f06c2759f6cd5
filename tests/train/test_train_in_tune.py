"""fit() inside a Tune trial: results and checkpoints go on to the trial's session, and
training resumes from the trial's checkpoint (the seam ember.tune uses)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from _train_loops import epochs_loop
from ember.train import Checkpoint, RunConfig, ScalingConfig, TrainContext
from ember.train._session import session_scope
from ember.train.torch import TorchTrainer


class TrialSession:
    """What an ember.tune trial installs in its process (here: records what it gets)."""

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self.context = TrainContext(trial_name="trial_00001", trial_id="00001",
                                    experiment_name="sweep")
        self.reports: list[tuple[dict[str, Any], Checkpoint | None]] = []
        self._checkpoint = checkpoint

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        self.reports.append((metrics, checkpoint))

    def get_checkpoint(self) -> Checkpoint | None:
        return self._checkpoint

    def get_dataset_shard(self, name: str) -> Any:
        raise KeyError(name)


@pytest.mark.timeout(90)
def test_a_trainer_inside_a_trial_reports_to_the_trial_and_resumes_from_its_checkpoint(
        ember_local: Any, tmp_path: Any) -> None:
    resume = tmp_path / "trial_checkpoint"
    resume.mkdir()
    (resume / "state.json").write_text(json.dumps({"epoch": 1}))
    session = TrialSession(Checkpoint.from_directory(resume))
    with session_scope(session):
        result = TorchTrainer(epochs_loop, train_loop_config={"epochs": 4},
                              scaling_config=ScalingConfig(num_workers=2),
                              run_config=RunConfig(storage_path=str(tmp_path))).fit()
    assert [m["epoch"] for m, _ in session.reports] == [2, 3]
    assert all(m["start"] == 2 and m["trial"] == "trial_00001" for m, _ in session.reports)
    last_metrics, last_checkpoint = session.reports[-1]
    assert last_checkpoint == result.checkpoint
    with last_checkpoint.as_directory() as folder:
        assert json.load(open(os.path.join(folder, "state.json"))) == {"epoch": 3}
    assert result.metrics == last_metrics

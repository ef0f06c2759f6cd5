"""``tune.Trainable`` driven by hand (no cluster): bookkeeping, checkpoints, reuse."""

from __future__ import annotations

import os

import pytest

from ember import tune

from _tune_trainables import Quadratic

pytestmark = pytest.mark.timeout(30)


class FileState(tune.Trainable):
    """Checkpoints into the directory rather than returning a dict."""

    def setup(self, config: dict) -> None:
        self.n = config.get("start", 0)

    def step(self) -> dict:
        self.n += 1
        return {"n": self.n}

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        with open(os.path.join(checkpoint_dir, "n.txt"), "w") as f:
            f.write(str(self.n))

    def load_checkpoint(self, checkpoint: str) -> None:
        with open(os.path.join(checkpoint, "n.txt")) as f:
            self.n = int(f.read())


def test_train_adds_tunes_bookkeeping_fields() -> None:
    trainable = Quadratic({"x": 1})
    first, second = trainable.train(), trainable.train()
    assert (first["training_iteration"], second["training_iteration"]) == (1, 2)
    assert second["score"] == 8.0 and second["time_total_s"] >= first["time_total_s"]
    assert second["trial_id"] == trainable.trial_id and second["done"] is False
    assert trainable.iteration == 2


def test_dict_checkpoints_restore_state_and_iteration(tmp_path) -> None:
    trainable = Quadratic({"x": 5})
    for _ in range(3):
        trainable.train()
    checkpoint = trainable.save(str(tmp_path / "ckpt"))
    fresh = Quadratic({"x": 5})
    fresh.restore(checkpoint)
    assert fresh.value == trainable.value and fresh.iteration == 3
    assert fresh.train()["iterations_since_restore"] == 1


def test_directory_checkpoints_restore_from_a_path(tmp_path) -> None:
    trainable = FileState({"start": 10})
    trainable.train()
    checkpoint = trainable.save()
    fresh = FileState({})
    fresh.restore(checkpoint.path)
    assert fresh.n == 11 and fresh.iteration == 1


def test_reset_reuses_the_object_for_a_new_config() -> None:
    trainable = Quadratic({"x": 1})
    trainable.train()
    assert trainable.reset({"x": 3})
    assert trainable.iteration == 0 and trainable.train()["score"] == 0.0
    assert not FileState({}).reset({"start": 1})  # reset_config not overridden


def test_misuse_raises_typed_errors_that_name_the_fix() -> None:
    class NoStep(tune.Trainable):
        pass

    with pytest.raises(NotImplementedError, match="must define step"):
        NoStep({}).train()

    class BadStep(tune.Trainable):
        def step(self):
            return 3

    with pytest.raises(TypeError, match="must return a dict"):
        BadStep({}).train()
    with pytest.raises(NotImplementedError, match="save_checkpoint"):
        NoStep({}).save()

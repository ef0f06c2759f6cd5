"""The public surface: Ray Train's import paths work, and docs/train.md names every export."""

from __future__ import annotations

from pathlib import Path

import ember.train
import ember.train.torch

DOCS = Path(__file__).resolve().parents[2] / "docs" / "train.md"


def test_ray_train_import_paths_resolve_to_the_same_objects() -> None:
    from ember.train import Checkpoint, RunConfig, ScalingConfig  # noqa: F401
    from ember.train.torch import TorchTrainer
    assert ember.train.TorchTrainer is TorchTrainer
    assert issubclass(TorchTrainer, ember.train.DataParallelTrainer)
    for name in ember.train.__all__:
        assert getattr(ember.train, name) is not None, name
    for name in ember.train.torch.__all__:
        assert callable(getattr(ember.train.torch, name)), name


def test_the_docs_name_every_export() -> None:
    text = DOCS.read_text()
    missing = [name for name in ember.train.__all__ + ember.train.torch.__all__
               if f"`{name}" not in text]
    assert missing == []

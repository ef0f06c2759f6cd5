"""Checkpoints, the run folder, and which checkpoints are kept (plain calls, no cluster)."""

from __future__ import annotations

import json
import os
from typing import Any

import pandas as pd
import pytest

from ember.train import Checkpoint, CheckpointConfig, CheckpointError, Result, StorageError
from ember.train._storage import CheckpointManager, ResultLog, StorageContext


def _folder(tmp_path: Any, name: str, content: str = "x") -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.txt").write_text(content)
    return str(folder)


def test_a_checkpoint_copies_reads_and_keeps_metadata(tmp_path: Any) -> None:
    checkpoint = Checkpoint.from_directory(_folder(tmp_path, "src", "weights"))
    checkpoint.set_metadata({"epoch": 3})
    checkpoint.update_metadata({"loss": 0.5})
    assert checkpoint.get_metadata() == {"epoch": 3, "loss": 0.5}
    copy = checkpoint.to_directory(str(tmp_path / "copy"))
    assert open(os.path.join(copy, "model.txt")).read() == "weights"
    with checkpoint.as_directory() as folder:
        assert folder == checkpoint.path  # local: no copy
    uri = Checkpoint(f"file://{checkpoint.path}")
    assert not uri.is_local or uri.path == checkpoint.path
    with uri.as_directory() as folder:
        assert open(os.path.join(folder, "model.txt")).read() == "weights"
    with pytest.raises(CheckpointError, match="JSON-serializable"):
        checkpoint.set_metadata({"bad": object()})


def test_a_checkpoint_of_a_deleted_directory_says_so(tmp_path: Any) -> None:
    checkpoint = Checkpoint(str(tmp_path / "gone"))
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.to_directory()
    with pytest.raises(CheckpointError, match="not a filesystem URI pyarrow supports"):
        Checkpoint("nosuchscheme://bucket/x")


def test_storage_persists_checkpoints_by_number_and_rejects_unwritable_paths(
        tmp_path: Any) -> None:
    storage = StorageContext(str(tmp_path), "run")
    persisted = storage.persist_checkpoint(
        Checkpoint.from_directory(_folder(tmp_path, "src")), 7)
    assert persisted.path == str(tmp_path / "run" / "checkpoint_000007")
    assert os.path.isfile(os.path.join(persisted.path, "model.txt"))
    storage.write_text("notes/a.txt", "hello")
    assert storage.read_text("notes/a.txt") == "hello"
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="not writable"):
        StorageContext(str(tmp_path / "file" / "below"), "run")


def test_the_result_log_widens_its_csv_when_a_new_metric_appears(tmp_path: Any) -> None:
    storage = StorageContext(str(tmp_path), "run")
    log = ResultLog(storage)
    log.append({"loss": 1.0})
    log.append({"loss": 0.5, "acc": 0.9, "_hidden": 1, "nested": {"a": 1}})
    frame = pd.read_csv(tmp_path / "run" / "progress.csv")
    assert list(frame.columns) == ["loss", "acc", "nested"]
    assert json.loads(frame["nested"].iloc[1]) == {"a": 1}
    lines = (tmp_path / "run" / "result.json").read_text().splitlines()
    assert [json.loads(line)["loss"] for line in lines] == [1.0, 0.5]
    assert Result.from_path(str(tmp_path / "run")).metrics["acc"] == 0.9
    log.append({"loss": 0.25, "acc": 0.95})  # same columns: appended, not rewritten
    assert list(pd.read_csv(tmp_path / "run" / "progress.csv")["loss"]) == [1.0, 0.5, 0.25]

    again = ResultLog(storage)  # a later driver of the same run
    again.load([json.loads(line) for line in
                (tmp_path / "run" / "result.json").read_text().splitlines()])
    again.append({"loss": 0.125, "acc": 0.97})
    assert list(pd.read_csv(tmp_path / "run" / "progress.csv")["loss"]) == [1.0, 0.5, 0.25,
                                                                           0.125]
    assert len((tmp_path / "run" / "result.json").read_text().splitlines()) == 4


def test_checkpoints_are_kept_by_score_and_the_latest_always_survives(tmp_path: Any) -> None:
    storage = StorageContext(str(tmp_path), "run")
    manager = CheckpointManager(CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="acc",
                                                 checkpoint_score_order="max"), storage)
    src = Checkpoint.from_directory(_folder(tmp_path, "src"))
    for index, acc in enumerate([0.5, 0.9, 0.7, 0.1]):
        manager.register(storage.persist_checkpoint(src, index), {"acc": acc})
    kept = [os.path.basename(c.path) for c, _ in manager.kept]
    # Best two (0.9, 0.7) plus the latest (0.1), which a restart would resume from.
    assert kept == ["checkpoint_000001", "checkpoint_000002", "checkpoint_000003"]
    assert not os.path.exists(tmp_path / "run" / "checkpoint_000000")
    assert [m["acc"] for _, m in manager.best_checkpoints()] == [0.9, 0.7, 0.1]
    assert os.path.basename(manager.best.path) == "checkpoint_000001"

    recent = CheckpointManager(CheckpointConfig(num_to_keep=1), StorageContext(str(tmp_path),
                                                                               "run2"))
    for index in range(3):
        recent.register(recent._storage.persist_checkpoint(src, index), {})
    assert [os.path.basename(c.path) for c, _ in recent.kept] == ["checkpoint_000002"]

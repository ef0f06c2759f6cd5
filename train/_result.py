"""``Result``: what ``fit()`` returns for a run (and ember.tune for each trial)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs

from ._checkpoint import Checkpoint, resolve_filesystem
from ._storage import CHECKPOINT_DIR_FORMAT
from .errors import CheckpointError

if TYPE_CHECKING:  # pandas is imported when a DataFrame is built: workers never need it
    import pandas as pd


@dataclasses.dataclass
class Result:
    """The outcome of one training run (Ray's ``ray.train.Result``).

    Attributes:
        metrics: the last reported metrics (rank 0's).
        checkpoint: the latest persisted checkpoint, or None.
        error: the error that ended the run, or None if it finished.
        path: the run's folder (``storage_path/name``).
        metrics_dataframe: every report, one row each.
        best_checkpoints: (checkpoint, metrics) pairs kept by ``CheckpointConfig``, best first.
        config: the run's configuration (``train_loop_config``, or a trial's config).
    """

    metrics: dict[str, Any] | None
    checkpoint: Checkpoint | None
    error: BaseException | None = None
    path: str | None = None
    metrics_dataframe: pd.DataFrame | None = None
    best_checkpoints: list[tuple[Checkpoint, dict[str, Any]]] = dataclasses.field(
        default_factory=list)
    config: dict[str, Any] | None = None

    @property
    def filesystem(self) -> Any:
        return resolve_filesystem(self.path)[0] if self.path else None

    def get_best_checkpoint(self, metric: str, mode: str) -> Checkpoint | None:
        """The kept checkpoint with the best ``metric`` (``mode`` "max" or "min")."""
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: use 'max' or 'min'")
        scored = [(c, m[metric]) for c, m in self.best_checkpoints
                  if isinstance(m.get(metric), (int, float))]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[1])[0]

    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> Result:
        """Rebuild a Result from a run folder written by ember.train or ember.tune."""
        fs, root = resolve_filesystem(path)
        info = fs.get_file_info(f"{root}/result.json")
        if info.type.name != "File":
            raise CheckpointError(f"{os.fspath(path)!r} holds no result.json: it is not the "
                                  "folder of an ember.train run or ember.tune trial")
        with fs.open_input_stream(f"{root}/result.json") as stream:
            rows = [json.loads(line) for line in stream.read().decode().splitlines() if line]
        selector = fs.get_file_info(pafs.FileSelector(root))
        checkpoints = sorted(i.path for i in selector if i.base_name.startswith(
            CHECKPOINT_DIR_FORMAT.split("{")[0]) and i.type.name == "Directory")
        import pandas as pd
        latest = Checkpoint(checkpoints[-1], None if isinstance(fs, pafs.LocalFileSystem) else fs) \
            if checkpoints else None
        return cls(metrics=rows[-1] if rows else None, checkpoint=latest, path=root,
                   metrics_dataframe=pd.DataFrame(rows),
                   best_checkpoints=[(latest, rows[-1] if rows else {})] if latest else [])

    def __repr__(self) -> str:
        shown = {k: v for k, v in (self.metrics or {}).items() if not isinstance(v, dict)}
        return (f"Result(metrics={shown}, checkpoint={self.checkpoint!r}, path={self.path!r}"
                f"{', error=' + type(self.error).__name__ if self.error else ''})")

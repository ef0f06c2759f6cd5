"""A run's folder: where its metrics and checkpoints are persisted, and which are kept.

    storage_path/name/                     StorageContext.run_path
        progress.csv, result.json          ResultLog (one row / one JSON line per report)
        checkpoint_000000/ ...             StorageContext.persist_checkpoint
        (ember.tune adds one such folder per trial, plus its experiment state)

Everything is written through a pyarrow filesystem, so ``storage_path`` may be a local
directory or any URI pyarrow supports. Writes happen in the process that owns the run
(the Trainer's driver, or a Tune trial), never in a worker's hot loop.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import uuid
from collections.abc import Mapping
from typing import Any

import pyarrow.fs as pafs

from ._checkpoint import Checkpoint, copy_tree, resolve_filesystem
from ._config import CheckpointConfig
from .errors import StorageError

DEFAULT_STORAGE_PATH = "~/ember_results"
CHECKPOINT_DIR_FORMAT = "checkpoint_{:06d}"


class StorageContext:
    """The filesystem and folder of one run, made and checked writable at construction."""

    def __init__(self, storage_path: str | None, name: str) -> None:
        self.storage_path = storage_path or DEFAULT_STORAGE_PATH
        self.filesystem, root = resolve_filesystem(self.storage_path)
        self.run_path = f"{root.rstrip('/')}/{name}"
        try:
            self.filesystem.create_dir(self.run_path, recursive=True)
            # A name of its own: every rank that stages a checkpoint probes the same folder.
            probe = f"{self.run_path}/.write_probe_{uuid.uuid4().hex}"
            with self.filesystem.open_output_stream(probe) as stream:
                stream.write(b"ok")
            self.filesystem.delete_file(probe)
        except OSError as exc:
            raise StorageError(
                f"storage_path {self.storage_path!r} is not writable ({exc}); pass "
                "RunConfig(storage_path=...) a directory you can write to") from exc

    def write_text(self, relative: str, text: str) -> None:
        """Write ``text`` to ``run_path/relative`` atomically (local) or in one stream."""
        target = f"{self.run_path}/{relative}"
        if isinstance(self.filesystem, pafs.LocalFileSystem):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            tmp = f"{target}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, target)  # readers never see half a file (restore reads these)
            return
        with self.filesystem.open_output_stream(target) as stream:
            stream.write(text.encode())

    @property
    def can_append(self) -> bool:
        """Whether files here can be appended to (local disk; object stores cannot)."""
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def append_text(self, relative: str, text: str) -> None:
        """Append ``text`` to ``run_path/relative`` (only where ``can_append``)."""
        with open(f"{self.run_path}/{relative}", "a") as f:
            f.write(text)

    def read_text(self, relative: str) -> str | None:
        target = f"{self.run_path}/{relative}"
        if self.filesystem.get_file_info(target).type != pafs.FileType.File:
            return None
        with self.filesystem.open_input_stream(target) as stream:
            return stream.read().decode()

    def persist_checkpoint(self, checkpoint: Checkpoint, index: int,
                           subdir: str = "") -> Checkpoint:
        """Copy ``checkpoint`` to ``run_path/[subdir/]checkpoint_{index}``; return the copy."""
        base = f"{self.run_path}/{subdir}".rstrip("/")
        target = f"{base}/{CHECKPOINT_DIR_FORMAT.format(index)}"
        if checkpoint.path == target:
            return checkpoint
        copy_tree(checkpoint.filesystem, checkpoint.path, self.filesystem, target)
        return Checkpoint(target, None if isinstance(self.filesystem, pafs.LocalFileSystem)
                          else self.filesystem)

    def delete(self, checkpoint: Checkpoint) -> None:
        """Delete a persisted checkpoint (only ones inside this run's folder)."""
        if checkpoint.path.startswith(self.run_path + "/"):
            self.filesystem.delete_dir(checkpoint.path)


def _csv_value(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, (dict, list, tuple)) else value


class ResultLog:
    """Appends each reported result to ``progress.csv`` and ``result.json`` (JSON lines).

    The CSV's header is the union of keys seen so far; when a later report brings a new
    key the file is rewritten with the wider header, so the CSV always loads in pandas.
    Otherwise, on local disk, a report appends one line to each file, so a run with many
    reports costs the driver the same per report at the end as at the start.
    """

    def __init__(self, storage: StorageContext, subdir: str = "") -> None:
        self._storage = storage
        self._prefix = f"{subdir}/" if subdir else ""
        self.rows: list[dict[str, Any]] = []
        self._columns: list[str] = []
        #: Rows the files on disk hold, as this log wrote them; None: not known (the
        #: next append rewrites both files).
        self._written: int | None = None

    def load(self, rows: list[dict[str, Any]]) -> None:
        """Take ``rows`` written by an earlier driver as this log's first rows."""
        self.rows = list(rows)
        for row in self.rows:
            self._columns.extend(k for k in row if k not in self._columns)
        self._written = None

    def append(self, result: Mapping[str, Any]) -> None:
        row = {k: v for k, v in result.items() if not k.startswith("_")}
        self.rows.append(row)
        new = [k for k in row if k not in self._columns]
        self._columns.extend(new)
        if not new and self._written == len(self.rows) - 1 and self._storage.can_append:
            self._storage.append_text(f"{self._prefix}progress.csv", self._render_csv([row],
                                                                                   header=False))
            self._storage.append_text(f"{self._prefix}result.json",
                                      json.dumps(row, default=str) + "\n")
        else:
            self._storage.write_text(f"{self._prefix}progress.csv", self._render_csv(self.rows))
            self._storage.write_text(f"{self._prefix}result.json", "".join(
                json.dumps(r, default=str) + "\n" for r in self.rows))
        self._written = len(self.rows)

    def _render_csv(self, rows: list[dict[str, Any]], header: bool = True) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self._columns, extrasaction="ignore")
        if header:
            writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(v) for k, v in row.items()})
        return out.getvalue()


class CheckpointManager:
    """Keeps the checkpoints ``CheckpointConfig`` asks for and deletes the rest.

    Invariant: the latest checkpoint is always kept (a restart resumes from it), even when
    its score would drop it; it is deleted later once a newer one exists.
    """

    def __init__(self, config: CheckpointConfig | None, storage: StorageContext) -> None:
        self.config = config or CheckpointConfig()
        self._storage = storage
        #: (checkpoint, metrics) in report order.
        self.kept: list[tuple[Checkpoint, dict[str, Any]]] = []

    @property
    def latest(self) -> Checkpoint | None:
        return self.kept[-1][0] if self.kept else None

    def _score(self, metrics: Mapping[str, Any]) -> float:
        attr = self.config.checkpoint_score_attribute
        value = metrics.get(attr) if attr else None
        if not isinstance(value, (int, float)) or math.isnan(value):
            return -math.inf
        return value if self.config.checkpoint_score_order == "max" else -value

    def best_checkpoints(self) -> list[tuple[Checkpoint, dict[str, Any]]]:
        """Kept checkpoints, best first by score (report order when there is no score)."""
        if self.config.checkpoint_score_attribute is None:
            return list(self.kept)
        return sorted(self.kept, key=lambda item: self._score(item[1]), reverse=True)

    @property
    def best(self) -> Checkpoint | None:
        ranked = self.best_checkpoints()
        if not ranked:
            return None
        return ranked[0][0] if self.config.checkpoint_score_attribute else ranked[-1][0]

    def register(self, checkpoint: Checkpoint, metrics: Mapping[str, Any]) -> None:
        """Record a persisted checkpoint; delete those that fall out of ``num_to_keep``."""
        self.kept.append((checkpoint, dict(metrics)))
        limit = self.config.num_to_keep
        if limit is None or len(self.kept) <= limit:
            return
        latest = self.kept[-1]
        if self.config.checkpoint_score_attribute is None:
            ranked = list(reversed(self.kept))  # newest first
        else:
            ranked = self.best_checkpoints()
        keep = ranked[:limit]
        if latest not in keep:
            keep.append(latest)
        for item in self.kept:
            if item not in keep:
                self._storage.delete(item[0])
        self.kept = [item for item in self.kept if item in keep]

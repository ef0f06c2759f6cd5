"""``Checkpoint``: a directory of files, on local disk or any pyarrow filesystem.

A checkpoint is only a path plus the filesystem it lives on, so passing one between
processes (in a report, a Result, an actor call) costs a few bytes. Reading it locally is
``as_directory()`` (no copy when it is already local) or ``to_directory()`` (a copy).
Metadata is a small JSON file beside the user's files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from .errors import CheckpointError

#: Kept beside the user's files; skipped when the user lists the checkpoint's contents.
METADATA_FILE = ".metadata.json"


def resolve_filesystem(path: str | os.PathLike[str],
                       filesystem: pafs.FileSystem | None = None) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path on it) for a local path or a URI pyarrow understands."""
    path = os.fspath(path)
    if filesystem is not None:
        return filesystem, path
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except (ValueError, NotImplementedError, OSError) as exc:  # pyarrow's Arrow* errors
            raise CheckpointError(f"{path!r} is not a filesystem URI pyarrow supports "
                                  f"({exc}); use a local path or e.g. file:///abs/path") from exc
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def copy_tree(src_fs: pafs.FileSystem, src: str, dst_fs: pafs.FileSystem, dst: str) -> None:
    """Copy directory ``src`` into ``dst`` (created), across filesystems."""
    if isinstance(src_fs, pafs.LocalFileSystem) and isinstance(dst_fs, pafs.LocalFileSystem):
        shutil.copytree(src, dst, dirs_exist_ok=True)
        return
    dst_fs.create_dir(dst, recursive=True)
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)


class Checkpoint:
    """A directory holding the state of a model at one point of training (Ray's class).

    Args:
        path: the directory, a local path or a pyarrow filesystem URI.
        filesystem: a ``pyarrow.fs.FileSystem`` that ``path`` lives on, when not local.

    Example:
        >>> with tempfile.TemporaryDirectory() as d:
        ...     torch.save(model.state_dict(), os.path.join(d, "model.pt"))
        ...     ember.train.report({"loss": loss}, checkpoint=Checkpoint.from_directory(d))
    """

    def __init__(self, path: str | os.PathLike[str],
                 filesystem: pafs.FileSystem | None = None) -> None:
        self.filesystem, self.path = resolve_filesystem(path, filesystem)

    @classmethod
    def from_directory(cls, path: str | os.PathLike[str]) -> Checkpoint:
        """A checkpoint of the existing local directory ``path`` (not copied until reported)."""
        local = os.path.abspath(os.fspath(path))
        if not os.path.isdir(local):
            raise CheckpointError(
                f"Checkpoint.from_directory({os.fspath(path)!r}): no such directory; write the "
                "checkpoint's files into a directory first, then pass that directory")
        return cls(local)

    @property
    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def _require_exists(self) -> None:
        if self.filesystem.get_file_info(self.path).type != pafs.FileType.Directory:
            raise CheckpointError(
                f"checkpoint directory {self.path!r} does not exist (was it deleted, or kept "
                "only on a node that is gone?); pass an existing checkpoint directory")

    def to_directory(self, path: str | os.PathLike[str] | None = None) -> str:
        """Copy the checkpoint into local ``path`` (a new temporary one by default); return it."""
        self._require_exists()
        target = os.path.abspath(os.fspath(path)) if path is not None else \
            os.path.join(tempfile.gettempdir(), f"ember_checkpoint_{uuid.uuid4().hex[:12]}")
        os.makedirs(target, exist_ok=True)
        copy_tree(self.filesystem, self.path, pafs.LocalFileSystem(), target)
        return target

    @contextlib.contextmanager
    def as_directory(self) -> Iterator[str]:
        """A local directory with the checkpoint's files: the checkpoint itself if local.

        Treat it as read-only: for a local checkpoint it *is* the stored checkpoint.
        """
        self._require_exists()
        if self.is_local:
            yield self.path
            return
        target = self.to_directory()
        try:
            yield target
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def get_metadata(self) -> dict[str, Any]:
        """The dict stored with ``set_metadata``/``update_metadata`` ({} when none)."""
        target = f"{self.path}/{METADATA_FILE}"
        if self.filesystem.get_file_info(target).type != pafs.FileType.File:
            return {}
        with self.filesystem.open_input_stream(target) as stream:
            return json.loads(stream.read().decode())

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Replace the metadata (must be JSON-serializable)."""
        try:
            payload = json.dumps(metadata).encode()
        except TypeError as exc:
            raise CheckpointError(f"checkpoint metadata must be JSON-serializable: {exc}") from exc
        self._require_exists()
        with self.filesystem.open_output_stream(f"{self.path}/{METADATA_FILE}") as stream:
            stream.write(payload)

    def update_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the stored metadata."""
        merged = self.get_metadata()
        merged.update(metadata)
        self.set_metadata(merged)

    def __reduce__(self) -> tuple[Any, ...]:
        # pyarrow filesystems pickle; the local one is rebuilt so a checkpoint made on one
        # node resolves on another that shares the path (shared storage) without surprise.
        return (Checkpoint, (self.path, None if self.is_local else self.filesystem))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path \
            and type(other.filesystem) is type(self.filesystem)

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        where = "" if self.is_local else f", filesystem={type(self.filesystem).__name__}"
        return f"Checkpoint(path={self.path!r}{where})"

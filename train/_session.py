"""The seam between user training code and whatever runs it.

``ember.train.report(...)``, ``get_checkpoint()``, ``get_context()`` and
``get_dataset_shard()`` are called inside user code that runs in a worker process. What
they do depends on who started that code: a Trainer's worker group forwards reports to
the trainer's driver loop; an ember.tune trial forwards them to the Tune controller. Each
runner installs its own ``Session`` for the duration of the user's function with
``session_scope``; the public functions only look it up. Outside any session they raise
``SessionMisuseError`` instead of silently doing nothing.

One session per process at a time: a worker runs one training loop (or one trial) at a
time, so a module global is enough and, unlike a context variable, is also seen by
threads the user's loop starts (data loaders, for instance).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, Protocol

from ._checkpoint import Checkpoint
from .errors import SessionMisuseError


@dataclasses.dataclass(frozen=True)
class TrainContext:
    """Where this worker sits in the run (Ray's ``ray.train.get_context()``)."""

    world_rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    node_rank: int = 0
    experiment_name: str = ""
    trial_name: str | None = None
    trial_id: str | None = None
    trial_dir: str | None = None
    trial_resources: Any = None
    storage_path: str | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)

    def get_world_rank(self) -> int:
        return self.world_rank

    def get_world_size(self) -> int:
        return self.world_size

    def get_local_rank(self) -> int:
        return self.local_rank

    def get_local_world_size(self) -> int:
        return self.local_world_size

    def get_node_rank(self) -> int:
        return self.node_rank

    def get_experiment_name(self) -> str:
        return self.experiment_name

    def get_trial_name(self) -> str | None:
        return self.trial_name

    def get_trial_id(self) -> str | None:
        return self.trial_id

    def get_trial_dir(self) -> str | None:
        return self.trial_dir

    def get_trial_resources(self) -> Any:
        return self.trial_resources

    def get_storage(self) -> str | None:
        return self.storage_path

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)


class Session(Protocol):
    """What a runner (Trainer worker, Tune trial) provides to the user's code."""

    context: TrainContext

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        """Deliver one result (and optionally a checkpoint) to the runner's driver."""

    def get_checkpoint(self) -> Checkpoint | None:
        """The checkpoint to resume from (latest of this run, or the one given to restore)."""

    def get_dataset_shard(self, name: str) -> Any:
        """This worker's shard of the dataset registered under ``name``."""


_current: Session | None = None


@contextlib.contextmanager
def session_scope(session: Session) -> Iterator[Session]:
    """Install ``session`` while the user's function runs in this process."""
    global _current
    previous, _current = _current, session
    try:
        yield session
    finally:
        _current = previous


def current_session(function: str) -> Session:
    """The installed session; ``function`` names the public call for the error."""
    if _current is None:
        raise SessionMisuseError(function)
    return _current


def in_session() -> bool:
    return _current is not None


def report(metrics: dict[str, Any], *, checkpoint: Checkpoint | None = None) -> None:
    """Report metrics (and optionally a checkpoint) from inside a training loop.

    Every rank must call ``report`` the same number of times; rank 0's metrics are the ones
    recorded. A checkpoint given by any rank is persisted to the run's storage.

    Args:
        metrics: a flat or nested dict of JSON-friendly values.
        checkpoint: a ``Checkpoint`` (e.g. ``Checkpoint.from_directory(tmpdir)``).

    Raises:
        SessionMisuseError: called outside a training loop.
        TypeError: ``metrics`` is not a dict.

    Example:
        >>> ember.train.report({"loss": 0.1, "epoch": 3})
    """
    session = current_session("report")
    if not isinstance(metrics, dict):
        raise TypeError(f"report(metrics={metrics!r}): metrics must be a dict, e.g. "
                        "{'loss': 0.1}")
    if checkpoint is not None and not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"report(checkpoint={checkpoint!r}): pass an ember.train.Checkpoint, "
                        "e.g. Checkpoint.from_directory(path)")
    session.report(metrics, checkpoint)


def get_checkpoint() -> Checkpoint | None:
    """The checkpoint to resume from, or None on a fresh start."""
    return current_session("get_checkpoint").get_checkpoint()


def get_context() -> TrainContext:
    """This worker's ranks, sizes and run names."""
    return current_session("get_context").context


def get_dataset_shard(name: str = "train") -> Any:
    """This worker's ``DataIterator`` over the dataset passed as ``datasets={name: ...}``."""
    return current_session("get_dataset_shard").get_dataset_shard(name)

"""``DataParallelTrainer``: the same loop on every rank, placed and kept alive by ember.

Everything that can be checked before a worker starts is checked in the constructor or
at the top of ``fit()`` (the loop's signature, that config and loop can be sent to the
workers, the datasets, the checkpoint to resume from, the storage folder, whether the
cluster can ever hold the group), so a mistake is an error at the line that made it.
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import json
import os
from typing import Any, Callable

import cloudpickle
import pyarrow.fs as pafs

from ._backend import BackendConfig
from ._checkpoint import Checkpoint, resolve_filesystem
from ._config import RunConfig, ScalingConfig
from ._result import Result
from ._run import STATE_FILE, TrainRun
from ._storage import StorageContext
from ._worker_group import check_cluster_can_fit
from .errors import CheckpointError, TrainConfigError

#: The trainer itself, pickled into the run folder so ``restore`` can rebuild it.
TRAINER_FILE = "trainer.pkl"


def _check_serializable(what: str, value: Any) -> None:
    try:
        cloudpickle.dumps(value)
        return
    except Exception as exc:  # noqa: BLE001 - pickling raises many types
        problem = exc
    culprit = what
    if isinstance(value, dict):
        for key, item in value.items():
            try:
                cloudpickle.dumps(item)
            except Exception as exc:  # noqa: BLE001
                culprit, problem = f"{what}[{key!r}] ({type(item).__name__})", exc
                break
    raise TrainConfigError(
        f"{culprit} cannot be serialized to send to the training workers "
        f"({type(problem).__name__}: {problem}); create that object inside the training "
        "loop instead (pass what it is built from, e.g. a path or a number)") from problem


def _loop_takes_config(fn: Callable[..., Any], has_config: bool) -> bool:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):  # builtins without a signature: assume one argument
        return True
    if len(params) > 1 and not any(p.default is not p.empty for p in params[1:]):
        raise TrainConfigError(
            f"train_loop_per_worker {getattr(fn, '__name__', fn)!r} takes {len(params)} "
            "arguments; it must take none, or one (the train_loop_config dict)")
    if not params and has_config:
        raise TrainConfigError(
            f"train_loop_config was given but train_loop_per_worker "
            f"{getattr(fn, '__name__', fn)!r} takes no argument; define it as "
            "`def train_loop_per_worker(config):`")
    return bool(params)


class DataParallelTrainer:
    """Run ``train_loop_per_worker`` on ``num_workers`` ranks (Ray's ``DataParallelTrainer``).

    Args:
        train_loop_per_worker: ``fn()`` or ``fn(config)``, run once per rank.
        train_loop_config: the dict passed to the loop.
        backend_config: how the ranks are wired together (``TorchConfig`` for torch;
            the default wires nothing, for loops that need no collectives).
        scaling_config: number of workers and the resources of each.
        run_config: run name, storage, checkpoint keeping, restarts, verbosity.
        datasets: ``{name: ember.data.Dataset}``; each rank reads its shard with
            ``ember.train.get_dataset_shard(name)`` (equal row counts per rank).
        metadata: a dict every rank can read with ``get_context().get_metadata()``.
        resume_from_checkpoint: start from this checkpoint (``get_checkpoint()``).

    Example:
        >>> def loop(config):
        ...     ember.train.report({"score": config["x"] * 2})
        >>> DataParallelTrainer(loop, train_loop_config={"x": 1},
        ...                     scaling_config=ScalingConfig(num_workers=2)).fit().metrics
        {'score': 2}
    """

    _default_backend: Callable[[], BackendConfig] = BackendConfig

    def __init__(self, train_loop_per_worker: Callable[..., Any], *,
                 train_loop_config: dict[str, Any] | None = None,
                 backend_config: BackendConfig | None = None,
                 scaling_config: ScalingConfig | None = None,
                 run_config: RunConfig | None = None,
                 datasets: dict[str, Any] | None = None,
                 dataset_config: Any = None,
                 metadata: dict[str, Any] | None = None,
                 resume_from_checkpoint: Checkpoint | None = None) -> None:
        if not callable(train_loop_per_worker):
            raise TrainConfigError(
                f"train_loop_per_worker={train_loop_per_worker!r} is not callable; pass the "
                "function each worker runs, e.g. TorchTrainer(train_func, ...)")
        if train_loop_config is not None and not isinstance(train_loop_config, dict):
            raise TrainConfigError(f"train_loop_config={train_loop_config!r}: pass a dict")
        for name, value, kind in (("scaling_config", scaling_config, ScalingConfig),
                                  ("run_config", run_config, RunConfig),
                                  ("backend_config", backend_config, BackendConfig)):
            if value is not None and not isinstance(value, kind):
                raise TrainConfigError(f"{name}={value!r}: pass an ember.train {kind.__name__}")
        if resume_from_checkpoint is not None and not isinstance(resume_from_checkpoint,
                                                                 Checkpoint):
            raise TrainConfigError(
                f"resume_from_checkpoint={resume_from_checkpoint!r}: pass an ember.train."
                "Checkpoint, e.g. Checkpoint.from_directory(path)")
        self.datasets = dict(datasets or {})
        for name, dataset in self.datasets.items():
            if not hasattr(dataset, "streaming_split"):
                raise TrainConfigError(
                    f"datasets[{name!r}] is a {type(dataset).__name__}, not an ember.data "
                    "Dataset; build it with ember.data (e.g. ember.data.from_pandas(df))")
        self.train_loop_per_worker = train_loop_per_worker
        self.train_loop_config = train_loop_config
        self.loop_takes_config = _loop_takes_config(train_loop_per_worker,
                                                    train_loop_config is not None)
        self.backend_config = backend_config or self._default_backend()
        self.scaling_config = scaling_config or ScalingConfig()
        self.run_config = run_config or RunConfig()
        self.dataset_config = dataset_config
        self.metadata = dict(metadata or {})
        self.resume_from_checkpoint = resume_from_checkpoint
        _check_serializable("train_loop_per_worker", train_loop_per_worker)
        _check_serializable("train_loop_config", train_loop_config)
        _check_serializable("metadata", self.metadata)
        self._run_name: str | None = None  #: set by restore(): continue that folder

    def fit(self) -> Result:
        """Train; return the run's Result.

        Raises:
            TrainingFailedError: a rank raised or died more often than ``max_failures``.
            TrainConfigError: the cluster can never hold the workers (or has no GPU).
            CheckpointError: ``resume_from_checkpoint`` does not exist.
            StorageError: ``storage_path`` is not writable.
        """
        if self.resume_from_checkpoint is not None:
            try:
                with self.resume_from_checkpoint.as_directory():
                    pass
            except CheckpointError as exc:
                raise CheckpointError(f"resume_from_checkpoint: {exc}") from None
        check_cluster_can_fit(self.scaling_config)
        name = self._run_name or self.run_config.name or (
            f"{type(self).__name__}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}")
        storage = StorageContext(self.run_config.storage_path, name)
        if self._run_name is None:
            self._write_trainer(storage)
        return TrainRun(self, storage, self.resume_from_checkpoint,
                        restoring=self._run_name is not None).run()

    def _write_trainer(self, storage: StorageContext) -> None:
        state = dict(self.__dict__, datasets={}, _run_name=None)
        payload = cloudpickle.dumps((type(self), state))
        with storage.filesystem.open_output_stream(f"{storage.run_path}/{TRAINER_FILE}") as out:
            out.write(payload)

    @classmethod
    def can_restore(cls, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` is the folder of a run this trainer class can ``restore``."""
        fs, root = resolve_filesystem(path)
        return fs.get_file_info(f"{root}/{TRAINER_FILE}").type == pafs.FileType.File

    @classmethod
    def restore(cls, path: str | os.PathLike[str], *,
                train_loop_per_worker: Callable[..., Any] | None = None,
                train_loop_config: dict[str, Any] | None = None,
                datasets: dict[str, Any] | None = None,
                scaling_config: ScalingConfig | None = None,
                **_ignored: Any) -> DataParallelTrainer:
        """The trainer of the interrupted run in ``path``; its ``fit()`` resumes that run.

        It continues from the run's latest checkpoint, appends to its results, and keeps
        numbering its checkpoints. Datasets are not stored with the run: pass them again.

        Raises:
            CheckpointError: ``path`` holds no run of this trainer.
            TrainConfigError: the run had datasets and none were passed.
        """
        fs, root = resolve_filesystem(path)
        if not cls.can_restore(path):
            raise CheckpointError(
                f"{os.fspath(path)!r} is not the folder of an ember.train run (no "
                f"{TRAINER_FILE}); pass storage_path/name of a run started by fit()")
        with fs.open_input_stream(f"{root}/{TRAINER_FILE}") as stream:
            kind, state = cloudpickle.loads(stream.read())
        if not issubclass(kind, cls):
            raise CheckpointError(f"{os.fspath(path)!r} is a {kind.__name__} run; restore it "
                                  f"with {kind.__name__}.restore")
        trainer = kind.__new__(kind)
        trainer.__dict__.update(state)
        if train_loop_per_worker is not None:
            trainer.train_loop_per_worker = train_loop_per_worker
        if train_loop_config is not None:
            trainer.train_loop_config = train_loop_config
        if scaling_config is not None:
            trainer.scaling_config = scaling_config
        trainer.loop_takes_config = _loop_takes_config(trainer.train_loop_per_worker,
                                                       trainer.train_loop_config is not None)
        trainer.datasets = dict(datasets or {})
        needed: list[str] = []
        if fs.get_file_info(f"{root}/{STATE_FILE}").type == pafs.FileType.File:
            with fs.open_input_stream(f"{root}/{STATE_FILE}") as stream:
                needed = json.loads(stream.read().decode()).get("dataset_names", [])
        missing = [n for n in needed if n not in trainer.datasets]
        if missing:
            raise TrainConfigError(
                f"the run in {os.fspath(path)!r} trained on datasets {needed}; pass them "
                f"again: {cls.__name__}.restore(path, datasets={{...}}) (missing: {missing})")
        storage_root, name = root.rstrip("/").rsplit("/", 1)
        trainer.run_config = _with_location(trainer.run_config, storage_root, name,
                                            fs if "://" in os.fspath(path) else None,
                                            os.fspath(path))
        trainer._run_name = name
        return trainer


def _with_location(config: RunConfig, storage_root: str, name: str, fs: Any,
                   original: str) -> RunConfig:
    """``config`` pointed at the folder the run was restored from (it may have moved)."""
    storage_path = original.rstrip("/").rsplit("/", 1)[0] if fs is not None else storage_root
    return dataclasses.replace(config, storage_path=storage_path, name=name)

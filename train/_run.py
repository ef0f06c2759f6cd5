"""One ``fit()``: start the worker group, follow its reports, restart it after failures.

::

    attempt 1..: WorkerGroup (placement group + actors) -> backend.on_start (process group)
                 -> start(WorkerStart) on every rank -> follow():
                      one next_events() call in flight per rank; ember.wait on all of them
                      "report" i from every rank -> one round: rank 0's metrics recorded,
                                                   staged checkpoints promoted
                      "error" / ActorDiedError -> collect the group's failures, kill it all
                 -> failures <= max_failures: next attempt from the latest checkpoint

A round (report number i of this attempt) is recorded once every rank still running has
reported it, so a checkpoint is registered only when all ranks' parts of it are staged.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from typing import Any, Callable, Protocol

import pyarrow.fs as pafs

import ember
from ember.exceptions import ActorDiedError, EmberError, TaskError

from ._backend import BackendConfig
from ._checkpoint import Checkpoint
from ._config import RunConfig, ScalingConfig
from ._progress import RunProgress
from ._result import Result
from ._session import TrainContext, current_session, in_session
from ._storage import CHECKPOINT_DIR_FORMAT, CheckpointManager, ResultLog, StorageContext
from ._worker import POLL_S, WorkerStart
from ._worker_group import GroupCallError, WorkerGroup, WorkerInfo
from .errors import TrainingFailedError, WorkerFailure

logger = logging.getLogger(__name__)

#: After a rank fails, the longest wait for the other ranks to be drained (their pending
#: call returns within the worker's POLL_S, then one more call collects their queue).
DRAIN_TIMEOUT_S = POLL_S + 5.0
#: When the only failures seen are collective errors (a rank whose peer died fails in its
#: collective), how long to wait for the peer's own failure, which is the root cause.
COLLECTIVE_GRACE_S = max(2.0, DRAIN_TIMEOUT_S)
#: Written in the run folder; what ``restore`` needs besides the trainer itself.
STATE_FILE = "trainer_state.json"
#: Words in the errors a rank raises when a *peer* left a collective.
_COLLECTIVE_WORDS = ("gloo", "nccl", "connection closed", "connection reset", "broken pipe",
                     "distbackenderror", "disterror")


class TrainerSpec(Protocol):
    """What a run needs of its trainer (``DataParallelTrainer`` provides it)."""

    train_loop_per_worker: Callable[..., Any]
    train_loop_config: dict[str, Any] | None
    loop_takes_config: bool
    backend_config: BackendConfig
    scaling_config: ScalingConfig
    run_config: RunConfig
    datasets: dict[str, Any]
    metadata: dict[str, Any]


@dataclasses.dataclass
class _Round:
    """Report number i of one attempt, as the ranks deliver it."""

    metrics: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    staged: dict[int, str] = dataclasses.field(default_factory=dict)


def _is_collective_error(failure: WorkerFailure) -> bool:
    text = f"{failure.exit_cause}\n{failure.traceback[-2000:]}".lower()
    return failure.kind == "raised" and any(word in text for word in _COLLECTIVE_WORDS)


def _mark_root_cause(failures: list[WorkerFailure]) -> list[WorkerFailure]:
    """Order failures root cause first: the first that is not a peer's collective error."""
    root = next((f for f in failures if not _is_collective_error(f)), failures[0])
    root.root_cause = True
    return [root] + [f for f in failures if f is not root]


def _raised(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"raised {type(exc).__name__}" + (f": {text}" if text else "")


def _merge_missing(fs: pafs.FileSystem, src: str, dst: str) -> None:
    """Copy files of ``src`` that ``dst`` lacks (the lowest rank's file of a name wins)."""
    for info in fs.get_file_info(pafs.FileSelector(src, recursive=True)):
        if info.type != pafs.FileType.File:
            continue
        target = dst + info.path[len(src):]
        if fs.get_file_info(target).type == pafs.FileType.NotFound:
            fs.create_dir(os.path.dirname(target), recursive=True)
            fs.copy_file(info.path, target)


def _executable_datasets(datasets: dict[str, Any], scaling: ScalingConfig) -> dict[str, Any]:
    """The datasets, executed up front when the workers would leave no CPU to run them.

    A lazy dataset runs its read and map tasks while the workers iterate their shards;
    those tasks need CPUs. If the worker group takes every CPU of the cluster they could
    never run and the first batch would wait forever, so such datasets are materialized
    (into the object store) before the workers are placed.
    """
    if not datasets:
        return {}
    from ember.data import MaterializedDataset
    spare_cpus = ember.cluster_resources().get("CPU", 0.0) - \
        scaling.num_workers * scaling.worker_resources.get("CPU", 0.0)
    if spare_cpus >= 1:
        return dict(datasets)
    prepared = {}
    for name, dataset in datasets.items():
        if not isinstance(dataset, MaterializedDataset):
            logger.info("dataset %r is executed before training: the %d workers hold every "
                        "CPU of the cluster, so none would be left to read it while they train",
                        name, scaling.num_workers)
            dataset = dataset.materialize()
        prepared[name] = dataset
    return prepared


class TrainRun:
    """The state of one run across its attempts (the driver side of ``fit()``)."""

    def __init__(self, trainer: TrainerSpec, storage: StorageContext,
                 resume_from: Checkpoint | None, restoring: bool = False) -> None:
        self.trainer = trainer
        self.storage = storage
        self.name = storage.run_path.rstrip("/").rsplit("/", 1)[-1]
        config = trainer.run_config
        self.log = ResultLog(storage)
        self.checkpoints = CheckpointManager(config.checkpoint_config, storage)
        self.checkpoint_index = 0
        self.latest_metrics: dict[str, Any] | None = None
        self.resume_from = resume_from
        self.progress = RunProgress(self.name, config.verbose)
        self.datasets = _executable_datasets(trainer.datasets, trainer.scaling_config)
        self.tune_session = None
        if in_session():
            session = current_session("report")
            if getattr(session.context, "trial_name", None):
                # fit() inside a Tune trial: each result goes on to the trial, and the trial's
                # checkpoint (a restored or restarted trial) is where training resumes.
                self.tune_session = session
                self.resume_from = session.get_checkpoint() or self.resume_from
        if restoring:
            self._load_previous()
        else:
            self._skip_existing_checkpoints()

    # -- persistence across driver restarts (Trainer.restore) ---------------------------

    def _load_previous(self) -> None:
        """Pick up the results and checkpoints of an earlier driver of this run folder."""
        text = self.storage.read_text(STATE_FILE)
        if text is None:
            return
        state = json.loads(text)
        previous = self.storage.read_text("result.json") or ""
        self.log.load([json.loads(line) for line in previous.splitlines() if line])
        fs = self.storage.filesystem
        for path, metrics in state.get("checkpoints", []):
            if fs.get_file_info(path).type == pafs.FileType.Directory:
                self.checkpoints.kept.append((Checkpoint(path, None if isinstance(
                    fs, pafs.LocalFileSystem) else fs), metrics))
        self.checkpoint_index = int(state.get("checkpoint_index", 0))
        self.latest_metrics = self.log.rows[-1] if self.log.rows else None
        if self.checkpoints.latest is not None:
            self.resume_from = self.checkpoints.latest

    def _skip_existing_checkpoints(self) -> None:
        """A new run in a folder that holds an earlier one: never overwrite its checkpoints.

        Its results files are replaced; its checkpoints stay, and this run numbers its own
        after them. (To continue the earlier run instead, use ``Trainer.restore``.)
        """
        fs = self.storage.filesystem
        prefix = CHECKPOINT_DIR_FORMAT.split("{")[0]
        existing = [info.base_name[len(prefix):] for info in
                    fs.get_file_info(pafs.FileSelector(self.storage.run_path))
                    if info.type == pafs.FileType.Directory and info.base_name.startswith(prefix)]
        numbers = [int(n) for n in existing if n.isdigit()]
        if numbers:
            self.checkpoint_index = max(numbers) + 1
            logger.warning("%s already holds the checkpoints of an earlier run; this new run "
                           "numbers its checkpoints from %d and replaces progress.csv and "
                           "result.json (use %s.restore(path) to continue the earlier run)",
                           self.storage.run_path, self.checkpoint_index,
                           type(self.trainer).__name__)

    def _save_state(self, finished: bool) -> None:
        state = {"checkpoint_index": self.checkpoint_index, "finished": finished,
                 "checkpoints": [[c.path, m] for c, m in self.checkpoints.kept],
                 "dataset_names": sorted(self.datasets)}
        self.storage.write_text(STATE_FILE, json.dumps(state, default=str))

    # -- attempts ------------------------------------------------------------------------

    def run(self) -> Result:
        max_failures = self.trainer.run_config.failure_config.max_failures
        failures_so_far = 0
        attempt = 0
        error: TrainingFailedError | None = None
        self._save_state(finished=False)
        try:
            while True:
                attempt += 1
                failures = self._attempt(attempt)
                if not failures:
                    break
                failures_so_far += 1
                root = failures[0]
                if max_failures != -1 and failures_so_far > max_failures:
                    error = TrainingFailedError(failures=failures, attempts=attempt,
                                                max_failures=max_failures)
                    error.__cause__ = root.error
                    break
                self.resume_from = self.checkpoints.latest or self.resume_from
                message = (f"{self.name}: {root.describe()}; restarting the worker group "
                           f"from {self.resume_from or 'the start'} (failure {failures_so_far}"
                           f" of at most {'unlimited' if max_failures < 0 else max_failures})")
                if not self.progress.note(message):
                    logger.warning(message)
        finally:
            self.progress.close()
            self._save_state(finished=error is None)
        import pandas as pd  # here, not at the top: worker processes import this package
        result = Result(
            metrics=self.latest_metrics, checkpoint=self.checkpoints.latest, error=error,
            path=self.storage.run_path, metrics_dataframe=pd.DataFrame(self.log.rows),
            best_checkpoints=self.checkpoints.best_checkpoints(),
            config=self.trainer.train_loop_config)
        if error is not None:
            raise error
        return result

    def _attempt(self, attempt: int) -> list[WorkerFailure]:
        """One start of the group; the failures that ended it ([] when it finished)."""
        trainer = self.trainer
        began = time.monotonic()
        group = WorkerGroup(trainer.scaling_config)
        logger.debug("%s attempt %d: %d workers placed in %.3f s", self.name, attempt,
                     len(group.workers), time.monotonic() - began)
        try:
            try:
                trainer.backend_config.on_start(group, trainer.scaling_config)
                logger.debug("%s attempt %d: backend %s ready at %.3f s", self.name, attempt,
                             trainer.backend_config.backend_name, time.monotonic() - began)
                shards = self._split_datasets(len(group.workers))
                starts = [self._worker_start(w, shards, attempt) for w in group.workers]
                refs = [w.actor.start.remote(s) for w, s in zip(group.workers, starts)]
                for rank, ref in enumerate(refs):
                    try:
                        ember.get(ref)
                    except EmberError as exc:
                        raise GroupCallError(rank, exc) from exc
                logger.debug("%s attempt %d: loops started at %.3f s", self.name, attempt,
                             time.monotonic() - began)
            except GroupCallError as exc:
                return _mark_root_cause([self._failure_of(group.workers[exc.rank], exc.error,
                                                          attempt)])
            return self._follow(group, attempt)
        finally:
            try:
                trainer.backend_config.on_shutdown(group)
            finally:
                group.shutdown()
                self._clear_staging()

    def _split_datasets(self, n: int) -> list[dict[str, Any]]:
        shards: list[dict[str, Any]] = [{} for _ in range(n)]
        for name, dataset in self.datasets.items():
            # A new split per attempt: the previous one's coordinator still counts the dead
            # group's half-read epoch.
            for rank, shard in enumerate(dataset.streaming_split(n, equal=True)):
                shards[rank][name] = shard
        return shards

    def _worker_start(self, worker: WorkerInfo, shards: list[dict[str, Any]],
                      attempt: int) -> WorkerStart:
        trainer = self.trainer
        tune_context = self.tune_session.context if self.tune_session is not None else None
        context = TrainContext(
            world_rank=worker.rank, world_size=trainer.scaling_config.num_workers,
            local_rank=worker.local_rank, local_world_size=worker.local_world_size,
            node_rank=worker.node_rank, experiment_name=self.name,
            trial_name=getattr(tune_context, "trial_name", None),
            trial_id=getattr(tune_context, "trial_id", None),
            trial_dir=getattr(tune_context, "trial_dir", None),
            trial_resources=getattr(tune_context, "trial_resources", None),
            storage_path=self.storage.storage_path, metadata=dict(trainer.metadata))
        return WorkerStart(
            train_fn=trainer.train_loop_per_worker, config=trainer.train_loop_config,
            pass_config=trainer.loop_takes_config, context=context,
            checkpoint=self.resume_from, shards=shards[worker.rank],
            storage_path=self.storage.storage_path, run_name=self.name, attempt=attempt)

    # -- following a running group -------------------------------------------------------

    def _follow(self, group: WorkerGroup, attempt: int) -> list[WorkerFailure]:
        """Take every rank's events until all finish, or until a failure ends the group.

        After the first failure each other rank is drained once: when its pending call
        returns, one more call, made after the failure was seen, collects whatever it
        had queued by then. So a report a healthy rank made before its peer failed always
        counts, however late its delivery; then the group is stopped.
        """
        by_ref = {w.actor.next_events.remote(): w for w in group.workers}
        drains: set[Any] = set()
        done: set[int] = set()
        rounds: dict[int, _Round] = {}
        next_round = 0
        failures: list[WorkerFailure] = []
        deadline: float | None = None
        while by_ref:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _ = ember.wait(list(by_ref), num_returns=1, timeout=timeout)
            if not ready:
                break  # past the deadline: the ranks still running are stopped with the group
            for ref in ready:
                worker = by_ref.pop(ref)
                try:
                    events = ember.get(ref)
                except EmberError as exc:
                    failures.append(self._failure_of(worker, exc, attempt))
                    continue
                ended = self._take_events(worker, events, rounds, done, failures, attempt)
                if ended or ref in drains:
                    continue
                if failures:
                    drain = worker.actor.next_events.remote(0.0)
                    drains.add(drain)
                    by_ref[drain] = worker
                else:
                    by_ref[worker.actor.next_events.remote()] = worker
            # Rounds every rank completed count, even when a rank failed right after.
            next_round = self._record_rounds(rounds, next_round, done, len(group.workers))
            if failures and deadline is None:
                collective_only = all(_is_collective_error(f) for f in failures)
                deadline = time.monotonic() + (COLLECTIVE_GRACE_S if collective_only
                                               else DRAIN_TIMEOUT_S)
        if failures:
            return _mark_root_cause(failures)
        self._record_rounds(rounds, next_round, done, len(group.workers), final=True)
        return []

    def _take_events(self, worker: WorkerInfo, events: list[tuple[Any, ...]],
                     rounds: dict[int, _Round], done: set[int],
                     failures: list[WorkerFailure], attempt: int) -> bool:
        """Fold one rank's events into the rounds; True once the rank's loop ended."""
        ended = False
        for event in events:
            if event[0] == "report":
                _, index, metrics, staged = event
                entry = rounds.setdefault(index, _Round())
                entry.metrics[worker.rank] = metrics
                if staged:
                    entry.staged[worker.rank] = staged
            elif event[0] == "done":
                done.add(worker.rank)
                ended = True
            elif event[0] == "error":
                _, exc, cause, text, _when = event
                failures.append(WorkerFailure(
                    rank=worker.rank, node_id=worker.node_id, node_ip=worker.node_ip,
                    pid=worker.pid, kind="raised", exit_cause=cause, traceback=text,
                    error=exc, attempt=attempt))
                ended = True
        return ended

    def _failure_of(self, worker: WorkerInfo, exc: BaseException, attempt: int) -> WorkerFailure:
        if isinstance(exc, TaskError):
            cause = exc.cause if exc.cause is not None else exc
            return WorkerFailure(
                rank=worker.rank, node_id=worker.node_id, node_ip=worker.node_ip,
                pid=worker.pid, kind="raised", exit_cause=_raised(cause),
                traceback=exc.traceback_str, error=cause, attempt=attempt)
        detail = exc.cause if isinstance(exc, ActorDiedError) and isinstance(exc.cause, str) \
            else str(exc)
        return WorkerFailure(
            rank=worker.rank, node_id=worker.node_id, node_ip=worker.node_ip, pid=worker.pid,
            kind="died", exit_cause=f"the worker process died: {detail}", error=exc,
            attempt=attempt)

    def _record_rounds(self, rounds: dict[int, _Round], next_round: int, done: set[int],
                       world_size: int, final: bool = False) -> int:
        """Record every complete round from ``next_round`` on, in order; the next index."""
        while next_round in rounds:
            entry = rounds[next_round]
            complete = all(r in entry.metrics or r in done for r in range(world_size))
            if not (complete or final):
                break
            self._record(entry)
            del rounds[next_round]
            next_round += 1
        return next_round

    def _record(self, entry: _Round) -> None:
        metrics = entry.metrics[min(entry.metrics)]  # rank 0's, unless rank 0 stopped early
        checkpoint = self._promote(entry.staged) if entry.staged else None
        if checkpoint is not None:
            self.checkpoints.register(checkpoint, metrics)
            self._save_state(finished=False)
        self.log.append(metrics)
        self.latest_metrics = metrics
        self.progress.update(metrics)
        if self.tune_session is not None:
            self.tune_session.report(metrics, checkpoint)

    def _promote(self, staged: dict[int, str]) -> Checkpoint:
        """Move the staged parts of one report into ``checkpoint_NNNNNN``."""
        fs = self.storage.filesystem
        target = f"{self.storage.run_path}/{CHECKPOINT_DIR_FORMAT.format(self.checkpoint_index)}"
        self.checkpoint_index += 1
        if fs.get_file_info(target).type != pafs.FileType.NotFound:
            fs.delete_dir(target)  # left by a driver that died before registering it
        ranks = sorted(staged)
        fs.move(staged[ranks[0]], target)
        for rank in ranks[1:]:
            _merge_missing(fs, staged[rank], target)
            fs.delete_dir(staged[rank])
        return Checkpoint(target, None if isinstance(fs, pafs.LocalFileSystem) else fs)

    def _clear_staging(self) -> None:
        staging = f"{self.storage.run_path}/.staging"
        fs = self.storage.filesystem
        try:
            if isinstance(fs, pafs.LocalFileSystem):
                shutil.rmtree(staging, ignore_errors=True)
            elif fs.get_file_info(staging).type == pafs.FileType.Directory:
                fs.delete_dir(staging)
        except OSError as exc:
            logger.debug("clearing %s: %s", staging, exc)

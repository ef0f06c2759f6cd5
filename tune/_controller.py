"""``TuneController``: the driver-side loop of a sweep.

    searcher --suggest--> Trial --scheduler.choose--> warm TrialActor (pool, by shape)
        ^                                                 |  run / resume (one call per result)
        |  on_trial_result / complete                     v
    controller <---------- events (result, done, error) via ember.wait over in-flight calls
        |-> stopper, scheduler decision -> resume(CONTINUE | STOP | PAUSE)
        |-> ResultLog (progress.csv, result.json), CheckpointManager, trial_state.json
        '-> experiment state (throttled), status table (bounded rate)

Invariants: a trial is in ``_inflight`` (exactly one outstanding actor call) iff it is
RUNNING; the resources of every live actor (busy or idle) plus the budgets of running
trials never exceed what the cluster had when the sweep started, so trials queue instead
of oversubscribing; every actor and placement group this controller made is gone when
``run`` returns, on every path.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import cloudpickle

import ember
from ember.train import Checkpoint, RunConfig
from ember.train._storage import CheckpointManager, ResultLog, StorageContext

from ._actor_pool import EPS, Slot, TrialActorPool
from ._progress import StatusReporter
from ._state import ExperimentState
from .errors import TrialNeverReportedError, TuneConfigError, TuneError
from .resources import PlacementGroupFactory
from .schedulers import TrialScheduler
from .search.searcher import Searcher
from .stopper import Stopper
from .trial import Trial, flatten

logger = logging.getLogger("ember.tune")

_DEFAULT_REQUEST = {"CPU": 1.0}
#: How long a trial that does not report gets to end after a sweep-wide stop.
STOP_GRACE_S = 2.0


class TrialFailedError(TuneError):
    """A trial raised; the message carries its remote traceback, ``__cause__`` the error."""

    def __init__(self, trial_id: str, info: dict[str, Any]) -> None:
        super().__init__(trial_id)
        self.trial_id = trial_id
        self.error_type = info.get("type", "Exception")
        self.traceback_text = info.get("traceback", "")

    def __str__(self) -> str:
        return (f"trial {self.trial_id} failed with {self.error_type}:\n"
                f"{self.traceback_text.rstrip()}")


@dataclasses.dataclass
class TrainableSpec:
    """The trainable as the controller needs it."""

    trainable: Any
    name: str
    key: str
    #: Resources kept free for work the trial starts (a Trainer's workers), not held.
    budget_fn: Any = None
    kind: str = "function"


class TuneController:
    """Runs the trials of one sweep to completion (see the module docstring)."""

    def __init__(self, *, spec: TrainableSpec, searcher: Searcher, scheduler: TrialScheduler,
                 stopper: Stopper, metric: str | None, mode: str | None,
                 storage: StorageContext, experiment_name: str, run_config: RunConfig,
                 max_concurrent_trials: int | None, time_budget_s: float | None,
                 reuse_actors: bool | None, resources_fn: Any,
                 trial_name_creator: Any = None, trial_dirname_creator: Any = None,
                 trials: list[Trial] | None = None, num_suggested: int = 0,
                 experiment_uid: str = "") -> None:
        self._spec = spec
        self._searcher = searcher
        self._scheduler = scheduler
        self._stopper = stopper
        self._metric, self._mode = metric, mode
        self._storage = storage
        self._name = experiment_name
        self._run_config = run_config
        self._max_concurrent = max_concurrent_trials
        self._time_budget_s = time_budget_s
        self._reuse = reuse_actors is not False
        self._resources_fn = resources_fn
        self._trial_name_creator = trial_name_creator
        self._trial_dirname_creator = trial_dirname_creator
        self._uid = experiment_uid
        self._state = ExperimentState(storage)
        #: Where trial actors write checkpoints: the run folder as a path or URI they resolve.
        self._run_uri = f"{storage.storage_path.rstrip('/')}/{experiment_name}" \
            if "://" in storage.storage_path else storage.run_path
        self._trials: list[Trial] = list(trials or [])
        self._num_suggested = num_suggested
        self._search_finished = False
        self._inflight: dict[Any, Trial] = {}
        self._logs: dict[str, ResultLog] = {}
        self._ckpt: dict[str, CheckpointManager] = {}
        self._iteration = 0  #: loop rounds so far (the callbacks' ``iteration``)
        self._total = {k: float(v) for k, v in ember.cluster_resources().items()}
        self._pool = TrialActorPool(self._total, reuse=self._reuse)
        verbose = 1 if run_config.verbose is None else run_config.verbose
        self._reporter = StatusReporter(verbose, metric, mode)
        self._callbacks = list(run_config.callbacks or [])
        self._failure = run_config.failure_config
        self._checkpoint_config = run_config.checkpoint_config
        for trial in self._trials:
            if not trial.is_finished:
                self._scheduler.on_trial_add(self, trial)

    # -- the interface schedulers use -----------------------------------------------------
    def get_trials(self) -> list[Trial]:
        return self._trials

    def is_search_finished(self) -> bool:
        return self._search_finished

    def stop_trial(self, trial: Trial) -> None:
        """End a trial that is not running (e.g. a paused HyperBand loser)."""
        if trial.status == "RUNNING":
            trial.pending_decision = TrialScheduler.STOP
            return
        if not trial.is_finished:
            trial.status = "TERMINATED"
            self._state.save_trial(trial)
            self._searcher.on_trial_complete(trial.trial_id, trial.last_result)

    # -- resources --------------------------------------------------------------------------
    def _request(self, trial: Trial) -> tuple[dict[str, float], PlacementGroupFactory | None,
                                               dict[str, float]]:
        """(what the trial's actor holds, its placement group, its budget to keep free)."""
        request = self._resources_fn(trial.config)
        pgf = request if isinstance(request, PlacementGroupFactory) else None
        if pgf is not None:
            held = pgf.head_bundle
            budget = pgf.required_resources
        else:
            held = dict(request) if request else dict(_DEFAULT_REQUEST)
            budget = dict(held)
        if self._spec.budget_fn is not None:
            held, budget = self._spec.budget_fn(trial.config)
        for name, amount in budget.items():
            if amount > self._total.get(name, 0.0) + EPS:
                raise TuneConfigError(
                    f"trial {trial} needs {budget} but the cluster has {self._total}; ask for "
                    "less (tune.with_resources) or start ember with more resources")
        return held, pgf, budget

    # -- trials -------------------------------------------------------------------------------
    def _running(self) -> int:
        return len(self._inflight)

    def _can_start_more(self) -> bool:
        return self._max_concurrent is None or self._running() < self._max_concurrent

    def _new_trial(self) -> Trial | None:
        if self._search_finished:
            return None
        trial_id = f"{self._uid}_{self._num_suggested:05d}"
        config = self._searcher.suggest(trial_id)
        if config == Searcher.FINISHED:
            self._search_finished = True
            return None
        if config is None:
            return None
        index = self._num_suggested
        self._num_suggested += 1
        trial = Trial(trial_id=trial_id, config=config, trainable_name=self._spec.name,
                      index=index)
        if self._trial_dirname_creator is not None:
            trial.dirname = str(self._trial_dirname_creator(trial))
        self._trials.append(trial)
        self._scheduler.on_trial_add(self, trial)
        self._storage.write_text(f"{trial.dirname}/params.json",
                                 _json(trial.config))
        self._state.save_trial(trial)
        return trial

    def _next_trial(self) -> Trial | None:
        waiting = [t for t in self._trials if t.status in ("PENDING", "PAUSED")]
        chosen = self._scheduler.choose_trial_to_run(self, waiting) if waiting else None
        if chosen is not None:
            return chosen
        if any(t.status == "PENDING" for t in self._trials):
            return None
        trial = self._new_trial()
        if trial is None:
            return None
        return self._scheduler.choose_trial_to_run(self, [trial])

    def _start_trials(self) -> None:
        while self._can_start_more():
            trial = self._next_trial()
            if trial is None:
                return
            slot = self._pool.acquire(trial.trial_id, *self._request(trial))
            if slot is None:
                return
            self._launch(trial, slot)

    def _launch(self, trial: Trial, slot: Slot) -> None:
        restore = trial.restore_from or trial.checkpoint
        exploited = trial.restore_from is not None  # PBT: new config, someone's checkpoint
        if exploited:
            self._persist_config(trial)
        metadata = restore.get_metadata() if restore is not None else {}
        if restore is None:
            trial.last_result = {}
        checkpoint_index = len(self._checkpoints(trial).kept)
        if trial.checkpoint is not None:
            try:
                checkpoint_index = max(checkpoint_index, int(
                    trial.checkpoint.path.rsplit("_", 1)[-1]) + 1)
            except ValueError:
                pass
        name = str(self._trial_name_creator(trial)) if self._trial_name_creator else str(trial)
        spec = {
            "trial_id": trial.trial_id, "trial_name": name, "dirname": trial.dirname,
            "trial_dir": f"{self._storage.run_path}/{trial.dirname}",
            "config": trial.config, "experiment_name": self._name,
            "storage_path": self._storage.storage_path, "kind": self._spec.kind,
            "run_uri": self._run_uri,
            "trainable_key": self._spec.key,
            "restore_path": restore.path if restore is not None else None,
            "start_iteration": metadata.get("training_iteration", 0),
            "start_time_total_s": metadata.get("time_total_s", 0.0),
            "checkpoint_index": checkpoint_index,
            "checkpoint_frequency": self._checkpoint_config.checkpoint_frequency,
            "checkpoint_at_end": bool(self._checkpoint_config.checkpoint_at_end),
            "reuse_actors": self._reuse,
        }
        blob = None if self._spec.key in slot.known else self._spec.trainable
        slot.known.add(self._spec.key)
        trial.status = "RUNNING"
        trial.pending_decision = None
        trial.restore_from = None
        self._inflight[slot.handle.run.remote(spec, blob)] = trial
        if exploited:
            # Restore needs the new config; RUNNING itself is not worth a write (a restore
            # treats running and pending trials alike).
            self._state.save_trial(trial)
        self._callback("on_trial_start", trial=trial)

    def _callback(self, name: str, **info: Any) -> None:
        for callback in self._callbacks:
            hook = getattr(callback, name, None)
            if hook is not None:
                hook(iteration=self._iteration, trials=self._trials, **info)

    def _persist_config(self, trial: Trial) -> None:
        self._storage.write_text(f"{trial.dirname}/params.json", _json(trial.config))
        if trial.lineage:
            self._storage.write_text(f"{trial.dirname}/lineage.json", _json(trial.lineage))

    def _log(self, trial: Trial) -> ResultLog:
        log = self._logs.get(trial.trial_id)
        if log is None:
            log = ResultLog(self._storage, subdir=trial.dirname)
            previous = self._storage.read_text(f"{trial.dirname}/result.json")
            if previous:
                log.rows = [json.loads(line) for line in previous.splitlines() if line]
                for row in log.rows:
                    log._columns.extend(k for k in row if k not in log._columns)
            self._logs[trial.trial_id] = log
        return log

    def _checkpoints(self, trial: Trial) -> CheckpointManager:
        manager = self._ckpt.get(trial.trial_id)
        if manager is None:
            manager = CheckpointManager(self._checkpoint_config, self._storage)
            if trial.checkpoint is not None:
                manager.kept.append((trial.checkpoint, dict(trial.last_result)))
            self._ckpt[trial.trial_id] = manager
        return manager

    # -- events --------------------------------------------------------------------------------
    def _check_metric(self, result: dict[str, Any]) -> None:
        if self._metric is None or self._metric in result:
            return
        keys = sorted(k for k in result if k not in _AUTO_FIELDS)
        if any("/" in k for k in keys):  # a flattened nested result: name the leaves only
            keys = [k for k in keys if not any(other.startswith(k + "/") for other in keys)]
        raise TuneConfigError(
            f"TuneConfig(metric={self._metric!r}) is not among the metrics the trainable "
            f"reported: {keys} (plus Tune's own {sorted(_AUTO_FIELDS & set(result))}); report "
            f"it with tune.report({{{self._metric!r}: ...}}) or pick one of those")

    def _decide(self, trial: Trial, result: dict[str, Any], path: str | None) -> str:
        """The decision on one result: only what the decision needs, no file writes.

        The trial waits for this decision, so ``_handle`` sends it first and only then
        records the result (``_record``): the bookkeeping overlaps the trial's next step.
        """
        if path is not None:
            trial.checkpoint = Checkpoint(path)  # PBT may copy it from the next result on
        if trial.decided:
            return trial.pending_decision  # the final save of a stopped class trainable
        # Schedulers, searchers and stoppers see nested metrics as "a/b" keys, as in Ray.
        flat = self._flat(result)
        self._check_metric(flat)
        trial.last_result = result
        decision = self._scheduler.on_trial_result(self, trial, flat)
        self._searcher.on_trial_result(trial.trial_id, flat)
        if self._stopper(trial.trial_id, flat) or result.get("done"):
            decision = TrialScheduler.STOP
        if trial.pending_decision == TrialScheduler.STOP:  # stop_trial() while running
            decision = TrialScheduler.STOP
        if decision == TrialScheduler.NOOP:
            decision = TrialScheduler.CONTINUE
        if decision != TrialScheduler.CONTINUE:
            trial.pending_decision = decision
            trial.decided = True
        return decision

    def _record(self, trial: Trial, result: dict[str, Any], path: str | None,
                is_result: bool) -> None:
        """Persist one result (progress.csv, result.json) and its checkpoint."""
        if path is not None:
            self._checkpoints(trial).register(Checkpoint(path), result)
            self._state.save_trial(trial)
        if not is_result:
            return
        self._log(trial).append(result)
        self._reporter.on_result(trial, result)
        self._callback("on_trial_result", trial=trial, result=result)

    @staticmethod
    def _flat(result: dict[str, Any]) -> dict[str, Any]:
        return flatten(result) if any(isinstance(v, dict) for v in result.values()) else result

    def _on_done(self, trial: Trial) -> None:
        self._pool.release(trial.trial_id, healthy=True)
        trial.decided = False
        if trial.pending_decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
            trial.pending_decision = None
            self._state.save_trial(trial)
            return
        if not trial.last_result and trial.pending_decision is None:
            exc = TrialNeverReportedError(
                f"trial {trial} finished without reporting a result: call "
                "tune.report({...}) (or ember.train.report) at least once in the trainable")
            self._fail(trial, exc, str(exc), retry=False)
            return
        trial.status = "TERMINATED"
        trial.pending_decision = None
        self._scheduler.on_trial_complete(self, trial, self._flat(trial.last_result))
        self._searcher.on_trial_complete(trial.trial_id, self._flat(trial.last_result))
        self._state.save_trial(trial)
        self._callback("on_trial_complete", trial=trial)

    def _fail(self, trial: Trial, exc: BaseException, text: str, retry: bool = True) -> None:
        trial.num_failures += 1
        trial.error, trial.error_text = exc, text
        trial.decided = False
        trial.pending_decision = None
        self._storage.write_text(f"{trial.dirname}/error.txt", text)
        limit = self._failure.max_failures
        if retry and (limit == -1 or trial.num_failures <= limit):
            logger.warning("trial %s failed (%d of %s allowed failures); restarting it from "
                           "%s", trial, trial.num_failures, "unlimited" if limit == -1 else
                           limit, trial.checkpoint or "the start")
            trial.status = "PENDING"
            trial.error = None
            self._state.save_trial(trial)
            return
        trial.status = "ERROR"
        self._scheduler.on_trial_error(self, trial)
        self._searcher.on_trial_complete(trial.trial_id, None, error=True)
        self._state.save_trial(trial)
        logger.warning("trial %s errored: %s", trial, text.strip().splitlines()[-1] if text
                       else exc)
        self._callback("on_trial_error", trial=trial)
        if self._failure.fail_fast:
            raise exc

    def _handle(self, trial: Trial, ref: Any) -> None:
        slot = self._pool.slot_of(trial.trial_id)
        try:
            events = ember.get(ref)
        except Exception as exc:  # noqa: BLE001 - the actor died: the trial's failure
            self._pool.release(trial.trial_id, healthy=False)
            self._fail(trial, exc, f"the trial's actor died: {exc}")
            return
        decision: str | None = None
        waiting = False
        recorded: list[tuple[dict[str, Any], str | None, bool]] = []
        for kind, payload in events:
            if kind == "result":
                result, path, waiting = payload
                is_result = not trial.decided
                decision = self._decide(trial, result, path)
                recorded.append((result, path, is_result))
                continue
            self._record_all(trial, recorded)
            if kind == "done":
                self._on_done(trial)
                return
            self._pool.release(trial.trial_id, healthy=True)
            error = TrialFailedError(trial.trial_id, payload)
            error.__cause__ = _load_error(payload.get("pickled"))
            self._fail(trial, error, payload.get("traceback", ""))
            return
        if slot is not None:
            self._inflight[slot.handle.resume.remote(decision if waiting else None)] = trial
        self._record_all(trial, recorded)

    def _record_all(self, trial: Trial, recorded: list[tuple[dict[str, Any], str | None, bool]]
                    ) -> None:
        for result, path, is_result in recorded:
            self._record(trial, result, path, is_result)
        recorded.clear()

    # -- the loop --------------------------------------------------------------------------------
    def _stop_everything(self) -> None:
        """Time budget or stop_all: end every running trial, start no new one.

        A trial blocked in ``report`` ends at once; one computing without reporting gets
        ``STOP_GRACE_S`` to reach its next report, then its actor is killed (a thread
        cannot be interrupted), so the sweep ends on time either way.
        """
        self._search_finished = True
        stops = {}
        for trial in list(self._inflight.values()):
            trial.pending_decision = TrialScheduler.STOP
            slot = self._pool.slot_of(trial.trial_id)
            if slot is not None:
                stops[slot.handle.stop.remote(trial.trial_id, STOP_GRACE_S)] = (trial, slot)
        for ref, (trial, slot) in stops.items():
            try:
                ended = ember.get(ref, timeout=STOP_GRACE_S + 10)
            except Exception:  # noqa: BLE001 - a dead or stuck actor is killed below
                ended = False
            if ended:
                continue
            for call, running in list(self._inflight.items()):
                if running is trial:
                    del self._inflight[call]
            self._pool.release(trial.trial_id, healthy=False)
            trial.status = "TERMINATED"
            self._state.save_trial(trial)
        for trial in self._trials:
            if trial.status in ("PENDING", "PAUSED"):
                trial.status = "TERMINATED"
                self._state.save_trial(trial)

    def run(self) -> list[Trial]:
        start = time.monotonic()
        stopping = False
        try:
            while True:
                if not stopping and (self._stopper.stop_all() or (
                        self._time_budget_s is not None
                        and time.monotonic() - start >= self._time_budget_s)):
                    stopping = True
                    self._stop_everything()
                if not stopping:
                    self._start_trials()
                if not self._inflight:
                    # Nothing runs after trying to start: nothing can change any more.
                    leftover = [t for t in self._trials if not t.is_finished]
                    if leftover and not stopping:
                        logger.warning("%d trials could not be started (%s...); the "
                                       "scheduler chose none of them", len(leftover),
                                       leftover[:3])
                    break
                timeout = 0.5 if self._time_budget_s is None else max(
                    0.0, min(0.5, self._time_budget_s - (time.monotonic() - start)))
                ready, _ = ember.wait(list(self._inflight), num_returns=1, timeout=timeout)
                if ready and len(self._inflight) > 1:
                    ready, _ = ember.wait(list(self._inflight),
                                          num_returns=len(self._inflight), timeout=0)
                self._iteration += 1
                for ref in ready:
                    trial = self._inflight.pop(ref)
                    self._handle(trial, ref)
                self._state.save(self._trials, self._num_suggested, self._searcher,
                                 self._scheduler)
                self._reporter.maybe_report(self._trials)
        finally:
            self._pool.shutdown()
            self._inflight.clear()
            self._state.save(self._trials, self._num_suggested, self._searcher,
                             self._scheduler, force=True)
            self._reporter.maybe_report(self._trials, final=True)
            for callback in self._callbacks:
                hook = getattr(callback, "on_experiment_end", None)
                if hook is not None:
                    hook(trials=self._trials)
        return self._trials


_AUTO_FIELDS = {"training_iteration", "iterations_since_restore", "time_this_iter_s",
                "time_total_s", "time_since_restore", "timestamp", "trial_id", "pid",
                "hostname", "done", "config", "date", "node_ip"}


def _json(value: Any) -> str:
    return json.dumps(value, default=repr, indent=1)


def _load_error(blob: bytes | None) -> BaseException | None:
    if blob is None:
        return None
    try:
        return cloudpickle.loads(blob)
    except Exception:  # noqa: BLE001 - the class may not import here; the text remains
        return None


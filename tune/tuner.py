"""``Tuner`` and ``TuneConfig``: the entry point of a sweep (Ray's ``ray.tune.Tuner``).

``Tuner(trainable, param_space=..., tune_config=..., run_config=...).fit()`` checks the
configuration, writes the experiment's files, runs a ``TuneController`` and returns a
``ResultGrid``. ``Tuner.restore(path, trainable)`` rebuilds the same sweep from its folder
and runs only what had not finished.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import inspect
import json
import os
import uuid
from collections.abc import Callable
from typing import Any

import pandas as pd

import ember
from ember.train import Result, RunConfig, get_context
from ember.train._storage import StorageContext

from ._controller import TrainableSpec, TuneController
from ._state import ExperimentState
from ._trial_actor import trainable_kind
from .errors import TuneConfigError, TuneRestoreError
from .registry import get_trainable_cls
from .resources import resource_request
from .result_grid import ResultGrid
from .schedulers import FIFOScheduler, TrialScheduler
from .search.basic_variant import BasicVariantGenerator
from .search.search_generator import SearchGenerator
from .search.searcher import Searcher, check_mode
from .search.variant_generator import parse_space
from .stopper import as_stopper
from .trial import Trial

__all__ = ["TuneConfig", "Tuner"]


@dataclasses.dataclass
class TuneConfig:
    """How a sweep searches (Ray's ``tune.TuneConfig``).

    Args:
        metric, mode: what "best" means (``mode`` is ``"min"`` or ``"max"``); passed on to
            the search algorithm and scheduler unless they were given their own.
        num_samples: how often the search space is sampled (each grid combination is
            repeated ``num_samples`` times); -1 means until ``time_budget_s``.
        max_concurrent_trials: at most this many trials at once (default: as many as fit).
        search_alg: a ``Searcher`` (default: ``BasicVariantGenerator``: grid + random).
        scheduler: a ``TrialScheduler`` (default: FIFO).
        time_budget_s: stop the sweep after this many seconds.
        reuse_actors: keep trial processes warm across trials (ember's default: True).
        trial_name_creator / trial_dirname_creator: ``f(trial) -> str``.
    """

    metric: str | None = None
    mode: str | None = None
    search_alg: Any = None
    scheduler: Any = None
    num_samples: int = 1
    max_concurrent_trials: int | None = None
    time_budget_s: float | None = None
    reuse_actors: bool | None = None
    trial_name_creator: Callable[[Any], str] | None = None
    trial_dirname_creator: Callable[[Any], str] | None = None
    chdir_to_trial_dir: bool = False

    def __post_init__(self) -> None:
        check_mode(self.mode, "TuneConfig")
        if self.metric is not None and not isinstance(self.metric, str):
            raise TuneConfigError(f"TuneConfig(metric={self.metric!r}): name the reported "
                                  "metric with a str, e.g. metric='loss'")
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or \
                (self.num_samples < 1 and self.num_samples != -1):
            raise TuneConfigError(f"TuneConfig(num_samples={self.num_samples!r}): use an int "
                                  ">= 1 (or -1 to sample until time_budget_s)")
        if self.max_concurrent_trials is not None and (
                not isinstance(self.max_concurrent_trials, int)
                or self.max_concurrent_trials < 1):
            raise TuneConfigError(f"TuneConfig(max_concurrent_trials="
                                  f"{self.max_concurrent_trials!r}): use None or an int >= 1")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise TuneConfigError(f"TuneConfig(time_budget_s={self.time_budget_s!r}): use "
                                  "None or a number of seconds > 0")
        if self.search_alg is not None and not isinstance(self.search_alg, Searcher):
            raise TuneConfigError(f"TuneConfig(search_alg={self.search_alg!r}): pass a "
                                  "tune.search Searcher, e.g. OptunaSearch()")
        if self.scheduler is not None and not isinstance(self.scheduler, TrialScheduler):
            raise TuneConfigError(f"TuneConfig(scheduler={self.scheduler!r}): pass a "
                                  "tune.schedulers TrialScheduler, e.g. ASHAScheduler()")


def _is_trainer(obj: Any) -> bool:
    return not inspect.isclass(obj) and hasattr(obj, "fit") and hasattr(obj, "scaling_config")


def _trainer_trainable(trainer: Any) -> tuple[Callable[[dict[str, Any]], None], Callable]:
    """A function trainable that runs ``trainer.fit()`` in the trial, and its budget.

    The trial's own process holds nothing: the trainer's workers ask for their own
    resources, so the sweep keeps their total free (the budget) without holding it.
    """

    def run_trainer(config: dict[str, Any]) -> None:
        clone = copy.copy(trainer)
        overrides = dict(config)
        loop_config = overrides.pop("train_loop_config", None)
        if loop_config is not None or hasattr(clone, "train_loop_config"):
            merged = dict(getattr(clone, "train_loop_config", None) or {})
            merged.update(loop_config or {})
            clone.train_loop_config = merged
        for key, value in overrides.items():
            setattr(clone, key, value)
        run_config = getattr(clone, "run_config", None)
        if run_config is not None and run_config.storage_path is None:
            # The run's files live in the trial's folder, not in a folder of their own.
            clone.run_config = dataclasses.replace(
                run_config, storage_path=get_context().get_trial_dir(), name="train",
                verbose=0 if run_config.verbose is None else run_config.verbose)
        result = clone.fit()
        error = getattr(result, "error", None)
        if error is not None:
            raise error

    def budget(config: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
        scaling = config.get("scaling_config") or trainer.scaling_config
        per_worker = scaling.worker_resources
        total = {k: v * scaling.num_workers for k, v in per_worker.items()}
        return {}, total

    run_trainer.__name__ = type(trainer).__name__
    return run_trainer, budget


def _resolve_trainable(trainable: Any) -> tuple[Any, str, Any]:
    """(trainable, its name, budget function or None), checked."""
    if isinstance(trainable, str):
        found = get_trainable_cls(trainable)
        if found is None:
            raise TuneConfigError(f"Tuner({trainable!r}): no trainable is registered under "
                                  "that name; call tune.register_trainable(name, fn) first, "
                                  "or pass the function or class itself")
        return found, trainable, None
    if _is_trainer(trainable):
        function, budget = _trainer_trainable(trainable)
        return function, type(trainable).__name__, budget
    if not callable(trainable):
        raise TuneConfigError(f"Tuner({trainable!r}): pass a function taking the config, a "
                              "tune.Trainable subclass, an ember.train Trainer, or a "
                              "registered name")
    return trainable, getattr(trainable, "__name__", type(trainable).__name__), None


class Tuner:
    """Runs a hyperparameter sweep.

    Args:
        trainable: a function ``f(config)`` that calls ``tune.report``, a
            ``tune.Trainable`` subclass, an ember.train Trainer, or a registered name.
        param_space: the search space (constants, ``tune.uniform(...)``,
            ``tune.grid_search([...])``, nested dicts and lists), or an ember.rl
            ``AlgorithmConfig`` (taken as its ``to_dict()``, as RLlib users pass it).
        tune_config: how to search (``TuneConfig``).
        run_config: where results go, stopping, failures (``RunConfig``).

    Example:
        >>> def objective(config):
        ...     tune.report({"score": (config["x"] - 3) ** 2})
        >>> grid = Tuner(objective, param_space={"x": tune.uniform(0, 10)},
        ...              tune_config=TuneConfig(metric="score", mode="min",
        ...                                     num_samples=20)).fit()
        >>> grid.get_best_result().config
    """

    def __init__(self, trainable: Any = None, *, param_space: dict[str, Any] | Any = None,
                 tune_config: TuneConfig | None = None,
                 run_config: RunConfig | None = None) -> None:
        if trainable is None:
            raise TuneConfigError("Tuner(): pass the trainable to tune (a function, a "
                                  "Trainable class or a Trainer)")
        self._trainable, self._name, self._budget = _resolve_trainable(trainable)
        if tune_config is not None and not isinstance(tune_config, TuneConfig):
            raise TuneConfigError(f"Tuner(tune_config={tune_config!r}): pass a TuneConfig")
        if run_config is not None and not isinstance(run_config, RunConfig):
            raise TuneConfigError(f"Tuner(run_config={run_config!r}): pass an ember.tune "
                                  "RunConfig")
        if param_space is not None and not isinstance(param_space, dict) \
                and callable(getattr(param_space, "to_dict", None)):
            param_space = param_space.to_dict()  # an AlgorithmConfig: its dict is the space
        parse_space(param_space)  # raises on an invalid or empty grid before anything runs
        self._param_space = param_space or {}
        self._tune_config = tune_config or TuneConfig()
        self._run_config = run_config or RunConfig()
        as_stopper(self._run_config.stop)
        self._restored: dict[str, Any] | None = None
        self._results: ResultGrid | None = None

    # -- restore ---------------------------------------------------------------------------
    @staticmethod
    def _storage_of(path: str | os.PathLike[str]) -> StorageContext:
        path = os.fspath(path).rstrip("/")
        parent, name = os.path.split(path)
        if not name:
            raise TuneRestoreError(f"Tuner.restore({path!r}): pass the experiment folder "
                                   "(storage_path/name)")
        if "://" not in path and not os.path.isdir(os.path.abspath(os.path.expanduser(path))):
            raise TuneRestoreError(f"Tuner.restore({path!r}): no such folder; pass the "
                                   "experiment folder a Tuner wrote (storage_path/name)")
        return StorageContext(parent or ".", name)

    @classmethod
    def can_restore(cls, path: str | os.PathLike[str]) -> bool:
        """True if ``path`` holds an experiment that ``Tuner.restore`` can continue."""
        try:
            return ExperimentState.exists(cls._storage_of(path))
        except (TuneRestoreError, OSError):
            return False

    @classmethod
    def restore(cls, path: str | os.PathLike[str], trainable: Any, *,
                resume_unfinished: bool = True, resume_errored: bool = False,
                restart_errored: bool = False, param_space: dict[str, Any] | None = None,
                **_: Any) -> Tuner:
        """Continue the sweep in ``path``: finished trials are kept, the others rerun.

        Unfinished trials resume from their latest checkpoint; ``resume_errored`` does the
        same for failed ones, ``restart_errored`` reruns them from scratch.

        Raises:
            TuneRestoreError: ``path`` holds no ember.tune experiment.
        """
        storage = cls._storage_of(path)
        tuner_state, searcher_state, trials = ExperimentState(storage).load()
        tuner = cls(trainable, param_space=param_space or tuner_state["param_space"],
                    tune_config=tuner_state["tune_config"], run_config=tuner_state["run_config"])
        for trial in trials:
            if trial.status == "ERROR" and restart_errored:
                trial.status, trial.checkpoint, trial.num_failures = "PENDING", None, 0
                trial.last_result, trial.error_text = {}, None
            elif trial.status == "ERROR" and resume_errored:
                trial.status, trial.num_failures, trial.error_text = "PENDING", 0, None
            elif trial.status in ("RUNNING", "PENDING", "PAUSED"):
                trial.status = "PENDING" if resume_unfinished else "TERMINATED"
        tuner._restored = {"storage": storage, "uid": tuner_state["uid"],
                           "name": tuner_state["name"], "trials": trials,
                           "searcher_state": searcher_state}
        return tuner

    # -- fit -----------------------------------------------------------------------------------
    def _searcher(self, config: TuneConfig) -> Searcher:
        if config.search_alg is None or isinstance(config.search_alg, BasicVariantGenerator):
            searcher = config.search_alg or BasicVariantGenerator()
            searcher.set_search_properties(config.metric, config.mode, self._param_space,
                                           num_samples=config.num_samples)
            return searcher
        searcher = SearchGenerator(config.search_alg, config.num_samples)
        if not searcher.set_search_properties(config.metric, config.mode, self._param_space):
            raise TuneConfigError(
                f"{type(config.search_alg).__name__} already has a search space and "
                "param_space has one too; give the space in one place only")
        return searcher

    def fit(self) -> ResultGrid:
        """Run the sweep to the end; return every trial's result.

        Raises:
            TuneConfigError: an invalid configuration, or ``metric`` never reported.
        """
        if not ember.is_initialized():
            ember.init()
        config, run_config = self._tune_config, self._run_config
        restored = self._restored
        if restored is None:
            uid = uuid.uuid4().hex[:5]
            name = run_config.name or \
                f"{self._name}_{datetime.datetime.now():%Y-%m-%d_%H-%M-%S}_{uid}"
            storage = StorageContext(run_config.storage_path, name)
            searcher = self._searcher(config)
            scheduler = config.scheduler or FIFOScheduler()
            scheduler.set_search_properties(config.metric, config.mode)
            trials: list[Trial] = []
            num_suggested = 0
            state = ExperimentState(storage)
            state.save_tuner({"param_space": self._param_space, "tune_config":
                              dataclasses.replace(config, search_alg=None, scheduler=None),
                              "run_config": run_config, "uid": uid, "name": name})
        else:
            storage, uid, name = restored["storage"], restored["uid"], restored["name"]
            trials = restored["trials"]
            saved = restored["searcher_state"]
            searcher = saved.get("searcher") or self._searcher(config)
            scheduler = saved.get("scheduler") or config.scheduler or FIFOScheduler()
            num_suggested = int(saved.get("num_suggested", 0))
            # Trials made after the last snapshot: move the searcher past them.
            last = max((t.index for t in trials), default=-1)
            for index in range(num_suggested, last + 1):
                if searcher.suggest(f"{uid}_{index:05d}") == Searcher.FINISHED:
                    break
            num_suggested = max(num_suggested, last + 1)
            for trial in trials:
                if trial.is_finished:
                    try:
                        searcher.on_trial_complete(trial.trial_id, trial.last_result,
                                                   error=trial.status == "ERROR")
                    except Exception:  # noqa: BLE001 - a searcher that already knew it
                        pass
        kind = trainable_kind(self._trainable)
        spec = TrainableSpec(trainable=self._trainable, name=self._name,
                             key=f"{self._name}-{uid}", budget_fn=self._budget, kind=kind)
        controller = TuneController(
            spec=spec, searcher=searcher, scheduler=scheduler,
            stopper=as_stopper(run_config.stop), metric=config.metric, mode=config.mode,
            storage=storage, experiment_name=name, run_config=run_config,
            max_concurrent_trials=config.max_concurrent_trials,
            time_budget_s=config.time_budget_s, reuse_actors=config.reuse_actors,
            resources_fn=lambda cfg: resource_request(self._trainable, cfg),
            trial_name_creator=config.trial_name_creator,
            trial_dirname_creator=config.trial_dirname_creator,
            trials=trials, num_suggested=num_suggested, experiment_uid=uid)
        trials = controller.run()
        self._results = self._grid(trials, storage, controller)
        return self._results

    def _grid(self, trials: list[Trial], storage: StorageContext,
              controller: TuneController) -> ResultGrid:
        results = []
        for trial in trials:
            log = controller._logs.get(trial.trial_id)
            if log is not None:
                rows = log.rows
            else:
                text = storage.read_text(f"{trial.dirname}/result.json") or ""
                rows = [json.loads(line) for line in text.splitlines() if line]
            manager = controller._ckpt.get(trial.trial_id)
            error = trial.error
            if error is None and trial.status == "ERROR":
                from ._controller import TrialFailedError
                error = TrialFailedError(trial.trial_id, {"traceback": trial.error_text or ""})
            results.append(Result(
                metrics=dict(trial.last_result) or (rows[-1] if rows else None),
                checkpoint=trial.checkpoint, error=error,
                path=f"{storage.run_path}/{trial.dirname}",
                metrics_dataframe=pd.DataFrame(rows),
                best_checkpoints=manager.best_checkpoints() if manager else (
                    [(trial.checkpoint, trial.last_result)] if trial.checkpoint else []),
                config=trial.config))
        return ResultGrid(results, storage.run_path, self._tune_config.metric,
                          self._tune_config.mode, [t.trial_id for t in trials])

    def get_results(self) -> ResultGrid:
        """The ResultGrid of the last ``fit()``."""
        if self._results is None:
            raise TuneConfigError("Tuner.get_results(): call fit() first")
        return self._results

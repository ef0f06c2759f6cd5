"""Trial schedulers (Ray's ``ray.tune.schedulers``): which trials go on, pause, or stop.

A scheduler is a pure decision object: the controller calls it with events (a trial was
added, reported a result, completed, failed) and it answers ``CONTINUE``, ``PAUSE`` or
``STOP``; ``choose_trial_to_run`` picks the next trial to start among those waiting. No
I/O and no processes here, so each is tested by plain calls, as in Ray.

``runner`` is the controller; schedulers use only ``runner.get_trials()``,
``runner.stop_trial(trial)`` (for a paused trial that loses) and
``runner.is_search_finished()``, and accept ``None`` for it in plain-call tests.
"""

from __future__ import annotations

import collections
import math
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import TuneConfigError
from .search.sample import Categorical, Domain, Float, Integer

__all__ = ["ASHAScheduler", "AsyncHyperBandScheduler", "FIFOScheduler", "HyperBandScheduler",
           "MedianStoppingRule", "PopulationBasedTraining", "TrialScheduler"]


class TrialScheduler:
    """Base class: decisions on trial events (FIFO behaviour)."""

    CONTINUE = "CONTINUE"
    PAUSE = "PAUSE"
    STOP = "STOP"
    NOOP = "NOOP"

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        if mode not in (None, "min", "max"):
            raise TuneConfigError(f"{type(self).__name__}(mode={mode!r}): use 'min' or 'max'")
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        """Adopt the Tuner's metric and mode where the scheduler was given none."""
        if self._metric is None:
            self._metric = metric
        if self._mode is None:
            self._mode = mode
        return True

    def _require_metric(self) -> None:
        if self._metric is None or self._mode is None:
            raise TuneConfigError(f"{type(self).__name__} needs a metric and a mode: pass "
                                  "them to the scheduler or to TuneConfig(metric=, mode=)")

    def _score(self, result: dict[str, Any]) -> float | None:
        """The metric of ``result`` signed so that larger is better (None if missing)."""
        value = result.get(self._metric) if self._metric else None
        if not isinstance(value, (int, float)) or math.isnan(value):
            return None
        return float(value) if self._mode == "max" else -float(value)

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        """A trial was created."""

    def on_trial_error(self, runner: Any, trial: Any) -> None:
        """A trial failed for good."""
        self.on_trial_remove(runner, trial)

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        return self.CONTINUE

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any]) -> None:
        """A trial ended normally (or was stopped)."""

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        """A trial was removed without completing."""

    def choose_trial_to_run(self, runner: Any, trials: list[Any] | None = None) -> Any:
        """The next trial to start: the oldest pending one, else the oldest paused one."""
        trials = trials if trials is not None else runner.get_trials()
        for status in ("PENDING", "PAUSED"):
            for trial in trials:
                if trial.status == status:
                    return trial
        return None

    def debug_string(self) -> str:
        return type(self).__name__


class FIFOScheduler(TrialScheduler):
    """Runs trials in the order they were added; never stops one early (the default)."""


# -- ASHA ------------------------------------------------------------------------------
class _Bracket:
    """One ASHA bracket: rungs at ``grace_period * rf**k``, each recording trial scores."""

    def __init__(self, min_t: float, max_t: float, reduction_factor: float, s: int,
                 stop_last_trials: bool) -> None:
        self.rf = reduction_factor
        max_rungs = int(math.log(max_t / min_t) / math.log(reduction_factor) - s + 1)
        #: (milestone, {trial_id: score}), highest milestone first.
        self.rungs: list[tuple[float, dict[str, float]]] = [
            (min_t * reduction_factor ** (k + s), {}) for k in reversed(range(max_rungs))]
        self.stop_last_trials = stop_last_trials

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        if not recorded:
            return None
        return float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100))

    def on_result(self, trial_id: str, cur_iter: float, score: float | None) -> str:
        action = TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter >= milestone and trial_id in recorded and not self.stop_last_trials:
                break
            if cur_iter < milestone or trial_id in recorded:
                continue
            cutoff = self.cutoff(recorded)
            if cutoff is not None and score is not None and score < cutoff:
                action = TrialScheduler.STOP
            if score is not None:
                recorded[trial_id] = score
            break
        return action


class AsyncHyperBandScheduler(TrialScheduler):
    """ASHA: at each rung, a trial below the top ``1/reduction_factor`` stops (Ray's class).

    Args:
        time_attr: the result field that counts progress (``training_iteration``).
        max_t: trials stop at this ``time_attr``.
        grace_period: no trial stops before this ``time_attr``.
        reduction_factor: rungs are ``grace_period * reduction_factor**k`` apart, and
            ``1/reduction_factor`` of the trials pass each rung.
        brackets: how many brackets (trials are spread round-robin across them).

    Example:
        >>> tune.TuneConfig(metric="loss", mode="min", scheduler=ASHAScheduler(max_t=20))
    """

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 100, grace_period: float = 1,
                 reduction_factor: float = 4, brackets: int = 1,
                 stop_last_trials: bool = True) -> None:
        super().__init__(metric, mode)
        if not grace_period > 0:
            raise TuneConfigError(f"{type(self).__name__}(grace_period={grace_period!r}): "
                                  "must be > 0")
        if not max_t > 0 or max_t < grace_period:
            raise TuneConfigError(f"{type(self).__name__}(max_t={max_t!r}): must be > 0 and "
                                  f">= grace_period ({grace_period})")
        if not reduction_factor > 1:
            raise TuneConfigError(f"{type(self).__name__}(reduction_factor="
                                  f"{reduction_factor!r}): must be > 1")
        if not isinstance(brackets, int) or brackets < 1:
            raise TuneConfigError(f"{type(self).__name__}(brackets={brackets!r}): use an "
                                  "int >= 1")
        self._time_attr = time_attr
        self._max_t = max_t
        self._grace_period = grace_period
        self._brackets = [_Bracket(grace_period, max_t, reduction_factor, s, stop_last_trials)
                          for s in range(brackets)]
        self._trial_bracket: dict[str, _Bracket] = {}
        self._stop_last_trials = stop_last_trials
        self._counter = 0

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        self._require_metric()
        self._trial_bracket[trial.trial_id] = self._brackets[self._counter % len(self._brackets)]
        self._counter += 1

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self._trial_bracket:
            self.on_trial_add(runner, trial)
        progress = result.get(self._time_attr)
        if progress is None:
            return self.CONTINUE
        if progress >= self._max_t and self._stop_last_trials:
            return self.STOP
        bracket = self._trial_bracket[trial.trial_id]
        return bracket.on_result(trial.trial_id, progress, self._score(result))

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any]) -> None:
        if result and trial.trial_id in self._trial_bracket and \
                result.get(self._time_attr) is not None:
            self._trial_bracket[trial.trial_id].on_result(
                trial.trial_id, result[self._time_attr], self._score(result))
        self._trial_bracket.pop(trial.trial_id, None)

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        self._trial_bracket.pop(trial.trial_id, None)

    def rung_cutoffs(self) -> list[dict[str, Any]]:
        """Each rung's milestone, recorded scores and current cut-off (for plots)."""
        sign = 1.0 if self._mode == "max" else -1.0
        rows = []
        for index, bracket in enumerate(self._brackets):
            for milestone, recorded in bracket.rungs:
                cutoff = bracket.cutoff(recorded)
                rows.append({"bracket": index, "milestone": milestone,
                             "num_recorded": len(recorded),
                             "cutoff": None if cutoff is None else sign * cutoff})
        return rows

    def debug_string(self) -> str:
        parts = []
        for bracket in self._brackets:
            parts.append(", ".join(f"{m:g}: {len(r)}" for m, r in bracket.rungs))
        return f"ASHA rungs (milestone: trials) {' | '.join(parts)}"


ASHAScheduler = AsyncHyperBandScheduler


# -- synchronous HyperBand --------------------------------------------------------------
class _HBBracket:
    """Successive halving: ``n`` trials run ``r`` steps, the best ``1/eta`` run ``eta*r``."""

    def __init__(self, n: int, r: float, eta: float, max_t: float) -> None:
        self.capacity = n
        self.r = r
        self.eta = eta
        self.max_t = max_t
        self.live: dict[str, Any] = {}       # trial_id -> trial, still in the bracket
        self.reached: dict[str, float] = {}  # trial_id -> score at the current milestone
        self.added = 0

    @property
    def full(self) -> bool:
        return self.added >= self.capacity


class HyperBandScheduler(TrialScheduler):
    """Synchronous HyperBand (Ray's class): brackets of successive halving.

    A trial that reaches its bracket's milestone is paused until every trial of the
    bracket has; then the best ``1/reduction_factor`` continue to ``reduction_factor``
    times as many steps and the rest stop.
    """

    def __init__(self, time_attr: str = "training_iteration", metric: str | None = None,
                 mode: str | None = None, max_t: float = 81, reduction_factor: float = 3,
                 stop_last_trials: bool = True) -> None:
        super().__init__(metric, mode)
        if not max_t > 0:
            raise TuneConfigError(f"HyperBandScheduler(max_t={max_t!r}): must be > 0")
        if not reduction_factor > 1:
            raise TuneConfigError(f"HyperBandScheduler(reduction_factor={reduction_factor!r}):"
                                  " must be > 1")
        self._time_attr = time_attr
        self._max_t = max_t
        self._eta = reduction_factor
        self._s_max_1 = int(round(math.log(max_t) / math.log(reduction_factor))) + 1
        self._next_s = self._s_max_1 - 1
        self._current: _HBBracket | None = None
        self._trial_bracket: dict[str, _HBBracket] = {}
        self._resumable: set[str] = set()
        self._stop_last_trials = stop_last_trials

    def _new_bracket(self) -> _HBBracket:
        s = self._next_s
        self._next_s = self._next_s - 1 if self._next_s > 0 else self._s_max_1 - 1
        n = int(math.ceil(self._s_max_1 / (s + 1) * self._eta ** s))
        r = max(self._max_t * self._eta ** (-s), 1)
        return _HBBracket(n, r, self._eta, self._max_t)

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        self._require_metric()
        if self._current is None or self._current.full:
            self._current = self._new_bracket()
        self._current.live[trial.trial_id] = trial
        self._current.added += 1
        self._trial_bracket[trial.trial_id] = self._current

    def _search_finished(self, runner: Any) -> bool:
        return runner is None or bool(getattr(runner, "is_search_finished", lambda: True)())

    def _ready_to_halve(self, bracket: _HBBracket, runner: Any) -> bool:
        complete = bracket.full or self._search_finished(runner)
        return complete and bool(bracket.live) and all(t in bracket.reached
                                                       for t in bracket.live)

    def _halve(self, bracket: _HBBracket, runner: Any) -> set[str]:
        """Keep the best ``1/eta``; stop the paused losers. Returns the kept ids."""
        ranked = sorted(bracket.live, key=lambda t: bracket.reached[t], reverse=True)
        keep = max(1, int(len(ranked) / bracket.eta))
        kept, lost = set(ranked[:keep]), ranked[keep:]
        for trial_id in lost:
            trial = bracket.live.pop(trial_id)
            self._trial_bracket.pop(trial_id, None)
            self._resumable.discard(trial_id)
            if runner is not None and getattr(trial, "status", None) == "PAUSED":
                runner.stop_trial(trial)
        bracket.reached.clear()
        bracket.r = min(bracket.r * bracket.eta, bracket.max_t)
        self._resumable |= kept
        return kept

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        bracket = self._trial_bracket.get(trial.trial_id)
        progress = result.get(self._time_attr)
        if bracket is None or progress is None:
            return self.CONTINUE
        if progress >= self._max_t and self._stop_last_trials:
            return self.STOP
        if progress < bracket.r:
            return self.CONTINUE
        score = self._score(result)
        bracket.reached[trial.trial_id] = -math.inf if score is None else score
        self._resumable.discard(trial.trial_id)
        if not self._ready_to_halve(bracket, runner):
            return self.PAUSE
        kept = self._halve(bracket, runner)
        if trial.trial_id in kept:
            self._resumable.discard(trial.trial_id)
            return self.CONTINUE
        return self.STOP

    def _remove(self, runner: Any, trial: Any) -> None:
        bracket = self._trial_bracket.pop(trial.trial_id, None)
        self._resumable.discard(trial.trial_id)
        if bracket is None:
            return
        bracket.live.pop(trial.trial_id, None)
        bracket.reached.pop(trial.trial_id, None)
        if self._ready_to_halve(bracket, runner):
            self._halve(bracket, runner)

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any]) -> None:
        self._remove(runner, trial)

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        self._remove(runner, trial)

    def choose_trial_to_run(self, runner: Any, trials: list[Any] | None = None) -> Any:
        trials = trials if trials is not None else runner.get_trials()
        for trial in trials:
            if trial.status == "PENDING":
                return trial
        for trial in trials:
            if trial.status == "PAUSED" and trial.trial_id in self._resumable:
                return trial
        # A paused trial whose bracket can now halve (e.g. the search just finished).
        for bracket in {id(b): b for b in self._trial_bracket.values()}.values():
            if self._ready_to_halve(bracket, runner):
                self._halve(bracket, runner)
                for trial in trials:
                    if trial.status == "PAUSED" and trial.trial_id in self._resumable:
                        return trial
        return None


# -- median stopping ---------------------------------------------------------------------
class MedianStoppingRule(TrialScheduler):
    """Stops a trial whose best result is worse than the median of the others' running means.

    Args:
        time_attr: progress field; results are compared at equal progress.
        grace_period: no trial stops before this much ``time_attr``.
        min_samples_required: other trials needed before any stops.
        hard_stop: stop (True) or pause (False) a trial below the median.
    """

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, grace_period: float = 60.0,
                 min_samples_required: int = 3, min_time_slice: float = 0,
                 hard_stop: bool = True) -> None:
        super().__init__(metric, mode)
        self._time_attr = time_attr
        self._grace_period = grace_period
        self._min_samples = min_samples_required
        self._hard_stop = hard_stop
        #: trial_id -> [(time, score)] in report order.
        self._history: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
        self._stopped: set[str] = set()

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        self._require_metric()

    def _running_mean(self, trial_id: str, until: float) -> float | None:
        scores = [s for t, s in self._history[trial_id] if t <= until]
        return sum(scores) / len(scores) if scores else None

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        progress, score = result.get(self._time_attr), self._score(result)
        if progress is None or score is None:
            return self.CONTINUE
        self._history[trial.trial_id].append((float(progress), score))
        if progress < self._grace_period:
            return self.CONTINUE
        means = [m for other in self._history if other != trial.trial_id
                 for m in [self._running_mean(other, progress)] if m is not None]
        if len(means) < self._min_samples:
            return self.CONTINUE
        best = max(s for _, s in self._history[trial.trial_id])
        if best < float(np.median(means)):
            self._stopped.add(trial.trial_id)
            return self.STOP if self._hard_stop else self.PAUSE
        return self.CONTINUE


# -- population based training -------------------------------------------------------------
class PopulationBasedTraining(TrialScheduler):
    """PBT: every ``perturbation_interval``, a trial in the bottom quantile copies the
    checkpoint of one in the top quantile (exploit) and perturbs its hyperparameters
    (explore), then resumes from that checkpoint. Each exploit is recorded in the trial's
    ``lineage`` (and its folder's ``lineage.json``).

    Args:
        time_attr: progress field (``training_iteration`` is common).
        perturbation_interval: how much ``time_attr`` between perturbations.
        burn_in_period: no perturbation before this much ``time_attr``.
        hyperparam_mutations: key -> list of values, a domain (``tune.uniform(...)``), or a
            function returning a new value.
        quantile_fraction: the fraction of trials in the top and bottom quantiles.
        resample_probability: chance of drawing a fresh value instead of perturbing.
        perturbation_factors: a continuous value is multiplied by one of these.
        custom_explore_fn: ``f(config) -> config`` applied after the mutations.
        seed: seeds the choices (for reproducible tests).
    """

    def __init__(self, time_attr: str = "time_total_s", metric: str | None = None,
                 mode: str | None = None, perturbation_interval: float = 60.0,
                 burn_in_period: float = 0.0,
                 hyperparam_mutations: dict[str, Any] | None = None,
                 quantile_fraction: float = 0.25, resample_probability: float = 0.25,
                 perturbation_factors: tuple[float, float] = (1.2, 0.8),
                 custom_explore_fn: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 log_config: bool = True, require_attrs: bool = True,
                 synch: bool = False, seed: int | None = None) -> None:
        super().__init__(metric, mode)
        if not hyperparam_mutations and custom_explore_fn is None:
            raise TuneConfigError("PopulationBasedTraining needs hyperparam_mutations (or "
                                  "custom_explore_fn): say which hyperparameters to perturb, "
                                  "e.g. {'lr': tune.loguniform(1e-4, 1e-1)}")
        if not 0 < quantile_fraction <= 0.5:
            raise TuneConfigError(f"PopulationBasedTraining(quantile_fraction="
                                  f"{quantile_fraction!r}): use a value in (0, 0.5]")
        if not perturbation_interval > 0:
            raise TuneConfigError(f"PopulationBasedTraining(perturbation_interval="
                                  f"{perturbation_interval!r}): must be > 0")
        self._time_attr = time_attr
        self._interval = perturbation_interval
        self._burn_in = burn_in_period
        self._mutations = hyperparam_mutations or {}
        self._quantile = quantile_fraction
        self._resample_p = resample_probability
        self._factors = perturbation_factors
        self._explore_fn = custom_explore_fn
        self._rng = random.Random(seed)
        self._np_rng = np.random.default_rng(seed)
        #: trial_id -> {"trial", "last_perturbation", "score"}
        self._state: dict[str, dict[str, Any]] = {}
        self.num_perturbations = 0

    def on_trial_add(self, runner: Any, trial: Any) -> None:
        self._require_metric()
        self._state[trial.trial_id] = {"trial": trial, "last_perturbation": 0.0, "score": None}

    def _quantiles(self) -> tuple[list[Any], list[Any]]:
        scored = [s for s in self._state.values() if s["score"] is not None]
        scored.sort(key=lambda s: s["score"])
        if len(scored) <= 1:
            return [], []
        count = int(math.ceil(len(scored) * self._quantile))
        if count > len(scored) / 2:
            count = int(len(scored) / 2)
        return [s["trial"] for s in scored[:count]], [s["trial"] for s in scored[-count:]]

    def explore(self, config: dict[str, Any]) -> dict[str, Any]:
        """A perturbed copy of ``config`` (Ray's explore rules)."""
        new = dict(config)
        for key, spec in self._mutations.items():
            new[key] = self._mutate(config.get(key), spec)
        if self._explore_fn is not None:
            new = self._explore_fn(new)
        return new

    def _mutate(self, value: Any, spec: Any) -> Any:
        if isinstance(spec, dict):
            base = value if isinstance(value, dict) else {}
            return {k: self._mutate(base.get(k), s) for k, s in spec.items()}
        resample = self._rng.random() < self._resample_p
        if isinstance(spec, (list, tuple)):
            options = list(spec)
            if resample or value not in options:
                return self._rng.choice(options)
            index = options.index(value) + self._rng.choice([-1, 1])
            return options[min(max(index, 0), len(options) - 1)]
        if isinstance(spec, Categorical):
            return self._mutate(value, spec.categories)
        if isinstance(spec, Domain):
            if resample or not isinstance(value, (int, float)):
                return spec.sample(self._np_rng)
            new = value * self._rng.choice(list(self._factors))
            if isinstance(spec, Integer):
                new = int(round(new))
            if isinstance(spec, (Float, Integer)) and spec.sampler != "normal":
                new = min(max(new, spec.lower), spec.upper)
            return new
        if callable(spec):
            if resample or not isinstance(value, (int, float)):
                return spec()
            return value * self._rng.choice(list(self._factors))
        raise TuneConfigError(f"PopulationBasedTraining(hyperparam_mutations=...): {spec!r} "
                              "is not a list, a tune domain, or a function")

    def on_trial_result(self, runner: Any, trial: Any, result: dict[str, Any]) -> str:
        if trial.trial_id not in self._state:
            self.on_trial_add(runner, trial)
        progress = result.get(self._time_attr)
        if progress is None:
            return self.CONTINUE
        state = self._state[trial.trial_id]
        if progress < self._burn_in or progress - state["last_perturbation"] < self._interval:
            return self.CONTINUE
        state["last_perturbation"] = progress
        state["score"] = self._score(result)
        lower, upper = self._quantiles()
        if trial not in lower:
            return self.CONTINUE
        donors = [t for t in upper if getattr(t, "checkpoint", None) is not None]
        if not donors:
            return self.CONTINUE
        donor = self._rng.choice(donors)
        self._exploit(trial, donor, progress)
        return self.PAUSE

    def _exploit(self, trial: Any, donor: Any, progress: float) -> None:
        old_config = dict(trial.config)
        new_config = self.explore(dict(donor.config))
        trial.lineage.append({
            "time": progress, "cloned_from": donor.trial_id,
            "checkpoint": donor.checkpoint.path, "old_config": old_config,
            "new_config": new_config})
        trial.config = new_config
        trial.restore_from = donor.checkpoint
        trial.experiment_tag = f"{len(trial.lineage)}@perturbed"
        self._state[trial.trial_id]["last_perturbation"] = progress
        self.num_perturbations += 1

    def on_trial_complete(self, runner: Any, trial: Any, result: dict[str, Any]) -> None:
        state = self._state.get(trial.trial_id)
        if state is not None and result:
            state["score"] = self._score(result)

    def on_trial_remove(self, runner: Any, trial: Any) -> None:
        self._state.pop(trial.trial_id, None)

    def choose_trial_to_run(self, runner: Any, trials: list[Any] | None = None) -> Any:
        trials = trials if trials is not None else runner.get_trials()
        for status in ("PENDING", "PAUSED"):
            candidates = [t for t in trials if t.status == status]
            if candidates:
                return min(candidates, key=lambda t: t.last_result.get(self._time_attr, 0))
        return None

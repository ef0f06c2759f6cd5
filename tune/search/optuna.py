"""``OptunaSearch``: Optuna's samplers behind Tune's ``Searcher`` interface.

Optuna is driven through its ask/tell interface: ``study.ask(distributions)`` for each
new trial (or ``study.ask()`` plus the user's define-by-run function), ``study.tell`` when
the trial ends. Tune's domains are converted into Optuna distributions; nested spaces are
flattened to ``"a/b"`` names and unflattened in the suggested config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import TuneConfigError
from ..trial import flatten
from .sample import Categorical, Domain, Float, Function, Integer
from .searcher import Searcher
from .variant_generator import parse_space

__all__ = ["OptunaSearch"]


def _optuna() -> Any:
    try:
        import optuna
    except ImportError as exc:  # pragma: no cover - optuna is in the ml extra
        raise TuneConfigError("OptunaSearch needs optuna: pip install optuna") from exc
    return optuna


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        target = nested
        parts = key.split("/")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return nested


def _to_distribution(name: str, domain: Domain) -> Any:
    dist = _optuna().distributions
    if isinstance(domain, Categorical):
        return dist.CategoricalDistribution(domain.categories)
    if isinstance(domain, Float):
        if domain.sampler == "normal":
            raise TuneConfigError(f"OptunaSearch cannot sample {name!r} = {domain!r} (a normal "
                                  "distribution); use tune.uniform or tune.loguniform")
        if domain.q is not None:
            return dist.FloatDistribution(domain.lower, domain.upper, step=domain.q)
        return dist.FloatDistribution(domain.lower, domain.upper,
                                      log=domain.sampler == "loguniform")
    if isinstance(domain, Integer):
        upper = domain.upper - 1
        if domain.q is not None:
            return dist.IntDistribution(domain.lower, upper, step=domain.q)
        return dist.IntDistribution(domain.lower, upper, log=domain.sampler == "loguniform")
    if isinstance(domain, Function):
        raise TuneConfigError(f"OptunaSearch cannot sample {name!r} = {domain!r}: "
                              "sample_from is not supported; use a define-by-run function")
    raise TuneConfigError(f"OptunaSearch cannot sample {name!r} = {domain!r}")


def convert_space(space: dict[str, Any]) -> dict[str, Any]:
    """Tune domains in ``space`` -> ``{"a/b": optuna distribution}``.

    Raises:
        TuneConfigError: a grid search (Optuna samples; it cannot enumerate a grid), an
            unsupported domain, or no domain at all.
    """
    grids, domains = parse_space(space, "OptunaSearch space")
    if grids:
        names = ["/".join(map(str, p)) for p, _ in grids]
        raise TuneConfigError(f"OptunaSearch cannot handle grid_search (at {names}): Optuna "
                              "samples, it does not enumerate; use tune.choice([...]) instead, "
                              "or the default search algorithm for a grid")
    converted = {}
    for path, domain in domains:
        name = "/".join(map(str, path))
        converted[name] = _to_distribution(name, domain)
    return converted


class OptunaSearch(Searcher):
    """Search with an Optuna sampler (TPE by default).

    Args:
        space: Tune domains (``{"lr": tune.loguniform(...)}``), Optuna distributions, or a
            define-by-run function ``f(optuna_trial) -> dict | None`` that calls
            ``optuna_trial.suggest_*``; by default the Tuner's ``param_space``.
        metric, mode: what to optimise (default: ``TuneConfig``'s); ``metric`` may be a
            list with ``mode`` a list for multi-objective studies.
        points_to_evaluate: configs to try first.
        sampler: any ``optuna.samplers.BaseSampler`` (``TPESampler(seed=0)``, ...).
        seed: seeds the default TPE sampler.
        evaluated_rewards: the scores of ``points_to_evaluate`` if already known.

    Example:
        >>> OptunaSearch(sampler=optuna.samplers.TPESampler(seed=0))
    """

    def __init__(self, space: dict[str, Any] | Callable[[Any], Any] | None = None,
                 metric: str | list[str] | None = None, mode: str | list[str] | None = None,
                 points_to_evaluate: list[dict[str, Any]] | None = None, sampler: Any = None,
                 seed: int | None = None, evaluated_rewards: list[Any] | None = None,
                 study_name: str | None = None) -> None:
        super().__init__(metric if isinstance(metric, str) or metric is None else None,
                         mode if isinstance(mode, str) or mode is None else None)
        self._multi_metric = metric if isinstance(metric, list) else None
        self._multi_mode = mode if isinstance(mode, list) else None
        self._define_by_run: Callable[[Any], Any] | None = None
        self._space: dict[str, Any] | None = None
        if callable(space):
            self._define_by_run = space
        elif space is not None:
            self._space = self._convert(space)
        self._points = [dict(p) for p in (points_to_evaluate or [])]
        self._rewards = evaluated_rewards
        self._sampler = sampler
        self._seed = seed
        self._study_name = study_name
        self._study: Any = None
        self._ot_trials: dict[str, Any] = {}

    @staticmethod
    def _convert(space: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(space, dict):
            raise TuneConfigError(f"OptunaSearch(space={space!r}): pass a dict or a "
                                  "define-by-run function")
        optuna = _optuna()
        flat = flatten(space)
        if flat and all(isinstance(v, optuna.distributions.BaseDistribution)
                        for v in flat.values()):
            return flat
        converted = convert_space(space)
        if not converted:
            raise TuneConfigError("OptunaSearch got an empty search space (no tune.uniform, "
                                  "tune.choice, ... in it); give it something to search")
        return converted

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        has_domains = bool(config) and any(parse_space(config))
        if (self._space is not None or self._define_by_run is not None) and has_domains:
            return False
        super().set_search_properties(metric, mode, config)
        if self._space is None and self._define_by_run is None:
            self._space = self._convert(config or {})
        return True

    def _directions(self) -> list[str]:
        modes = self._multi_mode or [self._mode]
        return ["minimize" if m == "min" else "maximize" for m in modes]

    def _setup_study(self) -> None:
        if self._metric is None and self._multi_metric is None:
            raise TuneConfigError("OptunaSearch has no metric: pass metric= and mode= to it or "
                                  "to TuneConfig")
        if self._mode is None and self._multi_mode is None:
            raise TuneConfigError("OptunaSearch has no mode: pass mode='min' or 'max'")
        if self._space is None and self._define_by_run is None:
            raise TuneConfigError("OptunaSearch has no search space: pass space= or a "
                                  "param_space with tune domains to the Tuner")
        optuna = _optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = self._sampler or optuna.samplers.TPESampler(seed=self._seed)
        directions = self._directions()
        self._study = optuna.create_study(
            sampler=sampler, study_name=self._study_name,
            **({"directions": directions} if len(directions) > 1
               else {"direction": directions[0]}))
        for index, point in enumerate(self._points):
            flat = flatten(point)
            if self._rewards is not None and index < len(self._rewards):
                self._study.add_trial(optuna.trial.create_trial(
                    params=flat, distributions={k: self._space[k] for k in flat}
                    if self._space else {}, value=self._rewards[index]))
            else:
                self._study.enqueue_trial(flat)

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if self._study is None:
            self._setup_study()
        if self._define_by_run is not None:
            ot_trial = self._study.ask()
            constants = self._define_by_run(ot_trial) or {}
            if not isinstance(constants, dict):
                raise TuneConfigError("OptunaSearch's define-by-run function must return None "
                                      f"or a dict of constants, not {type(constants).__name__}")
            params = {**ot_trial.params, **constants}
        else:
            ot_trial = self._study.ask(self._space)
            params = dict(ot_trial.params)
        self._ot_trials[trial_id] = ot_trial
        return _unflatten(params)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        value = result.get(self._metric) if self._metric else None
        step = result.get("training_iteration")
        if ot_trial is not None and isinstance(value, (int, float)) and step is not None \
                and self._multi_metric is None:
            try:
                ot_trial.report(float(value), int(step))
            except Exception:  # noqa: BLE001 - reporting twice at a step is harmless
                pass

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        ot_trial = self._ot_trials.pop(trial_id, None)
        if ot_trial is None:
            return
        optuna = _optuna()
        metrics = self._multi_metric or [self._metric]
        values = [(result or {}).get(m) for m in metrics]
        if error or any(not isinstance(v, (int, float)) or math.isnan(v) for v in values):
            self._study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
            return
        self._study.tell(ot_trial, values if len(values) > 1 else values[0])

    def add_evaluated_point(self, parameters: dict[str, Any], value: float,
                            error: bool = False, pruned: bool = False,
                            intermediate_values: list[float] | None = None) -> None:
        if self._study is None:
            self._setup_study()
        optuna = _optuna()
        flat = flatten(parameters)
        state = optuna.trial.TrialState.FAIL if error else (
            optuna.trial.TrialState.PRUNED if pruned else optuna.trial.TrialState.COMPLETE)
        self._study.add_trial(optuna.trial.create_trial(
            params=flat, distributions={k: self._space[k] for k in flat},
            value=None if error else value, state=state))

"""Stopping criteria (Ray's ``ray.tune.stopper``): when a trial, or the whole sweep, ends.

``RunConfig(stop=...)`` accepts a dict of thresholds (``{"training_iteration": 10,
"mean_accuracy": 0.98}``: stop once any reported value reaches its threshold), a function
``(trial_id, result) -> bool``, or a ``Stopper``. All three become a ``Stopper`` here so
the controller asks one question per result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .errors import TuneConfigError

__all__ = ["CombinedStopper", "FunctionStopper", "MaximumIterationStopper", "Stopper",
           "TimeoutStopper", "as_stopper"]


class Stopper:
    """Decides per result whether a trial stops, and whether the whole sweep stops."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False


class NoStopper(Stopper):
    """Never stops anything (the default)."""


class _DictStopper(Stopper):
    def __init__(self, thresholds: Mapping[str, Any]) -> None:
        for key, value in thresholds.items():
            if not isinstance(key, str):
                raise TuneConfigError(f"RunConfig(stop={dict(thresholds)!r}): keys must be "
                                      "metric names (str)")
        self.thresholds = dict(thresholds)

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        for key, threshold in self.thresholds.items():
            value = result.get(key)
            if value is None:
                continue
            if callable(threshold):
                if threshold(value):
                    return True
            elif isinstance(value, (int, float)) and value >= threshold:
                return True
        return False


class FunctionStopper(Stopper):
    """Stops a trial when ``function(trial_id, result)`` returns True."""

    def __init__(self, function: Callable[[str, dict[str, Any]], bool]) -> None:
        self._function = function

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return bool(self._function(trial_id, result))


class MaximumIterationStopper(Stopper):
    """Stops each trial after ``max_iter`` iterations."""

    def __init__(self, max_iter: int) -> None:
        self._max_iter = max_iter

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return result.get("training_iteration", 0) >= self._max_iter


class TimeoutStopper(Stopper):
    """Stops the whole sweep ``timeout`` seconds after it was built."""

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + float(timeout)

    def stop_all(self) -> bool:
        return time.monotonic() >= self._deadline


class CombinedStopper(Stopper):
    """Stops when any of ``stoppers`` says so."""

    def __init__(self, *stoppers: Stopper) -> None:
        self._stoppers = stoppers

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return any(s(trial_id, result) for s in self._stoppers)

    def stop_all(self) -> bool:
        return any(s.stop_all() for s in self._stoppers)


def as_stopper(stop: Any) -> Stopper:
    """Normalise ``RunConfig.stop`` (None, dict, callable or Stopper) into a ``Stopper``."""
    if stop is None:
        return NoStopper()
    if isinstance(stop, Stopper):
        return stop
    if isinstance(stop, Mapping):
        return _DictStopper(stop)
    if callable(stop):
        return FunctionStopper(stop)
    raise TuneConfigError(f"RunConfig(stop={stop!r}): use a dict of thresholds, a function "
                          "(trial_id, result) -> bool, or a tune.Stopper")

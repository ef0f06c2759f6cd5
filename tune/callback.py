"""``Callback``: hooks into a sweep's events (Ray's ``ray.tune.Callback``).

Pass instances in ``RunConfig(callbacks=[...])``. Hooks run in the driver, on the
controller's loop, so they must be quick; each receives keyword arguments
(``iteration``, ``trials``, ``trial``, and ``result`` for results).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Callback"]


class Callback:
    """Override the hooks you need; every hook does nothing by default.

    Example:
        >>> class PrintBest(tune.Callback):
        ...     def on_trial_complete(self, iteration, trials, trial, **info):
        ...         logging.info("%s ended with %s", trial, trial.last_result)
    """

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """A trial was started (or resumed) on a trial actor."""

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:
        """A trial reported a result."""

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                          **info: Any) -> None:
        """A trial ended without error."""

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:
        """A trial failed for good."""

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """The sweep ended."""

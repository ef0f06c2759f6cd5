"""``Searcher``: the interface every search algorithm implements (Ray's ``tune.search.Searcher``).

The controller asks ``suggest(trial_id)`` for the next config whenever it could start a
trial, and tells the searcher each result and each trial's end. A searcher answers a
config, ``None`` (nothing right now: ask again later, e.g. ``ConcurrencyLimiter``), or
``Searcher.FINISHED`` (no more trials). Decisions are pure: no I/O, no processes, so a
searcher is tested by plain calls and pickled whole into the experiment state.
"""

from __future__ import annotations

from typing import Any

from ..errors import TuneConfigError

__all__ = ["Searcher", "WrappingSearcher", "check_mode"]


def check_mode(mode: Any, where: str) -> None:
    """Raise ``TuneConfigError`` unless ``mode`` is None, "min" or "max"."""
    if mode not in (None, "min", "max"):
        raise TuneConfigError(f"{where}(mode={mode!r}): mode must be 'min' or 'max'")


class Searcher:
    """Base class of search algorithms.

    Args:
        metric: the reported metric to optimise (default: ``TuneConfig.metric``).
        mode: ``"min"`` or ``"max"`` (default: ``TuneConfig.mode``).
    """

    FINISHED = "FINISHED"

    def __init__(self, metric: str | None = None, mode: str | None = None) -> None:
        check_mode(mode, type(self).__name__)
        self._metric = metric
        self._mode = mode

    @property
    def metric(self) -> str | None:
        return self._metric

    @property
    def mode(self) -> str | None:
        return self._mode

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        """Adopt the Tuner's metric, mode and param_space; False if it cannot use them."""
        if self._metric is None and metric is not None:
            self._metric = metric
        if self._mode is None and mode is not None:
            self._mode = mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        """The config for a new trial, None (not now), or ``Searcher.FINISHED``."""
        raise NotImplementedError

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        """An intermediate result of a trial this searcher suggested."""

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        """A trial ended (``error`` True if it failed)."""

    def add_evaluated_point(self, parameters: dict[str, Any], value: float,
                            error: bool = False, pruned: bool = False,
                            intermediate_values: list[float] | None = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not take evaluated points")

    @property
    def is_finished(self) -> bool:
        return False

    def get_state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def set_state(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class WrappingSearcher(Searcher):
    """A searcher that wraps another (``ConcurrencyLimiter``, ``Repeater``, ...).

    Metric, mode and the search space belong to the wrapped searcher; results pass through
    unless the wrapper overrides the hook.
    """

    def __init__(self, searcher: Searcher) -> None:
        if not isinstance(searcher, Searcher):
            raise TuneConfigError(f"{type(self).__name__}({searcher!r}, ...): wrap a Searcher, "
                                  "e.g. OptunaSearch()")
        super().__init__()
        self.searcher = searcher

    @property
    def metric(self) -> str | None:
        return self.searcher.metric

    @property
    def mode(self) -> str | None:
        return self.searcher.mode

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self.searcher.on_trial_complete(trial_id, result, error)

"""``ConcurrencyLimiter``: at most ``max_concurrent`` live trials from a searcher.

Model-based searchers learn from finished trials; suggesting 100 configs before the first
result comes back would make them random search. Answering ``None`` makes the controller
ask again once a trial ends.
"""

from __future__ import annotations

from typing import Any

from ..errors import TuneConfigError
from .searcher import Searcher, WrappingSearcher

__all__ = ["ConcurrencyLimiter"]


class ConcurrencyLimiter(WrappingSearcher):
    """Wraps ``searcher`` so that at most ``max_concurrent`` of its trials run at once.

    Example:
        >>> search_alg = ConcurrencyLimiter(OptunaSearch(), max_concurrent=2)
    """

    def __init__(self, searcher: Searcher, max_concurrent: int, batch: bool = False) -> None:
        super().__init__(searcher)
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int) or \
                max_concurrent < 1:
            raise TuneConfigError(f"ConcurrencyLimiter(max_concurrent={max_concurrent!r}): "
                                  "use an int >= 1")
        self.max_concurrent = max_concurrent
        self.batch = batch
        self._live: set[str] = set()
        self._batch_open = True

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if len(self._live) >= self.max_concurrent or (self.batch and not self._batch_open):
            if self.batch:
                self._batch_open = False
            return None
        config = self.searcher.suggest(trial_id)
        if isinstance(config, dict):
            self._live.add(trial_id)
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self._live:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        if trial_id not in self._live:
            return
        self._live.discard(trial_id)
        self.searcher.on_trial_complete(trial_id, result, error)
        if self.batch and not self._live:
            self._batch_open = True

    def add_evaluated_point(self, *args: Any, **kwargs: Any) -> None:
        self.searcher.add_evaluated_point(*args, **kwargs)

"""``Repeater``: run each suggested config ``repeat`` times and report the mean.

For noisy objectives: the wrapped searcher sees one result per config, the average over
its repeats, so one lucky seed does not steer the search.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TuneConfigError
from .searcher import Searcher, WrappingSearcher

__all__ = ["Repeater", "TRIAL_INDEX"]

TRIAL_INDEX = "__trial_index__"


class Repeater(WrappingSearcher):
    """Wraps ``searcher``; each config runs ``repeat`` times (``__trial_index__`` 0..n-1).

    Example:
        >>> search_alg = Repeater(OptunaSearch(), repeat=3)
    """

    def __init__(self, searcher: Searcher, repeat: int = 1, set_index: bool = True) -> None:
        super().__init__(searcher)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
            raise TuneConfigError(f"Repeater(repeat={repeat!r}): use an int >= 1")
        self.repeat = repeat
        self.set_index = set_index
        self._current: tuple[str, dict[str, Any]] | None = None
        self._left = 0
        #: group leader id -> {trial_id: score or None}
        self._groups: dict[str, dict[str, float | None]] = {}
        self._leader_of: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if self._left == 0:
            config = self.searcher.suggest(trial_id)
            if not isinstance(config, dict):
                return config
            self._current, self._left = (trial_id, config), self.repeat
            self._groups[trial_id] = {}
        leader, config = self._current  # type: ignore[misc]  # set above when _left was 0
        index = self.repeat - self._left
        self._left -= 1
        self._groups[leader][trial_id] = None
        self._leader_of[trial_id] = leader
        config = dict(config)
        if self.set_index:
            config[TRIAL_INDEX] = index
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        leader = self._leader_of.pop(trial_id, None)
        if leader is None:
            return
        group = self._groups[leader]
        metric = self.searcher.metric
        value = (result or {}).get(metric) if metric else None
        group[trial_id] = float(value) if isinstance(value, (int, float)) and not error \
            else float("nan")
        if len(group) == self.repeat and all(v is not None for v in group.values()) and \
                not (leader == (self._current or ("",))[0] and self._left):
            scores = [v for v in group.values() if v is not None and not np.isnan(v)]
            del self._groups[leader]
            if scores and metric:
                self.searcher.on_trial_complete(leader, {metric: float(np.mean(scores))})
            else:
                self.searcher.on_trial_complete(leader, None, error=True)

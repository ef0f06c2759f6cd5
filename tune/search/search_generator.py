"""``SearchGenerator``: wraps a model-based ``Searcher`` for the controller.

It stops after ``num_samples`` suggestions, and lays each suggested config over the
constant parts of ``param_space`` (a searcher given its own space suggests only the
values it searches; the rest of the Tuner's ``param_space`` still reaches the trial).
"""

from __future__ import annotations

import copy
from typing import Any

from .searcher import Searcher, WrappingSearcher
from .variant_generator import parse_space

__all__ = ["SearchGenerator"]


def _overlay(base: dict[str, Any], suggested: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in suggested.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


class SearchGenerator(WrappingSearcher):
    """At most ``num_samples`` configs from ``searcher``, over ``param_space``'s constants."""

    def __init__(self, searcher: Searcher, num_samples: int) -> None:
        super().__init__(searcher)
        self.num_samples = num_samples
        self._count = 0
        self._base: dict[str, Any] = {}
        self._finished = False

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        grids, domains = parse_space(config)
        base = copy.deepcopy(config or {})
        ok = self.searcher.set_search_properties(metric, mode, config, **spec)
        # The searcher owns the domains (it converted them, or had its own space); the
        # trial keeps param_space's constants.
        for path, _ in domains + grids:
            target = base
            for key in path[:-1]:
                target = target[key]
            del target[path[-1]]
        self._base = base
        return ok

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if self.num_samples >= 0 and self._count >= self.num_samples:
            self._finished = True
            return Searcher.FINISHED
        config = self.searcher.suggest(trial_id)
        if config is None or config == Searcher.FINISHED:
            if config == Searcher.FINISHED:
                self._finished = True
            return config
        self._count += 1
        return _overlay(self._base, config)

    @property
    def is_finished(self) -> bool:
        return self._finished

"""``BasicVariantGenerator``: grid search and random sampling, the default search algorithm."""

from __future__ import annotations

from typing import Any

import numpy as np

from .searcher import Searcher
from .variant_generator import count_grid_variants, generate_variants, parse_space

__all__ = ["BasicVariantGenerator"]


class BasicVariantGenerator(Searcher):
    """Every grid combination, ``num_samples`` times, with random draws for the rest.

    Args:
        points_to_evaluate: configs to try first (missing keys drawn from the space).
        max_concurrent: at most this many trials of it at once (0: no limit).
        random_state: a seed (or numpy Generator) so sweeps draw the same configs.
        constant_grid_search: draw the random values once and reuse them across grid
            variants.

    Example:
        >>> tune.TuneConfig(search_alg=BasicVariantGenerator(random_state=0), num_samples=8)
    """

    def __init__(self, points_to_evaluate: list[dict[str, Any]] | None = None,
                 max_concurrent: int = 0, random_state: Any = None,
                 constant_grid_search: bool = False) -> None:
        super().__init__()
        self._points = [dict(p) for p in (points_to_evaluate or [])]
        self.max_concurrent = max_concurrent
        self._rng = random_state if isinstance(random_state, np.random.Generator) \
            else np.random.default_rng(random_state)
        self._space: dict[str, Any] | None = None
        self._num_samples = 1
        self._queue: list[dict[str, Any]] = []
        self._repeat = 0
        self._live: set[str] = set()
        self._finished = False

    def set_search_properties(self, metric: str | None, mode: str | None,
                              config: dict[str, Any], **spec: Any) -> bool:
        super().set_search_properties(metric, mode, config)
        parse_space(config)  # raises on an invalid space, before anything runs
        self._space = config or {}
        self._num_samples = int(spec.get("num_samples", 1))
        return True

    @property
    def total_samples(self) -> int:
        """How many trials this generator makes in all."""
        return len(self._points) + self._num_samples * count_grid_variants(self._space)

    def suggest(self, trial_id: str) -> dict[str, Any] | None | str:
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        if self._points:
            point = self._points.pop(0)
            config = next(generate_variants(self._merge(point), self._rng))
        else:
            while not self._queue:
                if self._num_samples >= 0 and self._repeat >= self._num_samples:
                    self._finished = True
                    return Searcher.FINISHED
                self._repeat += 1
                self._queue = list(generate_variants(self._space, self._rng))
            config = self._queue.pop(0)
        self._live.add(trial_id)
        return config

    def _merge(self, point: dict[str, Any]) -> dict[str, Any]:
        merged = dict(self._space or {})
        merged.update(point)
        return merged

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        self._live.discard(trial_id)

    @property
    def is_finished(self) -> bool:
        return self._finished

"""Episode statistics in RLlib's result layout (``env_runners/episode_return_mean``, ...)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any


class EpisodeMetrics:
    """Returns and lengths of the last ``window`` finished episodes, plus lifetime counters.

    Like RLlib, the means are over a sliding window of finished episodes
    (``metrics_num_episodes_for_smoothing``), not over one iteration's episodes, and are
    NaN until the first episode finishes.
    """

    def __init__(self, window: int) -> None:
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        #: Env steps sampled since the algorithm was built (or restored from a checkpoint).
        self.num_env_steps_sampled_lifetime = 0
        self.num_episodes_lifetime = 0
        self._steps_this_iter = 0
        self._episodes_this_iter = 0

    def record(self, returns: Iterable[float], lengths: Iterable[int], num_env_steps: int) -> None:
        """Adds one runner result's finished episodes and step count."""
        for r, n in zip(returns, lengths):
            self.returns.append(r)
            self.lengths.append(n)
            self.num_episodes_lifetime += 1
            self._episodes_this_iter += 1
        self.num_env_steps_sampled_lifetime += num_env_steps
        self._steps_this_iter += num_env_steps

    def summary(self) -> dict[str, Any]:
        """The ``env_runners`` section of a result; resets the per-iteration counters."""
        out = summarize(self.returns, self.lengths)
        out.update(num_episodes=self._episodes_this_iter, num_env_steps_sampled=self._steps_this_iter,
                   num_episodes_lifetime=self.num_episodes_lifetime,
                   num_env_steps_sampled_lifetime=self.num_env_steps_sampled_lifetime)
        self._steps_this_iter = self._episodes_this_iter = 0
        return out

    def get_state(self) -> dict[str, Any]:
        return {"returns": list(self.returns), "lengths": list(self.lengths),
                "steps": self.num_env_steps_sampled_lifetime, "episodes": self.num_episodes_lifetime}

    def set_state(self, state: dict[str, Any]) -> None:
        self.returns.extend(state["returns"])
        self.lengths.extend(state["lengths"])
        self.num_env_steps_sampled_lifetime = state["steps"]
        self.num_episodes_lifetime = state["episodes"]


def summarize(returns: Iterable[float], lengths: Iterable[int]) -> dict[str, float]:
    """Mean/min/max of episode returns and lengths (NaN when there are none)."""
    r, n = list(returns), list(lengths)
    nan = math.nan
    return {
        "episode_return_mean": sum(r) / len(r) if r else nan,
        "episode_return_min": min(r) if r else nan,
        "episode_return_max": max(r) if r else nan,
        "episode_len_mean": sum(n) / len(n) if n else nan,
        "episode_len_min": min(n) if n else nan,
        "episode_len_max": max(n) if n else nan,
    }

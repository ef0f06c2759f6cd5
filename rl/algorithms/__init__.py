"""ember.rl's algorithms: ``ember.rl.algorithms.ppo`` / ``dqn`` / ``sac`` (imported on demand)."""

from __future__ import annotations

import importlib
from typing import Any

_MODULES = {"PPO": "ppo", "DQN": "dqn", "SAC": "sac"}


def get_algorithm_class(name: str) -> Any:
    """The Algorithm class named ``name`` ("PPO", "DQN", "SAC"), or None.

    This is how ``Tuner("PPO", ...)`` finds an algorithm (ember.tune.registry falls back to it).
    """
    module = _MODULES.get(name)
    if module is None:
        return None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = ["get_algorithm_class"]

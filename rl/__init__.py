"""ember.rl: reinforcement learning on ember (RLlib's API): PPO, DQN and SAC over gymnasium envs.

    from ember.rl import PPOConfig
    algo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).build_algo()
    result = algo.train()   # result["env_runners"]["episode_return_mean"]

Names are imported on first use, so an env runner (which imports ember.rl.env_runner)
does not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Algorithm": "algorithm", "AlgorithmConfig": "config",
    "PPO": "algorithms.ppo", "PPOConfig": "algorithms.ppo",
    "DQN": "algorithms.dqn", "DQNConfig": "algorithms.dqn",
    "SAC": "algorithms.sac", "SACConfig": "algorithms.sac",
    "RLConfigError": "errors", "UnknownEnvError": "errors", "UnsupportedSpaceError": "errors",
    "NotACheckpointError": "errors", "get_algorithm_class": "algorithms",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ember.rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

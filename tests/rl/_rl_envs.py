"""Small envs for ember.rl's tests (importable by workers: tests/rl is on their sys.path)."""

from __future__ import annotations

import os
import signal
from typing import Any

import gymnasium as gym
import numpy as np


class CrashOnceCartPole(gym.Wrapper):
    """CartPole whose process SIGKILLs itself at step ``crash_at_step`` -- once per flag file.

    The flag file makes the crash happen in exactly one runner process, mid-``sample``,
    and never again in the replacement.
    """

    def __init__(self, env_config: dict[str, Any]) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.flag_path = env_config["flag_path"]
        self.crash_at_step = env_config.get("crash_at_step", 50)
        self.steps = 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.steps == self.crash_at_step:
            try:
                fd = os.open(self.flag_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return self.env.step(action)


class Corridor(gym.Env):
    """Walk right ``length`` cells to get reward 1 (a tiny registered env)."""

    def __init__(self, env_config: dict[str, Any]) -> None:
        self.length = env_config.get("length", 5)
        self.observation_space = gym.spaces.Box(0.0, float(self.length), (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> Any:
        super().reset(seed=seed)
        self.pos = 0
        return np.array([self.pos], np.float32), {}

    def step(self, action: int) -> Any:
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length
        return np.array([self.pos], np.float32), float(done), done, False, {}


class DictObsEnv(gym.Env):
    """An env with a Dict observation space, which ember.rl does not take."""

    observation_space = gym.spaces.Dict({"a": gym.spaces.Box(0, 1, (1,))})
    action_space = gym.spaces.Discrete(2)

    def __init__(self, env_config: dict[str, Any] | None = None) -> None:
        pass

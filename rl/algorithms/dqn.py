"""DQN: Q-learning from a replay buffer with a target network; double-Q and dueling heads.

One iteration repeats sampling rounds (epsilon-greedy, numpy on the runners) until
``min_sample_timesteps_per_iteration`` env steps are in the buffer, and after each round
makes ``training_intensity``-many replayed minibatch updates (once
``num_steps_sampled_before_learning_starts`` steps are stored).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from ..algorithm import Algorithm
from ..config import AlgorithmConfig
from ..errors import RLConfigError
from ..learner import Batch, Learner, adam, soft_update
from ..models import QNetwork
from ..off_policy import OffPolicyAlgorithm


class DQNConfig(AlgorithmConfig):
    """DQN settings. ``training()`` adds: replay_buffer_config={"capacity"},
    target_network_update_freq (env steps), tau, epsilon=[(step, value), ...] (linear
    schedule), double_q, dueling, num_steps_sampled_before_learning_starts,
    training_intensity (trained / sampled steps; None: one update per sampling round)."""

    _ALGO_TRAINING: ClassVar[dict[str, Any]] = {
        "lr": 5e-4, "train_batch_size": 32, "replay_buffer_config": {"capacity": 50000},
        "target_network_update_freq": 500, "tau": 1.0, "epsilon": [(0, 1.0), (10000, 0.05)],
        "double_q": True, "dueling": True, "num_steps_sampled_before_learning_starts": 1000,
        "training_intensity": None,
    }

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class or DQN)
        self.rollout_fragment_length = 4
        self.min_sample_timesteps_per_iteration = 1000
        self.grad_clip = 40.0


class DQNLearner(Learner):
    """Huber TD loss against a (double-Q) target network."""

    shard_axis: ClassVar[int] = 1

    @staticmethod
    def build_module(config: AlgorithmConfig, obs_space: Any, action_space: Any) -> QNetwork:
        return QNetwork(obs_space, action_space, config.model, config.dueling)

    def build(self) -> None:
        self.target = copy.deepcopy(self.module)
        self.optimizer = adam(self.module.parameters(), self.config.lr)
        self.last_target_update = 0

    def extra_state(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "last_target_update": self.last_target_update}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        self.last_target_update = state["last_target_update"]

    def update(self, batch: Batch, timesteps: dict[str, int]) -> dict[str, float]:
        cfg = self.config
        t = self.tensors(batch)
        losses, q_means = [], []
        for k in range(t["obs"].shape[0]):
            obs, next_obs = t["obs"][k].float(), t["next_obs"][k].float()
            actions = t["actions"][k].long()
            q = self.module(obs).gather(1, actions[:, None])[:, 0]
            with torch.no_grad():
                target_next = self.target(next_obs)
                if cfg.double_q:
                    best = self.module(next_obs).argmax(-1, keepdim=True)
                    next_q = target_next.gather(1, best)[:, 0]
                else:
                    next_q = target_next.max(-1).values
                y = t["rewards"][k] + cfg.gamma * (1.0 - t["terminateds"][k]) * next_q
            loss = F.smooth_l1_loss(q, y)
            self.apply_gradients(self.optimizer, loss, self.module.parameters())
            losses.append(loss.item())
            q_means.append(q.mean().item())
        now = timesteps["num_env_steps_sampled_lifetime"]
        if now - self.last_target_update >= cfg.target_network_update_freq:
            soft_update(self.target, self.module, cfg.tau)
            self.last_target_update = now
        return {"qf_loss": float(np.mean(losses)) if losses else float("nan"),
                "qf_mean": float(np.mean(q_means)) if q_means else float("nan"),
                "num_minibatch_updates": float(len(losses))}


def epsilon_at(schedule: list[tuple[int, float]], step: int) -> float:
    """Linear interpolation of ``[(step, value), ...]``, constant past the last point."""
    points = sorted(schedule)
    if step <= points[0][0]:
        return float(points[0][1])
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if step <= s1:
            return float(v0 + (v1 - v0) * (step - s0) / max(1, s1 - s0))
    return float(points[-1][1])


class DQN(OffPolicyAlgorithm):
    """Deep Q-Network (Discrete actions only)."""

    config_class = DQNConfig
    learner_class = DQNLearner
    action_spaces = (gym.spaces.Discrete,)
    action_spaces_text = "a Discrete action space (for continuous actions use SAC or PPO)"

    def validate_config(self, config: AlgorithmConfig) -> None:
        try:
            epsilon_at(list(config.epsilon), 0)
        except (TypeError, ValueError, IndexError) as exc:
            raise RLConfigError("epsilon", f"{config.epsilon!r} is not a list of (step, value) pairs",
                                "Use e.g. training(epsilon=[(0, 1.0), (10000, 0.05)]).") from exc

    def _explore_epsilon(self) -> float:
        return epsilon_at(list(self.algo_config.epsilon), self.metrics.num_env_steps_sampled_lifetime)

    def sample_kwargs(self) -> dict[str, Any]:
        return {"epsilon": self._explore_epsilon()}

    def training_step(self) -> dict[str, float]:
        stats = super().training_step()
        stats["epsilon"] = self._explore_epsilon()
        return stats

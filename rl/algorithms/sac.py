"""SAC: soft actor-critic with twin Q critics, Polyak-averaged targets and a learned temperature.

Sampling and replay follow DQN's loop (ember.rl.off_policy.OffPolicyAlgorithm);
until ``num_steps_sampled_before_learning_starts`` the runners act uniformly at random.
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
from ..models import SACModule, flat_dim
from ..off_policy import OffPolicyAlgorithm


class SACConfig(AlgorithmConfig):
    """SAC settings. ``training()`` adds: tau, initial_alpha, target_entropy ("auto": -dim(A)),
    twin_q, actor_lr, critic_lr, alpha_lr (None: lr), replay_buffer_config={"capacity"},
    num_steps_sampled_before_learning_starts, training_intensity."""

    _ALGO_TRAINING: ClassVar[dict[str, Any]] = {
        "lr": 3e-4, "train_batch_size": 256, "replay_buffer_config": {"capacity": 100000},
        "tau": 5e-3, "initial_alpha": 1.0, "target_entropy": "auto", "twin_q": True,
        "actor_lr": None, "critic_lr": None, "alpha_lr": None,
        "num_steps_sampled_before_learning_starts": 1500, "training_intensity": None,
    }

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class or SAC)
        self.rollout_fragment_length = 1
        self.min_sample_timesteps_per_iteration = 100
        self.model = {"fcnet_hiddens": [256, 256], "fcnet_activation": "relu"}


class SACLearner(Learner):
    """Critic, actor and temperature updates per replayed minibatch."""

    shard_axis: ClassVar[int] = 1

    @staticmethod
    def build_module(config: AlgorithmConfig, obs_space: Any, action_space: Any) -> SACModule:
        return SACModule(obs_space, action_space, config.model, config.twin_q)

    def build(self) -> None:
        cfg = self.config
        module: SACModule = self.module  # type: ignore[assignment]
        self.target = copy.deepcopy(module)
        self.log_alpha = torch.tensor(float(np.log(cfg.initial_alpha)), device=self.device, requires_grad=True)
        self.target_entropy = (-float(flat_dim(self.action_space)) if cfg.target_entropy == "auto"
                               else float(cfg.target_entropy))
        self.critic_params = [p for q in (module.q1, module.q2) if q is not None for p in q.parameters()]
        self.actor_optimizer = adam(module.pi.parameters(), cfg.actor_lr or cfg.lr)
        self.critic_optimizer = adam(self.critic_params, cfg.critic_lr or cfg.lr)
        self.alpha_optimizer = adam([self.log_alpha], cfg.alpha_lr or cfg.lr)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [self.actor_optimizer, self.critic_optimizer, self.alpha_optimizer]

    def extra_state(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "log_alpha": float(self.log_alpha)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.target.load_state_dict(state["target"])
        with torch.no_grad():
            self.log_alpha.fill_(state["log_alpha"])

    def update(self, batch: Batch, timesteps: dict[str, int]) -> dict[str, float]:
        cfg = self.config
        module: SACModule = self.module  # type: ignore[assignment]
        t = self.tensors(batch)
        sums = {"qf_loss": 0.0, "policy_loss": 0.0, "alpha_loss": 0.0, "qf_mean": 0.0}
        k_total = t["obs"].shape[0]
        for k in range(k_total):
            obs, next_obs = t["obs"][k].float(), t["next_obs"][k].float()
            actions = t["actions"][k].float().reshape(len(obs), -1)
            alpha = self.log_alpha.exp().detach()
            with torch.no_grad():
                next_a, next_logp = module.sample(next_obs)
                next_q = torch.min(torch.stack(self.target.q_values(next_obs, next_a)), dim=0).values
                y = t["rewards"][k] + cfg.gamma * (1.0 - t["terminateds"][k]) * (next_q - alpha * next_logp)
            qs = module.q_values(obs, actions)
            qf_loss = sum(F.mse_loss(q, y) for q in qs)
            self.apply_gradients(self.critic_optimizer, qf_loss, self.critic_params)
            new_a, logp = module.sample(obs)
            q_new = torch.min(torch.stack(module.q_values(obs, new_a)), dim=0).values
            policy_loss = (alpha * logp - q_new).mean()
            self.apply_gradients(self.actor_optimizer, policy_loss, module.pi.parameters())
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.apply_gradients(self.alpha_optimizer, alpha_loss, [self.log_alpha])
            soft_update(self.target, module, cfg.tau)
            sums["qf_loss"] += qf_loss.item()
            sums["policy_loss"] += policy_loss.item()
            sums["alpha_loss"] += alpha_loss.item()
            sums["qf_mean"] += qs[0].mean().item()
        stats = {k: v / max(1, k_total) for k, v in sums.items()}
        stats.update(alpha_value=self.log_alpha.exp().item(), num_minibatch_updates=float(k_total))
        return stats


class SAC(OffPolicyAlgorithm):
    """Soft Actor-Critic (Box actions only)."""

    config_class = SACConfig
    learner_class = SACLearner
    action_spaces = (gym.spaces.Box,)
    action_spaces_text = "a Box (continuous) action space (for discrete actions use DQN or PPO)"

    def validate_config(self, config: AlgorithmConfig) -> None:
        if not (isinstance(config.tau, (int, float)) and 0.0 < config.tau <= 1.0):
            raise RLConfigError("tau", f"{config.tau!r} is outside (0, 1]", "Use e.g. training(tau=0.005).")

    def sample_kwargs(self) -> dict[str, Any]:
        warming_up = (self.metrics.num_env_steps_sampled_lifetime
                      < self.algo_config.num_steps_sampled_before_learning_starts)
        return {"random_actions": warming_up}

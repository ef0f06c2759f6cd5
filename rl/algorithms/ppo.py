"""PPO: proximal policy optimization with GAE, clipped surrogate, value clipping and adaptive KL.

One iteration: every env runner samples ``rollout_fragment_length`` steps per env
(advantages computed there), the learner runs ``num_epochs`` passes of shuffled
minibatches over the ``train_batch_size`` batch, and the new weights go out with the
next round.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ..algorithm import Algorithm
from ..config import AlgorithmConfig
from ..errors import RLConfigError
from ..learner import Batch, Learner, adam
from ..models import PPOModule


class PPOConfig(AlgorithmConfig):
    """PPO settings. ``training()`` adds: minibatch_size, num_epochs, lambda_ (GAE),
    clip_param, vf_clip_param, vf_loss_coeff, entropy_coeff, use_kl_loss, kl_coeff, kl_target.

    Example::

        config = (PPOConfig().environment("CartPole-v1")
                  .env_runners(num_env_runners=2, num_envs_per_env_runner=8)
                  .training(lr=3e-4, train_batch_size=2000, minibatch_size=250, num_epochs=10))
    """

    _ALGO_TRAINING: ClassVar[dict[str, Any]] = {
        "lr": 5e-5, "train_batch_size": 4000, "minibatch_size": 128, "num_epochs": 30,
        "lambda_": 1.0, "clip_param": 0.3, "vf_clip_param": 10.0, "vf_loss_coeff": 1.0,
        "entropy_coeff": 0.0, "use_kl_loss": True, "kl_coeff": 0.2, "kl_target": 0.01,
    }

    def __init__(self, algo_class: type[Algorithm] | None = None) -> None:
        super().__init__(algo_class or PPO)
        self.num_env_runners = 2  # RLlib's PPO default


class PPOLearner(Learner):
    """Clipped-surrogate PPO loss over shuffled minibatches, on this learner's shard."""

    @staticmethod
    def build_module(config: AlgorithmConfig, obs_space: Any, action_space: Any) -> PPOModule:
        return PPOModule(obs_space, action_space, config.model)

    def build(self) -> None:
        self.params = list(self.module.parameters())
        self.optimizer = adam(self.params, self.config.lr)
        self.kl_coeff = float(self.config.kl_coeff)

    def extra_state(self) -> dict[str, Any]:
        return {"kl_coeff": self.kl_coeff}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.kl_coeff = state["kl_coeff"]

    def update(self, batch: Batch, timesteps: dict[str, int]) -> dict[str, float]:
        cfg = self.config
        t = self.tensors(batch)
        obs, actions, old_logp = t["obs"].float(), t["actions"], t["logp"].float()
        adv = t["advantages"].float()
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        old_vf, targets = t["vf_preds"].float(), t["value_targets"].float()
        module: PPOModule = self.module  # type: ignore[assignment]
        n = len(obs)
        mb = max(1, min(n, cfg.minibatch_size // self.world_size))
        names = ("policy_loss", "vf_loss", "entropy", "mean_kl_loss", "total_loss")
        sums = torch.zeros(len(names))
        steps = 0
        epoch_kl = torch.zeros(())
        for _epoch in range(cfg.num_epochs):
            perm = torch.randperm(n, generator=self.generator).to(self.device)
            epoch_kl, epoch_steps = torch.zeros(()), 0
            for start in range(0, n - mb + 1, mb):
                idx = perm[start:start + mb]
                logp, entropy = module.logp_entropy(obs[idx], actions[idx])
                log_ratio = logp - old_logp[idx]
                ratio = log_ratio.exp()
                surrogate = torch.min(ratio * adv[idx],
                                      ratio.clamp(1 - cfg.clip_param, 1 + cfg.clip_param) * adv[idx]).mean()
                kl = ((ratio - 1) - log_ratio).mean()  # unbiased, non-negative KL(old || new)
                vf_loss = (module.vf(obs[idx])[:, 0] - targets[idx]).pow(2).clamp(max=cfg.vf_clip_param).mean()
                loss = -surrogate + cfg.vf_loss_coeff * vf_loss - cfg.entropy_coeff * entropy
                if cfg.use_kl_loss:
                    loss = loss + self.kl_coeff * kl
                self.apply_gradients(self.optimizer, loss, self.params)
                with torch.no_grad():
                    sums += torch.stack([-surrogate, vf_loss, entropy, kl, loss]).cpu()
                    epoch_kl += kl.cpu()
                epoch_steps += 1
                steps += 1
            epoch_kl /= max(1, epoch_steps)
        epoch_kl = float(epoch_kl)
        if cfg.use_kl_loss:  # RLlib's schedule: grow fast on overshoot, shrink on undershoot
            if epoch_kl > 2.0 * cfg.kl_target:
                self.kl_coeff *= 1.5
            elif epoch_kl < 0.5 * cfg.kl_target:
                self.kl_coeff *= 0.5
        stats = dict(zip(names, (sums / max(1, steps)).tolist()))
        with torch.no_grad():
            explained = 1 - torch.var(targets - old_vf) / (torch.var(targets) + 1e-8)
        stats.update(curr_kl_coeff=self.kl_coeff, num_minibatch_updates=float(steps),
                     vf_explained_var=float(explained))
        return stats


class PPO(Algorithm):
    """Proximal Policy Optimization (Discrete or Box actions)."""

    config_class = PPOConfig
    learner_class = PPOLearner
    postprocess = "gae"

    def validate_config(self, config: AlgorithmConfig) -> None:
        if config.minibatch_size is None:
            return
        if not isinstance(config.minibatch_size, int) or config.minibatch_size < 1:
            raise RLConfigError("minibatch_size", f"{config.minibatch_size!r} is not a positive int",
                                "Use e.g. training(minibatch_size=128).")
        if config.train_batch_size < config.minibatch_size:
            raise RLConfigError(
                "train_batch_size",
                f"train_batch_size={config.train_batch_size} is smaller than "
                f"minibatch_size={config.minibatch_size}, so no minibatch can be formed",
                f"Raise train_batch_size to at least {config.minibatch_size} or lower minibatch_size.")
        if not isinstance(config.num_epochs, int) or config.num_epochs < 1:
            raise RLConfigError("num_epochs", f"{config.num_epochs!r} is not a positive int",
                                "Use e.g. training(num_epochs=10).")

    def training_step(self) -> dict[str, float]:
        batches = self.sample(self.algo_config.get_rollout_fragment_length())
        batch = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        return self.learn(batch)

"""Learner: owns the torch networks and optimizers of one algorithm and updates them.

A learner runs in the driver (``num_learners=0``) or as one of several learner actors
(see learner_group.py). With several, every rank computes gradients on its shard of
the batch and ``apply_gradients`` averages them with one flat ``all_reduce`` per
optimizer step before stepping -- what DistributedDataParallel does -- so every rank
keeps identical weights without DDP's wrapper, which does not fit modules whose
parameters are stepped by different optimizers (SAC's actor, critics and alpha).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .config import AlgorithmConfig

Batch = dict[str, np.ndarray]


class Learner:
    """Base class: ``build`` makes ``self.module`` and optimizers, ``update`` trains on a batch.

    Args:
        config: the algorithm's settings.
        obs_space, action_space: the env's (single, not vectorized) spaces.
        rank, world_size: position among data-parallel learners (0 of 1 on the driver).
    """

    #: Axis along which a batch is split across learners (1 for ``[K, B, ...]`` minibatch stacks).
    shard_axis: ClassVar[int] = 0

    def __init__(self, config: AlgorithmConfig, obs_space: gym.Space, action_space: gym.Space,
                 rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.obs_space = obs_space
        self.action_space = action_space
        self.rank = rank
        self.world_size = world_size
        use_gpu = config.num_gpus_per_learner > 0 and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_gpu else "cpu")
        if config.seed is not None:
            torch.manual_seed(config.seed)
        self.generator = torch.Generator().manual_seed(
            (config.seed if config.seed is not None else int(np.random.randint(1 << 30))) + rank)
        self.module: nn.Module = self.build_module(config, obs_space, action_space).to(self.device)
        self.build()

    # -- for subclasses ------------------------------------------------------------

    @staticmethod
    def build_module(config: AlgorithmConfig, obs_space: gym.Space, action_space: gym.Space) -> nn.Module:
        """The trainable networks (also used by the driver to act after a restore)."""
        raise NotImplementedError

    def build(self) -> None:
        """Optimizers and any extra state (target networks, coefficients)."""
        raise NotImplementedError

    def update(self, batch: Batch, timesteps: dict[str, int]) -> dict[str, float]:
        """Trains on ``batch``; returns the stats RLlib reports under ``learners/default_policy``."""
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        """Learner state besides module and optimizers (target networks, KL coefficient)."""
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``extra_state``."""

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer, in a fixed order (for checkpoints)."""
        return [v for v in vars(self).values() if isinstance(v, torch.optim.Optimizer)]

    # -- shared ----------------------------------------------------------------------

    def tensors(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The batch's arrays as tensors on the learner's device."""
        return {k: torch.as_tensor(np.asarray(v)).to(self.device) for k, v in batch.items()}

    def apply_gradients(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                        params: Iterable[nn.Parameter]) -> None:
        """Backward, average gradients across learners, clip (``grad_clip``), step."""
        params = list(params)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            import torch.distributed as dist
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            dist.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p, g in zip(params, grads):
                n = g.numel()
                p.grad = flat[offset:offset + n].view_as(p)
                offset += n
        if self.config.grad_clip:
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        optimizer.step()

    def runner_weights(self) -> dict[str, Any]:
        """Numpy weights for env runners (see ember.rl.policies)."""
        return self.module.runner_weights()  # type: ignore[operator]

    def get_state(self) -> dict[str, Any]:
        """Everything a checkpoint needs to continue training exactly here."""
        return {"module": {k: v.cpu() for k, v in self.module.state_dict().items()},
                "optimizers": [o.state_dict() for o in self.optimizers()],
                "extra": self.extra_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``get_state``."""
        self.module.load_state_dict(state["module"])
        for optimizer, saved in zip(self.optimizers(), state["optimizers"]):
            optimizer.load_state_dict(saved)
        self.set_extra_state(state["extra"])


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target (tau=1 copies)."""
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


def adam(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """Adam, fused into one kernel per step where torch supports it (a third faster on CPU
    for the small networks RL uses, where per-parameter dispatch dominates)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=lr)

"""OffPolicyAlgorithm: sampling rounds into a replay buffer, each followed by replayed updates.

The loop DQN and SAC share: one ``train()`` repeats (sample a round on every runner ->
add the transitions to the buffer -> ``training_intensity``-many minibatch updates once
``num_steps_sampled_before_learning_starts`` steps are stored) until
``min_sample_timesteps_per_iteration`` env steps were sampled.
"""

from __future__ import annotations

from typing import Any

from .algorithm import Algorithm
from .replay_buffer import ReplayBuffer


class OffPolicyAlgorithm(Algorithm):
    """Sampling rounds into a replay buffer, each followed by replayed updates (DQN, SAC)."""

    postprocess = "transitions"

    def setup(self, config: dict[str, Any]) -> None:
        super().setup(config)
        capacity = self.algo_config.replay_buffer_config.get("capacity", 50000)
        self.replay_buffer = ReplayBuffer(capacity, self.algo_config.seed)

    def sample_kwargs(self) -> dict[str, Any]:
        """Per-round exploration arguments for EnvRunner.sample."""
        return {}

    def updates_per_round(self, round_steps: int) -> int:
        cfg = self.algo_config
        if cfg.training_intensity is None:
            return 1
        return max(1, round(round_steps * cfg.training_intensity / cfg.train_batch_size))

    def training_step(self) -> dict[str, float]:
        cfg = self.algo_config
        fragment = cfg.get_rollout_fragment_length() if cfg.rollout_fragment_length != "auto" else 4
        sampled = 0
        stats: dict[str, float] = {}
        while True:
            batches = self.sample(fragment, **self.sample_kwargs())
            for b in batches:
                self.replay_buffer.add(b)
                sampled += len(b["obs"])
            if len(self.replay_buffer) >= max(cfg.num_steps_sampled_before_learning_starts, cfg.train_batch_size):
                k = self.updates_per_round(sum(len(b["obs"]) for b in batches))
                stats = self.learn(self.replay_buffer.sample(k, cfg.train_batch_size))
            if sampled >= cfg.min_sample_timesteps_per_iteration:
                break
        stats = dict(stats)
        stats["replay_buffer_size"] = float(len(self.replay_buffer))
        return stats

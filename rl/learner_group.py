"""LearnerGroup: one learner on the driver, or ``num_learners`` data-parallel learner actors.

    driver: LearnerGroup.update(batch)
              |  split batch into num_learners equal shards (along the learner's shard_axis)
              v
    learner actor rank 0 .. n-1  (torch.distributed gloo, or NCCL with GPUs,
                                  rendezvous at rank 0's 127.0.0.1:<free port>)
              each: forward/backward on its shard, all_reduce gradients, step
              -> identical weights everywhere; rank 0 answers for weights and stats
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np

import ember

from .config import AlgorithmConfig
from .learner import Batch, Learner


class _LearnerActor:
    """Hosts one Learner in an ember actor."""

    def __init__(self, learner_cls: type[Learner], config: AlgorithmConfig, obs_space: gym.Space,
                 action_space: gym.Space, rank: int, world_size: int) -> None:
        import torch
        torch.set_num_threads(_threads_for(config))  # learners share the node's cores with env runners
        self.args = (learner_cls, config, obs_space, action_space, rank, world_size)
        self.learner: Learner | None = None

    def free_address(self) -> tuple[str, int]:
        """An unused loopback port for the process group's rendezvous (rank 0 only)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            return "127.0.0.1", s.getsockname()[1]

    def init_distributed(self, host: str, port: int) -> bool:
        """Joins the process group, then builds the learner (same seed: same initial weights)."""
        import torch
        import torch.distributed as dist
        learner_cls, config, obs_space, action_space, rank, world_size = self.args
        backend = "nccl" if config.num_gpus_per_learner > 0 and torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, init_method=f"tcp://{host}:{port}", rank=rank,
                                world_size=world_size)
        self.learner = learner_cls(config, obs_space, action_space, rank, world_size)
        # Start from rank 0's weights even without a seed.
        for p in self.learner.module.parameters():
            dist.broadcast(p.data, src=0)
        return True

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.learner, method)(*args)

    def stop(self) -> None:
        import torch.distributed as dist
        if dist.is_initialized():
            dist.destroy_process_group()


def _threads_for(config: AlgorithmConfig) -> int:
    """Intra-op threads of a learner: the CPUs it was given (at least one)."""
    return max(1, int(config.num_cpus_per_learner))


@contextlib.contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Runs the block with ``num_threads`` torch intra-op threads, then restores the count.

    Small RL networks gain nothing from intra-op threads, and on a loaded machine the
    spinning OpenMP workers cost a lot: measured with load average 15 on 2 cores, one
    PPO update took 14 s with torch's default 2 threads and 0.35 s with 1.
    """
    import torch
    before = torch.get_num_threads()
    if before != num_threads:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        if before != num_threads:
            torch.set_num_threads(before)


class LearnerGroup:
    """Updates through a local learner or a group of learner actors (same interface)."""

    def __init__(self, learner_cls: type[Learner], config: AlgorithmConfig, obs_space: gym.Space,
                 action_space: gym.Space) -> None:
        self.learner_cls = learner_cls
        self.num_threads = _threads_for(config)
        self.local: Learner | None = None
        self.actors: list[Any] = []
        n = config.num_learners
        if n == 0:
            self.local = learner_cls(config, obs_space, action_space)
            return
        actor_cls = ember.remote(_LearnerActor).options(
            num_cpus=config.num_cpus_per_learner, num_gpus=config.num_gpus_per_learner)
        self.actors = [actor_cls.remote(learner_cls, config, obs_space, action_space, rank, n)
                       for rank in range(n)]
        host, port = ember.get(self.actors[0].free_address.remote())
        ember.get([a.init_distributed.remote(host, port) for a in self.actors])

    @property
    def num_learners(self) -> int:
        return len(self.actors)

    def update(self, batch: Batch, timesteps: dict[str, int]) -> dict[str, float]:
        """One update on ``batch`` (sharded over the learner actors); rank 0's stats."""
        if self.local is not None:
            with torch_threads(self.num_threads):
                return self.local.update(batch, timesteps)
        axis = self.learner_cls.shard_axis
        n = len(self.actors)
        size = next(iter(batch.values())).shape[axis] // n * n  # equal shards: same step count
        shards = [{k: np.take(v, np.arange(i, size, n), axis=axis) for k, v in batch.items()}
                  for i in range(n)]
        stats = ember.get([a.call.remote("update", shard, timesteps) for a, shard in zip(self.actors, shards)])
        return stats[0]

    def _call(self, method: str, *args: Any) -> Any:
        if self.local is not None:
            return getattr(self.local, method)(*args)
        return ember.get(self.actors[0].call.remote(method, *args))

    def runner_weights(self) -> dict[str, Any]:
        return self._call("runner_weights")

    def get_state(self) -> dict[str, Any]:
        return self._call("get_state")

    def set_state(self, state: dict[str, Any]) -> None:
        if self.local is not None:
            self.local.set_state(state)
            return
        ember.get([a.call.remote("set_state", state) for a in self.actors])

    def stop(self) -> None:
        """Ends the learner actors; safe to call twice."""
        for a in self.actors:
            try:
                ember.get(a.stop.remote(), timeout=10)
            except Exception:  # noqa: BLE001 - tearing down anyway
                pass
            ember.kill(a, no_restart=True)
        self.actors = []

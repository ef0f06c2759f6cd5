"""From a runner's time-major trajectory ``[T, N]`` to the flat batch a learner trains on.

Runs inside the env runner, so the driver receives training-ready arrays: advantages
(GAE) for PPO, (obs, action, reward, next_obs, terminated) transitions for DQN and SAC.

Truncation (a time limit, not a real end) is bootstrapped: the reward of the last step
gets ``gamma * V(final_obs)`` for PPO, and off-policy transitions keep
``terminated=False`` so the target network bootstraps from ``next_obs``.
"""

from __future__ import annotations

import numpy as np

from .policies import NumpyPolicy

Batch = dict[str, np.ndarray]


def compute_gae(traj: Batch, policy: NumpyPolicy, last_obs: np.ndarray, gamma: float,
                lambda_: float) -> Batch:
    """Advantages and value targets by generalized advantage estimation."""
    rewards = traj["rewards"].astype(np.float32, copy=True)
    terminated, truncated = traj["terminateds"], traj["truncateds"]
    t_idx, e_idx = np.nonzero(truncated & ~terminated)
    if len(t_idx):
        rewards[t_idx, e_idx] += gamma * policy.value(traj["final_obs"][t_idx, e_idx])
    dones = (terminated | truncated).astype(np.float32)
    values = traj["vf"]
    horizon = len(rewards)
    next_values = np.empty_like(values)
    next_values[:-1] = values[1:]
    next_values[-1] = policy.value(last_obs)
    not_done = 1.0 - dones
    deltas = rewards + gamma * next_values * not_done - values
    advantages = np.empty_like(values)
    running = np.zeros(values.shape[1], dtype=np.float32)
    for t in range(horizon - 1, -1, -1):
        running = deltas[t] + gamma * lambda_ * not_done[t] * running
        advantages[t] = running
    return {
        "obs": _flat(traj["obs"]), "actions": _flat(traj["actions"]), "logp": _flat(traj["logp"]),
        "vf_preds": _flat(values), "advantages": _flat(advantages),
        "value_targets": _flat(advantages + values),
    }


def transitions(traj: Batch) -> Batch:
    """(obs, actions, rewards, next_obs, terminateds) rows, one per env step."""
    return {
        "obs": _flat(traj["obs"]), "actions": _flat(traj["actions"]),
        "rewards": _flat(traj["rewards"]).astype(np.float32), "next_obs": _flat(traj["next_obs"]),
        "terminateds": _flat(traj["terminateds"]).astype(np.float32),
    }


def _flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])

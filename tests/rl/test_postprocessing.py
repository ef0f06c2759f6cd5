"""Runner-side math by plain calls: GAE with truncation bootstrap, numpy policies vs torch,
the replay buffer and DQN's epsilon schedule."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from ember.rl.algorithms.dqn import epsilon_at
from ember.rl.models import PPOModule, QNetwork, SACModule
from ember.rl.policies import NumpyPolicy, q_values
from ember.rl.postprocessing import compute_gae
from ember.rl.replay_buffer import ReplayBuffer

MODEL = {"fcnet_hiddens": [8, 8], "fcnet_activation": "tanh"}
CARTPOLE_SPACES = (gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Discrete(2))


class _ConstantValue:
    """A stand-in policy whose value head returns ``v`` everywhere."""

    def __init__(self, v: float) -> None:
        self.v = v

    def value(self, obs: np.ndarray) -> np.ndarray:
        return np.full(len(obs), self.v, np.float32)


def test_gae_matches_a_reference_and_bootstraps_truncation() -> None:
    gamma, lam = 0.9, 0.8
    rewards = np.array([[1.0], [1.0], [1.0]], np.float32)
    terminated = np.array([[False], [True], [False]])
    truncated = np.zeros_like(terminated)
    traj = {"obs": np.zeros((3, 1, 2), np.float32), "actions": np.zeros((3, 1)), "logp": np.zeros((3, 1)),
            "rewards": rewards, "terminateds": terminated, "truncateds": truncated,
            "final_obs": np.zeros((3, 1, 2), np.float32), "vf": np.full((3, 1), 0.5, np.float32)}
    out = compute_gae(traj, _ConstantValue(0.5), np.zeros((1, 2), np.float32), gamma, lam)
    # step 2 bootstraps from V(last)=0.5; step 1 ends the episode; step 0 continues into 1.
    d2 = 1 + gamma * 0.5 - 0.5
    d1 = 1 - 0.5
    d0 = 1 + gamma * 0.5 - 0.5
    np.testing.assert_allclose(out["advantages"], [d0 + gamma * lam * d1, d1, d2], rtol=1e-6)
    np.testing.assert_allclose(out["value_targets"], out["advantages"] + 0.5, rtol=1e-6)

    traj["terminateds"] = np.array([[False], [False], [False]])
    traj["truncateds"] = np.array([[False], [True], [False]])  # a time limit: bootstrap V(final)
    out = compute_gae(traj, _ConstantValue(0.5), np.zeros((1, 2), np.float32), gamma, lam)
    np.testing.assert_allclose(out["advantages"][1], 1 + gamma * 0.5 - 0.5, rtol=1e-6)


def test_numpy_policies_match_their_torch_modules() -> None:
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    ppo = PPOModule(*CARTPOLE_SPACES, MODEL)
    logits = ppo.forward_inference({"obs": obs})["action_dist_inputs"].numpy()
    actions, extras = NumpyPolicy(ppo.runner_weights()).act(obs, False, np.random.default_rng(0))
    np.testing.assert_array_equal(actions, logits.argmax(-1))
    np.testing.assert_allclose(extras["vf"], ppo.vf(torch.as_tensor(obs))[:, 0].detach().numpy(), atol=1e-5)

    for dueling in (False, True):
        q = QNetwork(*CARTPOLE_SPACES, MODEL, dueling=dueling)
        np.testing.assert_allclose(q_values(q.runner_weights(), obs),
                                   q(torch.as_tensor(obs)).detach().numpy(), atol=1e-5)

    box = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    sac = SACModule(CARTPOLE_SPACES[0], box, MODEL)
    greedy, _ = NumpyPolicy(sac.runner_weights()).act(obs, False, np.random.default_rng(0))
    np.testing.assert_allclose(greedy, sac.greedy_action(obs), atol=1e-5)


def test_replay_buffer_keeps_the_newest_rows() -> None:
    buffer = ReplayBuffer(capacity=4, seed=0)
    buffer.add({"x": np.arange(3)})
    buffer.add({"x": np.arange(3, 6)})
    assert len(buffer) == 4 and sorted(buffer.storage["x"].tolist()) == [2, 3, 4, 5]
    assert buffer.sample(3, 2)["x"].shape == (3, 2)


def test_epsilon_schedule_is_linear_then_flat() -> None:
    schedule = [(0, 1.0), (100, 0.1)]
    assert epsilon_at(schedule, 0) == 1.0
    assert abs(epsilon_at(schedule, 50) - 0.55) < 1e-9
    assert epsilon_at(schedule, 1000) == 0.1

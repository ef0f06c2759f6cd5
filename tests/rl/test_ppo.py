"""PPO learns CartPole with two env runner actors; checkpoints restore the same policy."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from ember.rl import Algorithm, PPOConfig
from ember.rl.algorithms.ppo import PPO

#: Seeded settings that solve CartPole in about 20k env steps (a few seconds on 2 cores).
FAST_CARTPOLE = dict(lr=3e-3, train_batch_size=1024, minibatch_size=128, num_epochs=10, lambda_=0.95,
                     gamma=0.99, vf_loss_coeff=0.5, clip_param=0.2,
                     model={"fcnet_hiddens": [64, 64], "fcnet_activation": "tanh"})


def cartpole_config(seed: int = 0) -> PPOConfig:
    return (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=4)
            .training(**FAST_CARTPOLE)
            .reporting(metrics_num_episodes_for_smoothing=20)
            .debugging(seed=seed))


@pytest.mark.timeout(120)
def test_ppo_reaches_450_on_cartpole_within_60k_steps(ember_local: dict) -> None:
    algo = cartpole_config().build_algo()
    try:
        result: dict = {}
        while True:
            result = algo.train()
            steps = result["num_env_steps_sampled_lifetime"]
            if result["env_runners"]["episode_return_mean"] >= 450 or steps >= 60_000:
                break
        assert result["env_runners"]["episode_return_mean"] >= 450, result["env_runners"]
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] == steps
        assert result["fault_tolerance"]["num_healthy_workers"] == 2
        learner = result["learners"]["default_policy"]
        assert {"policy_loss", "vf_loss", "entropy", "mean_kl_loss", "curr_kl_coeff"} <= set(learner)
        evaluation = algo.evaluate()["env_runners"]
        assert evaluation["num_episodes"] == 10 and evaluation["episode_return_mean"] >= 400
    finally:
        algo.stop()


@pytest.mark.timeout(90)
def test_checkpoint_restore_gives_the_same_actions(ember_local: dict, tmp_path: object) -> None:
    algo = cartpole_config(seed=3).build_algo()
    for _ in range(3):
        algo.train()
    checkpoint = algo.save(str(tmp_path / "ckpt"))
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    before = [algo.compute_single_action(o) for o in obs]
    logits = algo.get_module().forward_inference({"obs": torch.as_tensor(obs)})["action_dist_inputs"]
    algo.train()  # move on, so a restore has something to undo
    algo.stop()

    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        assert isinstance(restored, PPO) and restored.iteration == 3
        assert [restored.compute_single_action(o) for o in obs] == before
        again = restored.get_module().forward_inference({"obs": torch.as_tensor(obs)})["action_dist_inputs"]
        assert torch.equal(again, logits)
        assert restored.train()["training_iteration"] == 4
    finally:
        restored.stop()


@pytest.mark.timeout(60)
def test_ppo_acts_in_continuous_action_spaces(ember_local: dict) -> None:
    algo = (PPOConfig().environment("Pendulum-v1").env_runners(num_env_runners=1, num_envs_per_env_runner=2)
            .training(train_batch_size=200, minibatch_size=100, num_epochs=2, model={"fcnet_hiddens": [16]})
            .evaluation(evaluation_interval=1, evaluation_duration=2)
            .debugging(seed=0).build_algo())
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] == 200
        assert math.isfinite(result["learners"]["default_policy"]["total_loss"])
        evaluation = result["evaluation"]["env_runners"]
        assert evaluation["num_episodes"] == 2 and evaluation["episode_len_mean"] == 200
        action = algo.compute_single_action(np.zeros(3, np.float32))
        assert gym.spaces.Box(-2.0, 2.0, (1,)).contains(action.astype(np.float32))
    finally:
        algo.stop()

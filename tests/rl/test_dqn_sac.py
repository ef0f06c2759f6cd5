"""DQN learns CartPole and SAC improves on Pendulum, each with two env runner actors."""

from __future__ import annotations

import pytest

from ember.rl import DQNConfig, SACConfig


@pytest.mark.timeout(120)
def test_dqn_reaches_150_on_cartpole_within_30k_steps(ember_local: dict) -> None:
    algo = (DQNConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=4, rollout_fragment_length=16)
            .training(lr=1e-3, train_batch_size=64, training_intensity=8.0, target_network_update_freq=500,
                      epsilon=[(0, 1.0), (5000, 0.02)], num_steps_sampled_before_learning_starts=1000,
                      model={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
            .reporting(metrics_num_episodes_for_smoothing=20, min_sample_timesteps_per_iteration=1000)
            .debugging(seed=0).build_algo())
    try:
        result: dict = {}
        while True:
            result = algo.train()
            if (result["env_runners"]["episode_return_mean"] >= 150
                    or result["num_env_steps_sampled_lifetime"] >= 30_000):
                break
        assert result["env_runners"]["episode_return_mean"] >= 150, result["env_runners"]
        learner = result["learners"]["default_policy"]
        assert learner["epsilon"] == pytest.approx(0.02) and learner["qf_loss"] >= 0
        assert algo.compute_single_action([0.0, 0.0, 0.05, 0.0]) in (0, 1)
    finally:
        algo.stop()


@pytest.mark.timeout(120)
def test_sac_improves_on_pendulum(ember_local: dict) -> None:
    algo = (SACConfig().environment("Pendulum-v1")
            .env_runners(num_env_runners=2, num_envs_per_env_runner=2, rollout_fragment_length=8)
            .training(lr=3e-3, train_batch_size=128, training_intensity=128.0, gamma=0.98,
                      num_steps_sampled_before_learning_starts=500,
                      model={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
            .reporting(min_sample_timesteps_per_iteration=500)
            .evaluation(evaluation_duration=4)
            .debugging(seed=0).build_algo())
    try:
        before = algo.evaluate()["env_runners"]["episode_return_mean"]
        while algo.train()["num_env_steps_sampled_lifetime"] < 2000:
            pass
        after = algo.evaluate()["env_runners"]["episode_return_mean"]
        assert after > before + 300, (before, after)
    finally:
        algo.stop()

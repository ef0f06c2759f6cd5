"""AlgorithmConfig: RLlib's builder names, the dict round trip, and typed errors for bad input."""

from __future__ import annotations

import pytest

from ember.rl import DQNConfig, PPOConfig, RLConfigError, SACConfig
from ember.rl.algorithms import get_algorithm_class
from ember.rl.algorithms.ppo import PPO, PPOConfig as PPOConfigFromModule


def test_builder_methods_chain_and_set_rllib_names() -> None:
    config = (PPOConfig().environment("CartPole-v1", env_config={"render_mode": None})
              .env_runners(num_env_runners=3, num_envs_per_env_runner=4, rollout_fragment_length=50)
              .training(lr=1e-3, gamma=0.95, train_batch_size=600, minibatch_size=100, num_epochs=3,
                        lambda_=0.9, clip_param=0.1, entropy_coeff=0.01, vf_loss_coeff=0.5, kl_target=0.02,
                        model={"fcnet_hiddens": [32]})
              .learners(num_learners=0).evaluation(evaluation_interval=2, evaluation_duration=3)
              .debugging(seed=7))
    assert (config.num_env_runners, config.num_envs_per_env_runner, config.rollout_fragment_length) == (3, 4, 50)
    assert (config.lr, config.lambda_, config.seed, config.evaluation_interval) == (1e-3, 0.9, 7, 2)
    assert config.model == {"fcnet_hiddens": [32], "fcnet_activation": "tanh"}  # merged with defaults
    assert PPOConfigFromModule is PPOConfig and config.algo_class is PPO


def test_to_dict_round_trips_with_rllib_lambda_spelling() -> None:
    config = PPOConfig().environment("CartPole-v1").training(lambda_=0.8, lr=0.01)
    as_dict = config.to_dict()
    assert as_dict["lambda"] == 0.8 and "lambda_" not in as_dict and as_dict["algo"] == "PPO"
    again = PPOConfig.from_dict(as_dict)
    assert again.to_dict() == as_dict


def test_each_algorithm_has_its_own_knobs() -> None:
    DQNConfig().training(double_q=False, dueling=False, target_network_update_freq=100,
                         replay_buffer_config={"capacity": 1000}, epsilon=[(0, 1.0), (100, 0.1)])
    SACConfig().training(tau=0.01, target_entropy=-1.0, initial_alpha=0.5)
    with pytest.raises(RLConfigError, match="clip_param"):
        DQNConfig().training(clip_param=0.2)


def test_unknown_setting_names_the_closest_known_one() -> None:
    with pytest.raises(RLConfigError, match="num_env_runners"):
        PPOConfig().env_runners(num_env_runner=2)
    PPOConfig().env_runners(num_env_runners=2)  # the next call still works


def test_algorithm_classes_are_found_by_name() -> None:
    assert get_algorithm_class("PPO") is PPO
    assert get_algorithm_class("DQN").__name__ == "DQN"
    assert get_algorithm_class("SAC").__name__ == "SAC"
    assert get_algorithm_class("A3C") is None


def test_invalid_values_are_rejected_before_anything_starts() -> None:
    for bad in ({"lr": -1.0}, {"gamma": 1.5}, {"model": {"fcnet_activation": "sigmoidal"}},
                {"train_batch_size": 0}):
        config = PPOConfig().environment("CartPole-v1").training(**bad)
        with pytest.raises(RLConfigError):
            config.validate()


def test_evaluation_by_timesteps_is_refused() -> None:
    config = PPOConfig().environment("CartPole-v1").evaluation(evaluation_duration_unit="timesteps")
    with pytest.raises(RLConfigError, match="episodes"):
        config.validate()

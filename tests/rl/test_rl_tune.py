"""A Tune sweep over two PPO learning rates: "PPO" resolves to ember.rl's algorithm and
its nested results stream into Tune's results and dataframe."""

from __future__ import annotations

import pytest

from ember import tune
from ember.rl import PPOConfig


@pytest.mark.timeout(120)
def test_tune_sweeps_two_ppo_learning_rates(ember_local: dict, tmp_path: object) -> None:
    config = (PPOConfig().environment("CartPole-v1")
              # Runners hold no CPU: each trial's actor holds one of the cluster's two.
              .env_runners(num_env_runners=1, num_envs_per_env_runner=2, num_cpus_per_env_runner=0)
              .training(train_batch_size=128, minibatch_size=64, num_epochs=2, model={"fcnet_hiddens": [16]})
              .debugging(seed=0))
    param_space = config.to_dict()
    param_space["lr"] = tune.grid_search([1e-4, 1e-3])
    results = tune.Tuner(
        "PPO", param_space=param_space,
        tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="ppo_lr", stop={"training_iteration": 2}),
    ).fit()
    assert len(results) == 2 and not results.errors
    frame = results.get_dataframe()
    assert sorted(frame["config/lr"]) == [1e-4, 1e-3]
    assert (frame["training_iteration"] == 2).all()
    assert (frame["env_runners/num_env_steps_sampled_lifetime"] == 256).all()
    assert (frame["env_runners/episode_return_mean"] > 0).all()
    assert "learners/default_policy/policy_loss" in frame.columns
    best = results.get_best_result()
    assert best.config["lr"] in (1e-4, 1e-3)
    assert best.metrics["env_runners"]["episode_return_mean"] == frame["env_runners/episode_return_mean"].max()


@pytest.mark.timeout(120)
def test_tuner_takes_an_algorithm_config_as_its_param_space(ember_local: dict,
                                                            tmp_path: object) -> None:
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=1, num_cpus_per_env_runner=0)
              .training(train_batch_size=64, minibatch_size=32, num_epochs=1, model={"fcnet_hiddens": [8]})
              .debugging(seed=0))
    results = tune.Tuner(
        "PPO", param_space=config,
        tune_config=tune.TuneConfig(metric="env_runners/episode_return_mean", mode="max"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="ppo_config", stop={"training_iteration": 1}),
    ).fit()
    assert len(results) == 1 and not results.errors
    assert results[0].config["train_batch_size"] == 64

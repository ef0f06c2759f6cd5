"""A Tune sweep over two PPO learning rates: "PPO" resolves to ember.rl's algorithm and
its nested results stream into Tune's results and dataframe."""

from __future__ import annotations

import pytest

from ember import tune
from ember.rl import PPO, PPOConfig


@pytest.mark.timeout(120)
def test_tune_sweeps_two_ppo_learning_rates(ember_local: dict, tmp_path: object) -> None:
    config = (PPOConfig().environment("CartPole-v1")
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


def test_a_trial_reserves_its_runners_and_learners_as_rllib_does() -> None:
    config = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=2).learners(
        num_learners=1, num_cpus_per_learner=2)
    request = PPO.default_resource_request(config.to_dict())
    assert request.bundles == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 2.0}]
    free_runners = config.copy().env_runners(num_cpus_per_env_runner=0).learners(num_learners=0)
    assert PPO.default_resource_request(free_runners).bundles == [{"CPU": 1.0}]


@pytest.mark.timeout(120)
def test_runners_that_hold_a_cpu_run_inside_their_trials_group(ember_local: dict,
                                                              tmp_path: object) -> None:
    # Each trial needs both of the cluster's CPUs (itself + one runner holding a CPU): the
    # trials run one after the other instead of each holding a CPU its runner waits for.
    config = (PPOConfig().environment("CartPole-v1")
              .env_runners(num_env_runners=1, num_envs_per_env_runner=1, num_cpus_per_env_runner=1,
                           sample_timeout_s=20)
              .training(train_batch_size=64, minibatch_size=32, num_epochs=1, model={"fcnet_hiddens": [8]})
              .debugging(seed=0))
    param_space = config.to_dict()
    param_space["lr"] = tune.grid_search([1e-4, 1e-3])
    results = tune.Tuner(
        "PPO", param_space=param_space,
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="ppo_cpus", stop={"training_iteration": 1}),
    ).fit()
    assert len(results) == 2 and not results.errors

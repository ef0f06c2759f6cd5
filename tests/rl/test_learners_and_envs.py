"""Learner actors (data-parallel over torch.distributed) and the ways to name an env."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ember
from ember.rl import PPOConfig
from ember.tune import register_env

from _rl_envs import Corridor


@pytest.mark.timeout(120)
def test_two_learner_actors_keep_identical_weights(ember_local: dict) -> None:
    algo = (PPOConfig().environment("CartPole-v1")
            .env_runners(num_env_runners=1, num_envs_per_env_runner=2, num_cpus_per_env_runner=0)
            .training(train_batch_size=256, minibatch_size=64, num_epochs=2, model={"fcnet_hiddens": [16]})
            .learners(num_learners=2, num_cpus_per_learner=0.5)
            .debugging(seed=0).build_algo())
    try:
        before = {k: v.clone() for k, v in algo.get_module().state_dict().items()}
        result = algo.train()
        assert result["learners"]["default_policy"]["num_minibatch_updates"] == 2 * 256 // 64
        states = ember.get([a.call.remote("get_state") for a in algo.learner_group.actors])
        for key, value in states[0]["module"].items():
            assert torch.equal(value, states[1]["module"][key]), key  # gradients were averaged
        after = algo.get_module().state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)  # and applied
        assert algo.compute_single_action(np.zeros(4, np.float32)) in (0, 1)
    finally:
        algo.stop()


@pytest.mark.timeout(60)
def test_envs_by_registered_name_and_by_class(ember_local: dict) -> None:
    register_env("corridor-test", lambda cfg: Corridor(cfg))
    for env in ("corridor-test", Corridor):
        algo = (PPOConfig().environment(env, env_config={"length": 3})
                .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
                .training(train_batch_size=64, minibatch_size=32, num_epochs=1, model={"fcnet_hiddens": [8]})
                .debugging(seed=0).build_algo())
        try:
            result = algo.train()
            assert result["env_runners"]["num_episodes"] > 0
            assert result["env_runners"]["episode_return_max"] == 1.0
        finally:
            algo.stop()

"""Each bad input the issue lists gives a typed error naming the thing and the fix,
and the next call still works."""

from __future__ import annotations

import json

import pytest

from ember.rl import (Algorithm, DQNConfig, NotACheckpointError, PPOConfig, RLConfigError, SACConfig,
                      UnknownEnvError, UnsupportedSpaceError)

from _rl_envs import DictObsEnv


def _tiny_ppo(env: object = "CartPole-v1") -> PPOConfig:
    return (PPOConfig().environment(env).env_runners(num_env_runners=0)
            .training(train_batch_size=64, minibatch_size=32, num_epochs=1,
                      model={"fcnet_hiddens": [8]}).debugging(seed=0))


@pytest.mark.timeout(60)
def test_unknown_env_id_names_it_and_says_how_to_register(ember_local: dict) -> None:
    with pytest.raises(UnknownEnvError) as info:
        _tiny_ppo("CartPol-v1").build_algo()
    message = str(info.value)
    assert "'CartPol-v1'" in message and "register_env" in message and "CartPole-v1" in message
    algo = _tiny_ppo().build_algo()  # the next call still works
    assert algo.train()["training_iteration"] == 1
    algo.stop()


@pytest.mark.timeout(60)
def test_dqn_on_a_continuous_action_space_is_refused(ember_local: dict) -> None:
    with pytest.raises(UnsupportedSpaceError, match=r"DQN .*Box.*Pendulum-v1.*SAC") as info:
        DQNConfig().environment("Pendulum-v1").env_runners(num_env_runners=0).build_algo()
    assert info.value.algorithm == "DQN" and info.value.which == "action"
    with pytest.raises(UnsupportedSpaceError, match="SAC"):
        SACConfig().environment("CartPole-v1").env_runners(num_env_runners=0).build_algo()
    with pytest.raises(UnsupportedSpaceError, match="observation"):
        _tiny_ppo(DictObsEnv).build_algo()
    algo = DQNConfig().environment("CartPole-v1").env_runners(num_env_runners=0).build_algo()
    algo.stop()


def test_train_batch_smaller_than_minibatch_is_refused() -> None:
    config = _tiny_ppo().training(train_batch_size=100, minibatch_size=128)
    with pytest.raises(RLConfigError, match=r"train_batch_size=100 .* minibatch_size=128") as info:
        config.build_algo()
    assert isinstance(info.value, ValueError) and "at least 128" in str(info.value)


@pytest.mark.timeout(60)
def test_a_path_that_is_not_a_checkpoint_is_refused(ember_local: dict, tmp_path: object) -> None:
    with pytest.raises(NotACheckpointError, match="no such directory"):
        Algorithm.from_checkpoint(str(tmp_path / "missing"))
    (tmp_path / "model.pt").write_bytes(b"not ours")
    with pytest.raises(NotACheckpointError, match="rl_checkpoint.json"):
        Algorithm.from_checkpoint(str(tmp_path))
    (tmp_path / "rl_checkpoint.json").write_text(json.dumps({"format": "other/3"}))
    algo = _tiny_ppo().build_algo()
    with pytest.raises(NotACheckpointError, match="format"):
        algo.restore(str(tmp_path))
    assert algo.train()["training_iteration"] == 1  # the algorithm is unharmed
    algo.stop()


@pytest.mark.timeout(60)
def test_env_runners_that_cannot_be_placed_are_an_error_not_a_hang(ember_local: dict) -> None:
    config = (_tiny_ppo().env_runners(num_env_runners=2, num_cpus_per_env_runner=1.5, sample_timeout_s=1.0))
    with pytest.raises(RLConfigError, match=r"2 env runners asking for 1.5 CPU each did not start") as info:
        config.build_algo()
    assert "num_cpus_per_env_runner=" in str(info.value)
    algo = _tiny_ppo().env_runners(num_env_runners=1).build_algo()  # the CPUs were given back
    assert algo.train()["training_iteration"] == 1
    algo.stop()

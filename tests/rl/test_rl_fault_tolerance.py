"""A SIGKILLed env runner is replaced and training carries on with the others."""

from __future__ import annotations

import os
import signal

import pytest

import ember
from ember.rl import PPOConfig

from conftest import process_gone, wait_for


def _config() -> PPOConfig:
    return (PPOConfig().env_runners(num_env_runners=2, num_envs_per_env_runner=2)
            .training(train_batch_size=400, minibatch_size=100, num_epochs=1, model={"fcnet_hiddens": [16]})
            .debugging(seed=0))


@pytest.mark.timeout(90)
def test_runner_sigkilled_between_iterations_is_replaced(fresh_ember: dict) -> None:
    algo = _config().environment("CartPole-v1").build_algo()
    try:
        algo.train()
        victim = algo.env_runner_group.pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: process_gone(victim), what=f"env runner pid {victim} to exit")
        result = algo.train()
        # The round lost the dead runner's half; the replacement serves the next ones.
        assert result["fault_tolerance"]["num_remote_worker_restarts"] == 1
        assert result["env_runners"]["num_env_steps_sampled"] in (200, 400)
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled"] == 400
        assert victim not in algo.env_runner_group.pids()
    finally:
        algo.stop()


@pytest.mark.timeout(90)
def test_runner_killed_mid_sample_does_not_stop_training(fresh_ember: dict, tmp_path: object) -> None:
    """The env SIGKILLs its own runner in the middle of a sampling round (once)."""
    from _rl_envs import CrashOnceCartPole
    flag = str(tmp_path / "crashed")
    algo = (_config().environment(CrashOnceCartPole, env_config={"flag_path": flag, "crash_at_step": 30})
            .build_algo())
    try:
        results = [algo.train() for _ in range(3)]
        assert os.path.exists(flag)  # the crash happened
        assert results[-1]["fault_tolerance"]["num_remote_worker_restarts"] == 1
        assert results[-1]["training_iteration"] == 3
        assert results[-1]["env_runners"]["num_env_steps_sampled"] == 400
        assert ember.available_resources().get("CPU", 0) >= 0  # cluster still answers
    finally:
        algo.stop()

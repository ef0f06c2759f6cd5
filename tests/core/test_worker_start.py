"""Workers that cannot start: the calls waiting for them fail with WorkerStartError
(naming what the worker wrote) instead of hanging while the node restarts workers forever."""

from __future__ import annotations

import os

import pytest

import ember
from ember.exceptions import ActorDiedError, WorkerStartError
from tests.conftest import assert_no_leaked_processes

# Overriding a variable ember's own workers read at start-up makes every worker of the
# job exit before it registers: the same thing a broken interpreter or env does.
BROKEN_JOB_ENV = {"env_vars": {"EMBER_TOKEN": "not-hex"}}


@ember.remote
def one() -> int:
    return 1


@ember.remote
class Counter:
    def ping(self) -> str:
        return "pong"


@pytest.mark.timeout(60)
def test_tasks_and_actors_of_a_job_whose_workers_cannot_start_fail_with_a_typed_error() -> None:
    ember.init(num_cpus=2, runtime_env=BROKEN_JOB_ENV)
    try:
        with pytest.raises(WorkerStartError) as info:
            ember.get(one.remote(), timeout=30)
        message = str(info.value)
        assert "exited before registering" in message and "AuthenticationError" in message  # its traceback
        actor = Counter.remote()
        with pytest.raises(ActorDiedError, match="exited before registering"):
            ember.get(actor.ping.remote(), timeout=30)
        assert ember.available_resources().get("CPU") == 2.0  # nothing leaked by the failures
    finally:
        ember.shutdown()
    assert_no_leaked_processes()


@pytest.mark.timeout(60)
def test_the_next_driver_with_a_sound_environment_runs(tmp_path) -> None:
    ember.init(num_cpus=1, runtime_env=BROKEN_JOB_ENV)
    try:
        with pytest.raises(WorkerStartError):
            ember.get(one.remote(), timeout=30)
    finally:
        ember.shutdown()
    ember.init(num_cpus=1)
    try:
        assert ember.get(one.remote(), timeout=30) == 1
        assert os.listdir(tmp_path) == []
    finally:
        ember.shutdown()

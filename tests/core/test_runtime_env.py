"""runtime_env: env_vars (job, task, actor) and working_dir; unsupported keys refused."""

from __future__ import annotations

import os

import pytest

import ember
from ember.exceptions import InvalidOptionError


@ember.remote
def read_env(name: str) -> str | None:
    return os.environ.get(name)


@pytest.mark.timeout(60)
def test_job_env_vars_and_working_dir_reach_every_worker(tmp_path):
    ember.shutdown()
    (tmp_path / "helper_mod_for_env.py").write_text("VALUE = 'from working_dir'\n")

    @ember.remote
    def import_helper() -> tuple[str, str]:
        import helper_mod_for_env
        return helper_mod_for_env.VALUE, os.getcwd()

    ember.init(num_cpus=1, runtime_env={"env_vars": {"EMBER_TEST_JOB": "job"},
                                        "working_dir": str(tmp_path)})
    try:
        assert ember.get(read_env.remote("EMBER_TEST_JOB")) == "job"
        assert ember.get(import_helper.remote()) == ("from working_dir", str(tmp_path))
    finally:
        ember.shutdown()


@pytest.mark.timeout(60)
def test_task_env_vars_apply_to_that_task_only(ember_local):
    with_env = read_env.options(runtime_env={"env_vars": {"EMBER_TEST_TASK": "1"}})
    assert ember.get(with_env.remote("EMBER_TEST_TASK")) == "1"
    assert ember.get(read_env.remote("EMBER_TEST_TASK")) is None


@pytest.mark.timeout(60)
def test_actor_env_vars_hold_for_its_life(ember_local):
    @ember.remote(runtime_env={"env_vars": {"EMBER_TEST_ACTOR": "a"}})
    class Reader:
        def read(self) -> str | None:
            return os.environ.get("EMBER_TEST_ACTOR")

    reader = Reader.remote()
    assert ember.get([reader.read.remote(), reader.read.remote()]) == ["a", "a"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("env", [{"conda": ["requests"]}, {"env_vars": {"A": 1}}, "not a dict"])
def test_unsupported_or_malformed_runtime_env_is_refused_and_runtime_keeps_working(ember_local, env):
    with pytest.raises(InvalidOptionError, match="runtime_env"):
        read_env.options(runtime_env=env)
    assert ember.get(read_env.remote("PATH")) is not None

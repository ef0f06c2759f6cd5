"""runtime_env pip / py_modules / working_dir on tasks and actors: a virtualenv per
distinct requirement set, built once per node (also under concurrent requests) and
reused, workers of their own pool; a failed install is a typed error with pip's output.

No internet: packages come from a wheel built here, installed with --no-index."""

from __future__ import annotations

import os

import pytest

import ember
from conftest import build_wheel
from ember.exceptions import InvalidOptionError, RuntimeEnvSetupError

pytestmark = pytest.mark.timeout(120)

PKG = "ember_pip_env_probe"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> str:
    directory = tmp_path_factory.mktemp("wheels")
    build_wheel(str(directory), PKG, "1.0", "VALUE = 42\n")
    return str(directory)


def pip_env(wheels: str, *packages: str) -> dict:
    return {"pip": {"packages": list(packages) or [PKG],
                    "pip_install_options": ["--no-index", "--find-links", wheels]}}


@ember.remote
def probe() -> tuple[int, int]:
    import ember_pip_env_probe
    return ember_pip_env_probe.VALUE, os.getpid()


@ember.remote
def can_import_probe() -> bool:
    try:
        import ember_pip_env_probe  # noqa: F401
    except ImportError:
        return False
    return True


def _env_dirs(session_dir: str) -> list[str]:
    root = os.path.join(session_dir, "runtime_envs")
    return sorted(d for d in os.listdir(root) if not d.endswith(".lock")) if os.path.isdir(root) else []


def test_pip_env_is_built_once_under_concurrent_requests_and_reused(ember_local, wheels):
    env = pip_env(wheels)
    refs = [probe.options(runtime_env=env).remote() for _ in range(4)]
    results = ember.get(refs, timeout=90)
    assert {value for value, _pid in results} == {42}
    assert len(_env_dirs(ember_local["session_dir"])) == 1
    # Reused: the same requirements again build nothing new.
    assert ember.get(probe.options(runtime_env=env).remote(), timeout=60)[0] == 42
    assert len(_env_dirs(ember_local["session_dir"])) == 1
    # Workers of the env are a pool of their own: plain tasks never see the package.
    assert ember.get([can_import_probe.remote() for _ in range(3)]) == [False] * 3


def test_pip_env_on_an_actor_and_ember_itself_stays_importable(ember_local, wheels):
    @ember.remote(runtime_env=pip_env(wheels))
    class Holder:
        def value(self) -> int:
            import ember_pip_env_probe
            return ember_pip_env_probe.VALUE

        def nested(self) -> int:
            return ember.get(probe.remote())[0]  # children inherit the env

    holder = Holder.remote()
    assert ember.get(holder.value.remote(), timeout=60) == 42
    assert ember.get(holder.nested.remote(), timeout=60) == 42


def test_failed_install_is_a_typed_error_with_pips_output_and_ember_keeps_working(ember_local, wheels):
    env = pip_env(wheels, "ember-no-such-package-anywhere")
    with pytest.raises(RuntimeEnvSetupError) as info:
        ember.get(probe.options(runtime_env=env).remote(), timeout=60)
    assert "ember-no-such-package-anywhere" in str(info.value) and "No matching distribution" in str(info.value)
    # A second task of the same env fails at once (the failure is remembered), not hung.
    with pytest.raises(RuntimeEnvSetupError):
        ember.get(probe.options(runtime_env=env).remote(), timeout=30)
    assert ember.get(can_import_probe.remote()) is False


def test_py_modules_and_a_task_working_dir(ember_local, tmp_path):
    package = tmp_path / "mods" / "ember_py_module_probe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("WHERE = 'py_modules'\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "data.txt").write_text("from the working dir")

    @ember.remote(runtime_env={"py_modules": [str(package)], "working_dir": str(work)})
    def uses_both() -> tuple[str, str]:
        import ember_py_module_probe
        with open("data.txt") as f:
            return ember_py_module_probe.WHERE, f.read()

    assert ember.get(uses_both.remote(), timeout=60) == ("py_modules", "from the working dir")


@pytest.mark.parametrize("env, fix", [
    ({"pip": {"packages": ["x"], "pip_install_options": ["--target", "/tmp"]}}, "is not allowed"),
    ({"pip": {"packages": []}}, "non-empty list"),
    ({"pip": ["-r requirements.txt"]}, "requirement strings"),
    ({"py_modules": ["/nonexistent/module_dir"]}, "not a local package directory"),
    ({"working_dir": "/nonexistent/dir"}, "existing local directory"),
])
def test_malformed_runtime_env_is_refused_with_the_fix(ember_local, env, fix):
    with pytest.raises(InvalidOptionError, match=fix):
        probe.options(runtime_env=env)
    assert ember.get(can_import_probe.remote()) is False


def test_init_runtime_env_applies_pip_and_py_modules_to_every_task_of_the_job(wheels, tmp_path):
    package = tmp_path / "ember_init_module_probe"
    package.mkdir()
    (package / "__init__.py").write_text("NAME = 'from init'\n")

    @ember.remote
    def both() -> tuple[int, str]:
        import ember_init_module_probe
        import ember_pip_env_probe
        return ember_pip_env_probe.VALUE, ember_init_module_probe.NAME

    ember.shutdown()
    ember.init(num_cpus=1, runtime_env={**pip_env(wheels), "py_modules": [str(package)]})
    try:
        assert ember.get(both.remote(), timeout=90) == (42, "from init")
    finally:
        ember.shutdown()

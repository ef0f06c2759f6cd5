"""Runtime environments on a node: one virtualenv per distinct pip requirement set, built
once and reused (a node service's helper; the lease service asks it before starting a
worker of an env).

    ensure(env) -> ready: the venv's site-packages (workers put it first on sys.path)
                -> building: None; on_done(env_key, error) fires once the build ends
                -> failed: RuntimeEnvSetupError with pip's output (cached: no rebuild loop)

    <session>/runtime_envs/pip-<key>/        python -m venv --system-site-packages --without-pip
        lib/pythonX.Y/site-packages/_ember_parent.pth   this node's site dirs (ember, numpy...)
        .ready                                          written last: the env is complete

A build runs on its own thread (pip can take minutes; handlers never wait) under an
``flock`` on ``pip-<key>.lock``, so concurrent requests on this node — and other node
managers sharing the directory — build it once. Envs without ``pip`` need nothing built.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import threading
from typing import Any, Callable

from ..exceptions import RuntimeEnvSetupError

log = logging.getLogger("ember.node_manager")

#: Seconds pip may take for one environment before the build counts as failed.
PIP_TIMEOUT_S = float(os.environ.get("EMBER_PIP_TIMEOUT_S", "600"))
#: How much of pip's output a failed build's error quotes.
PIP_OUTPUT_CHARS = 8_000

#: Called (under no lock) when a build ends: (env key, None or the error).
OnDone = Callable[[str, RuntimeEnvSetupError | None], None]


def venv_site_packages(root: str) -> str:
    """Where a venv made by this interpreter keeps its packages."""
    rel = os.path.relpath(sysconfig.get_paths()["purelib"], sys.prefix)
    return os.path.join(root, rel)


def parent_site_dirs() -> list[str]:
    """This process's site directories (the venv's .pth re-adds them, .pth files included,
    so ember and everything installed here stay importable from the new env)."""
    dirs = list(site.getsitepackages())
    user = site.getusersitepackages()
    if isinstance(user, str) and os.path.isdir(user):
        dirs.append(user)
    dirs += [p for p in sys.path if p.endswith("site-packages") and p not in dirs]
    return [d for d in dirs if os.path.isdir(d)]


class RuntimeEnvs:
    """The node's pip environments: ready, being built, or failed (by env key)."""

    def __init__(self, session_dir: str, on_done: OnDone) -> None:
        self.root = os.environ.get("EMBER_RUNTIME_ENV_DIR") or os.path.join(session_dir, "runtime_envs")
        self._on_done = on_done
        self._lock = threading.Lock()
        self._ready: dict[str, str] = {}
        self._failed: dict[str, RuntimeEnvSetupError] = {}
        self._building: dict[str, threading.Thread] = {}

    def ensure(self, env_key: str, env: dict[str, Any]) -> str | RuntimeEnvSetupError | None:
        """The env's site-packages if ready ("" when it installs nothing), its error if the
        build failed, or None while it builds (``on_done`` fires when it ends)."""
        pip = env.get("pip")
        if not pip:
            return ""
        with self._lock:
            if env_key in self._ready:
                return self._ready[env_key]
            if env_key in self._failed:
                return self._failed[env_key]
            if env_key not in self._building:
                thread = threading.Thread(target=self._build, args=(env_key, pip), daemon=True,
                                          name=f"ember-pip-{env_key}")
                self._building[env_key] = thread
                thread.start()
        return None

    def _build(self, env_key: str, pip: dict[str, Any]) -> None:
        error: RuntimeEnvSetupError | None = None
        try:
            path = build_pip_env(os.path.join(self.root, f"pip-{env_key}"), pip)
        except RuntimeEnvSetupError as e:
            error = e
        except Exception as e:  # noqa: BLE001  (anything else still fails the env, not the node)
            error = RuntimeEnvSetupError("pip", f"building the environment failed: {e!r}",
                                         "see the node manager's log")
        with self._lock:
            self._building.pop(env_key, None)
            if error is None:
                self._ready[env_key] = path
            else:
                self._failed[env_key] = error
        if error is not None:
            log.warning("runtime_env pip-%s failed: %s", env_key, error.detail)
        self._on_done(env_key, error)

    def stop(self, timeout_s: float = 5.0) -> None:
        """The node is stopping: kill builds in flight and wait for their threads."""
        kill_builds()
        with self._lock:
            threads = list(self._building.values())
        for thread in threads:
            thread.join(timeout_s)


def build_pip_env(root: str, pip: dict[str, Any]) -> str:
    """Create (or reuse) the venv at ``root`` with ``pip["packages"]`` installed; returns
    its site-packages.

    Raises:
        RuntimeEnvSetupError: pip failed (its output is in the error).
    """
    os.makedirs(os.path.dirname(root), mode=0o700, exist_ok=True)
    with open(root + ".lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)  # another node manager may build the same env
        ready_mark = os.path.join(root, ".ready")
        site_dir = venv_site_packages(root)
        if os.path.exists(ready_mark):
            return site_dir
        shutil.rmtree(root, ignore_errors=True)  # a build that died half-way
        _run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", root],
             "python -m venv")
        os.makedirs(site_dir, exist_ok=True)
        with open(os.path.join(site_dir, "_ember_parent.pth"), "w") as f:
            for parent in parent_site_dirs():
                f.write(f"import site; site.addsitedir({parent!r})\n")
        python = os.path.join(root, "bin", "python")
        _run([sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check",
              "--no-input", *pip.get("pip_install_options", []), *pip["packages"]],
             f"pip install {' '.join(pip['packages'])}")
        with open(ready_mark, "w") as f:
            f.write("ok\n")
        return site_dir


#: Builds' child processes (venv, pip), killed if the node stops mid-build.
_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


def kill_builds() -> None:
    """The node is stopping: no pip may outlive it."""
    with _children_lock:
        for proc in _children:
            proc.kill()


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with _children_lock:
        _children.add(proc)
    try:
        output, _ = proc.communicate(timeout=PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        proc.kill()
        proc.communicate()
        raise RuntimeEnvSetupError("pip", f"`{what}` took longer than {PIP_TIMEOUT_S:g} s",
                                   "install fewer packages or raise EMBER_PIP_TIMEOUT_S") from e
    finally:
        with _children_lock:
            _children.discard(proc)
    if proc.returncode != 0:
        output = output[-PIP_OUTPUT_CHARS:]
        raise RuntimeEnvSetupError("pip", f"`{what}` exited with code {proc.returncode}",
                                   "check the package names and versions (pip's output is below)",
                                   output=output)

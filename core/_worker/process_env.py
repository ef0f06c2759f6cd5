"""A worker entering its process env (runtime_env ``working_dir``, ``py_modules``, ``pip``)
right after the fork, before it registers: every task it runs then sees it. Also the
per-call environment: a task's ``env_vars`` (restored after it) and its GPUs.

    sys.path = [pip env's site-packages (+ its .pth)] + [py_modules' parents]
               + [working_dir] + the job's sys.path
    cwd = working_dir;  VIRTUAL_ENV and PATH name the pip env (for subprocesses)

The pip env's own packages come first, so a pinned version wins over the node's; the
modules the fork server imported before the fork (numpy, cloudpickle, ember) stay loaded.
"""

from __future__ import annotations

import os
import site
import sys
from typing import Any


def enter_process_env(env: dict[str, Any] | None, site_dir: str) -> None:
    """Put the env's paths first on sys.path and start in its working_dir."""
    if not env:
        return
    front: list[str] = []
    if site_dir:
        before = list(sys.path)
        site.addsitedir(site_dir)  # runs its .pth files (the node's site dirs, editable installs)
        front += [entry for entry in sys.path if entry not in before]
        sys.path[:] = before
        venv = os.path.dirname(os.path.dirname(os.path.dirname(site_dir.rstrip(os.sep))))
        os.environ["VIRTUAL_ENV"] = venv
        os.environ["PATH"] = os.pathsep.join([os.path.join(venv, "bin"), os.environ.get("PATH", "")])
    for module in env.get("py_modules") or ():
        # A package directory or a .py file is imported by its name: its parent goes on the path.
        front.append(os.path.dirname(module.rstrip(os.sep)))
    working_dir = env.get("working_dir")
    if working_dir:
        front.append(working_dir)
        os.chdir(working_dir)
    sys.path[:] = list(dict.fromkeys(front + sys.path))


def apply_env_vars(env_vars: dict[str, str] | None) -> dict[str, str | None]:
    """Set a task's runtime_env variables; returns what to restore afterwards."""
    if not env_vars:
        return {}
    saved = {k: os.environ.get(k) for k in env_vars}
    os.environ.update(env_vars)
    return saved


def restore_env_vars(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def set_visible_gpus(gpu_ids: list[int]) -> None:
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)

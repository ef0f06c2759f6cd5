"""``runtime_env``: the parts ember supports, checked up front.

Supported: ``env_vars`` (job-wide from ``init``, or per task/actor), ``working_dir``
(a local directory: the job's workers start there and import from it) and
``worker_process_setup_hook`` (job-wide: a callable or a "module.function" path each
worker of the job runs once, before its first task). Keys that
install software (``pip``, ``conda``, ``uv``, ``py_modules``, ``container``...) are
refused with a clear error rather than silently ignored, as a program that relies on
them would otherwise fail far from the cause.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
from typing import Any, Callable

from ._client.function_export import export
from .exceptions import InvalidOptionError

SUPPORTED_KEYS = ("env_vars", "working_dir", "worker_process_setup_hook")

#: The environment variable that tells a worker which registered function is its job's
#: setup hook (the hex id of its export; see setup_hook_export).
SETUP_HOOK_ENV = "EMBER_WORKER_SETUP_HOOK"

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def validate_runtime_env(runtime_env: Any, where: str, allow_working_dir: bool) -> dict[str, Any]:
    """Returns a normalized copy: {"env_vars": {...}, "working_dir": abs path or None,
    "worker_process_setup_hook": callable, "module.function" or None}.

    Raises:
        InvalidOptionError: an unsupported key, or a value of the wrong shape.
    """
    if runtime_env is None:
        return {"env_vars": {}, "working_dir": None, "worker_process_setup_hook": None}
    if not isinstance(runtime_env, dict):
        raise InvalidOptionError(f"runtime_env for {where} must be a dict, got {type(runtime_env).__name__}")
    allowed = SUPPORTED_KEYS if allow_working_dir else ("env_vars",)
    for key in runtime_env:
        if key == "worker_process_setup_hook" and key not in allowed:
            raise InvalidOptionError(
                f"runtime_env['worker_process_setup_hook'] is job-wide: pass it to "
                f"ember.init(runtime_env={{'worker_process_setup_hook': ...}}), not to {where}")
        if key not in allowed:
            raise InvalidOptionError(
                f"runtime_env key {key!r} is not supported for {where}; ember supports "
                f"{', '.join(allowed)}. Install packages into the environment ember runs in instead.")
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in env_vars.items()):
        raise InvalidOptionError(f"runtime_env['env_vars'] for {where} must map str to str, got {env_vars!r}")
    working_dir = runtime_env.get("working_dir")
    if working_dir is not None:
        if not isinstance(working_dir, str) or not os.path.isdir(working_dir):
            raise InvalidOptionError(f"runtime_env['working_dir'] must be an existing local directory, "
                                     f"got {working_dir!r}")
        working_dir = os.path.abspath(working_dir)
    hook = runtime_env.get("worker_process_setup_hook")
    if hook is not None and not callable(hook) and not (isinstance(hook, str) and _DOTTED_PATH.match(hook)):
        raise InvalidOptionError(
            f"runtime_env['worker_process_setup_hook'] must be a callable taking no arguments or a "
            f"'module.function' path, got {hook!r}")
    return {"env_vars": dict(env_vars), "working_dir": working_dir, "worker_process_setup_hook": hook}


def call_by_path(path: str) -> Any:
    """Import ``module.function`` and call it (a setup hook given as a string)."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)()


def setup_hook_export(job_env: dict[str, Any]) -> tuple[bytes, bytes] | None:
    """The export (blob, id) of the job's setup hook, its id added to the job's env_vars
    so every worker of the job finds it; None without a hook.

    The driver registers the export right after it connects, before any task can run;
    a worker fetches and runs it before its first task (Worker.run_setup_hook).
    """
    hook = job_env.get("worker_process_setup_hook")
    if hook is None:
        return None
    target: Callable[[], Any] = functools.partial(call_by_path, hook) if isinstance(hook, str) else hook
    exported = export(target)
    job_env["env_vars"][SETUP_HOOK_ENV] = exported[1].hex()
    return exported


def hook_name(hook: Any) -> str:
    """How errors name a setup hook: its path, or the callable's qualified name."""
    if isinstance(hook, functools.partial) and hook.func is call_by_path:
        return repr(hook.args[0])
    return f"`{getattr(hook, '__qualname__', repr(hook))}`"

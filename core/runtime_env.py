"""``runtime_env``: the parts ember supports, checked up front.

Supported: ``env_vars`` (job-wide from ``init``, or per task/actor) and ``working_dir``
(a local directory: the job's workers start there and import from it). Keys that
install software (``pip``, ``conda``, ``uv``, ``py_modules``, ``container``...) are
refused with a clear error rather than silently ignored, as a program that relies on
them would otherwise fail far from the cause.
"""

from __future__ import annotations

import os
from typing import Any

from .exceptions import InvalidOptionError

SUPPORTED_KEYS = ("env_vars", "working_dir")


def validate_runtime_env(runtime_env: Any, where: str, allow_working_dir: bool) -> dict[str, Any]:
    """Returns a normalized copy: {"env_vars": {...}, "working_dir": abs path or None}.

    Raises:
        InvalidOptionError: an unsupported key, or a value of the wrong shape.
    """
    if runtime_env is None:
        return {"env_vars": {}, "working_dir": None}
    if not isinstance(runtime_env, dict):
        raise InvalidOptionError(f"runtime_env for {where} must be a dict, got {type(runtime_env).__name__}")
    allowed = SUPPORTED_KEYS if allow_working_dir else ("env_vars",)
    for key in runtime_env:
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
    return {"env_vars": dict(env_vars), "working_dir": working_dir}

"""``runtime_env``: the parts ember supports, checked up front.

Supported on ``init``, tasks and actors:

- ``env_vars``: set around each call of a task (for an actor's whole life).
- ``working_dir``: a local directory; its workers start there and import from it.
- ``py_modules``: local package directories or ``.py`` files importable in its workers.
- ``pip``: a list of requirements (or ``{"packages": [...], "pip_install_options": [...]}``),
  installed into a virtualenv per distinct set, built once per node and reused; the env
  sees every package of the node's own environment (ember included), its own first.
- ``worker_process_setup_hook`` (``init`` only: job-wide): a callable or a
  "module.function" path each worker of the job runs once, before its first task.

``working_dir``, ``py_modules`` and ``pip`` change the worker process itself, so tasks
and actors that use them run in workers of their own pool (the "process env", keyed by
``process_env_key``); ``env_vars`` only wrap a call. Other keys (``conda``, ``uv``,
``container``, ...) are refused with a clear error rather than silently ignored, as a
program that relies on them would otherwise fail far from the cause.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import re
from typing import Any, Callable

from ._client.function_export import export
from .exceptions import InvalidOptionError

SUPPORTED_KEYS = ("env_vars", "working_dir", "py_modules", "pip", "worker_process_setup_hook")
#: Keys that need a worker process of their own (a dedicated pool per distinct value).
PROCESS_KEYS = ("working_dir", "py_modules", "pip")
#: ``pip_install_options`` ember passes to pip; others could change where pip installs.
_PIP_OPTIONS_WITH_VALUE = ("--find-links", "-f", "--index-url", "-i", "--extra-index-url",
                           "--trusted-host", "--constraint", "-c")
_PIP_FLAGS = ("--no-index", "--no-cache-dir", "--pre", "--no-deps", "--upgrade", "-U",
              "--prefer-binary", "--only-binary=:all:", "--no-build-isolation")

#: The environment variable that tells a worker which registered function is its job's
#: setup hook (the hex id of its export; see setup_hook_export).
SETUP_HOOK_ENV = "EMBER_WORKER_SETUP_HOOK"

_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def validate_runtime_env(runtime_env: Any, where: str, job_wide: bool = False) -> dict[str, Any]:
    """Returns a normalized copy: {"env_vars": {...}, "working_dir": abs path or None,
    "py_modules": [abs paths], "pip": {"packages": [...], "pip_install_options": [...]} or None,
    "worker_process_setup_hook": callable, "module.function" or None}.

    ``job_wide``: for ``ember.init`` (the only place a setup hook may be given).

    Raises:
        InvalidOptionError: an unsupported key, or a value of the wrong shape.
    """
    if runtime_env is None:
        return {"env_vars": {}, "working_dir": None, "py_modules": [], "pip": None,
                "worker_process_setup_hook": None}
    if not isinstance(runtime_env, dict):
        raise InvalidOptionError(f"runtime_env for {where} must be a dict, got {type(runtime_env).__name__}")
    for key in runtime_env:
        if key == "worker_process_setup_hook" and not job_wide:
            raise InvalidOptionError(
                f"runtime_env['worker_process_setup_hook'] is job-wide: pass it to "
                f"ember.init(runtime_env={{'worker_process_setup_hook': ...}}), not to {where}")
        if key not in SUPPORTED_KEYS:
            raise InvalidOptionError(
                f"runtime_env key {key!r} is not supported for {where}; ember supports "
                f"{', '.join(SUPPORTED_KEYS)}. Install other software into the environment ember runs in.")
    env_vars = runtime_env.get("env_vars") or {}
    if not isinstance(env_vars, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in env_vars.items()):
        raise InvalidOptionError(f"runtime_env['env_vars'] for {where} must map str to str, got {env_vars!r}")
    working_dir = runtime_env.get("working_dir")
    if working_dir is not None:
        if not isinstance(working_dir, str) or not os.path.isdir(working_dir):
            raise InvalidOptionError(f"runtime_env['working_dir'] for {where} must be an existing local "
                                     f"directory, got {working_dir!r}")
        working_dir = os.path.abspath(working_dir)
    hook = runtime_env.get("worker_process_setup_hook")
    if hook is not None and not callable(hook) and not (isinstance(hook, str) and _DOTTED_PATH.match(hook)):
        raise InvalidOptionError(
            f"runtime_env['worker_process_setup_hook'] must be a callable taking no arguments or a "
            f"'module.function' path, got {hook!r}")
    return {"env_vars": dict(env_vars), "working_dir": working_dir,
            "py_modules": _py_modules(runtime_env.get("py_modules"), where),
            "pip": _pip(runtime_env.get("pip"), where), "worker_process_setup_hook": hook}


def _py_modules(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)) or not all(isinstance(m, str) for m in value):
        raise InvalidOptionError(f"runtime_env['py_modules'] for {where} must be a list of local paths "
                                 f"(package directories or .py files), got {value!r}")
    out = []
    for module in value:
        if not (os.path.isdir(module) or (os.path.isfile(module) and module.endswith(".py"))):
            raise InvalidOptionError(f"runtime_env['py_modules'] for {where}: {module!r} is not a local "
                                     "package directory or .py file; pass paths that exist on this machine")
        out.append(os.path.abspath(module))
    return out


def _pip(value: Any, where: str) -> dict[str, list[str]] | None:
    if value is None or value == []:
        return None
    if isinstance(value, (list, tuple)):
        value = {"packages": list(value)}
    if not isinstance(value, dict) or set(value) - {"packages", "pip_install_options", "pip_check",
                                                   "pip_version"}:
        raise InvalidOptionError(f"runtime_env['pip'] for {where} must be a list of requirements or "
                                 f"{{'packages': [...], 'pip_install_options': [...]}}, got {value!r}")
    packages = value.get("packages")
    if (not isinstance(packages, (list, tuple)) or not packages
            or not all(isinstance(r, str) and r.strip() and not r.startswith("-") for r in packages)):
        raise InvalidOptionError(f"runtime_env['pip']['packages'] for {where} must be a non-empty list "
                                 f"of requirement strings (e.g. ['requests==2.31']), got {packages!r}")
    options = list(value.get("pip_install_options") or [])
    i = 0
    while i < len(options):
        option = options[i]
        if not isinstance(option, str):
            raise InvalidOptionError(f"runtime_env['pip']['pip_install_options'] must hold strings, got {option!r}")
        name = option.split("=", 1)[0]
        if name in _PIP_OPTIONS_WITH_VALUE:
            i += 1 if "=" in option else 2
            continue
        if option not in _PIP_FLAGS:
            raise InvalidOptionError(
                f"runtime_env['pip']['pip_install_options'] for {where}: {option!r} is not allowed; "
                f"ember passes {', '.join(_PIP_FLAGS + _PIP_OPTIONS_WITH_VALUE)}")
        i += 1
    if i > len(options):
        raise InvalidOptionError(f"runtime_env['pip']['pip_install_options'] for {where}: "
                                 f"{options[-1]!r} needs a value")
    return {"packages": [r.strip() for r in packages], "pip_install_options": options}


def process_env(env: dict[str, Any]) -> dict[str, Any] | None:
    """The part of a normalized runtime_env that needs workers of its own, or None."""
    part = {k: env[k] for k in PROCESS_KEYS if env.get(k)}
    return part or None


def process_env_key(part: dict[str, Any] | None) -> str:
    """A stable key per distinct process env ("" for none): its worker pool and venv name."""
    if not part:
        return ""
    canonical = json.dumps(part, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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

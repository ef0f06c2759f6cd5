"""ember: a Ray-compatible runtime for distributed machine learning in Python.

The core API (``init``, ``remote``, ``get``, ...) is imported eagerly; the libraries
(``ember.data``, ``ember.train``, ``ember.tune``, ``ember.serve``, ``ember.rl``) and
``ember.util`` are imported on first attribute access, so ``import ember`` stays fast while
``import ember; ember.data.range(3)`` and ``from ember import serve`` both work.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import exceptions
from .actor import ActorClass, ActorHandle
from .api import (available_resources, cancel, cluster_resources, exit_actor, get, get_actor,
                  get_gpu_ids, get_runtime_context, init, is_initialized, kill, method, nodes,
                  object_store_stats, put, remote, shutdown, wait)
from .object_ref import ObjectRef
from .object_ref_generator import DynamicObjectRefGenerator, ObjectRefGenerator
from .remote_function import RemoteFunction
from . import _version

__version__ = _version.__version__

__all__ = [
    "ActorClass", "ActorHandle", "DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator",
    "RemoteFunction", "available_resources", "cancel",
    "cluster_resources", "exceptions", "exit_actor", "get", "get_actor", "get_gpu_ids",
    "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes",
    "object_store_stats", "put", "remote", "shutdown", "timeline", "wait",
]

# Subpackages loaded on first access: each pulls in heavy dependencies (pandas, pyarrow,
# torch, starlette, gymnasium) that a plain ``import ember`` must not pay for.
_LAZY_SUBPACKAGES = frozenset({"data", "util", "train", "tune", "serve", "rl", "exceptions",
                               "experimental", "cloudpickle"})


# Functions whose module (and what it imports) loads on first use: ``timeline`` needs the
# state client, which a plain ``import ember`` must not pay for either.
_LAZY_FUNCTIONS = {"timeline": "._client.timeline"}


def __getattr__(name: str) -> Any:
    """Import ``ember.<name>`` on first access for the library subpackages and the lazy
    functions (PEP 562)."""
    if name in _LAZY_SUBPACKAGES:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_FUNCTIONS:
        function = getattr(importlib.import_module(_LAZY_FUNCTIONS[name], __name__), name)
        globals()[name] = function
        return function
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the eager names and the lazily imported ones alike."""
    return sorted(set(globals()) | _LAZY_SUBPACKAGES | set(_LAZY_FUNCTIONS))

"""How a function or actor class travels to workers: by name when importable, else by value.

Ray's rule (SEMANTICS.md): workers import the driver's modules, so a function defined
in a module next to the driver runs as that module's code — with real file names and
source lines in tracebacks. Functions from ``__main__``, notebooks or closures travel
by value (cloudpickle). The by-value copy also rides along as a fallback for modules a
worker cannot import.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import sys
from typing import Any

import cloudpickle

from .._wire import protocol as p
from .runtime import Runtime


def _attribute_path(target: Any) -> tuple[str, str] | None:
    """(module, qualname) if importing that path gives back ``target``'s wrapper."""
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname or module not in sys.modules:
        return None
    obj: Any = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    unwrapped = getattr(obj, "_function", getattr(obj, "_cls", obj))
    return (module, qualname) if unwrapped is target else None


def load_exported(module: str | None, qualname: str | None, by_value: bytes) -> Any:
    """Worker side: import by name, or fall back to the by-value copy."""
    if module is not None:
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            return getattr(obj, "_function", getattr(obj, "_cls", obj))
        except Exception:  # not importable in the worker: the by-value copy still runs
            pass
    return cloudpickle.loads(by_value)


class _Exported:
    """What the function registry stores: a by-name path, with the by-value copy as the
    fallback; unpickling it loads the target."""

    __slots__ = ("module", "qualname", "by_value")

    def __init__(self, module: str | None, qualname: str | None, by_value: bytes) -> None:
        self.module, self.qualname, self.by_value = module, qualname, by_value

    def __reduce__(self) -> Any:
        return (load_exported, (self.module, self.qualname, self.by_value))


def register(rt: Runtime, exported: tuple[bytes, bytes]) -> bytes:
    """Make an exported function or class known to the cluster once per runtime; its id."""
    blob, content_id = exported
    if content_id not in rt.registered_functions:
        rt.call(lambda rid: p.RegisterFunction(rid, content_id, blob))
        rt.registered_functions.add(content_id)
    return content_id


def export(target: Any) -> tuple[bytes, bytes]:
    """Returns (blob for the registry, content id). Loading the blob yields ``target``."""
    by_value = cloudpickle.dumps(target)
    path = _attribute_path(target)
    module, qualname = path if path is not None else (None, None)
    blob = pickle.dumps(_Exported(module, qualname, by_value), protocol=5)
    return blob, hashlib.blake2b(blob, digest_size=16).digest()

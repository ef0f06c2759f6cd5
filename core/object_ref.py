"""ObjectRef: a handle to a value that exists (or will) somewhere in the cluster."""

from __future__ import annotations

from typing import Any

from . import serialization

#: Set by runtime.py; the process's runtime, which counts live refs.
_runtime_hooks: Any = None


class ObjectRef:
    """A reference to an object, as returned by ``f.remote()`` and ``ember.put``.

    Refs are cheap to copy and to pass to tasks. While any ref to an object exists
    anywhere in the cluster, the object stays alive.
    """

    __slots__ = ("id", "_rt", "__weakref__")

    def __init__(self, object_id: bytes, _counted: bool = False) -> None:
        self.id = object_id
        self._rt = _runtime_hooks
        if self._rt is not None and not _counted:
            self._rt.incref(object_id)

    def __del__(self) -> None:
        rt = self._rt
        if rt is not None:
            rt.releases.append(self.id)

    def __reduce__(self) -> Any:
        serialization.note_contained(self)
        rt = self._rt
        return (_rebuild_ref, (self.id, rt.home_of(self.id) if rt is not None else None))

    def hex(self) -> str:
        return self.id.hex()

    def binary(self) -> bytes:
        return self.id

    def task_id(self) -> bytes:
        return self.id[:12]

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other.id == self.id

    def __repr__(self) -> str:
        return f"ObjectRef({self.id.hex()})"

    def __await__(self) -> Any:
        return self.future().__await__()

    def future(self) -> Any:
        """An asyncio future resolving to the value (for ``await ref`` in async actors)."""
        import asyncio
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, _get_one, self)


def _get_one(ref: ObjectRef) -> Any:
    from .api import get
    return get(ref)


def _rebuild_ref(object_id: bytes, home: str | None = None) -> ObjectRef:
    rt = _runtime_hooks
    if rt is not None:
        rt.borrow(object_id, home)
        return ObjectRef(object_id, _counted=True)
    return ObjectRef(object_id)

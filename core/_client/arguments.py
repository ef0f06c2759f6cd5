"""A call's arguments, both ways: packed by the caller, unpacked by the worker.

    caller: (args, kwargs) -> top-level refs become Placeholder(i) + dependency ids,
            the rest is pickled once (inline, or put in the store when large)
    worker: payload + the dependencies' values -> (args, kwargs) with each Placeholder
            replaced by the value of dependency i
"""

from __future__ import annotations

from typing import Any

from ..exceptions import SerializationError
from .._wire.ids import ARGS_INDEX, object_id
from ..object_ref import ObjectRef
from .object_entry import INLINE_MAX_BYTES
from .runtime import Runtime
from .._wire.serialization import Serialized, serialize

#: A packed call: inline bytes, ("stored", (object id, home node)) when too large, or
#: None for a call without arguments.
Payload = bytes | bytearray | tuple | None


class Placeholder:
    """Stands for top-level ref argument ``index`` inside the pickled (args, kwargs)."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> Any:
        return (Placeholder, (self.index,))


def encode_args(rt: Runtime, args: tuple, kwargs: dict, what: str
                ) -> tuple[Payload, list[bytes], list[object]]:
    """Returns (payload, dependency ids, refs to hold until the call is done).

    Top-level ObjectRefs are resolved to values before the call runs (Ray's rule);
    refs nested deeper travel as refs. Arguments too large to travel inline are put
    in the object store once and passed by reference.

    Raises:
        SerializationError: an argument cannot be pickled (the message names it).
    """
    if not args and not kwargs:
        return None, [], []
    deps: list[bytes] = []
    held: list[object] = []

    def swap(value: Any) -> Any:
        if isinstance(value, ObjectRef):
            deps.append(value.id)
            held.append(value)
            return Placeholder(len(deps) - 1)
        return value

    args2 = tuple(swap(a) for a in args)
    kwargs2 = {k: swap(v) for k, v in kwargs.items()}
    ser = _serialize_args(args2, kwargs2, what)
    if ser.contained:
        rt.objects.share(ser.contained)
        held.extend(ser.contained)
    if ser.total_bytes <= INLINE_MAX_BYTES and not ser.contained:
        return ser.to_bytes(), deps, held
    oid = object_id(rt.next_task_id(), ARGS_INDEX)
    rt.objects.put_serialized(oid, ser)
    held.append(ObjectRef(oid))
    return ("stored", (oid, rt.node_tcp_address)), deps, held


def decode_args(rt: Runtime, payload: Payload, deps: list[tuple[str, Any]]) -> tuple[tuple, dict]:
    """The worker side of ``encode_args``: the call's (args, kwargs) with every top-level
    ref replaced by its value (``deps``: how each travelled, inline or stored)."""
    if payload is None:
        return (), {}
    objects = rt.objects
    values = []
    for kind, value in deps:
        if kind == "inline":
            values.append(objects.deserialize(value))
        else:
            values.append(objects.deserialize(objects.fetch_stored(*value)))
    if isinstance(payload, tuple):  # ("stored", (oid, home)): too big to travel inline
        payload = objects.fetch_stored(*payload[1])
    args, kwargs = objects.deserialize(payload)
    if values:
        args = tuple(values[a.index] if isinstance(a, Placeholder) else a for a in args)
        kwargs = {k: values[v.index] if isinstance(v, Placeholder) else v for k, v in kwargs.items()}
    return args, kwargs


def _serialize_args(args: tuple, kwargs: dict, what: str) -> Serialized:
    try:
        return serialize((args, kwargs), what=f"the arguments of {what}")
    except SerializationError:
        # Name the culprit: try each argument alone.
        for i, a in enumerate(args):
            serialize(a, what=f"argument {i} of {what}")
        for k, v in kwargs.items():
            serialize(v, what=f"argument {k!r} of {what}")
        raise

"""Packing a call's arguments: top-level refs become dependencies, the rest is pickled."""

from __future__ import annotations

from typing import Any

from .object_ref import ObjectRef
from .runtime import INLINE_MAX_BYTES, Runtime
from .serialization import serialize
from .submitter import Placeholder


def encode_args(rt: Runtime, args: tuple, kwargs: dict, what: str
                ) -> tuple[bytes | bytearray | tuple | None, list[bytes], list[Any]]:
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
    held: list[Any] = []

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
        rt.share(ser.contained)
        held.extend(ser.contained)
    if ser.total_bytes <= INLINE_MAX_BYTES and not ser.contained:
        return ser.to_bytes(), deps, held
    ref = rt.put_serialized(rt.next_task_id() + b"\xfe\xff\xff\xff", ser)
    held.append(ref)
    return ("stored", (ref.id, rt.node_tcp_address)), deps, held


def _serialize_args(args: tuple, kwargs: dict, what: str) -> Any:
    from .exceptions import SerializationError
    try:
        return serialize((args, kwargs), what=f"the arguments of {what}")
    except SerializationError:
        # Name the culprit: try each argument alone.
        for i, a in enumerate(args):
            serialize(a, what=f"argument {i} of {what}")
        for k, v in kwargs.items():
            serialize(v, what=f"argument {k!r} of {what}")
        raise

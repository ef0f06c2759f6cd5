"""Values to bytes and back: cloudpickle with numpy/Arrow buffers out of band.

Layout of a serialized value (the same inline in a message or in a shared-memory
segment, so one reader serves both):

    [flags u32][nbuf u32][header_len u64] [nbuf x (offset u64, length u64)] [header]
    [pad to 64] [buffer 0] [pad to 64] [buffer 1] ...

Buffers are 64-byte aligned so numpy views of the store are aligned for SIMD. Reading
a stored value maps the segment and hands ``pickle.loads`` memoryviews of it: numpy
arrays come back as read-only views of shared memory, with no copy.
"""

from __future__ import annotations

import pickle
import struct
import threading
from typing import Any

import cloudpickle

from ..exceptions import SerializationError

_PREFIX = struct.Struct("<IIQ")
_SLOT = struct.Struct("<QQ")
_ALIGN = 64
FLAG_ERROR = 1

_context = threading.local()


def _align(n: int) -> int:
    return (n + _ALIGN - 1) & ~(_ALIGN - 1)


class Serialized:
    """A value ready to be written inline or into a shared-memory segment."""

    __slots__ = ("header", "buffers", "contained", "flags", "total_bytes", "_offsets")

    def __init__(self, header: bytes, buffers: list[pickle.PickleBuffer], contained: list[Any],
                 flags: int) -> None:
        self.header = header
        self.buffers = [b.raw() for b in buffers]
        #: ObjectRefs and ActorHandles pickled inside the value; their owner must keep
        #: them alive for as long as this value exists.
        self.contained = contained
        self.flags = flags
        pos = _PREFIX.size + _SLOT.size * len(self.buffers) + len(header)
        offsets = []
        for buf in self.buffers:
            pos = _align(pos)
            offsets.append(pos)
            pos += buf.nbytes
        self._offsets = offsets
        self.total_bytes = pos

    def write_into(self, out: memoryview) -> None:
        """Write the layout into ``out`` (at least ``total_bytes`` long)."""
        _PREFIX.pack_into(out, 0, self.flags, len(self.buffers), len(self.header))
        pos = _PREFIX.size
        for off, buf in zip(self._offsets, self.buffers):
            _SLOT.pack_into(out, pos, off, buf.nbytes)
            pos += _SLOT.size
        out[pos:pos + len(self.header)] = self.header
        for off, buf in zip(self._offsets, self.buffers):
            out[off:off + buf.nbytes] = buf

    def to_bytes(self) -> bytearray:
        out = bytearray(self.total_bytes)
        self.write_into(memoryview(out))
        return out


def serialize(value: Any, flags: int = 0, what: str = "value") -> Serialized:
    """Pickle ``value``, collecting its large buffers and the refs it contains.

    Raises:
        SerializationError: the value (named by ``what``) cannot be pickled.
    """
    buffers: list[pickle.PickleBuffer] = []
    outer = getattr(_context, "contained", None)
    contained: list[Any] = []
    _context.contained = contained
    try:
        header = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    except Exception as e:
        raise SerializationError(
            f"could not serialize {what} of type {type(value).__name__}: {e}. Objects holding "
            "locks, sockets, open files or generators cannot travel between processes; create "
            "them inside the task or actor instead.") from e
    finally:
        _context.contained = outer
    return Serialized(header, buffers, contained, flags)


def note_contained(obj: Any) -> bool:
    """Called from an ObjectRef's or ActorHandle's ``__reduce__``; False when the value is
    pickled outside ``serialize`` (by the user's own pickler: nothing keeps ``obj`` alive
    for those bytes)."""
    contained = getattr(_context, "contained", None)
    if contained is None:
        return False
    contained.append(obj)
    return True


def read_flags(data: memoryview | bytes | bytearray) -> int:
    return _PREFIX.unpack_from(data)[0]


def deserialize(data: memoryview | bytes | bytearray) -> Any:
    """Rebuild a value from its layout; buffers become views of ``data``.

    Raises:
        SerializationError: the bytes cannot be unpickled here (e.g. a module missing).
    """
    # Read-only whatever the bytes came in (a store mapping, or a message's bytearray):
    # numpy arrays from ``get`` are read-only views everywhere, in drivers and tasks, as in
    # Ray, so code that works on small values does not break when they grow.
    view = memoryview(data).toreadonly()
    _flags, nbuf, header_len = _PREFIX.unpack_from(view)
    pos = _PREFIX.size
    buffers = []
    for _ in range(nbuf):
        off, length = _SLOT.unpack_from(view, pos)
        buffers.append(view[off:off + length])
        pos += _SLOT.size
    try:
        return pickle.loads(view[pos:pos + header_len], buffers=buffers)
    except Exception as e:
        raise SerializationError(f"could not deserialize a value: {type(e).__name__}: {e}") from e

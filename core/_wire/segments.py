"""Shared-memory segments: one memfd per stored object.

The creator writes the value into a fresh memfd and hands the descriptor to the node
manager over the Unix socket; readers receive a duplicate descriptor and map it
read-only. The kernel frees the memory when the last descriptor and mapping go, so a
crashed process never leaks shared memory and there is nothing to unlink.
"""

from __future__ import annotations

import mmap
import os

from .serialization import Serialized


def create_segment(value: Serialized | bytes | bytearray) -> int:
    """Write a serialized value into a new memfd; returns its descriptor (caller closes)."""
    size = value.total_bytes if isinstance(value, Serialized) else len(value)
    fd = os.memfd_create("ember-object", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, max(size, 1))
        if isinstance(value, Serialized):
            value.write_to_fd(fd)
        else:
            os.pwrite(fd, value, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def map_segment(fd: int, size: int) -> memoryview:
    """Map a segment read-only; the mapping outlives ``fd`` (closed here)."""
    try:
        mm = mmap.mmap(fd, max(size, 1), prot=mmap.PROT_READ)
    finally:
        os.close(fd)
    return memoryview(mm)[:size]

"""Where spilled objects go: one anonymous file per node in ``<session>/spill``.

The file is opened with ``O_TMPFILE`` (or created and unlinked at once where the file
system cannot), so it has no name: the kernel frees its blocks when the node manager's
descriptor closes, even after a SIGKILL, and nothing is left in the session directory.
Objects are written whole, each with one large sequential ``pwrite``, into extents of
the file handed out like arena blocks; ``capacity_bytes`` bounds the disk it may take.
The file shrinks back to nothing whenever it empties.

Reads and writes happen on the object service's spill thread, never under the node lock.
"""

from __future__ import annotations

import os
import shutil

from .arena import Extents

#: One pwrite/preadv moves at most ~2 GiB on Linux; larger objects go in pieces.
_IO_BYTES = 1 << 30


def default_spill_bytes(directory: str) -> int:
    """Half of the free disk under ``directory`` (``EMBER_MAX_SPILL_BYTES`` overrides)."""
    configured = os.environ.get("EMBER_MAX_SPILL_BYTES")
    if configured:
        return int(configured)
    return shutil.disk_usage(directory).free // 2


class SpillFile:
    """Extents of one unnamed file: ``alloc``/``free`` under the node lock, I/O outside it."""

    def __init__(self, directory: str, capacity_bytes: int) -> None:
        self.directory = directory
        self.extents = Extents(capacity_bytes)
        self.capacity_bytes = self.extents.capacity_bytes
        try:
            self.fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:  # no O_TMPFILE on this file system: a name that lives for a moment
            path = os.path.join(directory, f"spill-{os.getpid()}")
            self.fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR | os.O_CLOEXEC, 0o600)
            os.unlink(path)

    @property
    def used_bytes(self) -> int:
        return self.extents.capacity_bytes - self.extents.free_bytes

    def alloc(self, size: int) -> int | None:
        return self.extents.alloc(size)

    def free(self, offset: int, size: int) -> None:
        self.extents.free(offset, size)
        if self.extents.free_bytes == self.extents.capacity_bytes:
            os.ftruncate(self.fd, 0)  # empty again: give the disk back

    def write(self, offset: int, data: memoryview) -> None:
        """Write ``data`` at ``offset`` (spill thread). Raises OSError (e.g. ENOSPC)."""
        done = 0
        while done < data.nbytes:
            written = os.pwrite(self.fd, data[done:done + _IO_BYTES], offset + done)
            if written == 0:
                raise OSError("the spill file took no bytes")
            done += written

    def read_into(self, offset: int, out: memoryview) -> None:
        """Fill ``out`` from ``offset`` (spill thread). Raises OSError on a short file."""
        done = 0
        while done < out.nbytes:
            got = os.preadv(self.fd, [out[done:done + _IO_BYTES]], offset + done)
            if got == 0:
                raise OSError("the spill file ended early")
            done += got

    def close(self) -> None:
        os.close(self.fd)

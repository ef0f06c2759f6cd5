"""The node manager's object table: sealed segments, pending objects, and references.

Each object's segment is a memfd held open here while anything references the
object. References are holder sets: a process (by worker id) holds an id at most
once, and an object that contains refs holds each of them until it is freed itself.
Ids of actors live in the same table, so an actor handle keeps its actor alive the
same way a ref keeps its object alive.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Literal

from .._types import ObjectID
from ..exceptions import ObjectLostError, ObjectStoreFullError

#: Holder of copies pulled from other nodes: nobody's; evicted first when room is needed.
CACHE_HOLDER = b"cache"

#: Called with ("sealed", entry) or ("failed", error) when a waited-for object settles.
Waiter = Callable[[str, object], None]


@dataclass
class ObjectEntry:
    """One object in the node's store: its memfd (or spill file), owner and waiters."""
    object_id: ObjectID
    state: Literal["pending", "sealed", "failed"] = "pending"
    fd: int = -1
    size: int = 0
    flags: int = 0
    owner: bytes = b""
    contained: list[bytes] = field(default_factory=list)
    error: object = None
    waiters: list[Waiter] = field(default_factory=list)
    last_access: float = 0.0
    #: Path of the on-disk copy while the object is spilled (fd == -1 then).
    spilled_path: str | None = None
    #: Being written to disk outside the node's lock: counted as spilled already, still
    #: served from ``fd`` until the write finishes (``finish_spill``).
    spilling: bool = False


class ObjectTable:
    """Objects and references of one node. Not thread-safe: the node manager locks."""

    def __init__(self, capacity_bytes: int, spill_dir: str | None = None) -> None:
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self.spill_dir = spill_dir
        self.spilled_bytes = 0
        self.objects: dict[ObjectID, ObjectEntry] = {}
        self._holders: dict[bytes, set[bytes]] = defaultdict(set)
        self._held_by: dict[bytes, set[bytes]] = defaultdict(set)
        #: Called with an id whose last holder went away and that is not an object here.
        self.on_unreferenced: Callable[[bytes], None] = lambda _id: None
        #: Called (lock held) with an entry to write to disk, a dup of its fd and the path;
        #: the caller writes it without the lock and then calls ``finish_spill``. None:
        #: spill synchronously (plain-call use without a node manager).
        self.spill_later: Callable[[ObjectEntry, int, str], None] | None = None

    # --- objects ---------------------------------------------------------------------

    def declare(self, object_id: ObjectID, owner: bytes) -> None:
        """A pending object that borrowers may wait for until its owner seals it."""
        if object_id not in self.objects:
            self.objects[object_id] = ObjectEntry(object_id, owner=owner)
        self.add_ref(object_id, owner)

    def seal(self, object_id: ObjectID, fd: int, size: int, flags: int, holder: bytes,
             contained: list[bytes]) -> list[tuple[Waiter, ObjectEntry]]:
        """Store a segment. Re-sealing a sealed object (a retried task) keeps the first copy.

        Raises:
            ObjectStoreFullError: the segment does not fit in the remaining capacity.
        """
        entry = self.objects.get(object_id)
        if entry is not None and entry.state == "sealed":
            os.close(fd)
            self.add_ref(object_id, holder)
            return []
        if not self._make_room(size, keep=object_id):
            os.close(fd)
            raise ObjectStoreFullError(size, self.used_bytes, self.capacity_bytes)
        if entry is None:
            entry = self.objects[object_id] = ObjectEntry(object_id, owner=holder)
        entry.state, entry.fd, entry.size, entry.flags = "sealed", fd, size, flags
        entry.contained = list(contained)
        entry.last_access = time.monotonic()
        self.used_bytes += size
        for inner in entry.contained:
            self.add_ref(inner, object_id)
        self.add_ref(object_id, holder)
        fired = [(w, entry) for w in entry.waiters]
        entry.waiters.clear()
        return fired

    def wait(self, object_id: ObjectID, waiter: Waiter) -> ObjectEntry | None:
        """The entry if settled now; else ``waiter`` is called when it settles."""
        entry = self.objects.get(object_id)
        if entry is None:
            return ObjectEntry(object_id, state="failed", error=ObjectLostError(
                object_id.hex(), "no reference to it was left, so it was freed"))
        if entry.state != "pending":
            entry.last_access = time.monotonic()
            if entry.spilled_path is not None:
                self._restore(entry)
            return entry
        entry.waiters.append(waiter)
        return None

    def fail_owned_by(self, owner: bytes, make_error: Callable[[ObjectID], object]
                      ) -> list[tuple[Waiter, ObjectEntry]]:
        """The owner died: its objects that will never be sealed fail for every waiter."""
        fired = []
        for entry in self.objects.values():
            if entry.state == "pending" and entry.owner == owner:
                entry.state, entry.error = "failed", make_error(entry.object_id)
                fired += [(w, entry) for w in entry.waiters]
                entry.waiters.clear()
        return fired

    # --- references ------------------------------------------------------------------

    def add_ref(self, ref_id: bytes, holder: bytes) -> None:
        self._holders[ref_id].add(holder)
        self._held_by[holder].add(ref_id)

    def remove_ref(self, ref_id: bytes, holder: bytes) -> None:
        holders = self._holders.get(ref_id)
        if holders is None or holder not in holders:
            return
        holders.discard(holder)
        held = self._held_by.get(holder)
        if held is not None:
            held.discard(ref_id)
            if not held:
                del self._held_by[holder]
        if not holders:
            del self._holders[ref_id]
            self._free(ref_id)

    def release_holder(self, holder: bytes) -> None:
        """A process exited: drop every reference it held."""
        for ref_id in list(self._held_by.get(holder, ())):
            self.remove_ref(ref_id, holder)

    def holders_of(self, ref_id: bytes) -> set[bytes]:
        return set(self._holders.get(ref_id, ()))

    def _free(self, ref_id: bytes) -> None:
        entry = self.objects.get(ref_id)
        if entry is None:
            self.on_unreferenced(ref_id)
            return
        del self.objects[ref_id]
        if entry.waiters:
            error = ObjectLostError(ref_id.hex(), "its last reference was dropped before it was sealed")
            entry.state, entry.error = "failed", error
            for waiter in entry.waiters:
                waiter("failed", entry)
            entry.waiters.clear()
        if entry.state == "sealed":
            if entry.spilled_path is not None:
                os.remove(entry.spilled_path)
                self.spilled_bytes -= entry.size
            elif entry.spilling:  # the writer removes its file when it finishes
                os.close(entry.fd)
                self.spilled_bytes -= entry.size
            else:
                os.close(entry.fd)
                self.used_bytes -= entry.size
            for inner in entry.contained:
                self.remove_ref(inner, ref_id)

    # --- spilling --------------------------------------------------------------------

    def _make_room(self, size: int, keep: ObjectID) -> bool:
        """Drop cached copies of remote objects, then spill least-recently-used objects,
        until ``size`` more bytes fit."""
        if self.used_bytes + size <= self.capacity_bytes:
            return True
        if size > self.capacity_bytes:
            return False
        victims = sorted((e for e in self.objects.values()
                          if e.state == "sealed" and e.spilled_path is None and not e.spilling
                          and e.object_id != keep),
                         key=lambda e: (self._holders.get(e.object_id) != {CACHE_HOLDER}, e.last_access))
        for victim in victims:
            if self._holders.get(victim.object_id) == {CACHE_HOLDER}:
                self.remove_ref(victim.object_id, CACHE_HOLDER)
            elif self.spill_dir is not None:
                self._spill(victim)
            else:
                break
            if self.used_bytes + size <= self.capacity_bytes:
                return True
        return False

    def _spill(self, entry: ObjectEntry) -> None:
        # Readers that mapped the segment keep their pages; new readers get a restored copy.
        path = os.path.join(self.spill_dir, entry.object_id.hex())
        if self.spill_later is not None:
            # Written to disk by the node manager's spill thread, not under its lock: the
            # room counts as made now (the pages go once the write is done).
            entry.spilling = True
            self.used_bytes -= entry.size
            self.spilled_bytes += entry.size
            self.spill_later(entry, os.dup(entry.fd), path)
            return
        with open(path, "wb") as out:
            offset = 0
            while offset < entry.size:
                offset += os.sendfile(out.fileno(), entry.fd, offset, entry.size - offset)
        os.close(entry.fd)
        entry.fd, entry.spilled_path = -1, path
        self.used_bytes -= entry.size
        self.spilled_bytes += entry.size

    def finish_spill(self, entry: ObjectEntry, path: str, ok: bool) -> None:
        """The spill thread wrote ``entry`` to ``path`` (``ok``) or failed (lock held)."""
        if self.objects.get(entry.object_id) is not entry or not entry.spilling:
            if ok:
                os.remove(path)  # freed while it was being written
            return
        entry.spilling = False
        if ok:
            os.close(entry.fd)
            entry.fd, entry.spilled_path = -1, path
        else:  # still in memory after all
            self.spilled_bytes -= entry.size
            self.used_bytes += entry.size

    def _restore(self, entry: ObjectEntry) -> None:
        # Restore even if nothing more can be spilled: a reader is waiting, and being
        # over budget by one object beats failing a get that Ray would serve.
        self._make_room(entry.size, keep=entry.object_id)
        fd = os.memfd_create("ember-object", os.MFD_CLOEXEC)
        with open(entry.spilled_path, "rb") as src:
            os.ftruncate(fd, max(entry.size, 1))
            offset = 0
            while offset < entry.size:
                offset += os.sendfile(fd, src.fileno(), offset, entry.size - offset)
        os.remove(entry.spilled_path)
        entry.fd, entry.spilled_path = fd, None
        self.used_bytes += entry.size
        self.spilled_bytes -= entry.size

    def stats(self) -> dict[str, object]:
        sealed = [e for e in self.objects.values() if e.state == "sealed"]
        largest = sorted(sealed, key=lambda e: e.size, reverse=True)[:10]
        return {
            "capacity_bytes": self.capacity_bytes,
            "used_bytes": self.used_bytes,
            "num_objects": len(sealed),
            "spilled_bytes": self.spilled_bytes,
            "num_spilled": sum(1 for e in sealed if e.spilled_path is not None or e.spilling),
            "largest": [(e.object_id.hex(), e.size, sorted(h.hex() for h in self.holders_of(e.object_id)))
                        for e in largest],
            "largest_objects": [{"object_id": e.object_id.hex(), "size_bytes": e.size,
                                 "spilled": e.spilled_path is not None,
                                 "holders": sorted(h.hex() for h in self.holders_of(e.object_id))}
                                for e in largest],
        }

    def close(self) -> None:
        for entry in self.objects.values():
            if entry.state == "sealed" and entry.spilled_path is None:
                os.close(entry.fd)
        self.objects.clear()

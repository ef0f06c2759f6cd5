"""The node's object table vocabulary: an object's entry (where its bytes are, who waits)
and the arena block that holds it, shared by the table (object_store), its spilling
(spilling) and transfers between nodes (object_transfer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from .._types import ObjectID

#: Holder of copies pulled from other nodes: nobody's; evicted first when room is needed.
CACHE_HOLDER = b"cache"

#: Called with ("sealed", entry) or ("failed", error) when a waited-for object settles.
Waiter = Callable[[str, object], None]

Location = Literal["memory", "spilling", "disk", "restoring"]


@dataclass(eq=False)
class Block:
    """A range of the arena that holds (or is being filled with) one object."""
    offset: int
    size: int
    #: Readers (and peers streaming it) that map it now; the block is not reused before 0.
    pins: int = 0
    #: Its object is gone (freed or spilled) but readers still pin it: freed at 0 pins.
    orphaned: bool = False


@dataclass
class ObjectEntry:
    """One object of the node: where its bytes are, its owner and its waiters."""
    object_id: ObjectID
    state: Literal["pending", "sealed", "failed"] = "pending"
    size: int = 0
    flags: int = 0
    owner: bytes = b""
    contained: list[bytes] = field(default_factory=list)
    error: object = None
    waiters: list[Waiter] = field(default_factory=list)
    last_access: float = 0.0
    #: The arena block while the bytes are in memory ("memory", "spilling").
    block: Block | None = None
    location: Location = "memory"
    #: Offset in the spill file while on disk ("disk", "restoring"; also "spilling"), or
    #: of a clean copy of an object in memory (restored, or written behind).
    spill_offset: int = -1
    #: While "spilling": free the block once written. False: a write-behind copy (the
    #: object stays in memory, and evicting it later costs no write).
    evict: bool = True
    #: The process that created this pending entry with CreateObject (it seals it).
    creator: bytes | None = None
    #: Restored ahead of a reader (read-ahead): its first reader reads the next one ahead.
    read_ahead: bool = False


#: Told the reserved block, or the error that ends the wait (exactly one is None).
Reserved = Callable[[Block | None, BaseException | None], None]

#: Runs ``io`` off the node lock, then ``finish(ok)`` with the lock held.
RunIO = Callable[[Callable[[], None], Callable[[bool], None]], None]

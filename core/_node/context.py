"""What every node service shares: the node's ids and addresses, its lock, the tables no
single service owns, and a ``reply`` that cannot fail another client's handler.

    NodeManager --builds--> NodeContext --given to--> LeaseService, WorkerService,
                                                      ActorService, PlacementService,
                                                      ClusterService, ObjectService

A service owns its own state and gets its collaborators explicitly (constructor
arguments, or callbacks for the back-edges such as "a worker died, so its actor dies").
It reads and writes shared tables only under ``lock``; every handler already runs
under it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal

from .._wire import protocol as p
from .._types import JobID, WorkerID
from .control_store import ControlStore
from .membership import ClusterView
from .peer import NodeLock, Peer
from .storage import Persistence
from .object_store import ObjectTable
from .scheduler import ResourceLedger
from .worker_pool import WorkerPool

if TYPE_CHECKING:
    from .membership import HeadLink

ClientKind = Literal["driver", "worker", "submitter", "node", "peer", "remote"]


@dataclass(eq=False)
class Client:
    """A registered connection (or, for "remote", a process on another node whose request
    the head handles on its node's behalf)."""
    conn: Peer
    kind: ClientKind
    worker_id: WorkerID
    job_id: JobID
    pid: int
    #: Leases this client holds as a submitter.
    leases: set[int] = field(default_factory=set)


#: A message handler: (client, message) or, for messages that carry fds, (client, message, fds).
Handler = Callable[..., None]
#: What a service declares: message type -> handler. The node manager merges them.
Handlers = dict[type, Handler]


@dataclass(eq=False)
class NodeContext:
    """What every node service shares, typed: the node's ids and addresses, its lock, the
    tables no single service owns (control store, ledger, object table, worker pool,
    cluster view, registered clients), and ``reply``/``send`` that queue under the lock
    and never fail another client's handler when a requester's socket is gone."""

    node_id: bytes
    session_dir: str
    token: bytes
    #: Guards every shared table; sends made under it leave once it is released.
    lock: NodeLock
    control: ControlStore
    ledger: ResourceLedger
    objects: ObjectTable
    pool: WorkerPool
    view: ClusterView
    #: The node's GPU ids, in the ledger's device order.
    gpu_ids: list[int]
    is_head: bool
    #: Unix address (local clients) and TCP address (other nodes, remote submitters).
    address: str = ""
    tcp_address: str = ""
    head_tcp_address: str = ""
    #: Set on a worker node once it joined the head.
    head: HeadLink | None = None
    #: Registered processes by worker id (drivers, workers, submitters, nodes).
    clients: dict[WorkerID, Client] = field(default_factory=dict)
    stopped: threading.Event = field(default_factory=threading.Event)
    #: The head with storage: records changed by a handler are written after it (no-op elsewhere).
    persist: Persistence = field(default_factory=lambda: Persistence(None))

    def reply(self, client: Client, rid: int, ok: bool, value: Any = None,
              fds: tuple[int, ...] = ()) -> None:
        """Queue an answer. A requester that is gone is no error for anyone else: the
        peer drops it (its connection is closing), so no handler fails for it."""
        client.conn.send(p.Reply(rid, ok, value), fds)


def merge_handlers(*tables: Handlers) -> Handlers:
    """One dispatch table from the services' tables; a message type claimed twice is a bug.

    Raises:
        ValueError: two services declare the same message type.
    """
    merged: Handlers = {}
    for table in tables:
        for kind, handler in table.items():
            if kind in merged:
                raise ValueError(f"{kind.__name__} is handled twice: by {merged[kind]!r} and {handler!r}")
            merged[kind] = handler
    return merged

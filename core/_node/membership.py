"""Cluster membership: the head's table of nodes, and a node's link to the head.

Every node manager other than the head's connects to the head over TCP, registers,
and reports its resources every ``HEARTBEAT_S``. The head marks a node dead when its
connection drops or it stays silent past the timeout, and sends every node the whole
view (free resources of each node), which node managers use to spill work elsewhere.
A worker node that loses the head reconnects (HeadLink): a head restarted on the same
address and storage (recovery.py) finds its nodes back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

from .._wire import protocol as p
from .._types import NodeID, ResourceShape
from .._wire.node_link import NodeLink, ReplyCallback
from ..exceptions import EmberSystemError

log = logging.getLogger("ember._node.manager")
from .._resources import fits

#: Seconds between a node's heartbeats and between the head's membership rounds
#: (override: EMBER_HEARTBEAT_S, or --heartbeat-period-s).
HEARTBEAT_S = float(os.environ.get("EMBER_HEARTBEAT_S", "0.2"))
#: A node silent this long is dead (override: EMBER_NODE_TIMEOUT_S, or --node-timeout-s):
#: 10 missed heartbeats. A crashed node is seen at once (its connection drops); this is for
#: a node that is silent but connected (frozen, partitioned), so that its work is
#: rescheduled within 3 s. The cluster tests run at 1.5 s on a saturated 2-core machine.
DEFAULT_NODE_TIMEOUT_S = float(os.environ.get("EMBER_NODE_TIMEOUT_S", "2.0"))
#: How long a worker node waits for a lost head to come back before it stops
#: (override: EMBER_HEAD_RECONNECT_TIMEOUT_S; Ray's gcs_rpc_server_reconnect_timeout_s is 60).
DEFAULT_HEAD_RECONNECT_TIMEOUT_S = float(os.environ.get("EMBER_HEAD_RECONNECT_TIMEOUT_S", "60"))
#: Seconds between a worker node's attempts to reach a lost head.
RECONNECT_PERIOD_S = 0.2
#: Messages and requests kept for a head that is away; past this they are dropped
#: (requests fail), so a long outage cannot grow a node's memory without bound.
MAX_BACKLOG = 10_000
#: The rid of HeadLink's own failure answer to a request that never left this node
#: (it waited for a head that did not come back). NodeLink answers a request that was
#: in flight when the link dropped with rid 0: only that one may have taken effect.
NEVER_SENT_RID = -1

#: A worker node's link to the head: up, waiting for it to come back, or given up/closed.
HeadLinkState = Literal["connected", "reconnecting", "closed"]


@dataclass
class NodeInfo:
    """One node as the cluster view knows it: addresses, resources, liveness."""
    node_id: NodeID
    tcp_address: str
    unix_address: str
    totals: ResourceShape
    available: ResourceShape
    alive: bool = True
    is_head: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    #: Shapes of requests queued on the node, waiting for resources.
    pending: list[ResourceShape] = field(default_factory=list)
    #: The head only: (strategy, bundles) of each placement group waiting for room.
    pending_groups: list[tuple[str, list[ResourceShape]]] = field(default_factory=list)
    #: When (the head's monotonic clock) the node last became idle: every resource free
    #: and nothing queued. None while busy. The autoscaler removes nodes idle too long.
    idle_since: float | None = None

    def update_idle(self, previous: float | None = None) -> None:
        """Start (or keep ``previous``) the idle clock when nothing runs or waits here."""
        idle = not self.pending and all(abs(self.available.get(k, 0.0) - v) < 1e-9
                                        for k, v in self.totals.items())
        self.idle_since = (previous or self.idle_since or time.monotonic()) if idle else None

    def as_dict(self) -> dict[str, Any]:
        host = self.tcp_address.split(":")[1] if self.tcp_address.count(":") >= 2 else "127.0.0.1"
        return {"NodeID": self.node_id.hex(), "Alive": self.alive, "NodeManagerAddress": host,
                "NodeManagerPort": int(self.tcp_address.rsplit(":", 1)[1]) if self.tcp_address else 0,
                "IsHead": self.is_head, "Resources": dict(self.totals),
                "Available": dict(self.available) if self.alive else {},
                "PendingDemand": list(self.pending) if self.alive else [],
                "PendingPlacementGroups": [{"strategy": strategy, "bundles": list(bundles)}
                                           for strategy, bundles in self.pending_groups],
                "IdleS": time.monotonic() - self.idle_since
                if self.alive and self.idle_since is not None else 0.0}


class ClusterView:
    """What this node manager knows of every node (pure; the node manager locks)."""

    def __init__(self) -> None:
        self.nodes: dict[NodeID, NodeInfo] = {}
        self._spread_turn = 0

    def upsert(self, info: NodeInfo) -> None:
        info.last_seen = time.monotonic()
        old = self.nodes.get(info.node_id)
        info.update_idle(old.idle_since if old is not None else None)
        self.nodes[info.node_id] = info

    def heartbeat(self, node_id: NodeID, totals: ResourceShape, available: ResourceShape,
                  pending: list[ResourceShape]) -> None:
        node = self.nodes.get(node_id)
        if node is not None and node.alive:
            node.totals, node.available, node.last_seen = totals, available, time.monotonic()
            node.pending = pending
            node.update_idle()

    def reserve(self, tcp_address: str, shape: ResourceShape) -> None:
        """Count ``shape`` as taken on the node a request was just sent to, until its next
        heartbeat says what it really has: else a burst of requests decided within one
        heartbeat all goes to the same node, and a node that just joined gets one of them."""
        for node in self.nodes.values():
            if node.tcp_address == tcp_address:
                for name, amount in shape.items():
                    node.available[name] = node.available.get(name, 0.0) - amount
                return

    def extend(self, seconds: float) -> None:
        """Move every node's last heartbeat ``seconds`` later (the head lost that time)."""
        for node in self.nodes.values():
            node.last_seen += seconds

    def mark_dead(self, node_id: NodeID) -> bool:
        node = self.nodes.get(node_id)
        if node is None or not node.alive:
            return False
        node.alive = False
        return True

    def expire(self, timeout_s: float, keep: NodeID) -> list[NodeID]:
        """Mark nodes silent for longer than ``timeout_s`` dead; returns them."""
        now = time.monotonic()
        dead = [n.node_id for n in self.nodes.values()
                if n.alive and n.node_id != keep and now - n.last_seen > timeout_s]
        for node_id in dead:
            self.mark_dead(node_id)
        return dead

    def alive(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.alive]

    def pick(self, shape: ResourceShape, exclude: NodeID, spread: bool) -> NodeInfo | None:
        """A live node other than ``exclude`` with ``shape`` free now (SPREAD: rotate)."""
        fits = [n for n in self.alive() if n.node_id != exclude and _fits(n.available, shape)]
        if not fits:
            return None
        fits.sort(key=lambda n: n.node_id)
        if spread:
            self._spread_turn += 1
            return fits[self._spread_turn % len(fits)]
        return max(fits, key=lambda n: n.available.get("CPU", 0.0))

    def fits_anywhere(self, shape: ResourceShape) -> bool:
        return any(_fits(n.totals, shape) for n in self.alive())


def _fits(pool: ResourceShape, shape: ResourceShape) -> bool:
    return fits(pool, shape)


class HeadLink:
    """A worker node's connection to the head: register, heartbeat, receive the view, and
    reconnect when the head goes away.

    A head that is killed and started again on the same address (and storage) finds its
    nodes back: while the link is down, messages for the head and control requests wait
    in a bounded backlog and go out, in order, once the node registered again (same node
    id). Requests that were already in flight get the link's "lost" error. A head that
    stays away longer than ``reconnect_timeout_s`` ends the node (``on_lost``): without
    the control store a node can neither place actors nor find functions.
    """

    def __init__(self, head_address: str, token: bytes, node_id: NodeID, tcp_address: str,
                 unix_address: str, resources: Callable[[], tuple[ResourceShape, ResourceShape, list]],
                 on_message: Callable[[Any], None], on_lost: Callable[[], None],
                 heartbeat_s: float = HEARTBEAT_S,
                 reconnect_timeout_s: float = DEFAULT_HEAD_RECONNECT_TIMEOUT_S,
                 on_down: Callable[[], None] = lambda: None,
                 on_back: Callable[[], None] = lambda: None) -> None:
        self.address = head_address
        self._token = token
        self._register = p.Register("node", node_id, os.getpid(), tcp_address,
                                    node_unix_address=unix_address)
        self._on_message = on_message
        self._on_lost = on_lost
        self._on_down = on_down
        self._on_back = on_back
        self._resources = resources
        self._heartbeat_s = heartbeat_s
        self._reconnect_timeout_s = reconnect_timeout_s
        self._stop = threading.Event()
        #: Guards ``link``, ``state`` and ``_backlog``: a send never interleaves with a replay.
        self._lock = threading.Lock()
        self.state: HeadLinkState = "connected"
        #: What waits for the head while it is away: thunks run on the next link, in order.
        self._backlog: list[tuple[Callable[[NodeLink], None], Callable[[], None] | None]] = []
        self._reconnector: threading.Thread | None = None
        self.link = self._connect()  # the first join: raises if the head refuses or is not there
        self.link.send(p.Heartbeat(*resources()))  # the head can place work here at once
        self._beater = threading.Thread(target=self._beat, daemon=True, name="ember-heartbeat")
        self._beater.start()

    def _connect(self) -> NodeLink:
        return NodeLink(self.address, self._token, self._register,
                        on_message=lambda msg, _fds: self._on_message(msg), on_lost=self._lost,
                        name="ember-head-link")

    # --- sending ------------------------------------------------------------------------

    def send(self, msg: Any) -> None:
        """Send to the head now, or once it is back (dropped past the backlog's bound)."""
        with self._lock:
            if self.state == "connected":
                self.link.send(msg)
            elif self.state == "reconnecting":
                self._queue(lambda link: link.send(msg), None)

    def call_async(self, make: Callable[[int], Any], on_reply: ReplyCallback) -> None:
        """A request to the head; while it is away, sent once it is back."""
        def fail() -> None:
            on_reply(p.Reply(NEVER_SENT_RID, False, EmberSystemError(
                f"the head at {self.address} did not come back within "
                f"{self._reconnect_timeout_s:g} s; this node stopped")), [])

        with self._lock:
            if self.state == "connected":
                self.link.call_async(make, on_reply)
                return
            if self.state == "reconnecting" and self._queue(
                    lambda link: link.call_async(make, on_reply), fail):
                return
        fail()

    def _queue(self, thunk: Callable[[NodeLink], None], fail: Callable[[], None] | None) -> bool:
        if len(self._backlog) >= MAX_BACKLOG:
            log.warning("the head at %s is away and %d messages wait for it: dropping one",
                        self.address, MAX_BACKLOG)
            return False
        self._backlog.append((thunk, fail))
        return True

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_s):
            # Read first: _resources takes the node lock, under which handlers call send().
            beat = p.Heartbeat(*self._resources())
            with self._lock:
                if self.state == "connected":
                    self.link.send(beat)

    # --- losing and finding the head ----------------------------------------------------

    def _lost(self) -> None:
        if self._stop.is_set():
            return
        with self._lock:
            if self.state != "connected":
                return
            self.state = "reconnecting"
        log.warning("lost the connection to the head at %s: reconnecting for up to %g s",
                    self.address, self._reconnect_timeout_s)
        self._on_down()
        self._reconnector = threading.Thread(target=self._reconnect, daemon=True,
                                             name="ember-head-reconnect")
        self._reconnector.start()

    def _reconnect(self) -> None:
        deadline = time.monotonic() + self._reconnect_timeout_s
        while not self._stop.wait(RECONNECT_PERIOD_S):
            try:
                link = self._connect()
            except OSError:
                if time.monotonic() < deadline:
                    continue
                break
            beat = p.Heartbeat(*self._resources())  # outside self._lock, as in _beat
            with self._lock:
                if link.closed:  # lost again before we got here: its _lost saw "reconnecting"
                    continue
                self.link, self.state = link, "connected"
                backlog, self._backlog = self._backlog, []
                link.send(beat)
                for thunk, _fail in backlog:
                    thunk(link)
            log.warning("reconnected to the head at %s (%d waiting message(s) sent)",
                        self.address, len(backlog))
            self._on_back()
            return
        with self._lock:
            self.state = "closed"
            backlog, self._backlog = self._backlog, []
        for _thunk, fail in backlog:
            if fail is not None:
                fail()
        if not self._stop.is_set():
            log.error("the head at %s did not come back within %g s", self.address,
                      self._reconnect_timeout_s)
            self._on_lost()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self.state = "closed"
            link = self.link
        link.close()
        for thread in (self._beater, self._reconnector):
            if thread is not None and threading.current_thread() is not thread:
                thread.join(2)

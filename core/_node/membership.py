"""Cluster membership: the head's table of nodes, and a node's link to the head.

Every node manager other than the head's connects to the head over TCP, registers,
and reports its resources every ``HEARTBEAT_S``. The head marks a node dead when its
connection drops or it stays silent past the timeout, and sends every node the whole
view (free resources of each node), which node managers use to spill work elsewhere.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .._wire import protocol as p
from .._types import NodeID, ResourceShape
from .._wire.node_link import NodeLink
from .._resources import fits

HEARTBEAT_S = 0.2
#: A node silent this long is dead (override: EMBER_NODE_TIMEOUT_S).
DEFAULT_NODE_TIMEOUT_S = float(os.environ.get("EMBER_NODE_TIMEOUT_S", "3.0"))


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
    """A worker node's connection to the head: register, heartbeat, receive the view.

    Losing the head ends the node (``on_lost``): without the control store a node can
    neither place actors nor find functions, and Ray's nodes exit the same way.
    """

    def __init__(self, head_address: str, token: bytes, node_id: NodeID, tcp_address: str,
                 unix_address: str, resources: Callable[[], tuple[ResourceShape, ResourceShape, list]],
                 on_message: Callable[[Any], None], on_lost: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._on_lost = on_lost
        self.link = NodeLink(head_address, token,
                             p.Register("node", node_id, os.getpid(), tcp_address,
                                        node_unix_address=unix_address),
                             on_message=lambda msg, _fds: on_message(msg), on_lost=self._lost,
                             name="ember-head-link")
        self._resources = resources
        self.link.send(p.Heartbeat(*resources()))  # the head can place work here at once
        self._beater = threading.Thread(target=self._beat, daemon=True, name="ember-heartbeat")
        self._beater.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.link.send(p.Heartbeat(*self._resources()))

    def _lost(self) -> None:
        if not self._stop.is_set():
            self._on_lost()

    def close(self) -> None:
        self._stop.set()
        self.link.close()
        if threading.current_thread() is not self._beater:
            self._beater.join(2)

"""What the dashboard shows, read from the head: node stats (telemetry), and the state
tables (tasks, actors, objects, ...) through the head's state query, one page at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..._types import NodeID
from ..._wire.protocol import NodeStats
from ..context import NodeContext


class NodeTelemetry(Protocol):
    """What the dashboard reads from the head's telemetry service (telemetry.py; named
    here, not imported: the service imports this package when first asked)."""
    ctx: NodeContext
    #: Every node's latest stats, by node id.
    nodes: dict[NodeID, NodeStats]

    def snapshot(self) -> NodeStats: ...

    def metrics_text(self) -> bytes: ...


@dataclass
class ListQuery:
    """Equality filters (field -> value), and the page: rows offset .. offset+limit."""
    filters: dict[str, str]
    offset: int
    limit: int


class DashboardData:
    """Reads for the pages; every method takes the node lock only briefly."""

    #: /api/<kind> endpoints (JSON, paginated like the pages).
    API_KINDS = ("nodes", "jobs", "tasks", "actors", "objects", "placement_groups")

    def __init__(self, telemetry: NodeTelemetry) -> None:
        self.telemetry = telemetry
        self.ctx = telemetry.ctx

    def nodes(self) -> list[dict[str, Any]]:
        """Every node the head knows, alive or dead, with its latest stats (None before
        its first report)."""
        own = self.telemetry.snapshot()
        ctx = self.ctx
        with ctx.lock:
            self.telemetry.nodes[own.node_id] = own
            out = []
            for info in sorted(ctx.view.nodes.values(), key=lambda n: (not n.is_head, n.node_id)):
                out.append({"node_id": info.node_id.hex(), "address": info.tcp_address.removeprefix("tcp:"),
                            "alive": info.alive, "is_head": info.is_head, "totals": dict(info.totals),
                            "available": dict(info.available),
                            "stats": self.telemetry.nodes.get(info.node_id)})
            return out

    def task_summary(self) -> dict[str, int]:
        return {}

    def list(self, kind: str, query: ListQuery) -> tuple[list[dict[str, Any]], int]:
        return [], 0

    def get(self, kind: str, ident: str) -> dict[str, Any] | None:
        return None

    def log_files(self) -> list[dict[str, Any]]:
        return []

    def log_lines(self, params: dict[str, str], tail: int, search: str) -> tuple[list[str] | None, str]:
        return None, ""

    def api(self, kind: str, params: dict[str, str]) -> dict[str, Any]:
        return {}

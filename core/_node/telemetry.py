"""What a node tells people about itself: its stats for the head's dashboard, and its
metrics for Prometheus (a node service).

    worker nodes, every STATS_PERIOD_S: snapshot() -> NodeStats -> the head's ``nodes``
    the head: its own snapshot() when the dashboard or a scrape asks
    drivers and workers --MetricsReport--> MetricTable (users' metrics, ember.util.metrics)
    GET /metrics on the node's metrics port (token) -> prometheus.exposition(snapshot, table)
    the head: the dashboard (dashboard/app.py) on its own port, reading ``nodes`` and the
              state the other services keep

Both HTTP ports are bound when the node starts and served from the first connection on
(http_listener.py); their URLs are in ``<session>/http.json`` and in the log.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from typing import Any, Callable

from .._types import NodeID
from .._wire import protocol as p
from ..exceptions import EmberError
from .context import Client, Handlers, NodeContext
from .dashboard.data import DashboardData, StateTables
from .http_listener import LazyServer, bind_listener
from .leases import LeaseService
from .metric_table import MetricTable
from .node_stats import MachineSampler

log = logging.getLogger("ember._node.telemetry")

#: How often a worker node sends its stats to the head.
STATS_PERIOD_S = float(os.environ.get("EMBER_NODE_STATS_PERIOD_S", "2.0"))
#: Ray's default dashboard port; a node falls back to any free port when it is taken.
DEFAULT_DASHBOARD_PORT = 8265


class TelemetryService:
    """Args:
        ctx: the shared node context.
        leases: read for the number of leases.
        state: the state tables (task events; the head's tables), which the dashboard
            and the ``ember_tasks`` metric read; None where there are none.
        submitted_jobs: the head's submitted jobs (``ember job submit``), for the
            dashboard's jobs page (read under the node lock).
    """

    def __init__(self, ctx: NodeContext, leases: LeaseService, state: StateTables | None = None,
                 submitted_jobs: Callable[[], list[Any]] | None = None) -> None:
        self.ctx = ctx
        self.leases = leases
        self.state = state
        self.submitted_jobs = submitted_jobs
        self.sampler = MachineSampler(ctx.gpu_ids)
        #: Users' metrics reported by this node's processes.
        self.metrics = MetricTable()
        #: The head: every node's latest stats (this node's included), by node id.
        self.nodes: dict[NodeID, p.NodeStats] = {}
        self.metrics_url = ""
        self.dashboard_url = ""
        self._servers: list[LazyServer] = []
        #: The dashboard's reads (and its links to other nodes), once it serves.
        self._dashboard_data: DashboardData | None = None
        self._stop = threading.Event()
        self._reporter: threading.Thread | None = None

    def handlers(self) -> Handlers:
        return {p.NodeStats: self.on_node_stats, p.MetricsReport: self.on_metrics_report}

    # --- messages (under the node lock) ----------------------------------------------

    def on_node_stats(self, _client: Client, msg: p.NodeStats) -> None:
        self.nodes[msg.node_id] = msg

    def on_metrics_report(self, client: Client, msg: p.MetricsReport) -> None:
        self.metrics.report(client.worker_id, msg.metrics)

    def process_gone(self, client: Client) -> None:
        """A driver or worker disconnected: its counters join the node's baseline."""
        self.metrics.process_gone(client.worker_id)

    # --- stats ------------------------------------------------------------------------

    def snapshot(self) -> p.NodeStats:
        """This node now. Reads the machine without the node lock, its tables under it."""
        cpu = self.sampler.cpu_percent()
        mem_used, mem_total = self.sampler.memory()
        gpus = self.sampler.gpus()
        ctx = self.ctx
        with ctx.lock:
            tasks = self._tasks_by_state()
            # Not ObjectTable.stats(): it sorts every object for the largest ones, and this
            # runs every few seconds under the node lock.
            store = ctx.objects
            workers = Counter(r.state for r in ctx.pool.workers.values())
            return p.NodeStats(
                ctx.node_id, time.time(), cpu, mem_used, mem_total, gpus, int(store.used_bytes),
                int(store.capacity_bytes), int(store.spilled_bytes), len(store.objects),
                dict(workers),
                len(self.leases.leases), dict(ctx.ledger.totals), dict(ctx.ledger.available),
                dict(tasks), ctx.tcp_address, self.metrics_url)

    def _tasks_by_state(self) -> dict[str, int]:
        """The head: every recorded task by state (other nodes keep no task table)."""
        if self.state is None or not self.ctx.is_head:
            return {}
        return dict(self.state.query("tasks", [], summary=True).get("state_counts", {}))

    def _report_loop(self) -> None:
        """A worker node: send this node's stats to the head (the head samples its own when
        asked: a task table of 100,000 rows is not counted every few seconds for nobody)."""
        while True:
            try:
                if self.ctx.head is not None:
                    self.ctx.head.link.send(self.snapshot())
            except Exception:  # a bug here must not end the reports for good
                log.exception("sampling this node's stats failed")
            if self._stop.wait(STATS_PERIOD_S):
                return

    # --- HTTP --------------------------------------------------------------------------

    def start(self, metrics_host: str, metrics_port: int,
              dashboard: tuple[str, int] | None) -> None:
        """Bind the metrics port (and on the head, if asked, the dashboard's), start the
        stats reports, and write the URLs to ``<session>/http.json``.

        Raises:
            EmberError: a port given explicitly is taken (or the host is not this machine's).
        """
        ctx = self.ctx
        sock = _bind(metrics_host, metrics_port, False, "metrics endpoint", "metrics_export_port")
        server = LazyServer(sock, self._make_metrics_app, "metrics endpoint")
        self._servers.append(server)
        self.metrics_url = server.url + "/metrics"
        if dashboard is not None and ctx.is_head:
            host, port = dashboard
            sock = _bind(host, port, port == DEFAULT_DASHBOARD_PORT, "dashboard", "dashboard_port")
            server = LazyServer(sock, self._make_dashboard_app, "dashboard")
            self._servers.append(server)
            self.dashboard_url = server.url
            if not ipaddress.ip_address(sock.getsockname()[0]).is_loopback:
                log.warning("the dashboard at %s is reachable from other machines over plain HTTP: the "
                            "cluster token crosses the network in clear when someone logs in. Prefer "
                            "the default 127.0.0.1 and an SSH tunnel.", self.dashboard_url)
        for server in self._servers:
            server.start()
        with open(os.path.join(ctx.session_dir, "http.json"), "w") as f:
            json.dump({"dashboard_url": self.dashboard_url, "metrics_url": self.metrics_url}, f)
        if self.dashboard_url:
            log.info("dashboard at %s (log in with the cluster token)", self.dashboard_url)
        if not ctx.is_head:
            self._reporter = threading.Thread(target=self._report_loop, daemon=True, name="ember-node-stats")
            self._reporter.start()

    def metrics_text(self) -> bytes:
        # Imported here: prometheus_client is loaded on the first scrape only
        # (http_listener.py says why).
        from .prometheus import exposition
        stats = self.snapshot()
        with self.ctx.lock:
            user = self.metrics.merged()
        return exposition(stats, user)

    def _make_metrics_app(self) -> Any:
        # Imported here, on the first connection (http_listener.py says why).
        from .dashboard.app import make_metrics_app
        return make_metrics_app(self.ctx.token, self.metrics_text)

    def _make_dashboard_app(self) -> Any:
        # Imported here, on the first connection (http_listener.py says why).
        from .dashboard.app import make_dashboard_app
        self._dashboard_data = DashboardData(self)
        return make_dashboard_app(self._dashboard_data)

    def stop(self) -> None:
        """Stop serving and reporting. Safe to call twice."""
        self._stop.set()
        for server in self._servers:
            server.stop()
        if self._reporter is not None and self._reporter is not threading.current_thread():
            self._reporter.join(5)
        if self._dashboard_data is not None:
            self._dashboard_data.close()
        self.sampler.close()


def _bind(host: str, port: int, fallback: bool, what: str, option: str) -> socket.socket:
    try:
        return bind_listener(host, port, fallback_to_any_port=fallback)
    except OSError as e:
        raise EmberError(f"cannot bind the {what} to {host}:{port} ({e.strerror or e}): pass another "
                         f"{option} (0 takes any free port), or stop what listens there") from e

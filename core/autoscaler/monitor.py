"""The monitor: each round, read the cluster, ask ``plan``, and have the provider act.

    ember.nodes() (head's view: resources, queued shapes, pending groups, idle time)
       + provider.non_terminated_nodes() (launching / failed)    ──>  plan(...)
       + request_resources bundles (state actor)                        │
    provider.create_node / terminate_node  <────────────────────────────┘
    report ──> state actor ──> `ember status`

A provider node becomes "running" when a cluster node with its address is alive; one
whose start command exits first, or that has not joined within ``launch_timeout_s``,
is a failed launch: terminated, logged, reported, and retried after a backoff that
doubles per consecutive failure of its type. Run it with ``ember up`` (which starts
``python -m ember.autoscaler``) or in-process with ``Monitor.run``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .config import ClusterConfig, load_config
from .planner import NodeState, NodeType, PendingGroup, Plan, plan
from .provider import TAG_LAUNCH_ERROR, TAG_NODE_STATUS, TAG_NODE_TYPE, NodeProvider

log = logging.getLogger("ember.autoscaler")

#: Longest wait before retrying a node type whose launches keep failing.
MAX_BACKOFF_S = 30.0
#: Launch failures kept in the report.
KEEP_FAILURES = 20


@dataclass
class LaunchFailure:
    """A node that failed to start, kept so ``ember status`` can say why."""

    node_type: str
    node_id: str
    error: str
    attempt: int
    at: float = field(default_factory=time.time)


class Monitor:
    """One autoscaler for one cluster (see the module docstring).

    Args:
        read_nodes: returns ``ember.nodes()`` of the cluster.
        read_requested: returns the standing ``request_resources`` bundles.
        publish: receives each round's report (for ``ember status``).
        clock: seconds, monotonic (replaceable in tests).
    """

    def __init__(self, config: ClusterConfig, provider: NodeProvider, read_nodes: Callable[[], list[dict]],
                 read_requested: Callable[[], list[dict]] = lambda: [],
                 publish: Callable[[dict[str, Any]], None] = lambda report: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config, self.provider = config, provider
        self.read_nodes, self.read_requested, self.publish, self.clock = read_nodes, read_requested, publish, clock
        self.node_types = [NodeType(t.name, t.resources, t.min_workers, t.max_workers)
                           for t in config.node_types.values()]
        self._launched_at: dict[str, float] = {}
        self._joined: set[str] = set()
        self._streak: dict[str, int] = {}       #: node type -> launch failures in a row
        self._retry_at: dict[str, float] = {}   #: node type -> no launch before this time
        self.failures: list[LaunchFailure] = []
        self.failures_total: dict[str, int] = {}
        self.last_plan = Plan()

    def update(self) -> Plan:
        """One round: observe, decide, act, report. Returns what was decided."""
        now = self.clock()
        cluster = [n for n in self.read_nodes() if n.get("Alive") and n.get("Resources")]
        by_address = {f"{n['NodeManagerAddress']}:{n['NodeManagerPort']}": n for n in cluster}
        by_ip = {n["NodeManagerAddress"]: n for n in cluster}
        states: list[NodeState] = []
        matched: set[str] = set()
        rows = []
        for node_id in self.provider.non_terminated_nodes():
            tags = self.provider.node_tags(node_id)
            node_type = tags[TAG_NODE_TYPE]
            address = self.provider.internal_address(node_id)
            joined = by_address.get(address) or (by_ip.get(address) if ":" not in address else None)
            if joined is not None:
                matched.add(joined["NodeID"])
                if node_id not in self._joined:
                    self._joined.add(node_id)
                    self._streak[node_type] = 0
                    log.info("node %s (%s) joined the cluster", node_id, node_type)
                states.append(_state(node_id, node_type, joined))
                rows.append({"id": node_id, "type": node_type, "status": "running", "address": address,
                             "idle_s": round(joined.get("IdleS", 0.0), 1)})
            elif node_id in self._joined:
                log.warning("node %s (%s) left the cluster: terminating it", node_id, node_type)
                self._forget(node_id)
            elif tags[TAG_NODE_STATUS] == "failed" or \
                    now - self._launched_at.get(node_id, now) > self.config.launch_timeout_s:
                error = tags.get(TAG_LAUNCH_ERROR) or \
                    f"it did not join within launch_timeout_s={self.config.launch_timeout_s:g}"
                self._launch_failed(node_id, node_type, error, now)
            else:
                resources = self.config.node_types[node_type].resources
                states.append(NodeState(node_id, node_type, dict(resources), dict(resources), "launching"))
                rows.append({"id": node_id, "type": node_type, "status": "launching", "address": address,
                             "idle_s": 0.0})
        for node in cluster:
            if node["NodeID"] not in matched:  # the head, or a node joined by hand
                states.append(_state(node["NodeID"], None, node))
        demand = [dict(shape) for n in cluster for shape in n.get("PendingDemand", [])]
        groups = [PendingGroup(g["strategy"], tuple(g["bundles"]))
                  for n in cluster for g in n.get("PendingPlacementGroups", [])]
        requested = self.read_requested()
        decided = plan(demand, states, self.node_types, max_workers=self.config.max_workers,
                       idle_timeout_s=self.config.idle_timeout_s, placement_groups=groups, requested=requested)
        self._carry_out(decided, now)
        self.last_plan = decided
        self.publish(self._report(rows, decided, demand, groups, requested))
        return decided

    def _carry_out(self, decided: Plan, now: float) -> None:
        for node_id in decided.terminate:
            log.info("terminating node %s: idle for more than %g s", node_id, self.config.idle_timeout_s)
            self._forget(node_id)
        for node_type, count in decided.launch.items():
            if now < self._retry_at.get(node_type, 0.0):
                continue  # backing off after failed launches of this type
            resources = self.config.node_types[node_type].resources
            log.info("launching %d node(s) of type %s (%s)", count, node_type, resources)
            try:
                for node_id in self.provider.create_node(node_type, dict(resources), count):
                    self._launched_at[node_id] = now
            except Exception as e:  # a provider error must not end the autoscaler
                self._record_failure(node_type, "-", f"{type(e).__name__}: {e}", now)

    def _launch_failed(self, node_id: str, node_type: str, error: str, now: float) -> None:
        self._forget(node_id)
        self._record_failure(node_type, node_id, error, now)

    def _record_failure(self, node_type: str, node_id: str, error: str, now: float) -> None:
        streak = self._streak[node_type] = self._streak.get(node_type, 0) + 1
        self.failures_total[node_type] = self.failures_total.get(node_type, 0) + 1
        delay_s = min(MAX_BACKOFF_S, self.config.update_interval_s * 2 ** (streak - 1))
        self._retry_at[node_type] = now + delay_s
        self.failures = (self.failures + [LaunchFailure(node_type, node_id, error, streak)])[-KEEP_FAILURES:]
        log.warning("node %s of type %s failed to start (attempt %d in a row): %s; retrying in %.1f s",
                    node_id, node_type, streak, error, delay_s)

    def _forget(self, node_id: str) -> None:
        self.provider.terminate_node(node_id)
        self._launched_at.pop(node_id, None)
        self._joined.discard(node_id)

    def _report(self, rows: list[dict], decided: Plan, demand: list[dict], groups: list[PendingGroup],
                requested: list[dict]) -> dict[str, Any]:
        return {"cluster_name": self.config.cluster_name, "time": time.time(), "nodes": rows,
                "launching_now": dict(decided.launch), "terminating_now": list(decided.terminate),
                "pending_demand": len(demand), "pending_placement_groups": len(groups),
                "requested": requested, "infeasible": decided.infeasible, "unmet": decided.unmet,
                "failures_total": dict(self.failures_total),
                "launch_failures": [f.__dict__ for f in self.failures]}

    def run(self, stop: threading.Event) -> None:
        """Rounds every ``update_interval_s`` until ``stop`` is set; a round that raises is
        logged and the next one runs (a hiccup reading the cluster must not end scaling)."""
        while not stop.is_set():
            try:
                self.update()
            except Exception:
                log.exception("autoscaler round failed")
            stop.wait(self.config.update_interval_s)


def _state(node_id: str, node_type: str | None, node: dict) -> NodeState:
    totals = dict(node["Resources"])
    idle_s = float(node.get("IdleS", 0.0))
    # ember.nodes() says whether a node is idle, not how much of a busy node is free: a
    # busy node counts as full, which is also how its queued requests behave (they wait
    # there rather than move to a node with partial room).
    return NodeState(node_id, node_type, totals, totals if idle_s > 0 else {}, "running", idle_s)


def format_report(report: dict[str, Any]) -> str:
    """The autoscaler section of ``ember status``."""
    lines = [f"autoscaler ({report.get('cluster_name', '?')}): "
             f"{sum(1 for n in report['nodes'] if n['status'] == 'running')} worker node(s) running, "
             f"{sum(1 for n in report['nodes'] if n['status'] == 'launching')} launching"]
    for row in report["nodes"]:
        idle = f", idle {row['idle_s']:g} s" if row["idle_s"] else ""
        lines.append(f"  {row['id']:<28} {row['type']:<12} {row['status']}{idle}")
    if report.get("infeasible"):
        lines.append(f"  infeasible (no node type can hold these; change the request or add a node type): "
                     f"{report['infeasible']}")
    if report.get("unmet"):
        lines.append(f"  waiting for room (max_workers reached): {len(report['unmet'])} request(s)")
    for failure in report.get("launch_failures", [])[-3:]:
        lines.append(f"  launch failed: {failure['node_type']} (attempt {failure['attempt']}): {failure['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m ember.autoscaler``: the process ``ember up`` starts."""
    parser = argparse.ArgumentParser(prog="ember-autoscaler")
    parser.add_argument("config")
    parser.add_argument("--head-address", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import ember

    from .launcher import make_provider
    from .state import create_state_actor
    config = load_config(args.config)
    provider = make_provider(config, args.head_address, args.token_file, args.state_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ember.init(address=args.head_address)
    try:
        state = create_state_actor()
        monitor = Monitor(config, provider, ember.nodes,
                          read_requested=lambda: ember.get(state.requested.remote(), timeout=30),
                          publish=lambda report: state.set_report.remote(report))
        monitor.update()
        with open(os.path.join(args.state_dir, "monitor.ready"), "w") as f:
            f.write(str(os.getpid()))
        monitor.run(stop)
    finally:
        provider.shutdown()
        ember.shutdown()
    return 0

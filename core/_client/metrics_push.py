"""A process's users' metrics (``ember.util.metrics``), sent to its node manager.

    Counter/Gauge/Histogram values (kept in this process by ember.util.metrics)
      --every REPORT_PERIOD_S, from the runtime's housekeeping thread, if changed-->
    MetricsReport --> the node manager's MetricTable --> GET /metrics on the node

A process that never made a metric sends nothing (the module is not even imported), and
an unchanged registry is not sent again. ``flush()`` on close sends the last values, so
a worker's final counts reach its node.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable

from .._wire import protocol as p

#: How often a process reports its metrics when they changed (Ray: metrics_report_interval_ms).
REPORT_PERIOD_S = float(os.environ.get("EMBER_METRICS_REPORT_PERIOD_S", "2.0"))
_METRICS_MODULE = "ember.util.metrics"


class MetricsPusher:
    """Args:
        send: queue a message to this process's node manager.
    """

    def __init__(self, send: Callable[[Any], None]) -> None:
        self._send = send
        self._last: list[p.UserMetric] | None = None
        self._last_at = 0.0

    def tick(self) -> None:
        """Report if a period passed since the last report (cheap otherwise)."""
        now = time.monotonic()
        if now - self._last_at >= REPORT_PERIOD_S:
            self._last_at = now
            self.flush()

    def flush(self) -> None:
        """Report now if the values changed since the last report."""
        module = sys.modules.get(_METRICS_MODULE)
        if module is None:
            return
        metrics = to_wire(module)
        if metrics == self._last:
            return
        self._last = metrics
        self._send(p.MetricsReport(metrics))


def to_wire(module: Any) -> list[p.UserMetric]:
    """``module.collect()`` (ember.util.metrics' registry) as protocol values: tag values
    in tag-key order; histograms as a count per bucket (not cumulative) and the sum."""
    out = []
    for family in module.collect():
        if not family.samples:
            continue
        samples: list[tuple[tuple[str, ...], p.MetricValue]] = []
        for sample in family.samples:
            tags = tuple(str(sample.tags.get(k, "")) for k in family.tag_keys)
            if family.kind == "histogram":
                counts, previous = [], 0
                for _bound, cumulative in sample.buckets:
                    counts.append(cumulative - previous)
                    previous = cumulative
                samples.append((tags, (tuple(counts), float(sample.value))))
            else:
                samples.append((tags, float(sample.value)))
        out.append(p.UserMetric(family.name, family.kind, family.description, tuple(family.tag_keys),
                                tuple(family.boundaries), samples))
    return out

"""The node's user metrics: what each of its processes last reported, merged per series.

    worker/driver --MetricsReport (every few s)--> MetricTable.report(process, metrics)
    /metrics scrape --> MetricTable.merged(): one value per (metric, tag values) on this node

Merging, per series (a metric name and its tag values):
- counters and histograms add up over processes; when a process exits its last values
  move to a retired baseline, so a node's counter never goes down (Prometheus would read
  a drop as a reset and ``rate()`` would jump);
- gauges take the most recently reported value (a gauge set by an exited process goes
  with it).
A name reported with another kind, tag keys or histogram boundaries than it was first
seen with is dropped (and logged once): two metrics cannot share one Prometheus name.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from .._wire.protocol import UserMetric

log = logging.getLogger("ember._node.metrics")

#: Processes whose last report a node keeps (live ones; exited ones are folded away).
_MAX_PROCESSES = 10_000


@dataclass
class _Shape:
    kind: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]


@dataclass
class MergedMetric:
    """One metric of the node: its shape and a value per tag-value tuple.

    ``values``: counters and gauges -> float; histograms -> (bucket counts (one more than
    the boundaries: the last is +Inf), sum).
    """
    name: str
    kind: str
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...]
    values: dict[tuple[str, ...], object] = field(default_factory=dict)


class MetricTable:
    """Pure bookkeeping (the node manager calls it under its lock)."""

    def __init__(self) -> None:
        #: process id -> (report time, metric name -> its last report)
        self._latest: dict[bytes, tuple[float, dict[str, UserMetric]]] = {}
        self._retired: dict[str, dict[tuple[str, ...], object]] = {}
        self._shapes: dict[str, _Shape] = {}
        self._refused: set[str] = set()

    def report(self, process: bytes, metrics: list[UserMetric]) -> None:
        """``process`` (a worker id) reported its current values (all of them)."""
        accepted = {}
        for metric in metrics:
            if self._accept(metric):
                accepted[metric.name] = metric
        if process not in self._latest and len(self._latest) >= _MAX_PROCESSES:
            return
        self._latest[process] = (time.monotonic(), accepted)

    def process_gone(self, process: bytes) -> None:
        """Fold an exited process's counters and histograms into the baseline."""
        entry = self._latest.pop(process, None)
        if entry is None:
            return
        for metric in entry[1].values():
            if metric.kind == "gauge":
                continue
            baseline = self._retired.setdefault(metric.name, {})
            for tags, value in metric.samples:
                baseline[tags] = _add(baseline.get(tags), value)

    def merged(self) -> list[MergedMetric]:
        """Every metric of the node, one value per series."""
        out: dict[str, MergedMetric] = {}
        for name, shape in self._shapes.items():
            merged = out[name] = MergedMetric(name, shape.kind, shape.description, shape.tag_keys,
                                              shape.boundaries)
            for tags, value in self._retired.get(name, {}).items():
                merged.values[tags] = value
        gauge_times: dict[tuple[str, tuple[str, ...]], float] = {}
        for at, metrics in self._latest.values():
            for metric in metrics.values():
                merged = out[metric.name]
                for tags, value in metric.samples:
                    if metric.kind == "gauge":
                        key = (metric.name, tags)
                        if at >= gauge_times.get(key, -1.0):
                            gauge_times[key] = at
                            merged.values[tags] = value
                    else:
                        merged.values[tags] = _add(merged.values.get(tags), value)
        return [m for m in out.values() if m.values]

    def _accept(self, metric: UserMetric) -> bool:
        shape = _Shape(metric.kind, metric.description, tuple(metric.tag_keys), tuple(metric.boundaries))
        known = self._shapes.get(metric.name)
        if known is None:
            self._shapes[metric.name] = shape
            return True
        if (known.kind, known.tag_keys, known.boundaries) == (shape.kind, shape.tag_keys, shape.boundaries):
            return True
        if metric.name not in self._refused:
            self._refused.add(metric.name)
            log.warning("metric %r was reported as a %s with tag keys %s and boundaries %s, but was first "
                        "seen as a %s with tag keys %s and boundaries %s: these reports are dropped. Give "
                        "different metrics different names.", metric.name, shape.kind, shape.tag_keys,
                        shape.boundaries, known.kind, known.tag_keys, known.boundaries)
        return False


def _add(a: object, b: object) -> object:
    """Counter values add; histogram values add bucket by bucket."""
    if a is None:
        return b
    if isinstance(a, tuple):
        (buckets_a, sum_a), (buckets_b, sum_b) = a, b  # type: ignore[misc]
        return (tuple(x + y for x, y in zip(buckets_a, buckets_b)), sum_a + sum_b)
    return a + b  # type: ignore[operator]

"""A node's metrics in Prometheus' text format: system metrics and users' metrics.

    telemetry.snapshot() -> NodeStats --\
                                         >-- collect() -> prometheus_client families -> text
    MetricTable.merged() (users') ------/

Names follow Ray's where Ray has one (``ray_node_cpu_utilization`` ->
``ember_node_cpu_utilization``); every system metric carries the node's id as
``NodeId``. Users' metrics keep the name and tags they were created with.
"""

from __future__ import annotations

from typing import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
                                    Metric)
from prometheus_client.registry import Collector

from .._wire.protocol import NodeStats
from .metric_table import MergedMetric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition(stats: NodeStats, user: list[MergedMetric]) -> bytes:
    """The text a Prometheus scrape of this node gets."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_NodeCollector(stats, user))
    return generate_latest(registry)


class _NodeCollector(Collector):
    def __init__(self, stats: NodeStats, user: list[MergedMetric]) -> None:
        self.stats = stats
        self.user = user

    def collect(self) -> Iterator[Metric]:
        yield from system_metrics(self.stats)
        for metric in self.user:
            yield user_metric(metric)


def _gauge(name: str, doc: str, value: float, node: str, unit: str = "") -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["NodeId"], unit=unit)
    family.add_metric([node], value)
    return family


def system_metrics(s: NodeStats) -> Iterator[Metric]:
    node = s.node_id.hex()
    yield _gauge("ember_node_cpu_utilization", "CPU use of the node's machine, percent", s.cpu_percent, node)
    yield _gauge("ember_node_mem_used_bytes", "memory in use on the node's machine", s.memory_used_bytes, node)
    yield _gauge("ember_node_mem_total_bytes", "memory of the node's machine", s.memory_total_bytes, node)
    if s.gpus:
        util = GaugeMetricFamily("ember_node_gpus_utilization", "GPU use, percent",
                                 labels=["NodeId", "GpuIndex", "GpuDeviceName"])
        used = GaugeMetricFamily("ember_node_gram_used_bytes", "GPU memory in use",
                                 labels=["NodeId", "GpuIndex", "GpuDeviceName"])
        for gpu in s.gpus:
            util.add_metric([node, str(gpu.index), gpu.name], gpu.utilization_percent)
            used.add_metric([node, str(gpu.index), gpu.name], gpu.memory_used_bytes)
        yield util
        yield used
    yield _gauge("ember_object_store_used_bytes", "object store memory in use", s.store_used_bytes, node)
    yield _gauge("ember_object_store_capacity_bytes", "object store memory", s.store_capacity_bytes, node)
    yield _gauge("ember_object_store_objects", "objects in the node's store", s.num_objects, node)
    yield _gauge("ember_object_store_spilled_bytes", "bytes of objects spilled to disk", s.spilled_bytes, node)
    yield _gauge("ember_leases", "worker leases granted by this node and not yet returned", s.num_leases, node)
    workers = GaugeMetricFamily("ember_workers", "worker processes of this node by state",
                                labels=["NodeId", "State"])
    for state, count in sorted(s.workers_by_state.items()):
        workers.add_metric([node, state], count)
    yield workers
    tasks = GaugeMetricFamily("ember_tasks", "tasks by their current state (recorded task events)",
                              labels=["NodeId", "State"])
    for state, count in sorted(s.tasks_by_state.items()):
        tasks.add_metric([node, state], count)
    yield tasks
    for name, doc, shape in (("ember_resources_total", "the node's resources", s.resources_total),
                             ("ember_resources_available", "the node's resources free now",
                              s.resources_available)):
        family = GaugeMetricFamily(name, doc, labels=["NodeId", "Name"])
        for resource, amount in sorted(shape.items()):
            if "_group_" not in resource:  # placement-group bundle resources: one per bundle
                family.add_metric([node, resource], amount)
        yield family


def user_metric(m: MergedMetric) -> Metric:
    labels = list(m.tag_keys)
    if m.kind == "counter":
        family: Metric = CounterMetricFamily(m.name, m.description or m.name, labels=labels)
        for tags, value in sorted(m.values.items()):
            family.add_metric(list(tags), value)  # type: ignore[attr-defined]
        return family
    if m.kind == "gauge":
        family = GaugeMetricFamily(m.name, m.description or m.name, labels=labels)
        for tags, value in sorted(m.values.items()):
            family.add_metric(list(tags), value)  # type: ignore[attr-defined]
        return family
    family = HistogramMetricFamily(m.name, m.description or m.name, labels=labels)
    for tags, (counts, total) in sorted(m.values.items()):  # type: ignore[misc]
        cumulative, buckets = 0, []
        for bound, count in zip([*map(_le, m.boundaries), "+Inf"], counts):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(list(tags), buckets, total)  # type: ignore[attr-defined]
    return family


def _le(bound: float) -> str:
    return repr(float(bound))

"""A node's Prometheus text from plain values (what a machine with GPUs would report, and
users' merged metrics), parsed back with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ember._node.metric_table import MergedMetric
from ember._node.prometheus import exposition
from ember._wire.protocol import GpuUsage, NodeStats

NODE = bytes.fromhex("ab" * 16)


def stats(gpus: list[GpuUsage]) -> NodeStats:
    return NodeStats(NODE, 0.0, 12.5, 3 << 30, 16 << 30, gpus, 5 << 20, 64 << 20, 1 << 20, 4,
                     {"idle": 2, "leased": 1}, 1, {"CPU": 4.0, "GPU": 2.0, "CPU_group_0_ab": 1.0},
                     {"CPU": 3.0, "GPU": 1.0}, {"RUNNING": 1, "FINISHED": 9}, "tcp:127.0.0.1:1", "")


def samples(text: bytes) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text.decode()) for s in f.samples}


def test_gpus_are_reported_per_device() -> None:
    got = samples(exposition(stats([GpuUsage(0, "NVIDIA H200", 87.0, 40 << 30, 141 << 30),
                                    GpuUsage(1, "NVIDIA H200", 3.0, 1 << 30, 141 << 30)]), []))
    node = ("NodeId", NODE.hex())
    gpu0 = (("GpuDeviceName", "NVIDIA H200"), ("GpuIndex", "0"), node)
    assert got[("ember_node_gpus_utilization", gpu0)] == 87.0
    assert got[("ember_node_gram_used_bytes", gpu0)] == 40 << 30
    assert got[("ember_node_gpus_utilization", (("GpuDeviceName", "NVIDIA H200"), ("GpuIndex", "1"), node))] == 3.0
    assert got[("ember_workers", (node, ("State", "idle")))] == 2
    assert got[("ember_tasks", (node, ("State", "FINISHED")))] == 9
    assert got[("ember_resources_available", (("Name", "GPU"), node))] == 1.0
    # A placement group's bundle resources are one series per bundle: left out.
    assert not [k for k in got if "_group_" in str(k)]


def test_a_machine_without_gpus_exports_no_gpu_series() -> None:
    assert not [k for k in samples(exposition(stats([]), [])) if "gpu" in k[0] or "gram" in k[0]]


def test_users_histograms_are_cumulative_and_counters_end_in_total() -> None:
    user = [MergedMetric("lat_s", "histogram", "latency", ("route",), (0.1, 1.0),
                         {("/a",): ((2, 3, 1), 4.2)}),
            MergedMetric("hits", "counter", "", ("route",), (), {("/a",): 7.0})]
    got = samples(exposition(stats([]), user))
    assert got[("lat_s_bucket", (("le", "0.1"), ("route", "/a")))] == 2
    assert got[("lat_s_bucket", (("le", "1.0"), ("route", "/a")))] == 5
    assert got[("lat_s_bucket", (("le", "+Inf"), ("route", "/a")))] == 6
    assert got[("lat_s_count", (("route", "/a"),))] == 6
    assert got[("lat_s_sum", (("route", "/a"),))] == 4.2
    assert got[("hits_total", (("route", "/a"),))] == 7.0

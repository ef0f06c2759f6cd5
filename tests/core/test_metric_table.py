"""The node's merge of users' metrics reported by its processes (plain calls)."""

from __future__ import annotations

from ember._node.metric_table import MetricTable
from ember._wire.protocol import UserMetric


def counter(value: float, tags: tuple[str, ...] = ("a",)) -> UserMetric:
    return UserMetric("requests", "counter", "requests served", ("route",), (), [(tags, value)])


def values(table: MetricTable, name: str) -> dict:
    return {m.name: m.values for m in table.merged()}.get(name, {})


def test_counters_of_several_processes_add_up() -> None:
    table = MetricTable()
    table.report(b"w1", [counter(2)])
    table.report(b"w2", [counter(3)])
    table.report(b"w2", [counter(5)])  # a later report replaces the process's earlier one
    assert values(table, "requests") == {("a",): 7}


def test_a_counter_never_goes_down_when_its_process_exits() -> None:
    table = MetricTable()
    table.report(b"w1", [counter(4)])
    table.report(b"w2", [counter(1)])
    table.process_gone(b"w1")
    assert values(table, "requests") == {("a",): 5}
    table.report(b"w3", [counter(2)])
    assert values(table, "requests") == {("a",): 7}


def test_a_gauge_takes_the_latest_report_and_goes_with_its_process() -> None:
    table = MetricTable()
    gauge = lambda v: UserMetric("queue", "gauge", "", (), (), [((), v)])  # noqa: E731
    table.report(b"w1", [gauge(3.0)])
    table.report(b"w2", [gauge(8.0)])
    assert values(table, "queue") == {(): 8.0}
    table.process_gone(b"w2")
    table.process_gone(b"w1")
    assert values(table, "queue") == {}


def test_histograms_add_bucket_by_bucket() -> None:
    table = MetricTable()
    hist = lambda counts, total: UserMetric("latency", "histogram", "", (), (0.1, 1.0),  # noqa: E731
                                            [((), (counts, total))])
    table.report(b"w1", [hist((1, 2, 0), 1.5)])
    table.report(b"w2", [hist((0, 1, 1), 3.0)])
    table.process_gone(b"w1")
    assert values(table, "latency") == {(): ((1, 3, 1), 4.5)}


def test_a_name_reported_with_another_kind_is_dropped(caplog) -> None:
    table = MetricTable()
    table.report(b"w1", [counter(1)])
    table.report(b"w2", [UserMetric("requests", "gauge", "", ("route",), (), [(("a",), 9.0)])])
    assert values(table, "requests") == {("a",): 1}
    assert "first seen as a counter" in caplog.text

"""ember.util.metrics: Ray's Counter/Gauge/Histogram, recorded per process and read by collect()."""

from __future__ import annotations

import math
import pickle
import uuid

import pytest

import ember
from ember.util import metrics
from ember.util.metrics import Counter, Gauge, Histogram, MetricFamily, collect

pytestmark = pytest.mark.timeout(60)


def _name() -> str:
    """A name no other test in this process uses (the registry is per process)."""
    return f"m_{uuid.uuid4().hex[:12]}"


def _family(name: str, families: list[MetricFamily] | None = None) -> MetricFamily:
    return next(f for f in (families if families is not None else collect()) if f.name == name)


def test_counter_adds_per_tag_combination_and_default_tags_fill_in() -> None:
    name = _name()
    c = Counter(name, description="requests served", tag_keys=("route", "code"))
    assert c.set_default_tags({"code": "200"}) is c
    c.inc(tags={"route": "/a"})
    c.inc(2.5, tags={"route": "/a"})
    c.inc(tags={"route": "/b", "code": "500"})
    fam = _family(name)
    assert (fam.kind, fam.description, fam.tag_keys) == ("counter", "requests served", ("route", "code"))
    assert {tuple(sorted(s.tags.items())): s.value for s in fam.samples} == {
        (("code", "200"), ("route", "/a")): 3.5, (("code", "500"), ("route", "/b")): 1.0}


def test_gauge_keeps_the_last_value_and_none_is_a_no_op() -> None:
    name = _name()
    g = Gauge(name)
    g.set(5)
    g.set(-2.5)
    g.set(None)
    assert [s.value for s in _family(name).samples] == [-2.5]


def test_histogram_counts_values_in_cumulative_buckets_with_sum_and_count() -> None:
    name = _name()
    h = Histogram(name, boundaries=[1, 10], tag_keys=("op",))
    for v in (0.5, 1, 3, 50):
        h.observe(v, tags={"op": "read"})
    (s,) = _family(name).samples
    assert s.tags == {"op": "read"}
    assert (s.value, s.count) == (54.5, 4)
    assert s.buckets == ((1.0, 2), (10.0, 3), (math.inf, 4))  # "<= bound", like Prometheus
    assert h.info["boundaries"] == [1, 10]


def test_recreating_a_metric_continues_its_series() -> None:
    """A task that builds Counter("x") on every call keeps one count (same process)."""
    name = _name()
    Counter(name).inc()
    Counter(name).inc()
    assert [s.value for s in _family(name).samples] == [2.0]


def test_info_and_pickling_keep_the_declaration() -> None:
    name = _name()
    h = Histogram(name, "d", boundaries=[0.5], tag_keys=("k",))
    clone = pickle.loads(pickle.dumps(h))
    assert clone.info == {"name": name, "description": "d", "tag_keys": ("k",), "default_tags": {},
                          "boundaries": [0.5]}
    assert Counter(_name(), "c").info["tag_keys"] == ()


def test_collect_is_a_picklable_snapshot() -> None:
    name = _name()
    c = Counter(name)
    c.inc()
    snapshot = collect()
    c.inc()
    assert _family(name, snapshot).samples[0].value == 1.0
    assert _family(name, pickle.loads(pickle.dumps(snapshot))).samples[0].value == 1.0


@pytest.mark.parametrize("make, error, words", [
    (lambda n: Counter(n, tag_keys=["a"]), TypeError, "tag_keys should be a tuple"),
    (lambda n: Counter(n, tag_keys=(1,)), TypeError, "tag keys must be str"),
    (lambda n: Counter(""), ValueError, "non-empty name"),
    (lambda n: Histogram(n), ValueError, "needs boundaries"),
    (lambda n: Histogram(n, boundaries=[0, 1]), ValueError, "positive"),
    (lambda n: Histogram(n, boundaries=[2, 1]), ValueError, "must increase"),
    (lambda n: Counter(n, tag_keys=("a",)).set_default_tags({"b": "x"}), ValueError,
     "unrecognized tag key 'b'"),
    (lambda n: Counter(n, tag_keys=("a",)).set_default_tags({"a": 1}), TypeError, "tag values must be str"),
    (lambda n: Counter(n, tag_keys=("a",)).inc(tags={"b": "x"}), ValueError,
     "unrecognized tag key 'b'.*tag_keys=\\('a', 'b'\\)"),
    (lambda n: Counter(n, tag_keys=("a",)).inc(), ValueError, "missing value for tag key"),
    (lambda n: Counter(n).inc(0), ValueError, "must be > 0"),
    (lambda n: Counter(n).inc(-1), ValueError, "must be > 0"),
    (lambda n: Counter(n).inc("1"), TypeError, "int or float"),
    (lambda n: Gauge(n).set(True), TypeError, "int or float"),
    (lambda n: Histogram(n, boundaries=[1]).observe("x"), TypeError, "int or float"),
])
def test_bad_inputs_are_typed_errors_that_name_the_metric(make, error, words) -> None:
    name = _name()
    with pytest.raises(error, match=words):
        make(name)


def test_one_name_cannot_be_two_kinds_of_metric() -> None:
    name = _name()
    Counter(name)
    with pytest.raises(ValueError, match=f"{name}.*already exists.*counter"):
        Gauge(name)
    with pytest.raises(ValueError, match="tag_keys"):
        Counter(name, tag_keys=("a",))
    Counter(name).inc()  # the first declaration still works


def test_an_invalid_name_is_warned_about_and_discarded_like_ray() -> None:
    with pytest.warns(UserWarning, match="invalid metric name 'my-metric'.*my_metric"):
        c = Counter("my-metric")
    c.inc()
    assert all(f.name != "my-metric" for f in collect())


def test_ray_names() -> None:
    assert {"Counter", "Gauge", "Histogram"} <= set(metrics.__all__)
    assert ember.util.metrics is metrics


@ember.remote
class _Recorder:
    def record(self, name: str) -> list[MetricFamily]:
        Counter(name, tag_keys=("who",)).inc(tags={"who": "actor"})
        Histogram(name + "_s", boundaries=[1.0]).observe(0.5)
        return [f for f in collect() if f.name.startswith(name)]


@ember.remote
def _task_records(name: str, metric: Gauge) -> float:
    metric.set(7)
    return _family(name).samples[0].value


def test_metrics_record_in_the_worker_that_runs_the_task_or_actor(ember_local) -> None:
    name = _name()
    actor = _Recorder.remote()
    ember.get(actor.record.remote(name))
    families = {f.name: f for f in ember.get(actor.record.remote(name))}
    assert families[name].samples[0].value == 2.0  # kept across calls in the actor's process
    assert families[name + "_s"].samples[0].count == 2
    assert all(f.name != name for f in collect())  # nothing recorded in the driver
    gauge_name = _name()
    assert ember.get(_task_records.remote(gauge_name, Gauge(gauge_name))) == 7.0
    with pytest.raises(ValueError, match="already exists in this process as a histogram"):
        ember.get(actor.record.remote(name + "_s"))  # a counter now clashes with the histogram name
    assert ember.get(actor.record.remote(name))  # the actor keeps working

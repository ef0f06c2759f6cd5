"""Application metrics: ``Counter``, ``Gauge`` and ``Histogram`` (Ray's ``ray.util.metrics``).

A metric records into a registry of the process it runs in (the driver, or the worker
running a task or actor). Nothing leaves the process here: ``collect()`` reads every
metric's current samples, and the node's Prometheus endpoint gathers them from its
workers. Creating a metric with a name the process already knows continues the same
series (a task that builds ``Counter("requests")`` on every call keeps one count), as
long as the kind, tag keys and boundaries agree.

Bad input raises ``ValueError``/``TypeError`` as Ray's metrics do, not an ``EmberError``:
raised inside a task, they reach the caller's ``except ValueError:`` (``get`` re-types
user-level exceptions, not ember's own).

    Counter("hits", tag_keys=("route",)).inc(tags={"route": "/a"})
        -> _Series(kind="counter")[("/a",)] += 1
    collect() -> [MetricFamily(name="hits", samples=(MetricSample({"route": "/a"}, 1.0),))]

Example:
    >>> from ember.util.metrics import Counter, collect
    >>> c = Counter("requests", description="served", tag_keys=("route",))
    >>> c.set_default_tags({"route": "/"}).inc()
    >>> [f.samples[0].value for f in collect() if f.name == "requests"]
    [1.0]
"""

from __future__ import annotations

import bisect
import math
import numbers
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Counter", "Gauge", "Histogram", "Metric", "MetricFamily", "MetricSample", "collect"]

#: What a metric is, as Prometheus names it.
MetricKind = Literal["counter", "gauge", "histogram"]

#: Prometheus' rule for metric names (Ray applies the same one): others are discarded.
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


@dataclass(frozen=True)
class MetricSample:
    """One tag combination's current value.

    ``value``: a counter's total, a gauge's last value, a histogram's sum of observations.
    ``count`` and ``buckets`` are the histogram's number of observations and its
    cumulative bucket counts as ``(upper bound, count <= bound)`` pairs, the last bound
    ``math.inf`` (Prometheus' ``le`` buckets, ready to export).
    """

    tags: dict[str, str]
    value: float
    count: int = 0
    buckets: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True)
class MetricFamily:
    """A metric and its samples at the moment ``collect()`` read them (plain data: picklable)."""

    name: str
    kind: MetricKind
    description: str
    tag_keys: tuple[str, ...]
    #: Histogram bucket upper bounds (without the final +Inf); () for other kinds.
    boundaries: tuple[float, ...]
    samples: tuple[MetricSample, ...]


class _Series:
    """The values of one metric name in this process, per tag-value tuple.

    Shared by every ``Metric`` object of that name (so re-creating a metric continues it).
    Histogram values are ``[sum, count, per-bucket counts...]`` (not cumulative).
    """

    def __init__(self, name: str, kind: MetricKind, description: str, tag_keys: tuple[str, ...],
                 boundaries: tuple[float, ...]) -> None:
        self.name = name
        self.kind = kind
        self.description = description
        self.tag_keys = tag_keys
        self.boundaries = boundaries
        self.lock = threading.Lock()
        #: tag values in tag_keys order -> value (counter, gauge) or histogram state.
        self.values: dict[tuple[str, ...], Any] = {}

    def record(self, key: tuple[str, ...], value: float) -> None:
        with self.lock:
            if self.kind == "counter":
                self.values[key] = self.values.get(key, 0.0) + value
            elif self.kind == "gauge":
                self.values[key] = value
            else:
                state = self.values.get(key)
                if state is None:
                    state = self.values[key] = [0.0, 0] + [0] * (len(self.boundaries) + 1)
                state[0] += value
                state[1] += 1
                # Prometheus buckets are "<= bound": a value equal to a bound counts in it.
                state[2 + bisect.bisect_left(self.boundaries, value)] += 1

    def family(self) -> MetricFamily:
        with self.lock:
            items = [(key, list(v) if isinstance(v, list) else v) for key, v in self.values.items()]
        samples = []
        for key, v in items:
            tags = dict(zip(self.tag_keys, key))
            if self.kind != "histogram":
                samples.append(MetricSample(tags, float(v)))
                continue
            cumulative, buckets = 0, []
            for bound, n in zip((*self.boundaries, math.inf), v[2:]):
                cumulative += n
                buckets.append((bound, cumulative))
            samples.append(MetricSample(tags, v[0], v[1], tuple(buckets)))
        return MetricFamily(self.name, self.kind, self.description, self.tag_keys,
                            self.boundaries, tuple(samples))


class _Registry:
    """Every metric series of this process, by name (in the order they were created)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.series: dict[str, _Series] = {}

    def series_for(self, name: str, kind: MetricKind, description: str, tag_keys: tuple[str, ...],
                   boundaries: tuple[float, ...]) -> _Series:
        """The series of ``name``, created on first use.

        Raises:
            ValueError: ``name`` exists here with another kind, tag keys or boundaries.
        """
        with self.lock:
            series = self.series.get(name)
            if series is None:
                series = self.series[name] = _Series(name, kind, description, tag_keys, boundaries)
                return series
        mine = (kind, tag_keys, boundaries)
        theirs = (series.kind, series.tag_keys, series.boundaries)
        if mine != theirs:
            raise ValueError(
                f"metric {name!r} already exists in this process as a {series.kind} with tag_keys="
                f"{series.tag_keys!r}" + (f" and boundaries={list(series.boundaries)!r}"
                                          if series.boundaries else "")
                + f"; it cannot also be a {kind} with tag_keys={tag_keys!r}"
                + (f" and boundaries={list(boundaries)!r}" if boundaries else "")
                + ". Give the new metric another name, or declare it the same way.")
        return series

    def collect(self) -> list[MetricFamily]:
        with self.lock:
            series = list(self.series.values())
        return [s.family() for s in series]


_REGISTRY = _Registry()


def collect() -> list[MetricFamily]:
    """Every metric recorded in this process, with its current samples.

    A snapshot (plain, picklable data), safe to call from any thread while tasks record.
    A metric with no recorded value yet appears with no samples. This is what the node's
    metrics endpoint reads from each process.

    Example:
        >>> Gauge("queue_depth").set(3)
        >>> {f.name: f.samples[0].value for f in collect()}["queue_depth"]
        3.0
    """
    return _REGISTRY.collect()


def _check_value(value: Any, what: str) -> float:
    """Raises TypeError unless ``value`` is a real number (Ray's check: bool is refused too)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: value must be int or float, got {type(value).__name__} ({value!r})")
    return float(value)


class Metric:
    """What ``Counter``, ``Gauge`` and ``Histogram`` share: a name, tag keys, default tags.

    Args:
        name: letters, digits, ``_`` and ``:``, not starting with a digit (Prometheus'
            rule). Another name is warned about and its values discarded, as in Ray.
        description: shown by the metrics endpoint.
        tag_keys: the tag names every record must give a value for (a tuple of str).

    Raises:
        ValueError: an empty name, or a name this process already uses for a
            different metric.
        TypeError: ``tag_keys`` is not a tuple of strings.
    """

    _kind: MetricKind = "gauge"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None,
                 _boundaries: tuple[float, ...] = ()) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a metric needs a non-empty name, got {name!r}; e.g. "
                                     f"{type(self).__name__}(\"requests_total\")")
        tag_keys = () if tag_keys is None else tag_keys
        if not isinstance(tag_keys, tuple):
            raise TypeError(f"metric {name!r}: tag_keys should be a tuple of str, got "
                            f"{type(tag_keys).__name__} {tag_keys!r}; e.g. tag_keys=(\"route\",)")
        for key in tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"metric {name!r}: tag keys must be str, got {key!r}")
        self._name = name
        self._description = description
        self._tag_keys = tag_keys
        self._default_tags: dict[str, str] = {}
        #: None when the name is not a valid Prometheus name: records are dropped (Ray's rule).
        self._series: _Series | None = None
        if _VALID_NAME.match(name):
            self._series = _REGISTRY.series_for(name, self._kind, description, tag_keys, _boundaries)
        else:
            warnings.warn(f"invalid metric name {name!r}: metric names may contain only letters, "
                          "digits, '_' and ':' and must not start with a digit; its values are "
                          f"discarded. Rename it, e.g. {re.sub(r'[^a-zA-Z0-9_:]', '_', name)!r}.",
                          UserWarning, stacklevel=3)

    def set_default_tags(self, default_tags: dict[str, str]) -> "Metric":
        """Tag values used when a record does not give them; returns the metric itself.

        Raises:
            ValueError: a key that is not one of ``tag_keys``.
            TypeError: a value that is not a str.
        """
        self._check_tags(default_tags, "set_default_tags")
        self._default_tags = dict(default_tags)
        return self

    def _check_tags(self, tags: dict[str, str], where: str) -> None:
        if not isinstance(tags, dict):
            raise TypeError(f"metric {self._name!r}: {where} takes a dict of str to str, got "
                            f"{type(tags).__name__}")
        for key, value in tags.items():
            if key not in self._tag_keys:
                declared = ", ".join(repr(k) for k in self._tag_keys) or "none"
                raise ValueError(
                    f"metric {self._name!r}: unrecognized tag key {key!r} in {where} (declared tag "
                    f"keys: {declared}). Add it to tag_keys when creating the metric, e.g. "
                    f"tag_keys={(*self._tag_keys, key)!r}.")
            if not isinstance(value, str):
                raise TypeError(f"metric {self._name!r}: tag values must be str, got {key}={value!r}")

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        if tags:
            self._check_tags(tags, "the tags of this record")
            final = {**self._default_tags, **tags}
        else:
            final = self._default_tags
        missing = [k for k in self._tag_keys if k not in final]
        if missing:
            raise ValueError(
                f"metric {self._name!r}: missing value for tag key(s) {', '.join(missing)}. Pass "
                f"tags={{{', '.join(f'{k!r}: ...' for k in missing)}}} or set them once with "
                "set_default_tags().")
        if self._series is not None:
            self._series.record(tuple(final[k] for k in self._tag_keys), value)

    @property
    def info(self) -> dict[str, Any]:
        """Name, description, tag keys and default tags (Ray's ``info``)."""
        return {"name": self._name, "description": self._description, "tag_keys": self._tag_keys,
                "default_tags": self._default_tags}

    def __reduce__(self) -> Any:
        # A metric passed to a task records in that task's process, under the same name.
        return (type(self), (self._name, self._description, self._tag_keys))


class Counter(Metric):
    """A total that only goes up (Prometheus' counter).

    Example:
        >>> Counter("jobs_done", tag_keys=("queue",)).inc(2, tags={"queue": "fast"})
    """

    _kind: MetricKind = "counter"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Add ``value`` (default 1) to the counter.

        Raises:
            ValueError: ``value`` <= 0, an undeclared tag key or a missing tag value.
            TypeError: ``value`` is not a number.
        """
        v = _check_value(value, f"Counter {self._name!r}.inc")
        if not v > 0:
            raise ValueError(f"Counter {self._name!r}.inc: value must be > 0, got {value!r}; "
                                     "a counter only goes up (use a Gauge for values that go down)")
        self._record(v, tags)


class Gauge(Metric):
    """The last value set (Prometheus' gauge); it may go up and down.

    Example:
        >>> Gauge("queue_depth").set(12)
    """

    _kind: MetricKind = "gauge"

    def __init__(self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None) -> None:
        super().__init__(name, description, tag_keys)

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        """Set the gauge to ``value``; ``None`` does nothing (as in Ray).

        Raises:
            ValueError: an undeclared tag key or a missing tag value.
            TypeError: ``value`` is not a number.
        """
        if value is None:
            return
        self._record(_check_value(value, f"Gauge {self._name!r}.set"), tags)


class Histogram(Metric):
    """Observations counted in buckets (Prometheus' histogram), with their sum and count.

    Args:
        boundaries: the buckets' upper bounds, positive and increasing (a last +Inf
            bucket is implied), e.g. ``[0.01, 0.1, 1, 10]``.

    Raises:
        ValueError: no boundaries, or one that is not positive or not increasing.

    Example:
        >>> Histogram("latency_s", boundaries=[0.1, 1.0]).observe(0.25)
    """

    _kind: MetricKind = "histogram"

    def __init__(self, name: str, description: str = "", boundaries: list[float] | None = None,
                 tag_keys: tuple[str, ...] | None = None) -> None:
        if not boundaries:
            raise ValueError(f"Histogram {name!r} needs boundaries, e.g. "
                                     f"Histogram({name!r}, boundaries=[0.1, 1.0, 10.0])")
        bounds = []
        for i, bound in enumerate(boundaries):
            b = _check_value(bound, f"Histogram {name!r} boundaries[{i}]")
            if not b > 0:
                raise ValueError(f"Histogram {name!r}: boundaries must be positive, got "
                                         f"{bound!r} at index {i} of {list(boundaries)!r}")
            if bounds and b <= bounds[-1]:
                raise ValueError(f"Histogram {name!r}: boundaries must increase, got "
                                         f"{list(boundaries)!r}; sort them and drop duplicates")
            bounds.append(b)
        self.boundaries = list(boundaries)
        super().__init__(name, description, tag_keys, _boundaries=tuple(bounds))

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket.

        Raises:
            ValueError: an undeclared tag key or a missing tag value.
            TypeError: ``value`` is not a number.
        """
        self._record(_check_value(value, f"Histogram {self._name!r}.observe"), tags)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": self.boundaries}

    def __reduce__(self) -> Any:
        return (Histogram, (self._name, self._description, self.boundaries, self._tag_keys))

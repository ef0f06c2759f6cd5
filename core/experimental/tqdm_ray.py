"""Progress bars from many tasks, drawn together on the driver (Ray's ``ray.experimental.tqdm_ray``).

A worker's stdout travels to the driver as log lines, so a plain ``tqdm`` in a task
would print one garbled line per refresh. ``tqdm_ray.tqdm`` instead writes its state as
one line tagged with ``PROGRESS_LINE_PREFIX``; the driver's runtime hands such lines to
the ``BarManager`` here, which keeps one real ``tqdm`` bar per (process, bar) and draws
them all in one display. In the driver itself the bar goes to the manager directly.

    task: tqdm_ray.tqdm(range(n)) --update--> "<prefix>{json state}" on stdout
    driver runtime: LogLines --startswith(prefix)--> BarManager.apply(source, state)
        -> tqdm.tqdm(position=k) per bar, other log lines printed above the bars

Example:
    >>> from ember.experimental import tqdm_ray
    >>> @ember.remote
    ... def work(n):
    ...     for _ in tqdm_ray.tqdm(range(n), desc="work"):
    ...         pass
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from typing import Any, Iterable, Iterator, TextIO

import tqdm as _tqdm

from .._wire.protocol import PROGRESS_LINE_PREFIX

__all__ = ["tqdm", "safe_print"]


def _stdout_goes_to_the_driver() -> bool:
    """True in a worker: its sys.stdout forwards whole lines to the driver."""
    return bool(getattr(sys.stdout, "forwards_to_driver", False))


class tqdm:  # noqa: N801 - Ray's name
    """A progress bar usable inside tasks and actors (Ray's ``tqdm_ray.tqdm``).

    Args:
        iterable: what to iterate over (optional: call ``update`` yourself).
        desc: the bar's label.
        total: the expected number of steps (default ``len(iterable)`` when it has one).
        unit: what a step is called ("it").
        position: the bar's row (default: the next free row on the driver).
        flush_interval_s: at most how often a task sends its state to the driver.

    Raises:
        ValueError: ``total`` or ``flush_interval_s`` negative.
    """

    def __init__(self, iterable: Iterable | None = None, desc: str | None = None,
                 total: int | None = None, unit: str | None = None, position: int | None = None,
                 flush_interval_s: float = 1.0) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        if total is not None and total < 0:
            raise ValueError(f"tqdm_ray.tqdm(total={total!r}): total must be >= 0 or None")
        if flush_interval_s < 0:
            raise ValueError(f"tqdm_ray.tqdm(flush_interval_s={flush_interval_s!r}) must be >= 0")
        self._iterable = iterable
        self._desc = desc or ""
        self._total = total
        self._unit = unit or "it"
        self._position = position
        self._flush_interval_s = flush_interval_s
        self._x = 0
        self._closed = False
        self._uuid = uuid.uuid4().hex
        self._last_flush = 0.0
        self._send(force=True)

    # --- Ray's methods ------------------------------------------------------------------

    def set_description(self, desc: str) -> None:
        self._desc = desc
        self._send(force=False)

    def update(self, n: int = 1) -> None:
        self._x += n
        self._send(force=False)

    def refresh(self) -> None:
        self._send(force=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._send(force=True)

    @property
    def total(self) -> int | None:
        return self._total

    @total.setter
    def total(self, total: int | None) -> None:
        self._total = total
        self._send(force=True)

    @property
    def n(self) -> int:
        return self._x

    def __iter__(self) -> Iterator[Any]:
        if self._iterable is None:
            raise ValueError("tqdm_ray.tqdm was created without an iterable; call update() instead")
        for item in self._iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "tqdm":
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    # --- state ----------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {"uuid": self._uuid, "desc": self._desc, "x": self._x, "total": self._total,
                "unit": self._unit, "position": self._position, "closed": self._closed}

    def _send(self, force: bool) -> None:
        now = time.monotonic()
        if not force and now - self._last_flush < self._flush_interval_s:
            return
        self._last_flush = now
        if _stdout_goes_to_the_driver():
            # One whole line: the worker's stdout forwards it to the driver as it is.
            sys.stdout.write(PROGRESS_LINE_PREFIX + json.dumps(self._state()) + "\n")
            sys.stdout.flush()
        else:
            manager().apply("", self._state())


class BarManager:
    """The driver's bars: one ``tqdm.tqdm`` per (source, bar uuid), each on its own row.

    Thread-safe: log lines arrive on the runtime's reader thread while the driver's own
    bars update from user threads.
    """

    def __init__(self, file: TextIO | None = None) -> None:
        self._file = file
        self._lock = threading.Lock()
        #: (source prefix, bar uuid) -> the tqdm drawing it.
        self._bars: dict[tuple[str, str], _tqdm.tqdm] = {}
        self._next_position = 0
        #: How many bars were closed so far (their final state drawn).
        self.closed_count = 0

    def _stream(self) -> TextIO:
        return self._file if self._file is not None else sys.stderr

    def apply(self, source: str, state: dict[str, Any]) -> None:
        """Bring the bar ``state`` describes up to date (created on first sight, closed when
        the state says so). ``source`` is the log prefix of the task, e.g. "(work pid=12)"."""
        key = (source, state["uuid"])
        desc = f"{state['desc']} {source}".strip()
        with self._lock:
            bar = self._bars.get(key)
            if bar is None:
                if state.get("closed") and state["x"] == 0 and state["total"] is None:
                    return
                position = state.get("position")
                if position is None:
                    position = self._next_position
                    self._next_position += 1
                bar = self._bars[key] = _tqdm.tqdm(desc=desc, total=state["total"], unit=state["unit"],
                                                   position=position, file=self._stream(), leave=True,
                                                   dynamic_ncols=True)
            bar.total = state["total"]
            bar.set_description(desc, refresh=False)
            bar.n = state["x"]
            bar.refresh()
            if state.get("closed"):
                bar.close()
                del self._bars[key]
                self.closed_count += 1
                if not self._bars:
                    self._next_position = 0

    def apply_line(self, source: str, line: str) -> None:
        """A tagged log line from a worker (the prefix already checked by the caller)."""
        try:
            state = json.loads(line[len(PROGRESS_LINE_PREFIX):])
        except ValueError:  # not ours after all: show it as it came
            self.write(f"{source} {line}\n", self._stream())
            return
        self.apply(source, state)

    def write(self, text: str, stream: TextIO) -> None:
        """Print log text above the bars (cleared and redrawn around it)."""
        with self._lock:
            if not self._bars:
                stream.write(text)
                stream.flush()
                return
            with _tqdm.tqdm.external_write_mode(file=stream):
                stream.write(text)
                stream.flush()

    def open_bars(self) -> list[dict[str, Any]]:
        """What is drawn now: desc, n and total of each open bar (for tests and tools)."""
        with self._lock:
            return [{"desc": b.desc, "n": b.n, "total": b.total} for b in self._bars.values()]


_MANAGER: BarManager | None = None
_MANAGER_LOCK = threading.Lock()


def manager() -> BarManager:
    """This process's bar manager (created on first use)."""
    global _MANAGER
    with _MANAGER_LOCK:
        if _MANAGER is None:
            _MANAGER = BarManager()
        return _MANAGER


def safe_print(*args: Any, **kwargs: Any) -> None:
    """``print`` that does not tear the bars drawn on the driver (Ray's ``safe_print``)."""
    sep, end = kwargs.pop("sep", " "), kwargs.pop("end", "\n")
    stream = kwargs.pop("file", None) or sys.stdout
    text = sep.join(str(a) for a in args) + end
    if _stdout_goes_to_the_driver():
        stream.write(text)
        return
    manager().write(text, stream)

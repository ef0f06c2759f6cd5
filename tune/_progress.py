"""The live status table of a sweep: trial, status, params, last metric, iterations.

Shown only with ``verbose >= 1``; redrawn at most every ``interval_s`` (so a sweep of
thousands of fast trials does not spend its time printing) and once at the end. In a
notebook the table is HTML, updated in place through IPython's display handles; in a
terminal it is compact text on stdout. ``verbose >= 2`` also logs every result.
"""

from __future__ import annotations

import collections
import html
import logging
import sys
import time
from typing import Any

from .trial import Trial, flatten, lookup

logger = logging.getLogger("ember.tune")

MAX_ROWS = 20


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 20 else text[:19] + "…"


class StatusReporter:
    """Draws the status table (see the module docstring)."""

    def __init__(self, verbose: int, metric: str | None, mode: str | None,
                 interval_s: float | None = None) -> None:
        self.verbose = verbose
        self.metric = metric
        self.mode = mode
        self.notebook = _in_notebook()
        self.interval_s = interval_s if interval_s is not None else (
            1.0 if self.notebook else 5.0)
        self._last = 0.0
        self._handle: Any = None

    def on_result(self, trial: Trial, result: dict[str, Any]) -> None:
        if self.verbose >= 2:
            shown = {k: v for k, v in result.items() if not isinstance(v, (dict, list))}
            logger.info("trial %s result: %s", trial, shown)

    def rows(self, trials: list[Trial]) -> tuple[list[str], list[list[str]]]:
        """The table's header and rows (running trials first, at most ``MAX_ROWS``)."""
        params = list(dict.fromkeys(k for t in trials[:200] for k in flatten(t.config)))[:6]
        header = ["trial", "status", *params, "iter"]
        if self.metric:
            header.append(self.metric)
        order = {"RUNNING": 0, "PAUSED": 1, "PENDING": 2, "ERROR": 3, "TERMINATED": 4}
        shown = sorted(trials, key=lambda t: (order.get(t.status, 5), t.index))[:MAX_ROWS]
        rows = []
        for trial in shown:
            flat = flatten(trial.config)
            row = [str(trial), trial.status, *[_fmt(flat.get(p, "")) for p in params],
                   str(trial.iteration)]
            if self.metric:
                value = lookup(trial.last_result, self.metric)
                row.append("" if value is None else _fmt(value))
            rows.append(row)
        return header, rows

    def summary(self, trials: list[Trial]) -> str:
        counts = collections.Counter(t.status for t in trials)
        text = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if self.metric and self.mode:
            scored = [(v, t) for t in trials for v in [lookup(t.last_result, self.metric)]
                      if isinstance(v, (int, float))]
            if scored:
                pick = max if self.mode == "max" else min
                value, best = pick(scored, key=lambda item: item[0])
                text += f" | best {self.metric}={_fmt(value)} ({best})"
        return f"Trials: {len(trials)} ({text})"

    def maybe_report(self, trials: list[Trial], final: bool = False) -> None:
        if self.verbose < 1 or not trials:
            return
        now = time.monotonic()
        if not final and now - self._last < self.interval_s:
            return
        self._last = now
        header, rows = self.rows(trials)
        if self.notebook:
            self._show_html(trials, header, rows)
            return
        widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
        lines = [self.summary(trials),
                 "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        if len(trials) > len(rows):
            lines.append(f"... {len(trials) - len(rows)} more trials")
        sys.stdout.write("\n".join(lines) + "\n\n")
        sys.stdout.flush()

    def _show_html(self, trials: list[Trial], header: list[str], rows: list[list[str]]) -> None:
        from IPython.display import HTML, display
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                       for row in rows)
        page = HTML(f"<b>{html.escape(self.summary(trials))}</b><table><tr>{cells}</tr>"
                    f"{body}</table>")
        if self._handle is None:
            self._handle = display(page, display_id=True)
        else:
            self._handle.update(page)

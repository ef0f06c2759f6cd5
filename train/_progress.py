"""What the driver shows while a run trains: a progress line per report.

In a terminal it is a tqdm line (reports so far, the latest metrics); in a notebook a
small table of the latest reports that updates in place. Off when output goes to a file
or a test log, unless ``RunConfig(verbose=1)`` asks for it; ``verbose=0`` silences it.
"""

from __future__ import annotations

import sys
from typing import Any

#: Rows of the notebook table (the most recent reports).
TABLE_ROWS = 8


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where a live table replaces the tqdm line)."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    ip = get_ipython() if get_ipython is not None else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_enabled(verbose: int | None) -> bool:
    if verbose is not None:
        return verbose > 0
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or in_notebook()


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in metrics.items()
            if isinstance(v, (int, float, str, bool))}


class RunProgress:
    """One run's progress display; a disabled one accepts the same calls and shows nothing."""

    def __init__(self, name: str, verbose: int | None) -> None:
        self._name = name
        self._bar: Any = None
        self._table: Any = None
        self._rows: list[dict[str, Any]] = []
        if not progress_enabled(verbose):
            return
        if in_notebook():
            from IPython.display import display
            self._table = display(self._html(), display_id=True)
        else:
            from tqdm import tqdm
            self._bar = tqdm(desc=f"{name}", unit=" report", dynamic_ncols=True, leave=True)

    def _html(self) -> Any:
        import pandas as pd
        from IPython.display import HTML
        frame = pd.DataFrame(self._rows[-TABLE_ROWS:])
        body = frame.to_html(index=False) if len(frame) else "<i>waiting for the first report</i>"
        return HTML(f"<b>{self._name}</b>: {len(self._rows)} report(s)<br>{body}")

    def update(self, metrics: dict[str, Any]) -> None:
        row = _scalars(metrics)
        self._rows.append(row)
        if self._bar is not None:
            self._bar.set_postfix(row, refresh=False)
            self._bar.update(1)
        elif self._table is not None:
            self._table.update(self._html())

    def note(self, text: str) -> bool:
        """A one-off line (a restart, say) above the progress line; False when not shown."""
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
            return True
        if self._table is not None:
            import html
            from IPython.display import HTML, display
            display(HTML(f"<pre>{html.escape(text)}</pre>"))
            return True
        return False

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

"""Per-operator progress bars (tqdm), shown in terminals and notebooks only.

``DataContext.enable_progress_bars``: ``True`` always shows them, ``False`` never, and
``None`` (default) shows them when stderr is a terminal or the driver is a notebook
kernel, so logs of batch jobs and test runs stay clean.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from ember.data.context import DataContext


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def progress_enabled(ctx: DataContext) -> bool:
    """Whether bars should be drawn under this context."""
    if ctx.enable_progress_bars is not None:
        return bool(ctx.enable_progress_bars)
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or _in_notebook()


def _tqdm_class() -> Any:
    if _in_notebook():
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook needs it)
            from tqdm.notebook import tqdm as notebook_tqdm
            return notebook_tqdm
        except ImportError:
            pass
    from tqdm import tqdm
    return tqdm


class ProgressBar:
    """One operator's bar: rows produced out of the estimated total.

    A disabled bar accepts the same calls and draws nothing, so callers need no checks.
    """

    def __init__(self, name: str, total_rows: Optional[int], position: int, enabled: bool) -> None:
        self._bar: Any = None
        if enabled:
            self._bar = _tqdm_class()(desc=name, total=total_rows, position=position,
                                      unit=" row", leave=True, dynamic_ncols=True)

    def update(self, rows: int, active_tasks: int = 0) -> None:
        """Advance by ``rows`` and show how many tasks are running."""
        if self._bar is not None:
            if rows:
                self._bar.update(rows)
            self._bar.set_postfix_str(f"{active_tasks} running", refresh=False)

    def finish(self) -> None:
        """Set the total to what was produced and close the bar."""
        if self._bar is not None:
            self._bar.total = self._bar.n
            self._bar.refresh()
            self._bar.close()
            self._bar = None

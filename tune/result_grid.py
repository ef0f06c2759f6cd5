"""``ResultGrid``: the outcome of a sweep, one ``Result`` per trial (Ray's class)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pandas as pd

from ember.train import Result

from .errors import TuneConfigError
from .trial import flatten, lookup

__all__ = ["ResultGrid"]

_SCOPES = ("last", "avg", "last-5-avg", "last-10-avg", "all")


class ResultGrid:
    """Results of every trial, best-of queries and a DataFrame.

    Example:
        >>> grid = tuner.fit()
        >>> grid.get_best_result("loss", "min").config
        >>> grid.get_dataframe().sort_values("loss").head()
    """

    def __init__(self, results: list[Result], experiment_path: str, metric: str | None = None,
                 mode: str | None = None, trial_ids: list[str] | None = None) -> None:
        self._results = results
        self.experiment_path = experiment_path
        self._metric, self._mode = metric, mode
        self._trial_ids = trial_ids or [""] * len(results)

    def __len__(self) -> int:
        return len(self._results)

    def __getitem__(self, index: int) -> Result:
        return self._results[index]

    def __iter__(self) -> Iterator[Result]:
        return iter(self._results)

    @property
    def errors(self) -> list[BaseException]:
        """The error of every trial that failed for good."""
        return [r.error for r in self._results if r.error is not None]

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    @property
    def num_terminated(self) -> int:
        return sum(1 for r in self._results if r.error is None)

    def _scored(self, result: Result, metric: str, scope: str, mode: str) -> float | None:
        if scope == "last":
            values = [lookup(result.metrics or {}, metric)]
        else:
            frame = result.metrics_dataframe
            if frame is None or metric not in frame:
                return None
            series = [v for v in frame[metric].tolist() if isinstance(v, (int, float))]
            if scope == "all":
                if not series:
                    return None
                return max(series) if mode == "max" else min(series)
            tail = {"avg": len(series), "last-5-avg": 5, "last-10-avg": 10}[scope]
            values = series[-tail:] if series else [None]
            values = [sum(values) / len(values)] if series else [None]
        value = values[0]
        if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value):
            return None
        return float(value)

    def get_best_result(self, metric: str | None = None, mode: str | None = None,
                        scope: str = "last", filter_nan_and_inf: bool = True) -> Result:
        """The trial with the best ``metric`` (default: ``TuneConfig.metric``/``mode``).

        Args:
            scope: ``"last"`` compares each trial's last result; ``"all"`` its best one;
                ``"avg"``, ``"last-5-avg"``, ``"last-10-avg"`` the mean of its results.

        Raises:
            TuneConfigError: no metric/mode, a bad mode or scope, or a metric no trial
                reported (the message lists the reported keys).
        """
        metric = metric or self._metric
        mode = mode or self._mode
        if not metric or not mode:
            raise TuneConfigError("get_best_result(): no metric/mode: pass them here or to "
                                  "TuneConfig(metric=..., mode=...)")
        if mode not in ("min", "max"):
            raise TuneConfigError(f"get_best_result(mode={mode!r}): use 'min' or 'max'")
        if scope not in _SCOPES:
            raise TuneConfigError(f"get_best_result(scope={scope!r}): use one of {_SCOPES}")
        scored = [(s, r) for r in self._results
                  for s in [self._scored(r, metric, scope, mode)] if s is not None]
        if not scored:
            reported = sorted({k for r in self._results for k in flatten(r.metrics or {})})
            if not reported:
                raise TuneConfigError(f"get_best_result({metric!r}): no trial reported any "
                                      f"result ({self.num_errors} errors: see .errors)")
            raise TuneConfigError(f"get_best_result(metric={metric!r}): no trial reported "
                                  f"it; the reported keys are {reported}")
        pick = max if mode == "max" else min
        return pick(scored, key=lambda item: item[0])[1]

    def get_dataframe(self, filter_metric: str | None = None,
                      filter_mode: str | None = None) -> pd.DataFrame:
        """One row per trial: its last result (or best by ``filter_metric``) and config.

        Nested metrics and the config are flattened into ``a/b`` and ``config/a/b`` columns.
        """
        rows = []
        for trial_id, result in zip(self._trial_ids, self._results):
            metrics = dict(result.metrics or {})
            if filter_metric and result.metrics_dataframe is not None and \
                    filter_metric in result.metrics_dataframe:
                frame = result.metrics_dataframe
                index = frame[filter_metric].idxmax() if filter_mode == "max" \
                    else frame[filter_metric].idxmin()
                metrics = frame.loc[index].to_dict()
            row = {k: v for k, v in flatten(metrics).items() if not k.startswith("config/")}
            row.update({f"config/{k}": v for k, v in flatten(result.config or {}).items()})
            row.setdefault("trial_id", trial_id)
            row["logdir"] = result.path
            if result.error is not None:
                row["error"] = type(result.error).__name__
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"ResultGrid<{len(self)} trials, {self.num_terminated} terminated, "
                f"{self.num_errors} errors>")

"""Execution statistics behind ``Dataset.stats()``: per-operator time, rows and bytes."""

from __future__ import annotations

import dataclasses
import statistics
from typing import Optional


@dataclasses.dataclass
class OperatorStats:
    """What one physical operator did in one execution.

    Attributes:
        name: the (fused) operator name, e.g. ``"ReadParquet->MapBatches(f)"``.
        tasks: tasks (or actor calls) run.
        task_exec_s: wall seconds of each task, measured inside the task.
        rows_out / bytes_out / blocks_out: output totals.
        wall_s: from the operator's first work to its completion, on the driver.
    """

    name: str
    tasks: int
    task_exec_s: list[float]
    rows_out: int
    bytes_out: int
    blocks_out: int
    wall_s: float

    def to_string(self, number: int) -> str:
        """Human-readable summary in the shape of Ray Data's stats output."""
        lines = [f"Operator {number} {self.name}: {self.tasks} tasks executed, "
                 f"{self.blocks_out} blocks produced in {self.wall_s:.2f}s"]
        if self.task_exec_s:
            t = self.task_exec_s
            lines.append(f"* Remote wall time: {min(t) * 1e3:.1f}ms min, {max(t) * 1e3:.1f}ms max, "
                         f"{statistics.fmean(t) * 1e3:.1f}ms mean, {sum(t):.2f}s total")
        lines.append(f"* Output num rows: {self.rows_out} total")
        lines.append(f"* Output size bytes: {self.bytes_out} total "
                     f"({self.bytes_out / max(self.blocks_out, 1):.0f} per block)")
        if self.wall_s > 0:
            lines.append(f"* Throughput: {self.rows_out / self.wall_s:,.0f} rows/s")
        return "\n".join(lines)


@dataclasses.dataclass
class DatasetStats:
    """Statistics of one execution of a dataset.

    Attributes:
        operators: one entry per physical operator, upstream first.
        wall_s: total execution wall time.
        peak_held_bytes: most block bytes the executor held at once (its budget measure).
        budget_bytes: the object store budget the executor kept to.
    """

    operators: list[OperatorStats] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0
    peak_held_bytes: int = 0
    budget_bytes: int = 0
    parent: Optional["DatasetStats"] = None

    def to_string(self) -> str:
        """All operators' summaries, including those of a materialized parent."""
        parts = []
        if self.parent is not None:
            parts.append(self.parent.to_string())
        for i, op in enumerate(self.operators, start=1):
            parts.append(op.to_string(i))
        if self.operators:
            parts.append(f"Dataset execution: {self.wall_s:.2f}s wall, peak "
                         f"{self.peak_held_bytes / 2**20:.1f} MiB held of a "
                         f"{self.budget_bytes / 2**20:.1f} MiB budget")
        return "\n\n".join(parts) if parts else "(the dataset has not been executed yet)"

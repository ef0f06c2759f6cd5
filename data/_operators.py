"""Physical operators: the running form of plan nodes, driven by the streaming executor.

An operator is a plain object that the executor feeds and polls; it never blocks and it
never waits on its own. The executor:

1. routes each ``get_next()`` bundle of an operator into ``add_input`` of the next one,
   and calls ``input_done`` when an upstream operator has finished;
2. calls ``launch()`` while ``can_launch()`` holds and the memory budget allows;
3. waits on every operator's ``waitables()`` (ObjectRefs) and hands each ready one back
   to the operator that owns it with ``on_ready``.

Map operators live in ``_map_operator.py``; this module has the base class and the
operators that move bundles without running user code: the input buffer, limit, union,
and the barrier that runs shuffles, sorts and aggregations.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Callable, Optional

from ember.data._block import BlockMetadata, RefBundle


class OperatorMetrics:
    """Counters shown by progress bars and ``stats()``.

    Attributes:
        tasks: tasks launched.
        task_exec_s: wall seconds each finished task spent (measured in the task).
        rows_out / bytes_out / blocks_out: what the operator produced.
        start_s / end_s: wall clock of the first launch and of completion.
    """

    def __init__(self) -> None:
        self.tasks = 0
        self.task_exec_s: list[float] = []
        self.rows_out = 0
        self.bytes_out = 0
        self.blocks_out = 0
        self.start_s: Optional[float] = None
        self.end_s: Optional[float] = None

    def started(self) -> None:
        """Record the first sign of work."""
        if self.start_s is None:
            self.start_s = time.perf_counter()

    def produced(self, bundle: RefBundle) -> None:
        """Count an output bundle."""
        self.rows_out += bundle.num_rows
        self.bytes_out += bundle.size_bytes
        self.blocks_out += len(bundle.blocks)


class PhysicalOperator:
    """Base class: input/output queues and completion bookkeeping.

    Subclasses override ``add_input`` (or ``_on_all_inputs_done``), and for operators
    that run tasks ``can_launch``/``launch``/``waitables``/``on_ready``.
    """

    def __init__(self, name: str, inputs: list["PhysicalOperator"]) -> None:
        self.name = name
        self.input_dependencies = inputs
        self.metrics = OperatorMetrics()
        self._outputs: collections.deque[RefBundle] = collections.deque()
        self._inputs_done = [False] * len(inputs)
        #: Set when downstream no longer needs output (a satisfied limit): drop queued
        #: input and launch nothing more.
        self.finished_early = False
        #: Row count the progress bar counts towards, when known.
        self.estimated_rows: Optional[int] = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Called once before any input arrives."""

    def shutdown(self) -> None:
        """Release actors and references; called once, also after errors."""
        self._outputs.clear()

    # -- input -----------------------------------------------------------------------
    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        """Receive a bundle from upstream operator ``input_index``."""
        raise NotImplementedError

    def input_done(self, input_index: int) -> None:
        """Upstream operator ``input_index`` will send nothing more."""
        if not self._inputs_done[input_index]:
            self._inputs_done[input_index] = True
            if all(self._inputs_done):
                self._on_all_inputs_done()

    def all_inputs_done(self) -> bool:
        """Whether every upstream operator has finished."""
        return all(self._inputs_done)

    def _on_all_inputs_done(self) -> None:
        """Hook: every input has arrived."""

    def mark_finished(self) -> None:
        """Stop work: downstream needs no more output."""
        self.finished_early = True

    # -- output ----------------------------------------------------------------------
    def _emit(self, bundle: RefBundle) -> None:
        self.metrics.produced(bundle)
        self._outputs.append(bundle)

    def has_next(self) -> bool:
        """Whether an output bundle is ready."""
        return bool(self._outputs)

    def get_next(self) -> RefBundle:
        """Take the next output bundle."""
        return self._outputs.popleft()

    # -- tasks -----------------------------------------------------------------------
    def can_launch(self) -> bool:
        """Whether ``launch`` would start a task now (ignoring the memory budget)."""
        return False

    def launch(self) -> None:
        """Start one task."""

    def next_launch_bytes(self) -> int:
        """Estimated bytes the next launched task adds to the object store."""
        return 0

    def waitables(self) -> list[Any]:
        """ObjectRefs whose readiness this operator is waiting for."""
        return []

    def on_ready(self, ref: Any) -> None:
        """One of ``waitables()`` is ready."""

    def num_active_tasks(self) -> int:
        """Tasks launched and not yet finished."""
        return 0

    def check_health(self) -> None:
        """Raise if the operator can never make progress (e.g. unplaceable actors)."""

    # -- memory ----------------------------------------------------------------------
    def held_bytes(self) -> int:
        """Bytes of blocks queued in this operator or being produced by its tasks."""
        return sum(b.size_bytes for b in self._outputs)

    def completed(self) -> bool:
        """No more output will be produced (queued outputs may remain)."""
        return (self.all_inputs_done() or self.finished_early) and self.num_active_tasks() == 0


class InputDataBuffer(PhysicalOperator):
    """Source operator for bundles that already exist (blocks or read tasks)."""

    def __init__(self, name: str, bundles: list[RefBundle]) -> None:
        super().__init__(name, [])
        self._pending = list(bundles)
        self.estimated_rows = sum(b.num_rows for b in bundles) or None

    def start(self) -> None:
        self.metrics.started()
        for bundle in self._pending:
            self._emit(bundle)
        self._pending = []
        self.metrics.end_s = time.perf_counter()

    def completed(self) -> bool:
        return True

    def held_bytes(self) -> int:
        # Existing blocks occupy the store whether or not they are queued here; read tasks
        # (metadata estimates) occupy nothing yet.
        return 0


class LimitOperator(PhysicalOperator):
    """Passes the first ``limit`` rows; slices the bundle that crosses the limit."""

    def __init__(self, name: str, upstream: PhysicalOperator, limit: int,
                 slice_fn: Callable[[Any, BlockMetadata, int], tuple[Any, BlockMetadata]]) -> None:
        super().__init__(name, [upstream])
        self._remaining = limit
        self._slice_fn = slice_fn
        self.estimated_rows = limit
        if limit == 0:
            self.finished_early = True

    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        self.metrics.started()
        if self._remaining <= 0:
            return
        kept: list[tuple[Any, BlockMetadata]] = []
        for ref, meta in bundle.blocks:
            if self._remaining <= 0:
                break
            if meta.num_rows <= self._remaining:
                kept.append((ref, meta))
                self._remaining -= meta.num_rows
            else:
                kept.append(self._slice_fn(ref, meta, self._remaining))
                self._remaining = 0
        if kept:
            self._emit(RefBundle(kept, bundle.index))
        if self._remaining <= 0:
            self.finished_early = True

    def completed(self) -> bool:
        return self.finished_early or self.all_inputs_done()


class UnionOperator(PhysicalOperator):
    """Emits the bundles of input 0, then of input 1, ... (order kept across inputs)."""

    def __init__(self, name: str, inputs: list[PhysicalOperator]) -> None:
        super().__init__(name, inputs)
        self._held: list[list[RefBundle]] = [[] for _ in inputs]
        self._current = 0

    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        self.metrics.started()
        if input_index == self._current:
            self._emit(bundle)
        else:
            self._held[input_index].append(bundle)

    def input_done(self, input_index: int) -> None:
        super().input_done(input_index)
        while self._current < len(self._held) and self._inputs_done[self._current]:
            self._current += 1
            if self._current < len(self._held):
                for bundle in self._held[self._current]:
                    self._emit(bundle)
                self._held[self._current] = []

    def held_bytes(self) -> int:
        return super().held_bytes() + sum(b.size_bytes for q in self._held for b in q)


class BarrierOperator(PhysicalOperator):
    """Collects every input, then runs ``fn`` (which launches and waits on its own tasks).

    Shuffles, sorts, aggregations and zips need all rows before the first output exists;
    they run synchronously on the driver once inputs are complete, because nothing
    upstream is left running by then.
    """

    def __init__(self, name: str, inputs: list[PhysicalOperator],
                 fn: Callable[[list[list[RefBundle]]], list[RefBundle]]) -> None:
        super().__init__(name, inputs)
        self._fn = fn
        self._collected: list[list[RefBundle]] = [[] for _ in inputs]

    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        self.metrics.started()
        self._collected[input_index].append(bundle)

    def _on_all_inputs_done(self) -> None:
        self.metrics.started()
        inputs, self._collected = self._collected, [[] for _ in self._collected]
        outputs = self._fn(inputs)
        for bundle in outputs:
            self._emit(bundle)
        self.metrics.tasks += len(outputs)

    def held_bytes(self) -> int:
        return super().held_bytes() + sum(b.size_bytes for q in self._collected for b in q)

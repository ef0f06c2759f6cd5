"""The streaming executor: runs a topology of physical operators with bounded memory.

::

    consumer --next()--> execute() loop, on the consumer's thread:
        route:  op.get_next() --> downstream.add_input()      (bundles of refs only)
        launch: for op from the sink upstream: while op.can_launch() and budget allows
        wait:   ember.wait(all ops' waitables, num_returns=1) --> op.on_ready(ref)
        yield:  the sink's output bundles, one at a time

Every operator runs at once: while the consumer works on one bundle, tasks of every
stage are in flight on the workers. The executor itself never fetches a block.

Backpressure (:class:`Budget`): bytes the pipeline holds in the object store -- bundles
queued between operators, blocks being produced, outputs not yet taken by the consumer
-- are kept under a budget (DataContext resource limits, or a share of the object
store). Only operators that bring *new* data into the pipeline (reads, and the first
map over existing blocks) wait for budget; operators further down may always launch,
because their inputs already occupy memory and running them is how memory drains. If
nothing is running and nothing waits for the consumer, one task may launch regardless,
so a single block larger than the budget still makes progress. A pipeline over data
many times the object store therefore completes: the consumer's pace bounds what is
produced.

With ``execute(background=True)`` the same loop runs on a thread owned by the
executor, so tasks keep being launched while the consumer works; bundles handed over
but not yet taken count against the budget.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Iterator, Optional

import ember
from ember.data._block import RefBundle
from ember.data._operators import InputDataBuffer, PhysicalOperator
from ember.data._progress import ProgressBar, progress_enabled
from ember.data._stats import DatasetStats, OperatorStats
from ember.data.context import DataContext

_FALLBACK_STORE_BYTES = 2 * 1024**3


class Budget:
    """Decides whether an operator may launch a task; no I/O, plain numbers in.

    Args:
        limit_bytes: most bytes of blocks the pipeline should hold.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = max(int(limit_bytes), 1)
        self.peak_bytes = 0

    def observe(self, held_bytes: int) -> None:
        """Record the current usage (for ``stats()``)."""
        self.peak_bytes = max(self.peak_bytes, held_bytes)

    def may_launch(self, admits_new_data: bool, held_bytes: int, launch_bytes: int,
                   progressing: bool) -> bool:
        """Whether a launch fits.

        Args:
            admits_new_data: the operator reads or first touches data (it is fed by a
                source); only such operators are held back.
            held_bytes: bytes the pipeline holds now.
            launch_bytes: estimated bytes the launch adds.
            progressing: whether any task is in flight or output waits for the
                consumer (either will free or produce memory without a new launch).

        Returns:
            True if the operator may launch one task now.

        Example:
            >>> Budget(100).may_launch(True, 90, 20, progressing=True)
            False
        """
        if not admits_new_data or not progressing:
            return True
        return held_bytes + launch_bytes <= self.limit_bytes


def default_budget_bytes(ctx: DataContext) -> int:
    """The executor's object store budget under ``ctx``."""
    limit = ctx.execution_options.resource_limits.object_store_memory
    if limit is not None:
        return int(limit)
    try:
        store = ember.cluster_resources().get("object_store_memory", _FALLBACK_STORE_BYTES)
    except ember.exceptions.EmberError:
        store = _FALLBACK_STORE_BYTES
    return int(float(store) * ctx.object_store_memory_fraction)


def _topological(root: PhysicalOperator) -> list[PhysicalOperator]:
    order: list[PhysicalOperator] = []
    seen: set[int] = set()

    def visit(op: PhysicalOperator) -> None:
        if id(op) in seen:
            return
        seen.add(id(op))
        for up in op.input_dependencies:
            visit(up)
        order.append(op)

    visit(root)
    return order


class StreamingExecutor:
    """Runs one topology once; iterate :meth:`execute` to drive it.

    Args:
        root: the sink operator; its outputs are the dataset's blocks.
        ctx: the DataContext in force.
    """

    def __init__(self, root: PhysicalOperator, ctx: DataContext) -> None:
        self._root = root
        self._ctx = ctx
        self._ops = _topological(root)
        self._downstream: dict[int, tuple[PhysicalOperator, int]] = {}
        for op in self._ops:
            for index, up in enumerate(op.input_dependencies):
                self._downstream[id(up)] = (op, index)
        self._admits_new_data = {id(op): any(isinstance(u, InputDataBuffer)
                                             for u in op.input_dependencies)
                                 for op in self._ops}
        self._done_sent: set[int] = set()
        self._budget = Budget(default_budget_bytes(ctx))
        self.stats = DatasetStats(budget_bytes=self._budget.limit_bytes)
        self._bars: dict[int, ProgressBar] = {}
        self._rows_shown: dict[int, int] = {}
        self._handoff: Optional[_Handoff] = None

    def execute(self, background: bool = False) -> Iterator[RefBundle]:
        """Run the topology, yielding the sink's bundles as they are produced.

        Args:
            background: drive the operators from a thread owned by this executor, so
                tasks keep being launched while the consumer works on a bundle; the
                bundles waiting for the consumer count against the memory budget.

        Raises:
            Whatever a task raised (the user's exception, with context), after every
            operator has been shut down.
        """
        start = time.perf_counter()
        shown = [op for op in self._ops if not isinstance(op, InputDataBuffer)]
        enabled = progress_enabled(self._ctx)
        for position, op in enumerate(shown):
            self._bars[id(op)] = ProgressBar(op.name, op.estimated_rows, position, enabled)
            self._rows_shown[id(op)] = 0
        try:
            for op in self._ops:
                op.start()
            yield from (self._run_in_background() if background else self._loop(1.0))
        finally:
            self._shutdown()
            self._finish_stats(time.perf_counter() - start)

    def _run_in_background(self) -> Iterator[RefBundle]:
        handoff = _Handoff()
        self._handoff = handoff
        thread = threading.Thread(target=self._pump, args=(handoff,), daemon=True,
                                  name="ember-data-executor")
        thread.start()
        try:
            while True:
                bundle = handoff.take()
                if bundle is None:
                    return
                yield bundle
        finally:
            handoff.stop()
            thread.join()

    def _pump(self, handoff: "_Handoff") -> None:
        try:
            for bundle in self._loop(0.05):
                handoff.put(bundle)
                if handoff.stopped:
                    return
        except BaseException as e:  # noqa: BLE001 - re-raised on the consumer's thread
            handoff.fail(e)
            return
        handoff.finish()

    def _loop(self, wait_timeout_s: float) -> Iterator[RefBundle]:
        root = self._root
        while not (self._handoff is not None and self._handoff.stopped):
            self._route()
            if root.has_next():
                bundle = root.get_next()
                self._update_progress()
                yield bundle
                continue
            if root.completed():
                return
            self._launch()
            self._route()
            if root.has_next():
                continue
            owners = {}
            for op in self._ops:
                for ref in op.waitables():
                    owners[ref] = op
            if not owners:
                if any(op.can_launch() for op in self._ops):
                    continue
                if root.completed():
                    return
                raise RuntimeError("ember.data executor stalled: no task is running and no "
                                   "operator can launch; please report this with the plan")
            self._wait(owners, wait_timeout_s)
            for op in self._ops:
                op.check_health()
            self._update_progress()

    def _wait(self, owners: dict[Any, PhysicalOperator], timeout_s: float) -> None:
        refs = list(owners)
        ready, _ = ember.wait(refs, num_returns=1, timeout=timeout_s, fetch_local=False)
        if ready and len(refs) > 1:
            ready, _ = ember.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in ready:
            owners[ref].on_ready(ref)

    def _route(self) -> None:
        for op in self._ops:
            if op is self._root:
                continue
            down, index = self._downstream[id(op)]
            while op.has_next():
                down.add_input(op.get_next(), index)
            if op.completed() and not op.has_next() and id(op) not in self._done_sent:
                self._done_sent.add(id(op))
                op.metrics.end_s = op.metrics.end_s or time.perf_counter()
                down.input_done(index)
        for op in reversed(self._ops):
            if op.finished_early:
                for up in op.input_dependencies:
                    if not up.finished_early:
                        up.mark_finished()
        if self._root.completed() and self._root.metrics.end_s is None:
            self._root.metrics.end_s = time.perf_counter()

    def _held_bytes(self) -> int:
        held = sum(op.held_bytes() for op in self._ops)
        if self._handoff is not None:
            held += self._handoff.held_bytes
        self._budget.observe(held)
        return held

    def _launch(self) -> None:
        for op in reversed(self._ops):
            while op.can_launch():
                # Output waiting for the consumer will free memory once taken, so it
                # counts as progress: no forced launch past the budget while it waits.
                progressing = any(o.num_active_tasks() for o in self._ops) or \
                    self._root.has_next() or (self._handoff is not None and
                                              self._handoff.held_bytes > 0)
                if not self._budget.may_launch(self._admits_new_data[id(op)], self._held_bytes(),
                                               op.next_launch_bytes(), progressing):
                    break
                op.launch()
        self._held_bytes()

    def _update_progress(self) -> None:
        for op in self._ops:
            bar = self._bars.get(id(op))
            if bar is None:
                continue
            rows = op.metrics.rows_out
            bar.update(rows - self._rows_shown[id(op)], op.num_active_tasks())
            self._rows_shown[id(op)] = rows

    def _shutdown(self) -> None:
        for op in self._ops:
            for ref in op.waitables():
                _cancel_quietly(ref)
        for op in self._ops:
            op.shutdown()
        self._update_progress()
        for bar in self._bars.values():
            bar.finish()

    def _finish_stats(self, wall_s: float) -> None:
        now = time.perf_counter()
        for op in self._ops:
            if isinstance(op, InputDataBuffer):
                continue
            m = op.metrics
            started = m.start_s if m.start_s is not None else now
            ended = m.end_s if m.end_s is not None else now
            self.stats.operators.append(OperatorStats(
                op.name, m.tasks, list(m.task_exec_s), m.rows_out, m.bytes_out,
                m.blocks_out, max(ended - started, 0.0)))
        self.stats.wall_s = wall_s
        self.stats.peak_held_bytes = self._budget.peak_bytes


class _Handoff:
    """Bundles produced on the executor's thread, waiting for the consumer.

    Unbounded on purpose: its bytes (``held_bytes``) count against the executor's
    budget, so it is bounded by backpressure rather than by blocking the executor.
    """

    def __init__(self) -> None:
        self._items: collections.deque[RefBundle] = collections.deque()
        self._cond = threading.Condition()
        self._done = False
        self._error: Optional[BaseException] = None
        self.stopped = False
        self.held_bytes = 0

    def put(self, bundle: RefBundle) -> None:
        """Executor thread: hand over a bundle."""
        with self._cond:
            self._items.append(bundle)
            self.held_bytes += bundle.size_bytes
            self._cond.notify()

    def finish(self) -> None:
        """Executor thread: no more bundles."""
        with self._cond:
            self._done = True
            self._cond.notify()

    def fail(self, error: BaseException) -> None:
        """Executor thread: the execution failed with ``error``."""
        with self._cond:
            self._error = error
            self._done = True
            self._cond.notify()

    def take(self) -> Optional[RefBundle]:
        """Consumer: the next bundle, ``None`` at the end; re-raises the executor's error."""
        with self._cond:
            while not self._items and not self._done:
                self._cond.wait()
            if self._items:
                bundle = self._items.popleft()
                self.held_bytes -= bundle.size_bytes
                return bundle
            if self._error is not None:
                raise self._error
            return None

    def stop(self) -> None:
        """Consumer: stop early (the executor thread exits at its next step)."""
        with self._cond:
            self.stopped = True
            self._items.clear()
            self.held_bytes = 0


def _cancel_quietly(ref: Any) -> None:
    """Stop a task whose output nobody will read (satisfied limit, error, early exit)."""
    cancel = getattr(ember, "cancel", None)
    if cancel is None:
        return
    try:
        cancel(ref)
    except (ember.exceptions.EmberError, ValueError, TypeError):
        pass  # already finished or not cancellable; dropping the ref is enough

"""Map operators: run a fused chain of stages as ember tasks or on a pool of actors.

::

    upstream bundles --add_input--> [queue: bundles of >= min_rows_per_bundle rows]
        --launch--> _map_task.remote(chain, ctx, *blocks)      (task pool)
                or  actor.run.remote(ctx, *blocks)              (actor pool)
        each call returns two refs: the output block (stays in the store) and its
        BlockMetadata (small; the executor waits on it and reads it)
        --on_ready--> output RefBundle, in input order

Each task produces exactly one output block, so a task's cost in the object store is
known once its first outputs have been seen: ``next_launch_bytes`` extrapolates the
observed output/input ratio, which the executor's budget uses for backpressure.

Actor pools start when the first input arrives and are killed as soon as the operator
has finished, so actors that hold CPUs or GPUs never block later stages of the plan.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import Any, Optional

import ember
from ember.data._block import Block, BlockMetadata, RefBundle, concat_blocks, metadata_of
from ember.data._operators import InputDataBuffer, PhysicalOperator
from ember.data._remote import get_results
from ember.data._transform import TaskContext, TransformChain, run_chain
from ember.data.exceptions import InvalidArgumentError


def _map_task(chain: TransformChain, ctx: TaskContext, *inputs: Any) -> tuple[Block, BlockMetadata]:
    """Worker side of a task-pool map: run the chain, return (block, metadata)."""
    blocks, exec_s, files = run_chain(chain, ctx, inputs)
    block = concat_blocks(blocks, [f"{ctx.operator} output batch {i}" for i in range(len(blocks))])
    if len(blocks) > 1 and block.num_rows < _SMALL_CHUNK_ROWS * len(blocks):
        # Many small chunks (1024-row batches) make every consumer batch span chunks and
        # copy on the consumer's thread; one copy here, in parallel, is cheaper.
        block = block.combine_chunks()
    return block, metadata_of(block, files, exec_s)


#: Output chunks smaller than this (on average) are combined into one.
_SMALL_CHUNK_ROWS = 8192


class _MapWorker:
    """Worker side of an actor-pool map: the chain's callable classes live here."""

    def __init__(self, chain: TransformChain) -> None:
        self._chain = chain
        chain.init()

    def ready(self) -> bool:
        """Resolves once ``__init__`` (model loading) has finished."""
        return True

    def run(self, ctx: TaskContext, *inputs: Any) -> tuple[Block, BlockMetadata]:
        """Run the chain over one bundle of inputs."""
        return _map_task(self._chain, ctx, *inputs)


@functools.lru_cache(maxsize=None)
def _remote_map_task() -> Any:
    return ember.remote(_map_task)


@functools.lru_cache(maxsize=None)
def _remote_map_worker() -> Any:
    return ember.remote(_MapWorker)


@dataclasses.dataclass
class _Task:
    index: int
    block_ref: Any
    input_bytes: int
    estimated_bytes: int
    actor: Optional["_Actor"] = None


@dataclasses.dataclass
class _Actor:
    handle: Any
    ready_ref: Any
    ready: bool = False
    in_flight: int = 0


class MapOperator(PhysicalOperator):
    """Shared queueing, ordering and size estimation of both map operators.

    Args:
        name: display name.
        upstream: the operator feeding this one.
        chain: the fused stages.
        remote_args: options for tasks/actors (``num_cpus``, ``num_gpus``, ...).
        min_rows_per_bundle: group inputs until a call has this many rows.
        max_concurrency: most calls in flight.
        preserve_order: emit outputs in input order.
    """

    def __init__(self, name: str, upstream: PhysicalOperator, chain: TransformChain,
                 remote_args: dict[str, Any], min_rows_per_bundle: Optional[int],
                 max_concurrency: int, preserve_order: bool) -> None:
        super().__init__(name, [upstream])
        self._chain = chain
        self._chain_ref: Any = None
        self._remote_args = dict(remote_args)
        self._min_rows = min_rows_per_bundle
        self._max_concurrency = max(1, max_concurrency)
        self._preserve_order = preserve_order
        self._queue: collections.deque[RefBundle] = collections.deque()
        self._pending: list[tuple[Any, BlockMetadata]] = []
        self._active: dict[Any, _Task] = {}
        self._finished: dict[int, RefBundle] = {}
        self._next_in = 0
        self._next_out = 0
        self._in_bytes_seen = 0
        self._out_bytes_seen = 0
        # Inputs handed over by a source (existing blocks, or read tasks whose "size" is
        # only an estimate of what they will read) were not created by this execution,
        # so they do not count against its memory budget.
        self._counts_inputs = not isinstance(upstream, InputDataBuffer)

    def start(self) -> None:
        # One put per operator: tasks receive the chain (and the user's function) by
        # reference instead of re-serializing it for every call.
        self._chain_ref = ember.put(self._chain)

    # -- input -----------------------------------------------------------------------
    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        if self.finished_early:
            return
        self.metrics.started()
        self._pending.extend(bundle.blocks)
        rows = sum(m.num_rows for _, m in self._pending)
        # A read task that does not know its row count (CSV, JSON ...) reports 0 rows but
        # a file size; bundling it blindly could put every file in one task.
        unknown = any(m.num_rows == 0 and m.size_bytes > 0 for _, m in bundle.blocks)
        if self._min_rows is None or rows >= self._min_rows or unknown:
            self._flush_pending()

    def _flush_pending(self) -> None:
        if self._pending:
            self._queue.append(RefBundle(self._pending, self._next_in))
            self._next_in += 1
            self._pending = []

    def _on_all_inputs_done(self) -> None:
        self._flush_pending()

    def mark_finished(self) -> None:
        super().mark_finished()
        self._queue.clear()
        self._pending = []

    # -- launching -------------------------------------------------------------------
    def can_launch(self) -> bool:
        return bool(self._queue) and not self.finished_early and \
            len(self._active) < self._max_concurrency

    def next_launch_bytes(self) -> int:
        if not self._queue:
            return 0
        in_bytes = self._queue[0].size_bytes
        if self._in_bytes_seen:
            return int(in_bytes * self._out_bytes_seen / self._in_bytes_seen)
        return in_bytes

    def launch(self) -> None:
        bundle = self._queue.popleft()
        self.metrics.started()
        self.metrics.tasks += 1
        ctx = TaskContext(task_index=bundle.index, operator=self.name)
        inputs = [ref for ref, _ in bundle.blocks]
        block_ref, meta_ref, actor = self._submit(ctx, inputs)
        self._active[meta_ref] = _Task(bundle.index, block_ref, bundle.size_bytes,
                                       self.next_launch_bytes() or bundle.size_bytes, actor)

    def _submit(self, ctx: TaskContext, inputs: list[Any]) -> tuple[Any, Any, Optional[_Actor]]:
        raise NotImplementedError

    # -- completion ------------------------------------------------------------------
    def waitables(self) -> list[Any]:
        return list(self._active)

    def on_ready(self, ref: Any) -> None:
        task = self._active.pop(ref)
        if task.actor is not None:
            task.actor.in_flight -= 1
        meta: BlockMetadata = get_results(ref)  # raises the task's error, if any
        self._in_bytes_seen += task.input_bytes
        self._out_bytes_seen += meta.size_bytes
        self.metrics.task_exec_s.append(meta.exec_s)
        out = RefBundle([(task.block_ref, meta)], task.index)
        if not self._preserve_order:
            self._emit(out)
            return
        self._finished[task.index] = out
        while self._next_out in self._finished:
            self._emit(self._finished.pop(self._next_out))
            self._next_out += 1

    def num_active_tasks(self) -> int:
        return len(self._active)

    def held_bytes(self) -> int:
        queued = running_inputs = 0
        if self._counts_inputs:
            queued = sum(b.size_bytes for b in self._queue) + \
                sum(m.size_bytes for _, m in self._pending)
            running_inputs = sum(t.input_bytes for t in self._active.values())
        running = running_inputs + sum(t.estimated_bytes for t in self._active.values())
        finished = sum(b.size_bytes for b in self._finished.values())
        return super().held_bytes() + queued + running + finished

    def completed(self) -> bool:
        idle = not self._active and not self._queue and not self._pending
        return (self.finished_early and not self._active) or (self.all_inputs_done() and idle)

    def shutdown(self) -> None:
        super().shutdown()
        self._active.clear()
        self._queue.clear()
        self._finished.clear()
        self._chain_ref = None


class TaskPoolMapOperator(MapOperator):
    """Runs each bundle as one stateless ember task."""

    def _submit(self, ctx: TaskContext, inputs: list[Any]) -> tuple[Any, Any, Optional[_Actor]]:
        options = dict(self._remote_args, num_returns=2, name=self.name)
        block_ref, meta_ref = _remote_map_task().options(**options).remote(
            self._chain_ref, ctx, *inputs)
        return block_ref, meta_ref, None


class ActorPoolMapOperator(MapOperator):
    """Runs bundles on a pool of long-lived actors holding the callable classes.

    Args:
        min_size / max_size: pool bounds; the pool grows while inputs wait and every
            actor is busy.
        max_tasks_in_flight_per_actor: calls queued per actor.
        startup_timeout_s: how long to wait for the first actor before reporting that
            the cluster cannot place it.
    """

    def __init__(self, name: str, upstream: PhysicalOperator, chain: TransformChain,
                 remote_args: dict[str, Any], min_rows_per_bundle: Optional[int],
                 min_size: int, max_size: int, max_tasks_in_flight_per_actor: int,
                 preserve_order: bool, startup_timeout_s: float) -> None:
        super().__init__(name, upstream, chain, remote_args, min_rows_per_bundle,
                         max_size * max_tasks_in_flight_per_actor, preserve_order)
        self._min_size = min_size
        self._max_size = max_size
        self._per_actor = max_tasks_in_flight_per_actor
        self._startup_timeout_s = startup_timeout_s
        self._actors: list[_Actor] = []
        self._pool_started_s: Optional[float] = None
        self._released = False

    def _add_actor(self) -> None:
        handle = _remote_map_worker().options(**self._remote_args).remote(self._chain_ref)
        self._actors.append(_Actor(handle, handle.ready.remote()))

    def add_input(self, bundle: RefBundle, input_index: int) -> None:
        super().add_input(bundle, input_index)
        if not self._actors and not self._released and not self.finished_early:
            self._pool_started_s = time.monotonic()
            for _ in range(self._min_size):
                self._add_actor()
        self._maybe_grow()

    def _maybe_grow(self) -> None:
        busy = all(a.ready and a.in_flight >= self._per_actor for a in self._actors)
        starting = any(not a.ready for a in self._actors)
        if self._queue and busy and not starting and len(self._actors) < self._max_size:
            self._add_actor()

    def _free_actor(self) -> Optional[_Actor]:
        ready = [a for a in self._actors if a.ready and a.in_flight < self._per_actor]
        return min(ready, key=lambda a: a.in_flight) if ready else None

    def can_launch(self) -> bool:
        return super().can_launch() and self._free_actor() is not None

    def _submit(self, ctx: TaskContext, inputs: list[Any]) -> tuple[Any, Any, Optional[_Actor]]:
        actor = self._free_actor()
        if actor is None:  # pragma: no cover - the executor launches only after can_launch
            raise RuntimeError(f"{self.name}: launch() without a free actor")
        actor.in_flight += 1
        block_ref, meta_ref = actor.handle.run.options(num_returns=2).remote(ctx, *inputs)
        return block_ref, meta_ref, actor

    def waitables(self) -> list[Any]:
        return super().waitables() + [a.ready_ref for a in self._actors if not a.ready]

    def on_ready(self, ref: Any) -> None:
        for actor in self._actors:
            if not actor.ready and actor.ready_ref is ref:
                get_results(ref)  # raises the constructor's error, if any
                actor.ready = True
                return
        super().on_ready(ref)
        self._maybe_grow()
        self._maybe_release()

    def _on_all_inputs_done(self) -> None:
        super()._on_all_inputs_done()
        self._maybe_release()

    def _maybe_release(self) -> None:
        if self.completed() and self._actors:
            self._kill_actors()

    def _kill_actors(self) -> None:
        actors, self._actors = self._actors, []
        self._released = True
        for actor in actors:
            try:
                ember.kill(actor.handle)
            except ember.exceptions.EmberError:
                pass  # already dead: nothing left to release

    def check_health(self) -> None:
        """Raise if no actor could be started within the startup timeout."""
        if self._pool_started_s is None or any(a.ready for a in self._actors) or not self._actors:
            return
        waited = time.monotonic() - self._pool_started_s
        if waited > self._startup_timeout_s:
            raise InvalidArgumentError(
                self.name, f"no actor of the pool started within {waited:.0f}s; the cluster "
                f"may lack the requested resources {self._remote_args} "
                f"(it has {ember.cluster_resources()})")

    def shutdown(self) -> None:
        self._kill_actors()
        super().shutdown()

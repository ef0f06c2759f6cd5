"""The fused chain of per-block steps that one task (or one pool actor) runs.

Fusion turns ``read -> map_batches -> filter -> map`` into one task per input bundle; this
module is what that task executes. A chain is a list of :class:`Stage` s, each a
generator over blocks, so data flows through every stage one batch at a time and a task
never holds more than a batch per stage beyond its output.

User code runs only here. When it raises, the exception gets a note naming the operator
and the batch or row it was given, and is re-raised unchanged: the runtime then
re-raises it on the driver as an error that is still an instance of the user's class,
with the user's traceback.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
from typing import Any, Callable, Iterable, Iterator, Literal, Optional

import numpy as np
import pyarrow as pa

from ember.data._batch import batch_to_block, block_to_batch
from ember.data._block import Block, BlockBuffer, concat_blocks, iter_rows, rows_to_block
from ember.data.exceptions import BatchFormatError

StageKind = Literal["read", "batches", "rows", "flat_map", "filter", "block", "write"]


@dataclasses.dataclass
class TaskContext:
    """What a task knows about itself.

    Attributes:
        task_index: the task's position in its operator (unique per execution).
        operator: the operator's display name, for messages.
    """

    task_index: int
    operator: str


@dataclasses.dataclass
class Stage:
    """One step of a fused chain.

    Attributes:
        kind: ``"read"`` (inputs are read tasks), ``"batches"``, ``"rows"`` (``map``),
            ``"flat_map"``, ``"filter"``, ``"block"`` (internal ``(block, ctx) -> block``)
            or ``"write"`` (block, TaskContext -> block of write results).
        name: display name, e.g. ``"MapBatches(normalize)"``.
        fn: the function, or the class for callable-class stages.
        is_class: ``fn`` is a class to instantiate once per actor.
        batch_size: rows per call for ``"batches"``; ``None`` means one call per block.
        batch_format: format the function receives.
        zero_copy_batch: hand read-only views instead of writable copies.
    """

    kind: StageKind
    name: str
    fn: Any = None
    is_class: bool = False
    fn_args: tuple[Any, ...] = ()
    fn_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    fn_constructor_args: tuple[Any, ...] = ()
    fn_constructor_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    batch_size: Optional[int] = None
    batch_format: str = "default"
    zero_copy_batch: bool = True


def _describe_batch(block: Block) -> str:
    return f"a batch of {block.num_rows} rows with columns {block.schema.names}"


def _describe_row(row: dict[str, Any]) -> str:
    text = repr(row)
    return "row " + (text if len(text) <= 200 else text[:200] + "...}")


def _add_context(error: BaseException, stage: Stage, what: str) -> None:
    """Attach where the user's code failed, keeping the exception's class and traceback."""
    note = f"ember.data: raised by {stage.name} on {what}"
    if hasattr(error, "add_note"):
        if note not in getattr(error, "__notes__", []):
            error.add_note(note)


def _writable(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                for k, v in batch.items()}
    return batch


def _is_iterator_output(value: Any) -> bool:
    return inspect.isgenerator(value) or (isinstance(value, Iterator) and
                                          not isinstance(value, (dict, pa.Table)))


class TransformChain:
    """A fused list of stages, run over the inputs of one task.

    Callable-class stages are instantiated by :meth:`init`, once per actor, so a model
    loads once and serves every batch the actor gets.
    """

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self._callables: dict[int, Callable[..., Any]] = {}

    @property
    def name(self) -> str:
        """Display name of the fused operator, e.g. ``"ReadParquet->MapBatches(f)"``."""
        return "->".join(s.name for s in self.stages)

    @property
    def has_class(self) -> bool:
        """Whether any stage needs an actor (a callable class)."""
        return any(s.is_class for s in self.stages)

    def __getstate__(self) -> dict[str, Any]:
        return {"stages": self.stages, "_callables": {}}

    def init(self) -> None:
        """Instantiate callable classes; called once in each pool actor."""
        for i, stage in enumerate(self.stages):
            if stage.is_class and i not in self._callables:
                try:
                    self._callables[i] = stage.fn(*stage.fn_constructor_args,
                                                  **stage.fn_constructor_kwargs)
                except Exception as e:
                    _add_context(e, stage, "construction of the callable class")
                    raise

    def _fn(self, index: int) -> Callable[..., Any]:
        stage = self.stages[index]
        if not stage.is_class:
            return stage.fn
        if index not in self._callables:
            self.init()
        return self._callables[index]

    def run(self, inputs: Iterable[Any], ctx: TaskContext) -> Iterator[Block]:
        """Apply every stage to ``inputs`` (blocks, or read tasks for a read chain)."""
        stream: Iterator[Any] = iter(inputs)
        for i, stage in enumerate(self.stages):
            stream = self._apply(i, stage, stream, ctx)
        return stream

    def _apply(self, index: int, stage: Stage, blocks: Iterator[Any],
               ctx: TaskContext) -> Iterator[Block]:
        if stage.kind == "read":
            return _read(blocks)
        if stage.kind == "block":
            # Errors from column steps name the step, not the whole fused chain.
            stage_ctx = dataclasses.replace(ctx, operator=stage.name)
            return (stage.fn(block, stage_ctx) for block in blocks)
        if stage.kind == "write":
            return _write(stage, blocks, ctx)
        fn = self._fn(index)
        if stage.kind == "batches":
            return _map_batches(stage, fn, blocks)
        if stage.kind == "rows":
            return _map_rows(stage, fn, blocks)
        if stage.kind == "flat_map":
            return _flat_map(stage, fn, blocks)
        return _filter(stage, fn, blocks)


def _read(read_tasks: Iterator[Any]) -> Iterator[Block]:
    for read_task in read_tasks:
        yield from read_task()


def _write(stage: Stage, blocks: Iterator[Block], ctx: TaskContext) -> Iterator[Block]:
    # All blocks of one task go to one file: fewer, larger files, as Ray Data writes.
    collected = [b for b in blocks if b.num_rows]
    if collected:
        yield stage.fn(concat_blocks(collected), ctx)


def _map_batches(stage: Stage, fn: Callable[..., Any], blocks: Iterator[Block]) -> Iterator[Block]:
    buffer = BlockBuffer()
    for block in blocks:
        if stage.batch_size is None:
            if block.num_rows:
                yield from _call_batch(stage, fn, block)
            continue
        buffer.add(block)
        while buffer.num_rows >= stage.batch_size:
            yield from _call_batch(stage, fn, buffer.take(stage.batch_size))
    if buffer.num_rows:
        yield from _call_batch(stage, fn, buffer.take_all())


def _call_batch(stage: Stage, fn: Callable[..., Any], block: Block) -> Iterator[Block]:
    batch = block_to_batch(block, stage.batch_format)
    if not stage.zero_copy_batch:
        batch = _writable(batch)
    try:
        out = fn(batch, *stage.fn_args, **stage.fn_kwargs)
        if _is_iterator_output(out):
            for item in out:
                yield batch_to_block(item, stage.name)
            return
    except BatchFormatError:
        raise
    except Exception as e:
        _add_context(e, stage, _describe_batch(block))
        raise
    yield batch_to_block(out, stage.name)


def _call_row(stage: Stage, fn: Callable[..., Any], row: dict[str, Any]) -> Any:
    try:
        return fn(row, *stage.fn_args, **stage.fn_kwargs)
    except Exception as e:
        _add_context(e, stage, _describe_row(row))
        raise


def _map_rows(stage: Stage, fn: Callable[..., Any], blocks: Iterator[Block]) -> Iterator[Block]:
    for block in blocks:
        out = []
        for row in iter_rows(block):
            result = _call_row(stage, fn, row)
            if not isinstance(result, dict):
                raise BatchFormatError(stage.name, f"a value of type {type(result).__name__}",
                                       "a dict (one output row per input row)")
            out.append(result)
        yield rows_to_block(out)


def _flat_map(stage: Stage, fn: Callable[..., Any], blocks: Iterator[Block]) -> Iterator[Block]:
    for block in blocks:
        out = []
        for row in iter_rows(block):
            result = _call_row(stage, fn, row)
            try:
                items = list(result)
            except TypeError:
                raise BatchFormatError(stage.name, f"a value of type {type(result).__name__}",
                                       "a list (or iterable) of dicts") from None
            for item in items:
                if not isinstance(item, dict):
                    raise BatchFormatError(stage.name, f"a list holding a {type(item).__name__}",
                                           "a list (or iterable) of dicts")
            out.extend(items)
        yield rows_to_block(out)


def _filter(stage: Stage, fn: Callable[..., Any], blocks: Iterator[Block]) -> Iterator[Block]:
    for block in blocks:
        mask = [bool(_call_row(stage, fn, row)) for row in iter_rows(block)]
        yield block.filter(pa.array(mask, type=pa.bool_())) if block.num_rows else block


def run_chain(chain: TransformChain, ctx: TaskContext,
              inputs: Iterable[Any]) -> tuple[list[Block], float, list[str]]:
    """Run a chain to completion; returns the output blocks, seconds spent and input files.

    Input files are collected from read tasks so that errors and stats can name them.
    """
    start = time.perf_counter()
    inputs = list(inputs)
    files: list[str] = []
    for item in inputs:
        files.extend(getattr(item, "input_files", ()))
    blocks = [b for b in chain.run(inputs, ctx)]
    return blocks, time.perf_counter() - start, files

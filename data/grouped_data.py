"""GroupedData: ``ds.groupby(key)`` followed by aggregations or ``map_groups``.

Rows are range-partitioned by key (``_shuffle.range_partition``) so each group lives in
exactly one reducer; the reducer sorts its partition, finds group boundaries, and
applies the aggregations (or the user's function) group by group. Outputs come back in
key order, as in Ray Data.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np

from ember.data._batch import batch_to_block, block_to_batch, check_batch_format
from ember.data._block import (Block, BlockMetadata, RefBundle, concat_blocks, empty_block,
                               metadata_of)
from ember.data._columns import table_from_columns
from ember.data._plan import AllToAll
from ember.data._remote import remote
from ember.data._shuffle import _collect, _flat, range_partition, sort_block
from ember.data._transform import Stage, _add_context
from ember.data.aggregate import AggregateFn, Count, Max, Mean, Min, Std, Sum
from ember.data.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from ember.data.dataset import Dataset


def group_slices(block: Block, keys: Sequence[str]) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of each run of equal keys in a block sorted by ``keys``."""
    n = block.num_rows
    if not n:
        return
    if not keys:
        yield 0, n
        return
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for key in keys:
        values = block.column(key).to_numpy(zero_copy_only=False)
        change[1:] |= values[1:] != values[:-1]
    starts = np.flatnonzero(change)
    stops = np.append(starts[1:], n)
    yield from zip(starts.tolist(), stops.tolist())


def _key_value(block: Block, keys: Sequence[str], row: int) -> Any:
    values = tuple(block.column(k)[row].as_py() for k in keys)
    return values[0] if len(values) == 1 else values


def _aggregate_reduce(keys: Sequence[str], aggs: Sequence[AggregateFn],
                      *parts: Block) -> tuple[Block, BlockMetadata]:
    block = sort_block(concat_blocks(list(parts)), keys, [False] * len(keys))
    columns: dict[str, list[Any]] = {k: [] for k in keys}
    columns.update({agg.name: [] for agg in aggs})
    for start, stop in group_slices(block, keys):
        group = block.slice(start, stop - start)
        key = _key_value(block, keys, start) if keys else None
        for k in keys:
            columns[k].append(block.column(k)[start].as_py())
        for agg in aggs:
            acc = agg.accumulate_block(agg.init(key), group)
            columns[agg.name].append(agg.finalize(acc))
    if not keys and not block.num_rows:
        for agg in aggs:
            columns[agg.name].append(agg.finalize(agg.init(None)))
    out = table_from_columns(columns) if any(columns.values()) else empty_block()
    return out, metadata_of(out)


def _map_groups_reduce(keys: Sequence[str], stage: Stage,
                       *parts: Block) -> tuple[Block, BlockMetadata]:
    block = sort_block(concat_blocks(list(parts)), keys, [False] * len(keys))
    fn = stage.fn(*stage.fn_constructor_args, **stage.fn_constructor_kwargs) \
        if stage.is_class else stage.fn
    outputs = []
    for start, stop in group_slices(block, keys):
        group = block.slice(start, stop - start)
        batch = block_to_batch(group, stage.batch_format)
        try:
            result = fn(batch, *stage.fn_args, **stage.fn_kwargs)
        except Exception as e:
            _add_context(e, stage, f"the group of {group.num_rows} rows with key "
                                   f"{_key_value(block, keys, start) if keys else None!r}")
            raise
        results = result if inspect.isgenerator(result) else [result]
        outputs.extend(batch_to_block(r, stage.name) for r in results)
    out = concat_blocks(outputs) if outputs else empty_block()
    return out, metadata_of(out)


def _run_grouped(inputs: list[list[RefBundle]], keys: list[str], operator: str,
                 reduce_fn: Callable[..., Any], reduce_args: tuple[Any, ...],
                 num_partitions: Optional[int]) -> list[RefBundle]:
    blocks = _flat(inputs[0])
    if keys:
        return range_partition(blocks, keys, [False] * len(keys), operator, reduce_fn,
                               reduce_args, num_partitions)
    # groupby(None): one group of every row, reduced by a single task.
    reducer = remote(reduce_fn).options(num_returns=2)
    return _collect([reducer.remote(*reduce_args, *[ref for ref, _ in blocks])])


class GroupedData:
    """Rows grouped by one or more key columns (``None``: one group of all rows).

    Example:
        >>> ds.groupby("label").mean("score")
    """

    def __init__(self, dataset: "Dataset", key: Union[str, list[str], None],
                 num_partitions: Optional[int] = None) -> None:
        if key is not None and not isinstance(key, (str, list, tuple)):
            raise InvalidArgumentError("groupby", f"key must be a column name or a list, got {key!r}")
        self._dataset = dataset
        self._keys = [] if key is None else [key] if isinstance(key, str) else list(key)
        self._num_partitions = num_partitions

    def __repr__(self) -> str:
        return f"GroupedData(keys={self._keys})"

    def aggregate(self, *aggs: AggregateFn) -> "Dataset":
        """One row per group: the keys, then one column per aggregation.

        Raises:
            ColumnNotFoundError: (at execution) a key or aggregated column is missing.

        Example:
            >>> ds.groupby("k").aggregate(Sum("v"), Max("v"))
        """
        if not aggs:
            raise InvalidArgumentError("aggregate", "give at least one aggregation")
        name = f"Aggregate[{', '.join(self._keys) or 'all'}]"
        fn = functools.partial(_run_grouped, keys=self._keys, operator=name,
                               reduce_fn=_aggregate_reduce, reduce_args=(self._keys, list(aggs)),
                               num_partitions=self._num_partitions)
        return self._dataset._with(AllToAll(name=name, inputs=[self._dataset._plan], fn=fn))

    def _column_aggs(self, cls: type, on: Union[str, list[str], None], **kwargs: Any) -> "Dataset":
        columns = [on] if isinstance(on, str) else list(on) if on else None
        if columns is None:
            schema = self._dataset.schema()
            columns = [n for n in (schema.names if schema else []) if n not in self._keys]
        return self.aggregate(*[cls(c, **kwargs) for c in columns])

    def count(self) -> "Dataset":
        """Rows per group, in a column named ``count()``.

        Example:
            >>> ds.groupby("k").count()
        """
        return self.aggregate(Count())

    def sum(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> "Dataset":
        """Sum of ``on`` per group (column ``sum(on)``)."""
        return self._column_aggs(Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> "Dataset":
        """Minimum of ``on`` per group (column ``min(on)``)."""
        return self._column_aggs(Min, on, ignore_nulls=ignore_nulls)

    def max(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> "Dataset":
        """Maximum of ``on`` per group (column ``max(on)``)."""
        return self._column_aggs(Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> "Dataset":
        """Mean of ``on`` per group (column ``mean(on)``)."""
        return self._column_aggs(Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on: Union[str, list[str], None] = None, ddof: int = 1,
            ignore_nulls: bool = True) -> "Dataset":
        """Standard deviation of ``on`` per group (column ``std(on)``)."""
        return self._column_aggs(Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def map_groups(self, fn: Any, *, batch_format: Optional[str] = "default",
                   fn_args: Optional[Sequence[Any]] = None,
                   fn_kwargs: Optional[dict[str, Any]] = None,
                   fn_constructor_args: Optional[Sequence[Any]] = None,
                   fn_constructor_kwargs: Optional[dict[str, Any]] = None,
                   **ray_remote_args: Any) -> "Dataset":
        """Apply ``fn`` to each whole group (as one batch); concatenate the results.

        Args:
            fn: ``batch -> batch`` (or a class, instantiated once per reducer).
            batch_format: format of the group batch.

        Example:
            >>> ds.groupby("k").map_groups(lambda g: {"k": g["k"][:1], "n": [len(g["k"])]})
        """
        fmt = check_batch_format(batch_format, "map_groups")
        name = f"MapGroups({getattr(fn, '__name__', type(fn).__name__)})"
        stage = Stage("batches", name, fn, inspect.isclass(fn), tuple(fn_args or ()),
                      dict(fn_kwargs or {}), tuple(fn_constructor_args or ()),
                      dict(fn_constructor_kwargs or {}), None, fmt)
        run = functools.partial(_run_grouped, keys=self._keys, operator=name,
                                reduce_fn=_map_groups_reduce, reduce_args=(self._keys, stage),
                                num_partitions=self._num_partitions)
        return self._dataset._with(AllToAll(name=name, inputs=[self._dataset._plan], fn=run))


__all__ = ["GroupedData"]

"""Aggregations (Ray Data's ``ray.data.aggregate``): AggregateFn and the built-ins.

An aggregation is four functions over an accumulator: ``init(key)``,
``accumulate_block(acc, block)`` (or ``accumulate_row``), ``merge(a, b)`` and
``finalize(acc)``. Global aggregates accumulate per block inside the fused pipeline and
merge on the driver; grouped aggregates see each whole group in one reducer.

Built-ins work on Arrow columns with ``pyarrow.compute`` and skip nulls unless
``ignore_nulls=False`` (then a null makes the result null, as in Ray Data).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ember.data._block import Block, iter_rows
from ember.data.exceptions import ColumnNotFoundError, InvalidArgumentError

__all__ = ["AggregateFn", "Count", "Sum", "Min", "Max", "Mean", "Std", "AbsMax", "Unique"]


class AggregateFn:
    """A user-defined aggregation.

    Args:
        init: ``key -> accumulator`` (``key`` is the group key, or None).
        merge: combines two accumulators.
        name: output column name.
        accumulate_row: ``(acc, row dict) -> acc``; or give ``accumulate_block``.
        accumulate_block: ``(acc, pyarrow.Table) -> acc``.
        finalize: ``acc -> result`` (identity by default).

    Raises:
        InvalidArgumentError: neither or both of ``accumulate_row``/``accumulate_block``.

    Example:
        >>> total = AggregateFn(init=lambda k: 0, merge=lambda a, b: a + b,
        ...                     accumulate_row=lambda a, r: a + r["id"], name="total")
        >>> ember.data.range(4).aggregate(total)
        {'total': 6}
    """

    def __init__(self, init: Callable[[Any], Any], merge: Callable[[Any, Any], Any], name: str,
                 accumulate_row: Optional[Callable[[Any, dict[str, Any]], Any]] = None,
                 accumulate_block: Optional[Callable[[Any, Block], Any]] = None,
                 finalize: Optional[Callable[[Any], Any]] = None) -> None:
        if (accumulate_row is None) == (accumulate_block is None):
            raise InvalidArgumentError("AggregateFn", "give exactly one of accumulate_row "
                                                      "and accumulate_block")
        self.init = init
        self.merge = merge
        self.name = name
        self._accumulate_row = accumulate_row
        self._accumulate_block = accumulate_block
        self.finalize = finalize if finalize is not None else (lambda acc: acc)

    def accumulate_block(self, acc: Any, block: Block) -> Any:
        """Fold one block into the accumulator."""
        if self._accumulate_block is not None:
            return self._accumulate_block(acc, block)
        for row in iter_rows(block):
            acc = self._accumulate_row(acc, row)  # type: ignore[misc]
        return acc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


def _column(block: Block, on: str, agg: str) -> pa.ChunkedArray:
    if on not in block.schema.names:
        raise ColumnNotFoundError(on, block.schema.names, agg)
    return block.column(on)


class _ColumnAgg(AggregateFn):
    """Base of the built-ins: an accumulator over one column, nulls per ``ignore_nulls``."""

    _label = ""

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None) -> None:
        self.on = on
        self.ignore_nulls = ignore_nulls
        name = alias_name or f"{self._label}({on if on is not None else ''})"
        super().__init__(init=self._init, merge=self._merge_nullable, name=name,
                         accumulate_block=self._accumulate_nullable, finalize=self._finalize)

    def _init(self, key: Any) -> Any:
        return None

    def _accumulate_nullable(self, acc: Any, block: Block) -> Any:
        if acc is _NULL or not block.num_rows:
            return acc
        column = _column(block, self.on, self.name)  # type: ignore[arg-type]
        if column.null_count and not self.ignore_nulls:
            return _NULL
        column = column.drop_null()
        if not len(column):
            return acc
        part = self._block_state(column)
        return part if acc is None else self._merge(acc, part)

    def _merge_nullable(self, a: Any, b: Any) -> Any:
        if a is _NULL or b is _NULL:
            return _NULL
        if a is None or b is None:
            return b if a is None else a
        return self._merge(a, b)

    def _finalize(self, acc: Any) -> Any:
        if acc is None or acc is _NULL:
            return None
        return self._result(acc)

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        raise NotImplementedError

    def _merge(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def _result(self, acc: Any) -> Any:
        return acc


class _Null:
    """Marks an accumulator that saw a null with ``ignore_nulls=False``."""

    def __reduce__(self) -> Any:
        return (_null, ())


def _null() -> "_Null":
    return _NULL


_NULL = _Null()


class Count(AggregateFn):
    """Number of rows (or of non-null values of ``on`` when ``ignore_nulls``).

    Example:
        >>> ds.groupby("k").aggregate(Count())
    """

    def __init__(self, on: Optional[str] = None, ignore_nulls: bool = False,
                 alias_name: Optional[str] = None) -> None:
        self.on = on
        self.ignore_nulls = ignore_nulls
        super().__init__(init=lambda key: 0, merge=lambda a, b: a + b,
                         name=alias_name or f"count({on or ''})", accumulate_block=self._count)

    def _count(self, acc: int, block: Block) -> int:
        if self.on is None:
            return acc + block.num_rows
        column = _column(block, self.on, self.name)
        return acc + (len(column) - column.null_count if self.ignore_nulls else len(column))


class Sum(_ColumnAgg):
    """Sum of a column (null for an empty input)."""

    _label = "sum"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return pc.sum(column).as_py()

    def _merge(self, a: Any, b: Any) -> Any:
        return a + b


class Min(_ColumnAgg):
    """Smallest value of a column."""

    _label = "min"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return pc.min(column).as_py()

    def _merge(self, a: Any, b: Any) -> Any:
        return min(a, b)


class Max(_ColumnAgg):
    """Largest value of a column."""

    _label = "max"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return pc.max(column).as_py()

    def _merge(self, a: Any, b: Any) -> Any:
        return max(a, b)


class AbsMax(_ColumnAgg):
    """Largest absolute value of a column."""

    _label = "abs_max"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return pc.max(pc.abs(column)).as_py()

    def _merge(self, a: Any, b: Any) -> Any:
        return max(a, b)


class Mean(_ColumnAgg):
    """Mean of a column."""

    _label = "mean"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return (pc.sum(column).as_py(), len(column))

    def _merge(self, a: Any, b: Any) -> Any:
        return (a[0] + b[0], a[1] + b[1])

    def _result(self, acc: Any) -> Any:
        return acc[0] / acc[1]


class Std(_ColumnAgg):
    """Standard deviation of a column (``ddof=1`` by default), merged with Chan's method."""

    _label = "std"

    def __init__(self, on: Optional[str] = None, ddof: int = 1, ignore_nulls: bool = True,
                 alias_name: Optional[str] = None) -> None:
        self.ddof = ddof
        super().__init__(on, ignore_nulls, alias_name)

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        values = column.to_numpy().astype(np.float64)
        mean = float(values.mean())
        return (len(values), mean, float(((values - mean) ** 2).sum()))

    def _merge(self, a: Any, b: Any) -> Any:
        n = a[0] + b[0]
        delta = b[1] - a[1]
        mean = a[1] + delta * b[0] / n
        return (n, mean, a[2] + b[2] + delta * delta * a[0] * b[0] / n)

    def _result(self, acc: Any) -> Any:
        n, _, m2 = acc
        if n - self.ddof <= 0:
            return None
        return math.sqrt(m2 / (n - self.ddof))


class Unique(_ColumnAgg):
    """The distinct values of a column (a set)."""

    _label = "unique"

    def _block_state(self, column: pa.ChunkedArray) -> Any:
        return set(pc.unique(column).to_pylist())

    def _merge(self, a: Any, b: Any) -> Any:
        return a | b

"""Whole-dataset aggregates: ``sum``, ``min``, ``max``, ``mean``, ``std``, ``aggregate``,
``unique``. Mixed into :class:`ember.data.Dataset`.

Each block is folded into per-aggregation accumulators by a ``"block"`` stage fused into
the upstream tasks, so only a one-row block of pickled accumulators per task reaches the
driver, which merges and finalizes them.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import ember
import pyarrow as pa

from ember.data._block import Block
from ember.data._columns import PICKLED_KEY, to_numpy_column
from ember.data._plan import LogicalOp, MapOp
from ember.data._transform import Stage, TaskContext
from ember.data.aggregate import AggregateFn, Max, Mean, Min, Std, Sum, Unique
from ember.data.exceptions import InvalidArgumentError

if TYPE_CHECKING:
    from ember.data.dataset import Dataset

_STATES = "__ember_agg_states"


def _partial_states(block: Block, ctx: TaskContext, aggs: Sequence[AggregateFn]) -> Block:
    import pickle

    states = [agg.accumulate_block(agg.init(None), block) for agg in aggs]
    field = pa.field(_STATES, pa.binary(), metadata={PICKLED_KEY: b"1"})
    return pa.Table.from_arrays([pa.array([pickle.dumps(states, protocol=5)])],
                                schema=pa.schema([field]))


class AggregateMixin:
    """Global aggregation methods of Dataset."""

    _plan: LogicalOp

    def aggregate(self, *aggs: AggregateFn) -> dict[str, Any]:
        """Aggregate every row into one result per aggregation.

        Returns:
            ``{aggregation name: result}``.

        Raises:
            ColumnNotFoundError: an aggregated column does not exist.

        Example:
            >>> from ember.data.aggregate import Sum, Max
            >>> ember.data.range(5).aggregate(Sum("id"), Max("id"))
            {'sum(id)': 10, 'max(id)': 4}
        """
        if not aggs:
            raise InvalidArgumentError("aggregate", "give at least one aggregation")
        stage = Stage("block", "Aggregate", functools.partial(_partial_states, aggs=list(aggs)))
        plan = MapOp(name="Aggregate", inputs=[self._plan], stages=[stage])
        from ember.data.dataset import Dataset

        states = [agg.init(None) for agg in aggs]
        for bundle in Dataset(plan).iter_internal_ref_bundles():
            for block in ember.get(bundle.refs):
                if _STATES not in block.schema.names:
                    continue
                field = block.schema.field(_STATES)
                for part in to_numpy_column(field, block.column(_STATES)):
                    states = [agg.merge(a, b) for agg, a, b in zip(aggs, states, part)]
        return {agg.name: agg.finalize(s) for agg, s in zip(aggs, states)}

    def _column_aggregate(self, cls: type, on: Union[str, list[str], None], **kwargs: Any) -> Any:
        if on is None:
            schema = self.schema()  # type: ignore[attr-defined]
            columns = schema.names if schema is not None else []
        else:
            columns = [on] if isinstance(on, str) else list(on)
        if not columns:
            return None
        aggs = [cls(c, **kwargs) for c in columns]
        result = self.aggregate(*aggs)
        return result[aggs[0].name] if len(aggs) == 1 else result

    def sum(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> Any:
        """Sum of a column (a dict for several columns; ``None`` if there are no rows).

        Example:
            >>> ember.data.range(5).sum("id")
            10
        """
        return self._column_aggregate(Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> Any:
        """Minimum of a column.

        Example:
            >>> ember.data.range(5).min("id")
            0
        """
        return self._column_aggregate(Min, on, ignore_nulls=ignore_nulls)

    def max(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> Any:
        """Maximum of a column.

        Example:
            >>> ember.data.range(5).max("id")
            4
        """
        return self._column_aggregate(Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on: Union[str, list[str], None] = None, ignore_nulls: bool = True) -> Any:
        """Mean of a column.

        Example:
            >>> ember.data.range(5).mean("id")
            2.0
        """
        return self._column_aggregate(Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on: Union[str, list[str], None] = None, ddof: int = 1,
            ignore_nulls: bool = True) -> Any:
        """Standard deviation of a column (``ddof=1``).

        Example:
            >>> round(ember.data.range(5).std("id"), 3)
            1.581
        """
        return self._column_aggregate(Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def unique(self, column: str, ignore_nulls: bool = False) -> list[Any]:
        """The distinct values of ``column``.

        Example:
            >>> sorted(ember.data.from_items([{"a": 1}, {"a": 1}, {"a": 2}]).unique("a"))
            [1, 2]
        """
        values: Optional[set[Any]] = self.aggregate(Unique(column, ignore_nulls=True))[f"unique({column})"]
        return list(values or [])

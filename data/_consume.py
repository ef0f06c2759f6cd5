"""Consuming a Dataset: execution, iteration, take/show/count/schema, conversion.

Mixed into :class:`ember.data.Dataset`. Every method here runs the plan with the
streaming executor; ``count`` and ``schema`` avoid it when the plan already knows.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Iterator, Optional

import pyarrow as pa

import ember
from ember.data._batch import block_to_batch, block_to_numpy, block_to_pandas, check_batch_format
from ember.data._block import RefBundle, concat_blocks, empty_block
from ember.data._executor import StreamingExecutor
from ember.data._plan import InputData, LogicalOp, known_row_count
from ember.data._planner import build_physical
from ember.data._remote import remote
from ember.data._stats import DatasetStats
from ember.data.context import DataContext
from ember.data.exceptions import InvalidArgumentError
from ember.data.iterator import DataIterator

if TYPE_CHECKING:
    import pandas as pd

    from ember.data.dataset import MaterializedDataset


class Schema:
    """The column names and types of a dataset (Ray Data's ``Schema``).

    Attributes:
        base_schema: the underlying ``pyarrow.Schema``.
    """

    def __init__(self, base_schema: pa.Schema) -> None:
        self.base_schema = base_schema

    @property
    def names(self) -> list[str]:
        """Column names, in order."""
        return list(self.base_schema.names)

    @property
    def types(self) -> list[pa.DataType]:
        """Arrow types of the columns, in order."""
        return list(self.base_schema.types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and self.base_schema.equals(other.base_schema)

    def __repr__(self) -> str:
        width = max([len("Column")] + [len(n) for n in self.names])
        lines = [f"{'Column':<{width}}  Type", f"{'------':<{width}}  ----"]
        lines += [f"{n:<{width}}  {t}" for n, t in zip(self.names, self.types)]
        return "\n".join(lines)


def _to_numpy_block(block: pa.Table, column: Optional[str]) -> Any:
    batch = block_to_numpy(block)
    return batch[column] if column is not None else batch


def _to_pandas_block(block: pa.Table) -> "pd.DataFrame":
    return block_to_pandas(block)


class ConsumeMixin:
    """Execution and consumption methods of Dataset."""

    _plan: LogicalOp
    _last_stats: Optional[DatasetStats]

    # -- execution -------------------------------------------------------------------
    def iter_internal_ref_bundles(self, _background: bool = False) -> Iterator[RefBundle]:
        """Execute the plan, yielding bundles of block refs as they are produced.

        ``_background=True`` keeps the executor running on its own thread between
        ``next()`` calls (used by iterators that prefetch).

        Example:
            >>> sum(b.num_rows for b in ds.iter_internal_ref_bundles())
        """
        ctx = DataContext.get_current()
        executor = StreamingExecutor(build_physical(self._plan, ctx), ctx)
        self._last_stats = executor.stats
        parent = getattr(self, "_parent_stats", None)
        executor.stats.parent = parent
        return executor.execute(background=_background)

    def materialize(self) -> "MaterializedDataset":
        """Execute now and keep every block in the object store.

        Returns:
            A dataset over the stored blocks; consuming it again does not recompute.

        Example:
            >>> mds = ds.materialize(); mds.num_blocks()
        """
        from ember.data.dataset import MaterializedDataset

        bundles = list(self.iter_internal_ref_bundles())
        rows = sum(b.num_rows for b in bundles)
        flat = [RefBundle([block], i) for i, block in
                enumerate(blk for b in bundles for blk in b.blocks)]
        out = MaterializedDataset(InputData(name="InputData", inputs=[], items=flat, num_rows=rows))
        out._parent_stats = self._last_stats
        return out

    def stats(self) -> str:
        """Per-operator time, rows and bytes of the last execution of this dataset.

        Example:
            >>> ds.materialize().stats()
        """
        stats = self._last_stats or getattr(self, "_parent_stats", None)
        return stats.to_string() if stats is not None else DatasetStats().to_string()

    def iterator(self) -> DataIterator:
        """A :class:`DataIterator` over this dataset."""
        return DataIterator(self.iter_internal_ref_bundles, type(self).__name__)

    # -- iteration -------------------------------------------------------------------
    def iter_batches(self, **kwargs: Any) -> Iterator[Any]:
        """Batches of rows; arguments as in :meth:`DataIterator.iter_batches`.

        Example:
            >>> for batch in ds.iter_batches(batch_size=128, batch_format="pandas"):
            ...     pass
        """
        return self.iterator().iter_batches(**kwargs)

    def iter_rows(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Rows as dicts.

        Example:
            >>> for row in ds.iter_rows():
            ...     pass
        """
        return self.iterator().iter_rows(**kwargs)

    def iter_torch_batches(self, **kwargs: Any) -> Iterator[Any]:
        """Batches of torch tensors; arguments as in :meth:`DataIterator.iter_torch_batches`.

        Example:
            >>> batch = next(iter(ds.iter_torch_batches(batch_size=8)))
        """
        return self.iterator().iter_torch_batches(**kwargs)

    # -- small results ---------------------------------------------------------------
    def take(self, limit: int = 20) -> list[dict[str, Any]]:
        """The first ``limit`` rows as dicts (stops upstream work once they exist).

        Example:
            >>> ember.data.range(5).take(2)
            [{'id': 0}, {'id': 1}]
        """
        rows: list[dict[str, Any]] = []
        for row in self.limit(limit).iter_rows(prefetch_batches=0):  # type: ignore[attr-defined]
            rows.append(row)
        return rows

    def take_all(self, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Every row as a dict.

        Raises:
            InvalidArgumentError: the dataset has more than ``limit`` rows.

        Example:
            >>> len(ember.data.range(5).take_all())
            5
        """
        rows: list[dict[str, Any]] = []
        for row in self.iter_rows(prefetch_batches=0):
            rows.append(row)
            if limit is not None and len(rows) > limit:
                raise InvalidArgumentError("take_all", f"the dataset has more than {limit} rows")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: Optional[str] = "default") -> Any:
        """The first ``batch_size`` rows as one batch.

        Example:
            >>> ember.data.range(5).take_batch(3)["id"]
            array([0, 1, 2])
        """
        fmt = check_batch_format(batch_format, "take_batch")
        blocks = [ember.get(r) for b in self.limit(batch_size).iter_internal_ref_bundles()  # type: ignore[attr-defined]
                  for r in b.refs]
        return block_to_batch(concat_blocks(blocks) if blocks else empty_block(), fmt)

    def show(self, limit: int = 20) -> None:
        """Write the first ``limit`` rows to stdout, one per line.

        Example:
            >>> ember.data.range(2).show()
            {'id': 0}
            {'id': 1}
        """
        for row in self.take(limit):
            sys.stdout.write(f"{row}\n")

    def count(self) -> int:
        """Number of rows (from metadata when the plan knows it, else by executing).

        Example:
            >>> ember.data.range(7).count()
            7
        """
        known = known_row_count(self._plan)
        if known is not None:
            return known
        return sum(b.num_rows for b in self.iter_internal_ref_bundles())

    def schema(self, fetch_if_missing: bool = True) -> Optional[Schema]:
        """Column names and types (executes up to the first non-empty block if needed).

        Example:
            >>> ember.data.range(3).schema().names
            ['id']
        """
        schema = None
        if isinstance(self._plan, InputData):
            schema = next((m.schema for b in self._plan.items for _, m in b.blocks
                           if m.schema is not None and (m.num_rows or m.schema.names)), None)
        if schema is None and fetch_if_missing:
            # limit(1): upstream work stops at the first non-empty block.
            first_empty = None
            bundles = self.limit(1).iter_internal_ref_bundles()  # type: ignore[attr-defined]
            try:
                for bundle in bundles:
                    for _, meta in bundle.blocks:
                        if meta.schema is not None and meta.num_rows:
                            schema = schema or meta.schema
                        elif meta.schema is not None and meta.schema.names:
                            first_empty = first_empty or meta.schema
            finally:
                bundles.close()  # type: ignore[attr-defined]
            schema = schema or first_empty
        return Schema(schema) if schema is not None else None

    def columns(self, fetch_if_missing: bool = True) -> Optional[list[str]]:
        """Column names.

        Example:
            >>> ember.data.range(3).columns()
            ['id']
        """
        schema = self.schema(fetch_if_missing)
        return schema.names if schema is not None else None

    def to_pandas(self, limit: Optional[int] = None) -> "pd.DataFrame":
        """All rows as one DataFrame.

        Raises:
            InvalidArgumentError: more than ``limit`` rows.

        Example:
            >>> ember.data.range(3).to_pandas().shape
            (3, 1)
        """
        blocks, sources = [], []
        rows = 0
        for bundle in self.iter_internal_ref_bundles():
            for block, (_, meta) in zip(ember.get(bundle.refs), bundle.blocks):
                blocks.append(block)
                sources.append(", ".join(meta.input_files) or f"block {len(sources)}")
                rows += block.num_rows
                if limit is not None and rows > limit:
                    raise InvalidArgumentError("to_pandas", f"the dataset has more than {limit} "
                                                            f"rows; raise limit= or use iter_batches()")
        return block_to_pandas(concat_blocks(blocks, sources) if blocks else empty_block())

    def to_arrow_refs(self) -> list[Any]:
        """Refs to every block (``pyarrow.Table``), executing the dataset.

        Example:
            >>> tables = ember.get(ds.to_arrow_refs())
        """
        return [ref for b in self.iter_internal_ref_bundles() for ref in b.refs]

    def to_numpy_refs(self, *, column: Optional[str] = None) -> list[Any]:
        """Refs to each block as a dict of ndarrays (or one column's ndarray).

        Example:
            >>> arrays = ember.get(ds.to_numpy_refs(column="id"))
        """
        task = remote(_to_numpy_block)
        return [task.remote(ref, column) for ref in self.to_arrow_refs()]

    def to_pandas_refs(self) -> list[Any]:
        """Refs to each block as a DataFrame.

        Example:
            >>> frames = ember.get(ds.to_pandas_refs())
        """
        task = remote(_to_pandas_block)
        return [task.remote(ref) for ref in self.to_arrow_refs()]

    def size_bytes(self) -> int:
        """Bytes of all blocks (executes the dataset)."""
        return sum(b.size_bytes for b in self.iter_internal_ref_bundles())

    def input_files(self) -> list[str]:
        """Files the dataset was read from (executes the dataset)."""
        files: dict[str, None] = {}
        for bundle in self.iter_internal_ref_bundles():
            for _, meta in bundle.blocks:
                files.update(dict.fromkeys(meta.input_files))
        return list(files)


__all__ = ["ConsumeMixin", "Schema"]

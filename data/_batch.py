"""Batch formats: how a block is shown to a user function and how its answer is read back.

``batch_format`` is one of ``"default"``/``"numpy"`` (a dict of column name to ndarray),
``"pandas"`` (a DataFrame) or ``"pyarrow"`` (a Table). A function may return any of the
three, whatever it was given; anything else is a :class:`BatchFormatError` naming the
operator, raised in the task so the user sees it with their traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal, Mapping

import numpy as np
import pyarrow as pa

from ember.data._block import Block
from ember.data._columns import (is_pickled_field, is_tensor_type, table_from_columns,
                                 to_arrow_column, to_numpy_column)
from ember.data.exceptions import BatchFormatError, InvalidArgumentError

if TYPE_CHECKING:
    import pandas as pd

# pandas is imported only when a pandas batch is asked for: it is the slowest import of
# the stack, and every worker that runs a data task would pay it on its first task.

BatchFormat = Literal["default", "numpy", "pandas", "pyarrow"]
BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")

_EXPECTED = "a dict of column name to numpy array (or list), a pandas DataFrame or a pyarrow Table"


def check_batch_format(batch_format: Any, api: str) -> str:
    """Validate a ``batch_format`` argument and normalise ``None`` to ``"default"``.

    Raises:
        InvalidArgumentError: the format is not one of the supported names.
    """
    if batch_format is None:
        return "default"
    if batch_format not in BATCH_FORMATS:
        raise InvalidArgumentError(api, f"batch_format={batch_format!r} is not one of "
                                        f"{list(BATCH_FORMATS)}")
    return batch_format


def block_to_numpy(block: Block) -> dict[str, np.ndarray]:
    """A block as a dict of column name to ndarray (zero-copy where Arrow allows)."""
    if block.num_columns and any(c.num_chunks > 1 for c in block.columns):
        # A batch spanning two blocks: one table-wide combine is much cheaper than
        # converting each chunked column on its own.
        block = block.combine_chunks()
    return {f.name: to_numpy_column(f, block.column(i)) for i, f in enumerate(block.schema)}


def is_dataframe(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame (without importing pandas)."""
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(value, pandas.DataFrame)


def block_to_pandas(block: Block) -> "pd.DataFrame":
    """A block as a DataFrame; tensor and object columns hold one value per cell."""
    special = [f for f in block.schema if is_tensor_type(f.type) or is_pickled_field(f)]
    if not special:
        return block.to_pandas()
    plain = block.drop_columns([f.name for f in special]) if special else block
    frame = plain.to_pandas()
    for field in special:
        values = to_numpy_column(field, block.column(field.name))
        cells = np.empty(len(values), dtype=object)
        for i in range(len(values)):
            cells[i] = values[i]
        frame[field.name] = cells
    return frame[block.schema.names]


def block_to_batch(block: Block, batch_format: str) -> Any:
    """Show a block to a user function in the requested format."""
    if batch_format in ("default", "numpy"):
        return block_to_numpy(block)
    if batch_format == "pandas":
        return block_to_pandas(block)
    return block


def pandas_to_block(frame: "pd.DataFrame") -> Block:
    """A DataFrame as a block; object columns of arrays become tensor columns.

    The index is dropped unless it is named, matching how Ray Data reads DataFrames.
    """
    import pandas as pd

    if not isinstance(frame.index, pd.RangeIndex) and frame.index.name is not None:
        frame = frame.reset_index()
    fields, arrays = [], []
    for name in frame.columns:
        series = frame[name]
        if series.dtype == object:
            field, array = to_arrow_column(str(name), series.to_numpy())
        else:
            array = pa.Array.from_pandas(series)
            field = pa.field(str(name), array.type)
        fields.append(field)
        arrays.append(array)
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def batch_to_block(batch: Any, operator: str) -> Block:
    """Turn what a user function returned into a block.

    Args:
        batch: the function's return value.
        operator: operator name for the error message, e.g. ``"MapBatches(normalize)"``.

    Returns:
        The block.

    Raises:
        BatchFormatError: ``batch`` is not a dict of arrays, a DataFrame or a Table, or its
            columns have different lengths or are not array-like.
    """
    if isinstance(batch, pa.Table):
        return batch
    if is_dataframe(batch):
        return pandas_to_block(batch)
    if isinstance(batch, Mapping):
        try:
            return table_from_columns(dict(batch))
        except (TypeError, ValueError) as e:
            raise BatchFormatError(operator, f"a dict whose {e}", _EXPECTED) from None
    raise BatchFormatError(operator, f"a value of type {type(batch).__name__}", _EXPECTED)

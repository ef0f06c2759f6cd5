"""Column conversion between numpy and Arrow, including tensors and Python objects.

Blocks are ``pyarrow.Table`` s, but users hand us numpy arrays of any shape and lists of
arbitrary Python objects. Three Arrow representations cover them:

- plain Arrow arrays for 1-D numbers, strings, dates, lists ...;
- Arrow's canonical ``fixed_shape_tensor`` extension type for n-D arrays whose rows share
  one shape (images, embeddings); it ships with pyarrow, so every process can read it
  without registering anything, and it converts back to numpy without a copy;
- a ``binary`` column whose field metadata marks it as pickled Python objects, for
  ragged tensors and values Arrow cannot type. It is a fallback: slower, but lossless.

Every conversion goes through this module so that the marker stays in one place.
"""

from __future__ import annotations

import pickle
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

#: Field metadata key marking a binary column as pickled Python objects.
PICKLED_KEY = b"ember.pickled"


_PLAIN_KINDS = frozenset("biuf")
_PLAIN_TYPE_IDS = frozenset(t.id for t in (
    pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(),
    pa.uint32(), pa.uint64(), pa.float16(), pa.float32(), pa.float64()))


def is_tensor_type(arrow_type: pa.DataType) -> bool:
    """Whether an Arrow type is the fixed-shape tensor extension type."""
    return isinstance(arrow_type, pa.FixedShapeTensorType)


def is_pickled_field(field: pa.Field) -> bool:
    """Whether a field holds pickled Python objects."""
    return bool(field.metadata) and PICKLED_KEY in field.metadata


def pickled_field(name: str) -> pa.Field:
    """The field for a column of pickled Python objects."""
    return pa.field(name, pa.binary(), metadata={PICKLED_KEY: b"1"})


def _pickle_values(values: Sequence[Any]) -> pa.Array:
    return pa.array([None if v is None else pickle.dumps(v, protocol=5) for v in values],
                    type=pa.binary())


def _c_strides(arr: np.ndarray) -> tuple[int, ...]:
    strides, step = [], arr.itemsize
    for size in reversed(arr.shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _tensor_array(arr: np.ndarray) -> pa.Array:
    arr = np.ascontiguousarray(arr)
    expected = _c_strides(arr)
    if arr.strides != expected:
        # Contiguous, but a length-1 axis (``x[np.newaxis]``) has an arbitrary stride,
        # which Arrow rejects; the same memory with canonical strides is accepted.
        arr = np.lib.stride_tricks.as_strided(arr, arr.shape, expected)
    if arr.dtype == object or arr.dtype.kind in "USV":
        raise TypeError("tensor columns hold numbers or booleans")
    return pa.FixedShapeTensorArray.from_numpy_ndarray(arr)


def _from_object_values(values: Sequence[Any]) -> tuple[pa.Array, bool]:
    """Convert a sequence of Python values; returns (array, pickled?)."""
    if len(values) and all(isinstance(v, np.ndarray) for v in values):
        first = values[0].shape
        if all(v.shape == first for v in values) and values[0].dtype != object:
            try:
                return _tensor_array(np.stack(values)), False
            except (TypeError, pa.ArrowException):
                pass
        return _pickle_values(values), True
    try:
        return pa.array(values), False
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return _pickle_values(values), True


def to_arrow_column(name: str, values: Any) -> tuple[pa.Field, pa.Array]:
    """Convert one user-supplied column to an Arrow field and array.

    Args:
        name: column name.
        values: a numpy array (any shape), an Arrow array, a pandas Series or a list.

    Returns:
        The field (carrying the pickled marker when needed) and the array.

    Raises:
        TypeError: ``values`` is a scalar rather than a column.
    """
    if type(values) is np.ndarray and values.ndim == 1 and values.dtype.kind in _PLAIN_KINDS:
        # Hot path of every map_batches call: 1-D numbers become Arrow without a copy.
        array = pa.array(values)
        return pa.field(name, array.type), array
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return pa.field(name, values.type), values
    if hasattr(values, "to_numpy") and not isinstance(values, np.ndarray):
        values = values.to_numpy()  # pandas Series / Index, torch tensors are handled below
    if type(values).__module__.startswith("torch"):
        values = values.detach().cpu().numpy()
    if isinstance(values, (list, tuple)):
        array, pickled = _from_object_values(list(values))
        return (pickled_field(name) if pickled else pa.field(name, array.type)), array
    if not isinstance(values, np.ndarray):
        raise TypeError(f"column {name!r} is a {type(values).__name__}, not an array or list")
    if values.ndim == 0:
        raise TypeError(f"column {name!r} is a 0-d array (a scalar), not a column")
    if values.ndim > 1:
        try:
            array = _tensor_array(values)
            return pa.field(name, array.type), array
        except (TypeError, pa.ArrowException):
            array = _pickle_values(list(values))
            return pickled_field(name), array
    if values.dtype == object:
        array, pickled = _from_object_values(list(values))
        return (pickled_field(name) if pickled else pa.field(name, array.type)), array
    array = pa.array(values)
    return pa.field(name, array.type), array


def to_numpy_column(field: pa.Field, column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Convert one Arrow column to numpy, without copying where Arrow allows it.

    Args:
        field: the column's field (type and pickled marker).
        column: the column data.

    Returns:
        An ndarray; n-D for tensor columns, ``object`` dtype for strings and objects.
        Arrays that view Arrow memory are read-only.
    """
    if field.type.id in _PLAIN_TYPE_IDS and not field.metadata:
        # Hot path: numbers and booleans, viewed without a copy when in one chunk.
        if isinstance(column, pa.ChunkedArray) and column.num_chunks == 1:
            column = column.chunk(0)
        return column.to_numpy(zero_copy_only=False)
    if isinstance(column, pa.ChunkedArray):
        column = (column.chunk(0) if column.num_chunks == 1 else
                  column.combine_chunks() if column.num_chunks else
                  pa.array([], type=column.type))
    if is_tensor_type(field.type):
        shape = tuple(field.type.shape)
        if len(column) == 0:
            return np.empty((0, *shape), dtype=field.type.value_type.to_pandas_dtype())
        return column.to_numpy_ndarray()
    if is_pickled_field(field):
        out = np.empty(len(column), dtype=object)
        for i, raw in enumerate(column.to_pylist()):
            out[i] = None if raw is None else pickle.loads(raw)
        return out
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type) or \
            pa.types.is_fixed_size_list(field.type):
        return _list_column_to_numpy(column)
    return column.to_numpy(zero_copy_only=False)


def _list_column_to_numpy(column: pa.Array) -> np.ndarray:
    """List columns become one n-D array when rows are equal length, else object rows."""
    values = column.to_numpy(zero_copy_only=False)
    if len(values) and column.null_count == 0:
        lengths = {len(v) for v in values}
        if len(lengths) == 1 and all(v.dtype != object for v in values):
            return np.stack(values)
    return values


def column_values_for_rows(field: pa.Field, column: pa.ChunkedArray) -> list[Any]:
    """Python values of a column, one per row (tensors as ndarrays)."""
    if is_tensor_type(field.type) or is_pickled_field(field):
        return list(to_numpy_column(field, column))
    return column.to_pylist()


def table_from_columns(columns: dict[str, Any]) -> pa.Table:
    """Build a block from a mapping of column name to column values.

    Raises:
        ValueError: the columns have different lengths (message names them).
        TypeError: a column is not array-like.
    """
    fields, arrays = [], []
    for name, values in columns.items():
        field, array = to_arrow_column(str(name), values)
        fields.append(field)
        arrays.append(array)
    lengths = {f.name: len(a) for f, a in zip(fields, arrays)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns have different lengths: {lengths}")
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

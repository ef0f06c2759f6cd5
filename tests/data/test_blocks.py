"""Blocks, columns and batch formats, tested with plain calls (no runtime needed)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ember.data._batch import batch_to_block, block_to_batch, block_to_pandas, pandas_to_block
from ember.data._block import (BlockBuffer, concat_blocks, iter_rows, metadata_of, rows_to_block,
                               slice_rows, split_rows)
from ember.data._columns import table_from_columns, to_numpy_column
from ember.data.exceptions import (BatchFormatError, ColumnNotFoundError, DataError,
                                   SchemaMismatchError)


def test_numpy_columns_round_trip_through_arrow_including_tensors_and_objects() -> None:
    columns = {
        "id": np.arange(3),
        "image": np.arange(12, dtype=np.float32).reshape(3, 2, 2),
        "ragged": [np.ones(1), np.ones(2), np.ones(3)],
        "obj": [{1, 2}, frozenset(), None],  # sets have no Arrow type: pickled
        "text": np.array(["x", "y", "z"], dtype=object),
    }
    block = table_from_columns(columns)
    back = {f.name: to_numpy_column(f, block.column(f.name)) for f in block.schema}
    assert back["id"].tolist() == [0, 1, 2]
    assert back["image"].shape == (3, 2, 2) and back["image"].dtype == np.float32
    assert np.array_equal(back["image"], columns["image"])
    assert [len(v) for v in back["ragged"]] == [1, 2, 3]
    assert back["obj"][0] == {1, 2} and back["obj"][2] is None
    assert back["text"].tolist() == ["x", "y", "z"]


def test_tensor_column_survives_pickle_and_concat() -> None:
    block = table_from_columns({"t": np.zeros((2, 3, 4))})
    again = pickle.loads(pickle.dumps(block, protocol=5))
    both = concat_blocks([block, again])
    field = both.schema.field("t")
    assert to_numpy_column(field, both.column("t")).shape == (4, 3, 4)


def test_columns_of_different_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="different lengths"):
        table_from_columns({"a": np.arange(2), "b": np.arange(3)})


def test_rows_round_trip_and_missing_keys_become_nulls() -> None:
    block = rows_to_block([{"a": 1, "b": "x"}, {"a": 2}])
    assert list(iter_rows(block)) == [{"a": 1, "b": "x"}, {"a": 2, "b": None}]


def test_block_buffer_cuts_exact_batches_across_blocks() -> None:
    buffer = BlockBuffer()
    for start in (0, 3, 5):
        buffer.add(pa.table({"x": list(range(start, start + (3 if start != 3 else 2)))}))
    first = buffer.take(4)
    assert first.column("x").to_pylist() == [0, 1, 2, 3]
    assert buffer.num_rows == 4
    assert buffer.take_all().column("x").to_pylist() == [4, 5, 6, 7]
    assert buffer.num_rows == 0


def test_slice_rows_and_split_rows() -> None:
    blocks = [pa.table({"x": [0, 1, 2]}), pa.table({"x": [3, 4]})]
    assert slice_rows(blocks, 2, 4).column("x").to_pylist() == [2, 3]
    assert split_rows(10, 3) == [4, 3, 3]


def test_concat_of_incompatible_blocks_names_both_sources() -> None:
    with pytest.raises(SchemaMismatchError, match="a.csv.*b.csv"):
        concat_blocks([pa.table({"x": [1]}), pa.table({"x": ["s"]})], ["a.csv", "b.csv"])


def test_concat_promotes_null_columns_from_empty_batches() -> None:
    empty = pa.table({"x": pa.array([], type=pa.null())})
    out = concat_blocks([empty, pa.table({"x": [1, 2]})])
    assert out.column("x").to_pylist() == [1, 2]


@pytest.mark.parametrize("batch_format", ["default", "numpy", "pandas", "pyarrow"])
def test_every_batch_format_round_trips(batch_format: str) -> None:
    block = pa.table({"a": [1, 2], "s": ["x", "y"]})
    batch = block_to_batch(block, batch_format)
    back = batch_to_block(batch, "MapBatches(f)")
    assert back.column("a").to_pylist() == [1, 2]
    assert back.column("s").to_pylist() == ["x", "y"]


def test_pandas_cells_holding_arrays_become_a_tensor_column() -> None:
    frame = pd.DataFrame({"emb": [np.ones(4), np.zeros(4)]})
    block = pandas_to_block(frame)
    assert isinstance(block.schema.field("emb").type, pa.FixedShapeTensorType)
    assert block_to_pandas(block)["emb"][1].tolist() == [0, 0, 0, 0]


def test_a_function_returning_a_scalar_is_a_batch_format_error_naming_the_operator() -> None:
    with pytest.raises(BatchFormatError, match=r"MapBatches\(f\).*int"):
        batch_to_block(3, "MapBatches(f)")
    with pytest.raises(BatchFormatError, match="different lengths"):
        batch_to_block({"a": [1], "b": [1, 2]}, "MapBatches(f)")


def test_data_errors_pickle_with_their_fields_and_builtin_bases() -> None:
    error = pickle.loads(pickle.dumps(ColumnNotFoundError("c", ["a"], "Sort[c]")))
    assert isinstance(error, KeyError) and isinstance(error, DataError)
    assert error.column == "c" and "Sort[c]" in str(error)


def test_metadata_counts_rows_and_bytes() -> None:
    meta = metadata_of(pa.table({"x": np.arange(100, dtype=np.int64)}), ["f"])
    assert meta.num_rows == 100 and meta.size_bytes >= 800 and meta.input_files == ("f",)

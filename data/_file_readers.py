"""What a read task does in the worker: turn files (or row ranges) into blocks.

One function per source kind, all module-level so read tasks pickle by reference.
Parse failures become :class:`FileReadError` naming the file and the format, so a bad
file among thousands is easy to find.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import pyarrow as pa

from ember.data._block import Block, schema_difference
from ember.data._columns import table_from_columns
from ember.data.exceptions import ColumnNotFoundError, FileReadError, SchemaMismatchError


def _with_path(block: Block, path: str, include_paths: bool) -> Block:
    if not include_paths:
        return block
    return block.append_column("path", pa.array([path] * block.num_rows, type=pa.string()))


def range_block(start: int, stop: int, tensor_shape: Optional[Sequence[int]] = None) -> Iterator[Block]:
    """Rows ``start..stop-1`` as column ``id`` (or ``data`` tensors for range_tensor)."""
    ids = np.arange(start, stop, dtype=np.int64)
    if tensor_shape is None:
        yield pa.table({"id": ids})
        return
    shape = tuple(tensor_shape)
    data = np.broadcast_to(ids.reshape((-1,) + (1,) * len(shape)), (len(ids),) + shape)
    yield table_from_columns({"data": np.ascontiguousarray(data)})


def read_parquet_fragments(pieces: Sequence[tuple[str, list[int]]], columns: Optional[list[str]],
                           filter_expr: Any, include_paths: bool) -> Iterator[Block]:
    """Row groups of parquet files, with column projection and a row filter pushed down."""
    import pyarrow.dataset as pads
    import pyarrow.fs as pafs

    file_format = pads.ParquetFileFormat()
    local = pafs.LocalFileSystem()
    for path, row_groups in pieces:
        try:
            fragment = file_format.make_fragment(path, filesystem=local).subset(row_group_ids=row_groups)
            table = fragment.to_table(columns=columns, filter=filter_expr, use_threads=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as e:
            if columns and "No match for FieldRef" in str(e):
                missing = next((c for c in columns if c not in pads.dataset(path).schema.names),
                               columns[0])
                raise ColumnNotFoundError(missing, pads.dataset(path).schema.names,
                                          f"read_parquet({path})") from None
            raise FileReadError(path, "parquet", str(e)) from None
        yield _with_path(table, path, include_paths)


def _read_csv(path: str, options: dict[str, Any]) -> Block:
    import pyarrow.csv as pacsv
    return pacsv.read_csv(path, **options)


def _read_json(path: str, options: dict[str, Any]) -> Block:
    import pyarrow.json as pajson
    try:
        return pajson.read_json(path, **options)
    except pa.ArrowInvalid:
        # Not JSON Lines: accept one JSON document holding a list of records or a record.
        with open(path, "rb") as f:
            document = json.load(f)
        records = document if isinstance(document, list) else [document]
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("expected JSON Lines, or a JSON list of objects") from None
        return pa.Table.from_pylist(records)


def _read_numpy(path: str, options: dict[str, Any]) -> Block:
    array = np.load(path, allow_pickle=False, **options)
    if isinstance(array, np.lib.npyio.NpzFile):
        raise ValueError(".npz archives are not supported; save arrays with np.save")
    return table_from_columns({"data": array if array.ndim else array.reshape(1)})


def _read_text(path: str, options: dict[str, Any]) -> Block:
    with open(path, "rb") as f:
        text = f.read().decode(options.get("encoding", "utf-8"))
    lines = text.splitlines()
    if options.get("drop_empty_lines", False):
        lines = [line for line in lines if line.strip()]
    return pa.table({"text": pa.array(lines, type=pa.string())})


def _read_binary(path: str, options: dict[str, Any]) -> Block:
    with open(path, "rb") as f:
        return pa.table({"bytes": pa.array([f.read()], type=pa.binary())})


def _read_image(path: str, options: dict[str, Any]) -> Block:
    from PIL import Image

    with Image.open(path) as image:
        if options.get("mode"):
            image = image.convert(options["mode"])
        if options.get("size"):
            height, width = options["size"]
            image = image.resize((width, height))
        array = np.asarray(image)
    return table_from_columns({"image": array[np.newaxis, ...]})


_READERS = {"csv": _read_csv, "json": _read_json, "numpy": _read_numpy, "text": _read_text,
            "binary": _read_binary, "images": _read_image}


def read_files(paths: Sequence[str], file_format: str, options: dict[str, Any],
               include_paths: bool) -> Iterator[Block]:
    """Each file of ``paths`` as one block in ``file_format``.

    Raises:
        FileReadError: a file cannot be parsed (names the file and the format).
    """
    reader = _READERS[file_format]
    first: Optional[tuple[str, pa.Schema]] = None
    for path in paths:
        try:
            block = reader(path, options)
        except (pa.ArrowException, ValueError, OSError, UnicodeDecodeError, EOFError) as e:
            raise FileReadError(path, file_format, str(e).strip() or type(e).__name__) from None
        # Files read by one task end up in one block: say which two disagree, here,
        # rather than failing later on an anonymous concatenation.
        if first is None:
            first = (path, block.schema)
        elif not block.schema.equals(first[1], check_metadata=False):
            raise SchemaMismatchError(first[0], path, schema_difference(first[1], block.schema))
        yield _with_path(block, path, include_paths)


def sniff_parquet(path: str) -> tuple[pa.Schema, Any]:
    """Schema and footer metadata of one parquet file (driver side, cheap)."""
    import pyarrow.parquet as pq
    try:
        meta = pq.read_metadata(path)
        return meta.schema.to_arrow_schema(), meta
    except (pa.ArrowException, OSError) as e:
        raise FileReadError(path, "parquet", str(e)) from None


__all__ = ["range_block", "read_parquet_fragments", "read_files", "sniff_parquet"]

"""Creating datasets: ``range``, ``from_*`` and ``read_*`` (Ray Data's names and defaults).

``read_*`` functions plan on the driver -- they list files and fail right away, naming
the path, if one is missing -- and read lazily in tasks. ``from_*`` functions put the
given data in the object store at once.
"""

from __future__ import annotations

import builtins
import functools
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

import ember
from ember.data._batch import is_dataframe, pandas_to_block
from ember.data._block import RefBundle, metadata_of, rows_to_block, schema_difference, split_rows
from ember.data._columns import table_from_columns
from ember.data._datasource import (ReadTask, even_ranges, expand_paths, group_evenly,
                                    read_dataset, resolve_parallelism)
from ember.data._file_readers import range_block, read_files, read_parquet_fragments, sniff_parquet
from ember.data._plan import InputData
from ember.data.context import DataContext
from ember.data.dataset import Dataset, MaterializedDataset
from ember.data.exceptions import ColumnNotFoundError, InvalidArgumentError, SchemaMismatchError

if TYPE_CHECKING:
    import pandas as pd

Paths = Union[str, Sequence[str]]


def range(n: int, *, parallelism: int = -1, override_num_blocks: Optional[int] = None) -> Dataset:  # noqa: A001
    """Integers ``0..n-1`` in column ``id``.

    Example:
        >>> ember.data.range(3).take_all()
        [{'id': 0}, {'id': 1}, {'id': 2}]
    """
    if not isinstance(n, int) or n < 0:
        raise InvalidArgumentError("range", f"n must be an int >= 0, got {n!r}")
    blocks = resolve_parallelism("range", parallelism, override_num_blocks, n * 8,
                                 DataContext.get_current())
    tasks = [ReadTask(functools.partial(range_block, lo, hi), (), hi - lo, (hi - lo) * 8)
             for lo, hi in even_ranges(n, blocks)]
    return read_dataset("ReadRange", tasks, exact_rows=n)


def range_tensor(n: int, *, shape: Sequence[int] = (1,), parallelism: int = -1,
                 override_num_blocks: Optional[int] = None) -> Dataset:
    """``n`` tensors of ``shape`` in column ``data``; row ``i`` is filled with ``i``.

    Example:
        >>> ember.data.range_tensor(2, shape=(2, 2)).take(1)[0]["data"].shape
        (2, 2)
    """
    if not isinstance(n, int) or n < 0:
        raise InvalidArgumentError("range_tensor", f"n must be an int >= 0, got {n!r}")
    row_bytes = int(np.prod(shape)) * 8
    blocks = resolve_parallelism("range_tensor", parallelism, override_num_blocks, n * row_bytes,
                                 DataContext.get_current())
    tasks = [ReadTask(functools.partial(range_block, lo, hi, tuple(shape)), (), hi - lo,
                      (hi - lo) * row_bytes) for lo, hi in even_ranges(n, blocks)]
    return read_dataset("ReadRangeTensor", tasks, exact_rows=n)


def _from_blocks(blocks: list[pa.Table], name: str) -> MaterializedDataset:
    items = [RefBundle([(ember.put(b), metadata_of(b))], i) for i, b in enumerate(blocks)]
    return MaterializedDataset(InputData(name=name, inputs=[], items=items,
                                         num_rows=sum(b.num_rows for b in blocks)))


def from_items(items: list[Any], *, parallelism: int = -1,
               override_num_blocks: Optional[int] = None) -> MaterializedDataset:
    """A dataset of Python values: dicts become rows, anything else goes in column ``item``.

    Example:
        >>> ember.data.from_items([{"a": 1}, {"a": 2}]).count()
        2
    """
    if not isinstance(items, list):
        raise InvalidArgumentError("from_items", f"items must be a list, got {type(items).__name__}")
    rows = [i if isinstance(i, dict) else {"item": i} for i in items]
    n = resolve_parallelism("from_items", parallelism, override_num_blocks, len(rows) * 64,
                            DataContext.get_current())
    n = builtins.max(1, builtins.min(n, len(rows)))
    blocks, start = [], 0
    for size in split_rows(len(rows), n):
        blocks.append(rows_to_block(rows[start:start + size]))
        start += size
    return _from_blocks(blocks, "FromItems")


def from_pandas(dfs: Union["pd.DataFrame", list["pd.DataFrame"]], *,
                override_num_blocks: Optional[int] = None) -> MaterializedDataset:
    """A dataset with one block per DataFrame.

    Example:
        >>> ember.data.from_pandas(pd.DataFrame({"a": [1, 2]})).count()
        2
    """
    frames = [dfs] if is_dataframe(dfs) else list(dfs)
    for frame in frames:
        if not is_dataframe(frame):
            raise InvalidArgumentError("from_pandas", f"expected DataFrames, got {type(frame).__name__}")
    ds = _from_blocks([pandas_to_block(f) for f in frames], "FromPandas")
    return ds.repartition(override_num_blocks).materialize() if override_num_blocks else ds


def from_numpy(ndarrays: Union[np.ndarray, list[np.ndarray]]) -> MaterializedDataset:
    """A dataset with one block per array, rows along the first axis, in column ``data``.

    Example:
        >>> ember.data.from_numpy(np.zeros((4, 2))).count()
        4
    """
    arrays = [ndarrays] if isinstance(ndarrays, np.ndarray) else list(ndarrays)
    for array in arrays:
        if not isinstance(array, np.ndarray) or array.ndim == 0:
            raise InvalidArgumentError("from_numpy", "expected arrays with at least one dimension")
    return _from_blocks([table_from_columns({"data": a}) for a in arrays], "FromNumpy")


def from_arrow(tables: Union[pa.Table, list[pa.Table]]) -> MaterializedDataset:
    """A dataset with one block per Arrow table.

    Example:
        >>> ember.data.from_arrow(pa.table({"a": [1]})).count()
        1
    """
    blocks = [tables] if isinstance(tables, pa.Table) else list(tables)
    for table in blocks:
        if not isinstance(table, pa.Table):
            raise InvalidArgumentError("from_arrow", f"expected pyarrow Tables, got {type(table).__name__}")
    return _from_blocks(blocks, "FromArrow")


def from_torch(dataset: Any) -> MaterializedDataset:
    """A dataset of a torch map-style Dataset's samples, in column ``item``.

    Example:
        >>> ember.data.from_torch(torch_dataset).count()
    """
    return from_items([{"item": dataset[i]} for i in builtins.range(len(dataset))])


def _arrow_to_meta(table: pa.Table) -> Any:
    return metadata_of(table)


def from_arrow_refs(refs: Union[Any, list[Any]]) -> MaterializedDataset:
    """A dataset over Arrow tables already in the object store.

    Example:
        >>> ember.data.from_arrow_refs([ember.put(pa.table({"a": [1]}))]).count()
        1
    """
    refs = refs if isinstance(refs, list) else [refs]
    from ember.data._remote import remote
    metas = ember.get([remote(_arrow_to_meta).remote(r) for r in refs])
    items = [RefBundle([(r, m)], i) for i, (r, m) in enumerate(zip(refs, metas))]
    return MaterializedDataset(InputData(name="FromArrowRefs", inputs=[], items=items,
                                         num_rows=sum(m.num_rows for m in metas)))


# -- files ---------------------------------------------------------------------------

def _file_tasks(api: str, paths: Paths, file_format: str, options: dict[str, Any],
                parallelism: int, override_num_blocks: Optional[int], include_paths: bool,
                file_extensions: Optional[Sequence[str]], size_factor: float = 1.0) -> Dataset:
    files = expand_paths(paths, api, file_extensions)
    n = resolve_parallelism(api, parallelism, override_num_blocks,
                            int(sum(s for _, s in files) * size_factor), DataContext.get_current())
    groups = group_evenly(files, [s for _, s in files], n)
    tasks = [ReadTask(functools.partial(read_files, [p for p, _ in g], file_format, options,
                                        include_paths),
                      tuple(p for p, _ in g), None, int(sum(s for _, s in g) * size_factor))
             for g in groups]
    return read_dataset(f"Read{api[5:].title().replace('_', '')}", tasks)


def read_parquet(paths: Paths, *, filesystem: Any = None, columns: Optional[list[str]] = None,
                 filter: Any = None, parallelism: int = -1,  # noqa: A002 - Ray's name
                 override_num_blocks: Optional[int] = None, include_paths: bool = False,
                 file_extensions: Optional[list[str]] = None, **arrow_parquet_args: Any) -> Dataset:
    """Read Parquet files (or directories of them), splitting by row group.

    Args:
        paths: files and/or directories.
        columns: read only these columns.
        filter: a ``pyarrow.dataset`` expression (``pc.field("x") > 3``) or DNF
            tuples, pushed down into the reader.
        parallelism / override_num_blocks: number of read tasks.
        include_paths: add a ``path`` column.
        file_extensions: only read files with these extensions.

    Returns:
        A lazy dataset; ``count()`` without ``filter`` needs no reading.

    Raises:
        DatasetFileNotFoundError: a path is missing, or a directory holds no files.
        FileReadError: a file is not valid Parquet.
        SchemaMismatchError: files have different columns or types.
        ColumnNotFoundError: a selected column is missing from a file.

    Example:
        >>> ds = ember.data.read_parquet("/data/train", columns=["x", "y"])
    """
    import pyarrow.parquet as pq

    if filesystem is not None:
        raise InvalidArgumentError("read_parquet", "only the local filesystem is supported")
    files = expand_paths(paths, "read_parquet", file_extensions)
    filter_expr = pq.filters_to_expression(filter) if isinstance(filter, list) else filter
    fragments, first = [], None
    for path, _ in files:
        schema, meta = sniff_parquet(path)
        if columns:
            for column in columns:
                if column not in schema.names:
                    raise ColumnNotFoundError(column, schema.names, f"read_parquet({path})")
            schema = pa.schema([schema.field(c) for c in columns])
        if first is None:
            first = (path, schema)
        elif not schema.equals(first[1], check_metadata=False):
            raise SchemaMismatchError(first[0], path, schema_difference(first[1], schema))
        wanted = None if not columns else set(columns)
        for rg in builtins.range(meta.num_row_groups):
            group = meta.row_group(rg)
            size = builtins.sum(group.column(c).total_uncompressed_size
                                for c in builtins.range(group.num_columns)
                                if wanted is None or group.column(c).path_in_schema in wanted)
            fragments.append((path, rg, group.num_rows, size))
    n = resolve_parallelism("read_parquet", parallelism, override_num_blocks,
                            builtins.sum(f[3] for f in fragments), DataContext.get_current())
    tasks = []
    for group in group_evenly(fragments, [f[3] for f in fragments], n):
        pieces: dict[str, list[int]] = {}
        for path, rg, _, _ in group:
            pieces.setdefault(path, []).append(rg)
        rows = builtins.sum(f[2] for f in group)
        tasks.append(ReadTask(functools.partial(read_parquet_fragments, list(pieces.items()),
                                                columns, filter_expr, include_paths),
                              tuple(pieces), rows, builtins.sum(f[3] for f in group),
                              first[1] if first and not include_paths else None))
    total = builtins.sum(f[2] for f in fragments)
    return read_dataset("ReadParquet", tasks, exact_rows=total if filter_expr is None else None)


def read_csv(paths: Paths, *, filesystem: Any = None, parallelism: int = -1,
             override_num_blocks: Optional[int] = None, include_paths: bool = False,
             file_extensions: Optional[list[str]] = None, **arrow_csv_args: Any) -> Dataset:
    """Read CSV files; ``arrow_csv_args`` go to ``pyarrow.csv.read_csv``.

    Raises:
        DatasetFileNotFoundError: a path is missing.
        FileReadError: (at execution) a file is not valid CSV.

    Example:
        >>> ds = ember.data.read_csv("/data/table.csv")
    """
    return _file_tasks("read_csv", paths, "csv", arrow_csv_args, parallelism, override_num_blocks,
                       include_paths, file_extensions)


def read_json(paths: Paths, *, filesystem: Any = None, parallelism: int = -1,
              override_num_blocks: Optional[int] = None, include_paths: bool = False,
              file_extensions: Optional[list[str]] = None, **arrow_json_args: Any) -> Dataset:
    """Read JSON Lines files (or files holding one JSON list of records).

    Example:
        >>> ds = ember.data.read_json("/data/records.jsonl")
    """
    return _file_tasks("read_json", paths, "json", arrow_json_args, parallelism,
                       override_num_blocks, include_paths, file_extensions)


def read_numpy(paths: Paths, *, filesystem: Any = None, parallelism: int = -1,
               override_num_blocks: Optional[int] = None, include_paths: bool = False,
               file_extensions: Optional[list[str]] = None, **numpy_load_args: Any) -> Dataset:
    """Read ``.npy`` files into column ``data`` (rows along the first axis).

    Example:
        >>> ds = ember.data.read_numpy("/data/arrays")
    """
    return _file_tasks("read_numpy", paths, "numpy", numpy_load_args, parallelism,
                       override_num_blocks, include_paths, file_extensions or ["npy"])


def read_text(paths: Paths, *, encoding: str = "utf-8", drop_empty_lines: bool = False,
              filesystem: Any = None, parallelism: int = -1,
              override_num_blocks: Optional[int] = None, include_paths: bool = False,
              file_extensions: Optional[list[str]] = None) -> Dataset:
    """Read text files, one row per line, in column ``text``.

    Example:
        >>> ds = ember.data.read_text("/data/corpus.txt")
    """
    return _file_tasks("read_text", paths, "text",
                       {"encoding": encoding, "drop_empty_lines": drop_empty_lines}, parallelism,
                       override_num_blocks, include_paths, file_extensions)


def read_binary_files(paths: Paths, *, include_paths: bool = False, filesystem: Any = None,
                      parallelism: int = -1, override_num_blocks: Optional[int] = None,
                      file_extensions: Optional[list[str]] = None) -> Dataset:
    """Read whole files as bytes, one row per file, in column ``bytes``.

    Example:
        >>> ds = ember.data.read_binary_files("/data/blobs", include_paths=True)
    """
    return _file_tasks("read_binary_files", paths, "binary", {}, parallelism,
                       override_num_blocks, include_paths, file_extensions)


_IMAGE_EXTENSIONS = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif"]


def read_images(paths: Paths, *, size: Optional[tuple[int, int]] = None,
                mode: Optional[str] = None, include_paths: bool = False, filesystem: Any = None,
                parallelism: int = -1, override_num_blocks: Optional[int] = None,
                file_extensions: Optional[list[str]] = None) -> Dataset:
    """Read images into column ``image`` (ndarrays ``H x W [x C]``); needs Pillow.

    Args:
        size: ``(height, width)`` to resize to.
        mode: Pillow mode to convert to, e.g. ``"RGB"``.

    Raises:
        ImportError: Pillow is not installed.

    Example:
        >>> ds = ember.data.read_images("/data/images", size=(32, 32), mode="RGB")
    """
    try:
        import PIL  # noqa: F401
    except ImportError:
        raise ImportError("read_images needs Pillow: pip install pillow") from None
    # Decoded images are much larger than their files; plan blocks by the decoded size.
    return _file_tasks("read_images", paths, "images", {"size": size, "mode": mode}, parallelism,
                       override_num_blocks, include_paths, file_extensions or _IMAGE_EXTENSIONS,
                       size_factor=10.0)

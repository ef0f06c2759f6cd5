"""Writing a Dataset to files: ``write_parquet``, ``write_csv``, ``write_json``,
``write_numpy``. Mixed into :class:`ember.data.Dataset`.

A write is one more fused ``"write"`` stage: each task writes everything it produced to
one file named ``{write_uuid}_{task_index:06d}_000000.{ext}`` and returns a one-row
block (path, rows). Task indices follow input order, so reading the directory back in
name order gives the rows in dataset order.
"""

from __future__ import annotations

import functools
import os
import uuid
from typing import Any, Optional

import numpy as np
import pyarrow as pa

from ember.data._batch import block_to_numpy, block_to_pandas
from ember.data._block import Block
from ember.data._block_fns import check_columns
from ember.data._columns import is_pickled_field, is_tensor_type
from ember.data._plan import LogicalOp, MapOp, TaskPoolStrategy
from ember.data._transform import Stage, TaskContext
from ember.data.exceptions import InvalidArgumentError

_EXTENSIONS = {"parquet": "parquet", "csv": "csv", "json": "json", "numpy": "npy"}


def _write_file(block: Block, ctx: TaskContext, path: str, file_format: str, write_uuid: str,
                options: dict[str, Any]) -> Block:
    os.makedirs(path, exist_ok=True)
    name = f"{write_uuid}_{ctx.task_index:06d}_000000.{_EXTENSIONS[file_format]}"
    target = os.path.join(path, name)
    if file_format == "parquet":
        import pyarrow.parquet as pq
        pq.write_table(block, target, **options)
    elif file_format == "csv":
        import pyarrow.csv as pacsv
        unsupported = [f.name for f in block.schema if is_tensor_type(f.type) or is_pickled_field(f)]
        if unsupported:
            raise InvalidArgumentError(ctx.operator, f"columns {unsupported} hold tensors or "
                                                     f"objects, which CSV cannot store; use "
                                                     f"write_parquet or write_numpy")
        pacsv.write_csv(block, target, **options)
    elif file_format == "json":
        frame = block_to_pandas(block)
        frame.to_json(target, orient="records", lines=True, **options)
    else:
        column = options["column"]
        check_columns(block, [column], ctx.operator)
        np.save(target, block_to_numpy(block)[column])
    return pa.table({"path": [target], "num_rows": [block.num_rows]})


class WriteMixin:
    """File-writing methods of Dataset."""

    _plan: LogicalOp
    _last_stats: Any

    def _write(self, file_format: str, path: str, try_create_dir: bool,
               concurrency: Optional[int], ray_remote_args: Optional[dict[str, Any]],
               options: dict[str, Any]) -> None:
        if not isinstance(path, str) or not path:
            raise InvalidArgumentError(f"write_{file_format}", f"path must be a directory name, "
                                                               f"got {path!r}")
        path = path[len("local://"):] if path.startswith("local://") else path
        if os.path.isfile(path):
            raise InvalidArgumentError(f"write_{file_format}", f"{path!r} is a file; writes "
                                                               f"create files inside a directory")
        if try_create_dir:
            os.makedirs(path, exist_ok=True)
        name = f"Write{file_format.capitalize()}"
        fn = functools.partial(_write_file, path=os.path.abspath(path), file_format=file_format,
                               write_uuid=uuid.uuid4().hex[:16], options=options)
        args = dict(ray_remote_args or {})
        op = MapOp(name=name, inputs=[self._plan], stages=[Stage("write", name, fn)],
                   compute=TaskPoolStrategy(size=concurrency), remote_args=args,
                   explicit_resources=bool(args))
        from ember.data.dataset import Dataset

        writer = Dataset(op)
        for _ in writer.iter_internal_ref_bundles():
            pass
        # ds.stats() after ds.write_*() describes the write, as in Ray Data.
        self._last_stats = writer._last_stats

    def write_parquet(self, path: str, *, filesystem: Any = None, try_create_dir: bool = True,
                      concurrency: Optional[int] = None,
                      ray_remote_args: Optional[dict[str, Any]] = None,
                      **arrow_parquet_args: Any) -> None:
        """Write the dataset as Parquet files into directory ``path``.

        Args:
            path: output directory (created if missing).
            filesystem: only the local filesystem is supported (``None``).
            try_create_dir: create ``path`` first.
            concurrency: most write tasks at once.
            ray_remote_args: options of the write tasks.
            **arrow_parquet_args: passed to ``pyarrow.parquet.write_table``
                (e.g. ``compression="zstd"``).

        Raises:
            InvalidArgumentError: ``path`` is an existing file, or a remote filesystem.

        Example:
            >>> ds.write_parquet("/tmp/out")
        """
        _local_only(filesystem, "write_parquet")
        self._write("parquet", path, try_create_dir, concurrency, ray_remote_args, arrow_parquet_args)

    def write_csv(self, path: str, *, filesystem: Any = None, try_create_dir: bool = True,
                  concurrency: Optional[int] = None,
                  ray_remote_args: Optional[dict[str, Any]] = None,
                  **arrow_csv_args: Any) -> None:
        """Write the dataset as CSV files into directory ``path``.

        Example:
            >>> ds.write_csv("/tmp/out_csv")
        """
        _local_only(filesystem, "write_csv")
        self._write("csv", path, try_create_dir, concurrency, ray_remote_args, arrow_csv_args)

    def write_json(self, path: str, *, filesystem: Any = None, try_create_dir: bool = True,
                   concurrency: Optional[int] = None,
                   ray_remote_args: Optional[dict[str, Any]] = None,
                   **pandas_json_args: Any) -> None:
        """Write the dataset as JSON Lines files into directory ``path``.

        Example:
            >>> ds.write_json("/tmp/out_json")
        """
        _local_only(filesystem, "write_json")
        self._write("json", path, try_create_dir, concurrency, ray_remote_args, pandas_json_args)

    def write_numpy(self, path: str, *, column: str, filesystem: Any = None,
                    try_create_dir: bool = True, concurrency: Optional[int] = None,
                    ray_remote_args: Optional[dict[str, Any]] = None) -> None:
        """Write one column as ``.npy`` files into directory ``path``.

        Raises:
            ColumnNotFoundError: (at execution) ``column`` does not exist.

        Example:
            >>> ds.write_numpy("/tmp/out_npy", column="data")
        """
        _local_only(filesystem, "write_numpy")
        self._write("numpy", path, try_create_dir, concurrency, ray_remote_args, {"column": column})


def _local_only(filesystem: Any, api: str) -> None:
    if filesystem is not None:
        raise InvalidArgumentError(api, "only the local filesystem is supported; pass "
                                        "filesystem=None and a local path")

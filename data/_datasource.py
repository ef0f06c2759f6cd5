"""Reading plumbing shared by every ``read_*``: read tasks, paths, default parallelism.

A read is planned on the driver -- list the files, check they exist, estimate sizes --
and executed in tasks: each :class:`ReadTask` is a picklable callable that yields
blocks, travels to a worker as the input of the first fused map task, and names the
files it reads so errors and ``input_files()`` can name them too.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import pyarrow as pa

from ember.data._block import Block, BlockMetadata, RefBundle, split_rows
from ember.data._plan import InputData, LogicalOp, MapOp
from ember.data._transform import Stage
from ember.data.context import DataContext
from ember.data.exceptions import DatasetFileNotFoundError, InvalidArgumentError


@dataclasses.dataclass
class ReadTask:
    """One unit of reading, run inside a task.

    Attributes:
        read_fn: module-level function (or partial) yielding blocks.
        input_files: files it reads.
        estimated_rows: rows it will produce, if known.
        estimated_bytes: in-memory bytes it will produce (an estimate).
        schema: schema of its blocks, if known.
    """

    read_fn: Callable[[], Iterator[Block]]
    input_files: tuple[str, ...] = ()
    estimated_rows: Optional[int] = None
    estimated_bytes: int = 0
    schema: Optional[pa.Schema] = None

    def __call__(self) -> Iterator[Block]:
        yield from self.read_fn()


def resolve_parallelism(api: str, parallelism: int, override_num_blocks: Optional[int],
                        total_bytes: int, ctx: DataContext) -> int:
    """How many read tasks to create.

    ``override_num_blocks`` (or the older ``parallelism``) wins; otherwise Ray Data's
    rule: at least ``read_op_min_num_blocks`` blocks unless that makes blocks smaller than
    ``target_min_block_size``, at least enough that none exceeds
    ``target_max_block_size``, and at least two per CPU.

    Raises:
        InvalidArgumentError: a non-positive explicit block count.
    """
    explicit = override_num_blocks if override_num_blocks is not None else \
        (parallelism if parallelism not in (-1, None) else None)
    if explicit is not None:
        if not isinstance(explicit, int) or explicit < 1:
            raise InvalidArgumentError(api, f"override_num_blocks/parallelism must be >= 1, "
                                            f"got {explicit!r}")
        return explicit
    import ember

    cpus = 1  # no cluster yet: the read is planned before ember.init() may run
    if ember.is_initialized():
        cpus = int(ember.cluster_resources().get("CPU", 1))
    max_reasonable = max(1, total_bytes // ctx.target_min_block_size)
    min_safe = max(1, total_bytes // ctx.target_max_block_size)
    return int(max(min(ctx.read_op_min_num_blocks, max_reasonable), min_safe, cpus * 2))


def _strip_scheme(path: str) -> str:
    return path[len("local://"):] if path.startswith("local://") else path


def _matches(name: str, extensions: Optional[Sequence[str]]) -> bool:
    if extensions is None:
        return True
    lowered = name.lower()
    return any(lowered.endswith("." + ext.lower().lstrip(".")) for ext in extensions)


def expand_paths(paths: Union[str, Sequence[str]], reader: str,
                 file_extensions: Optional[Sequence[str]] = None) -> list[tuple[str, int]]:
    """Files (with sizes) under ``paths``: files as given, directories walked recursively.

    Hidden files and names starting with ``_`` (``_SUCCESS``, ``_metadata``) inside
    directories are skipped, as are files without one of ``file_extensions``.

    Raises:
        DatasetFileNotFoundError: a path does not exist, or nothing matched.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [os.fspath(paths)]
    if not paths:
        raise DatasetFileNotFoundError("[]", reader, "is an empty list of paths")
    found: list[tuple[str, int]] = []
    for raw in paths:
        path = _strip_scheme(os.fspath(raw))
        if os.path.isfile(path):
            found.append((os.path.abspath(path), os.path.getsize(path)))
            continue
        if not os.path.isdir(path):
            raise DatasetFileNotFoundError(path, reader)
        before = len(found)
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            for name in sorted(files):
                if name.startswith((".", "_")) or not _matches(name, file_extensions):
                    continue
                full = os.path.join(root, name)
                found.append((os.path.abspath(full), os.path.getsize(full)))
        if len(found) == before:
            what = "contains no files" if file_extensions is None else \
                f"contains no files ending in {list(file_extensions)}"
            raise DatasetFileNotFoundError(path, reader, what)
    return found


def group_evenly(items: Sequence[Any], sizes: Sequence[int], num_groups: int) -> list[list[Any]]:
    """Split ``items`` (in order) into at most ``num_groups`` runs of similar total size."""
    num_groups = max(1, min(num_groups, len(items)))
    total = sum(sizes) or len(items)
    target = total / num_groups
    groups: list[list[Any]] = [[]]
    acc = 0.0
    for item, size in zip(items, sizes):
        if groups[-1] and acc >= target * len(groups) and len(groups) < num_groups:
            groups.append([])
        groups[-1].append(item)
        acc += size if sum(sizes) else 1
    return groups


def even_ranges(num_rows: int, num_parts: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``num_parts`` near-equal row ranges (none empty)."""
    out, start = [], 0
    for size in split_rows(num_rows, max(1, min(num_parts, num_rows or 1))):
        out.append((start, start + size))
        start += size
    return out


def read_dataset(name: str, tasks: list[ReadTask], exact_rows: Optional[int] = None) -> Any:
    """A Dataset whose plan reads with ``tasks``.

    Args:
        name: operator name, e.g. ``"ReadParquet"``.
        tasks: the read tasks, in output order.
        exact_rows: total rows when known without reading (lets ``count`` skip reading).
    """
    from ember.data.dataset import Dataset

    items = [RefBundle([(task, BlockMetadata(task.estimated_rows or 0, task.estimated_bytes,
                                             task.schema, task.input_files))], i)
             for i, task in enumerate(tasks)]
    source: LogicalOp = InputData(name=f"Input{name}", inputs=[], items=items, num_rows=exact_rows)
    op = MapOp(name=name, inputs=[source], stages=[Stage("read", name)],
               preserves_rows=exact_rows is not None)
    return Dataset(op)

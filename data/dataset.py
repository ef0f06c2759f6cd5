"""Dataset: a lazy, distributed table of Arrow blocks, and its transformations.

A Dataset is an immutable handle on a logical plan (``_plan.py``). Transformations
return a new Dataset with one more plan node and run nothing; consumption methods
(``_consume.py``, mixed in here) execute the plan with the streaming executor.
Method names, argument names and defaults follow Ray Data.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Literal, Optional, Union as TypingUnion

from ember.data import _shuffle
from ember.data._batch import check_batch_format
from ember.data._block_fns import drop_columns, random_sample, rename_columns, select_columns
from ember.data._consume import ConsumeMixin
from ember.data._global_agg import AggregateMixin
from ember.data._splits import SplitMixin
from ember.data._write import WriteMixin
from ember.data._plan import (ActorPoolStrategy, AllToAll, ComputeStrategy, Limit, LogicalOp,
                              MapOp, TaskPoolStrategy, Union, plan_string)
from ember.data._transform import Stage
from ember.data.exceptions import InvalidArgumentError

_DEFAULT_BATCH_SIZE = 1024
_RESOURCE_KEYS = ("num_cpus", "num_gpus", "memory", "resources", "accelerator_type")


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _compute_for(api: str, fn: Any, compute: Optional[ComputeStrategy],
                 concurrency: Any) -> ComputeStrategy:
    """Resolve ``compute``/``concurrency`` the way Ray Data does."""
    if compute is not None and concurrency is not None:
        raise InvalidArgumentError(api, "pass either compute= or concurrency=, not both")
    if compute is not None:
        if not isinstance(compute, (TaskPoolStrategy, ActorPoolStrategy)):
            raise InvalidArgumentError(api, f"compute={compute!r} is not a TaskPoolStrategy "
                                            f"or ActorPoolStrategy")
        return compute
    is_class = inspect.isclass(fn)
    if concurrency is None:
        return ActorPoolStrategy() if is_class else TaskPoolStrategy()
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        if concurrency < 1:
            raise InvalidArgumentError(api, f"concurrency must be >= 1, got {concurrency}")
        return ActorPoolStrategy(size=concurrency) if is_class else TaskPoolStrategy(size=concurrency)
    if isinstance(concurrency, tuple) and len(concurrency) in (2, 3) and is_class:
        return ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[-1])
    raise InvalidArgumentError(api, f"concurrency={concurrency!r} must be an int, or for a "
                                    f"callable class a (min, max) tuple")


def _remote_args(num_cpus: Any, num_gpus: Any, memory: Any,
                 ray_remote_args: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    args = dict(ray_remote_args)
    for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus), ("memory", memory)):
        if value is not None:
            args[key] = value
    explicit = any(k in args for k in _RESOURCE_KEYS)
    return args, explicit


class Dataset(ConsumeMixin, AggregateMixin, SplitMixin, WriteMixin):
    """A distributed dataset of Arrow blocks, executed lazily and streamed.

    Create one with ``ember.data.range``, ``from_*`` or ``read_*``; transform it with
    ``map_batches`` and friends; consume it with ``iter_batches``, ``take`` or ``write_*``.

    Example:
        >>> import ember.data
        >>> ds = ember.data.range(10).map_batches(lambda b: {"id": b["id"] * 2})
        >>> ds.take(2)
        [{'id': 0}, {'id': 2}]
    """

    def __init__(self, plan: LogicalOp) -> None:
        self._plan = plan
        self._last_stats: Any = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(\n{plan_string(self._plan)}\n)"

    def _with(self, op: LogicalOp) -> "Dataset":
        return Dataset(op)

    # -- map-like transforms (fusable) -------------------------------------------------
    def _map_op(self, api: str, name: str, stage: Stage, fn: Any, compute: Any, concurrency: Any,
                num_cpus: Any, num_gpus: Any, memory: Any, ray_remote_args: dict[str, Any],
                min_rows: Optional[int] = None, preserves_rows: bool = False) -> "Dataset":
        strategy = _compute_for(api, fn, compute, concurrency)
        if stage.is_class and not isinstance(strategy, ActorPoolStrategy):
            raise InvalidArgumentError(api, "a callable class runs on actors; use "
                                            "concurrency=N or compute=ActorPoolStrategy(...)")
        if not stage.is_class and isinstance(strategy, ActorPoolStrategy):
            raise InvalidArgumentError(api, "an ActorPoolStrategy needs a callable class, "
                                            f"but {name} was given a function")
        args, explicit = _remote_args(num_cpus, num_gpus, memory, ray_remote_args)
        return self._with(MapOp(name=name, inputs=[self._plan], stages=[stage], compute=strategy,
                                remote_args=args, explicit_resources=explicit,
                                min_rows_per_bundle=min_rows, preserves_rows=preserves_rows))

    def map_batches(self, fn: Any, *, batch_size: TypingUnion[int, None, Literal["default"]] = "default",
                    compute: Optional[ComputeStrategy] = None,
                    batch_format: Optional[str] = "default", zero_copy_batch: bool = True,
                    fn_args: Optional[Iterable[Any]] = None,
                    fn_kwargs: Optional[dict[str, Any]] = None,
                    fn_constructor_args: Optional[Iterable[Any]] = None,
                    fn_constructor_kwargs: Optional[dict[str, Any]] = None,
                    num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                    memory: Optional[float] = None, concurrency: Any = None,
                    **ray_remote_args: Any) -> "Dataset":
        """Apply ``fn`` to batches of rows.

        Args:
            fn: a function ``batch -> batch`` (or a generator of batches), or a callable
                class instantiated once per actor (requires ``concurrency``).
            batch_size: rows per call; ``"default"`` is 1024; ``None`` means one call per
                block.
            compute: ``TaskPoolStrategy``/``ActorPoolStrategy`` (prefer ``concurrency``).
            batch_format: ``"default"``/``"numpy"`` (dict of ndarrays), ``"pandas"`` or
                ``"pyarrow"``.
            zero_copy_batch: give read-only views of the block (no copy).
            fn_args / fn_kwargs: extra arguments for each call.
            fn_constructor_args / fn_constructor_kwargs: arguments for the class.
            num_cpus / num_gpus / memory: resources per task or actor.
            concurrency: for a class, actors in the pool (int or ``(min, max)``); for a
                function, most tasks at once.
            **ray_remote_args: other task/actor options (``resources=...``).

        Returns:
            The transformed dataset (lazy).

        Raises:
            InvalidArgumentError: inconsistent arguments, e.g. a class without
                ``concurrency`` and a task strategy.
            BatchFormatError: (at execution) ``fn`` returned something that is not a
                batch.

        Example:
            >>> ds.map_batches(lambda b: {"x": b["id"] + 1}, batch_size=256)
        """
        if batch_size == "default":
            batch_size = _DEFAULT_BATCH_SIZE
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidArgumentError("map_batches", f"batch_size must be a positive int, "
                                                      f"None or 'default', got {batch_size!r}")
        fmt = check_batch_format(batch_format, "map_batches")
        is_class = inspect.isclass(fn)
        if not is_class and not callable(fn):
            raise InvalidArgumentError("map_batches", f"fn must be callable, got {type(fn).__name__}")
        name = f"MapBatches({_fn_name(fn)})"
        stage = Stage("batches", name, fn, is_class, tuple(fn_args or ()), dict(fn_kwargs or {}),
                      tuple(fn_constructor_args or ()), dict(fn_constructor_kwargs or {}),
                      batch_size, fmt, zero_copy_batch)
        return self._map_op("map_batches", name, stage, fn, compute, concurrency, num_cpus,
                            num_gpus, memory, ray_remote_args, min_rows=batch_size)

    def _row_op(self, api: str, kind: Any, label: str, fn: Any, compute: Any, fn_args: Any,
                fn_kwargs: Any, fn_constructor_args: Any, fn_constructor_kwargs: Any,
                num_cpus: Any, num_gpus: Any, memory: Any, concurrency: Any,
                ray_remote_args: dict[str, Any], preserves_rows: bool = False) -> "Dataset":
        is_class = inspect.isclass(fn)
        if not is_class and not callable(fn):
            raise InvalidArgumentError(api, f"fn must be callable, got {type(fn).__name__}")
        name = f"{label}({_fn_name(fn)})"
        stage = Stage(kind, name, fn, is_class, tuple(fn_args or ()), dict(fn_kwargs or {}),
                      tuple(fn_constructor_args or ()), dict(fn_constructor_kwargs or {}))
        return self._map_op(api, name, stage, fn, compute, concurrency, num_cpus, num_gpus,
                            memory, ray_remote_args, preserves_rows=preserves_rows)

    def map(self, fn: Any, *, compute: Optional[ComputeStrategy] = None,
            fn_args: Optional[Iterable[Any]] = None, fn_kwargs: Optional[dict[str, Any]] = None,
            fn_constructor_args: Optional[Iterable[Any]] = None,
            fn_constructor_kwargs: Optional[dict[str, Any]] = None,
            num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
            memory: Optional[float] = None, concurrency: Any = None,
            **ray_remote_args: Any) -> "Dataset":
        """Apply ``fn`` to each row (a dict) and keep the dict it returns.

        Args:
            fn: ``row -> row`` function, or a callable class (with ``concurrency``).
            Others: as in :meth:`map_batches`.

        Returns:
            The transformed dataset (lazy).

        Raises:
            BatchFormatError: (at execution) ``fn`` returned something other than a dict.

        Example:
            >>> ds.map(lambda row: {"id": row["id"], "sq": row["id"] ** 2})
        """
        return self._row_op("map", "rows", "Map", fn, compute, fn_args, fn_kwargs,
                            fn_constructor_args, fn_constructor_kwargs, num_cpus, num_gpus,
                            memory, concurrency, ray_remote_args, preserves_rows=True)

    def flat_map(self, fn: Any, *, compute: Optional[ComputeStrategy] = None,
                 fn_args: Optional[Iterable[Any]] = None,
                 fn_kwargs: Optional[dict[str, Any]] = None,
                 fn_constructor_args: Optional[Iterable[Any]] = None,
                 fn_constructor_kwargs: Optional[dict[str, Any]] = None,
                 num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
                 memory: Optional[float] = None, concurrency: Any = None,
                 **ray_remote_args: Any) -> "Dataset":
        """Apply ``fn`` to each row; it returns a list of rows (zero or more).

        Example:
            >>> ds.flat_map(lambda row: [row, row])
        """
        return self._row_op("flat_map", "flat_map", "FlatMap", fn, compute, fn_args, fn_kwargs,
                            fn_constructor_args, fn_constructor_kwargs, num_cpus, num_gpus,
                            memory, concurrency, ray_remote_args)

    def filter(self, fn: Any, *, compute: Optional[ComputeStrategy] = None,
               fn_args: Optional[Iterable[Any]] = None,
               fn_kwargs: Optional[dict[str, Any]] = None,
               fn_constructor_args: Optional[Iterable[Any]] = None,
               fn_constructor_kwargs: Optional[dict[str, Any]] = None,
               num_cpus: Optional[float] = None, num_gpus: Optional[float] = None,
               memory: Optional[float] = None, concurrency: Any = None,
               **ray_remote_args: Any) -> "Dataset":
        """Keep the rows for which ``fn(row)`` is true.

        Example:
            >>> ds.filter(lambda row: row["id"] % 2 == 0)
        """
        return self._row_op("filter", "filter", "Filter", fn, compute, fn_args, fn_kwargs,
                            fn_constructor_args, fn_constructor_kwargs, num_cpus, num_gpus,
                            memory, concurrency, ray_remote_args)

    def add_column(self, col: str, fn: Callable[[Any], Any], *,
                   batch_format: Optional[str] = "pandas", compute: Optional[str] = None,
                   concurrency: Any = None, **ray_remote_args: Any) -> "Dataset":
        """Add (or replace) column ``col`` computed by ``fn(batch)`` from each batch.

        Args:
            col: the new column's name.
            fn: ``batch -> column values`` (a Series, ndarray, Arrow array or list).
            batch_format: the batch ``fn`` receives; Ray Data's default is ``"pandas"``.

        Example:
            >>> ds.add_column("double", lambda df: df["id"] * 2)
        """
        fmt = check_batch_format(batch_format, "add_column")

        def add(batch: Any) -> Any:
            values = fn(batch)
            if fmt == "pyarrow":
                if col in batch.column_names:
                    return batch.set_column(batch.column_names.index(col), col, values)
                return batch.append_column(col, values)
            batch[col] = values
            return batch

        add.__name__ = f"add_column:{col}"
        return self.map_batches(add, batch_size=None, batch_format=fmt, zero_copy_batch=False,
                                concurrency=concurrency, **ray_remote_args)

    def _block_op(self, name: str, fn: Callable[..., Any]) -> "Dataset":
        stage = Stage("block", name, fn)
        return self._with(MapOp(name=name, inputs=[self._plan], stages=[stage],
                                preserves_rows=True))

    def select_columns(self, cols: TypingUnion[str, list[str]], **ray_remote_args: Any) -> "Dataset":
        """Keep only ``cols``, in that order.

        Raises:
            ColumnNotFoundError: (at execution) a column does not exist.

        Example:
            >>> ds.select_columns(["id"])
        """
        cols = [cols] if isinstance(cols, str) else list(cols)
        return self._block_op(f"SelectColumns({cols})", functools.partial(select_columns, columns=cols))

    def drop_columns(self, cols: TypingUnion[str, list[str]], **ray_remote_args: Any) -> "Dataset":
        """Remove ``cols``.

        Raises:
            ColumnNotFoundError: (at execution) a column does not exist.

        Example:
            >>> ds.drop_columns(["label"])
        """
        cols = [cols] if isinstance(cols, str) else list(cols)
        return self._block_op(f"DropColumns({cols})", functools.partial(drop_columns, columns=cols))

    def rename_columns(self, names: TypingUnion[list[str], dict[str, str]],
                       **ray_remote_args: Any) -> "Dataset":
        """Rename columns by ``{old: new}`` or with a full list of new names.

        Raises:
            ColumnNotFoundError: (at execution) an old name does not exist.

        Example:
            >>> ds.rename_columns({"id": "key"})
        """
        if not isinstance(names, (dict, list, tuple)):
            raise InvalidArgumentError("rename_columns", "names must be a dict or a list")
        return self._block_op("RenameColumns", functools.partial(rename_columns, names=names))

    def random_sample(self, fraction: float, *, seed: Optional[int] = None) -> "Dataset":
        """Keep each row with probability ``fraction`` (about ``fraction`` of the rows).

        Example:
            >>> ds.random_sample(0.1, seed=0)
        """
        if not 0 <= fraction <= 1:
            raise InvalidArgumentError("random_sample", f"fraction must be in [0, 1], got {fraction}")
        return self._block_op(f"RandomSample({fraction})",
                              functools.partial(random_sample, fraction=fraction, seed=seed))

    # -- structure -------------------------------------------------------------------
    def limit(self, limit: int) -> "Dataset":
        """The first ``limit`` rows; upstream work stops once they exist.

        Example:
            >>> ds.limit(5).count()
            5
        """
        if not isinstance(limit, int) or limit < 0:
            raise InvalidArgumentError("limit", f"limit must be an int >= 0, got {limit!r}")
        return self._with(Limit(name=f"Limit[limit={limit}]", inputs=[self._plan], limit=limit))

    def union(self, *other: "Dataset") -> "Dataset":
        """The rows of this dataset followed by those of ``other``.

        Example:
            >>> ember.data.range(2).union(ember.data.range(3)).count()
            5
        """
        for o in other:
            if not isinstance(o, Dataset):
                raise InvalidArgumentError("union", f"expected Datasets, got {type(o).__name__}")
        return self._with(Union(name="Union", inputs=[self._plan] + [o._plan for o in other]))

    def zip(self, other: "Dataset") -> "Dataset":
        """Combine columns row by row; both datasets must have the same number of rows.

        Duplicate column names from ``other`` get a ``_1`` suffix.

        Raises:
            InvalidArgumentError: (at execution) the row counts differ.

        Example:
            >>> ember.data.range(3).zip(ember.data.range(3)).columns()
            ['id', 'id_1']
        """
        if not isinstance(other, Dataset):
            raise InvalidArgumentError("zip", f"expected a Dataset, got {type(other).__name__}")
        return self._with(AllToAll(name="Zip", inputs=[self._plan, other._plan],
                                   fn=_shuffle.zip_bundles))

    def repartition(self, num_blocks: int, *, shuffle: bool = False) -> "Dataset":
        """Rows in ``num_blocks`` blocks of near-equal size (order kept unless shuffle).

        Example:
            >>> ds.repartition(4).materialize().num_blocks()
            4
        """
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise InvalidArgumentError("repartition", f"num_blocks must be >= 1, got {num_blocks!r}")
        fn = functools.partial(_shuffle.shuffle_bundles, num_blocks=num_blocks, seed=None) if \
            shuffle else functools.partial(_shuffle.repartition_bundles, num_blocks=num_blocks)
        return self._with(AllToAll(name=f"Repartition[num_blocks={num_blocks}]",
                                   inputs=[self._plan], fn=fn, preserves_rows=True))

    def random_shuffle(self, *, seed: Optional[int] = None,
                       num_blocks: Optional[int] = None, **ray_remote_args: Any) -> "Dataset":
        """Rows in a random order (reproducible with ``seed``).

        Example:
            >>> ds.random_shuffle(seed=42)
        """
        fn = functools.partial(_shuffle.shuffle_bundles, num_blocks=num_blocks, seed=seed)
        return self._with(AllToAll(name="RandomShuffle", inputs=[self._plan], fn=fn,
                                   preserves_rows=True))

    def sort(self, key: TypingUnion[str, list[str]],
             descending: TypingUnion[bool, list[bool]] = False) -> "Dataset":
        """Rows sorted by ``key`` (one column or several).

        Raises:
            ColumnNotFoundError: (at execution) a key column does not exist.

        Example:
            >>> ds.sort("score", descending=True)
        """
        keys = [key] if isinstance(key, str) else list(key)
        if not keys:
            raise InvalidArgumentError("sort", "key must name at least one column")
        orders = [descending] * len(keys) if isinstance(descending, bool) else list(descending)
        if len(orders) != len(keys):
            raise InvalidArgumentError("sort", f"{len(keys)} keys but {len(orders)} descending flags")
        fn = functools.partial(_shuffle.sort_bundles, keys=keys, descending=orders)
        return self._with(AllToAll(name=f"Sort[{', '.join(keys)}]", inputs=[self._plan], fn=fn,
                                   preserves_rows=True))

    def groupby(self, key: TypingUnion[str, list[str], None]) -> "Any":
        """Group rows by ``key`` for aggregations or ``map_groups``.

        Example:
            >>> ds.groupby("label").count().take_all()
        """
        from ember.data.grouped_data import GroupedData
        return GroupedData(self, key)


class MaterializedDataset(Dataset):
    """A dataset whose blocks are already in the object store (``materialize()``).

    Example:
        >>> mds = ember.data.range(10).materialize()
        >>> mds.num_blocks() >= 1
        True
    """

    _parent_stats: Any = None

    def num_blocks(self) -> int:
        """Number of stored blocks."""
        return sum(len(b.blocks) for b in self._plan.items)  # type: ignore[attr-defined]


__all__ = ["Dataset", "MaterializedDataset", "ActorPoolStrategy", "TaskPoolStrategy"]

"""DataIterator: batches and rows out of a stream of blocks, with prefetching.

::

    bundle source (executor, or a streaming_split coordinator)
        --> [background thread: keeps the executor going; its queue counts in the budget]
        --> ember.get(block refs): zero-copy views of the object store
        --> BlockBuffer / local shuffle buffer --> batch_size slices --> batch format

With ``prefetch_batches > 0`` the executor runs on a thread of its own, so tasks keep
being launched and finished while the consumer works on the current batch; the thread
is stopped and joined when iteration ends, fails or is abandoned. With
``prefetch_batches=0`` everything happens on the consumer's thread, between batches.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Optional

import numpy as np

import ember
from ember.data._batch import block_to_batch, check_batch_format
from ember.data._block import Block, BlockBuffer, RefBundle, concat_blocks, iter_rows
from ember.data.exceptions import InvalidArgumentError

#: ``source(background)``: start an execution and yield its bundles; with
#: ``background=True`` the source keeps producing while the consumer works.
BundleSource = Callable[[bool], Iterator[RefBundle]]

_END = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class Prefetcher:
    """Owns a thread that pulls items from an iterator ahead of the consumer.

    Used by sources that cannot run ahead on their own (``streaming_split`` shards).
    The thread is stopped and joined by :meth:`close`, also when the consumer stops
    early or fails.
    """

    def __init__(self, items: Iterator[Any], depth: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(items,),
                                        name="ember-data-prefetch", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[Any]) -> None:
        try:
            for item in items:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, re-raised there
            self._put(_Failure(e))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[Any]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(timeout=0.05)


def _blocks(source: BundleSource, prefetch_batches: int) -> Iterator[Block]:
    bundles = source(prefetch_batches > 0)
    try:
        for bundle in bundles:
            for block in ember.get(bundle.refs):
                yield block
    finally:
        bundles.close()  # type: ignore[attr-defined]


def _shuffled_batches(blocks: Iterator[Block], batch_size: int, buffer_size: int,
                      seed: Optional[int]) -> Iterator[Block]:
    """Batches drawn at random from a buffer of at least ``buffer_size`` rows."""
    rng = np.random.default_rng(seed)
    buffer = BlockBuffer()
    pending: Optional[Block] = None

    def draw(table: Block, n: int) -> tuple[Block, Block]:
        order = rng.permutation(table.num_rows)
        return table.take(order[:n]), table.take(order[n:])

    for block in blocks:
        buffer.add(block)
        if buffer.num_rows >= buffer_size + batch_size:
            table = buffer.take_all() if pending is None else concat_blocks([pending, buffer.take_all()])
            while table.num_rows >= buffer_size + batch_size:
                batch, table = draw(table, batch_size)
                yield batch
            pending = table
    rest = [t for t in (pending, buffer.take_all()) if t is not None and t.num_rows]
    if rest:
        table = concat_blocks(rest)
        while table.num_rows:
            batch, table = draw(table, batch_size)
            yield batch


def _sized_batches(blocks: Iterator[Block], batch_size: Optional[int]) -> Iterator[Block]:
    if batch_size is None:
        for block in blocks:
            if block.num_rows:
                yield block
        return
    buffer = BlockBuffer()
    for block in blocks:
        buffer.add(block)
        while buffer.num_rows >= batch_size:
            yield buffer.take(batch_size)
    if buffer.num_rows:
        yield buffer.take_all()


class DataIterator:
    """Iterates a dataset (or one shard of a ``streaming_split``) in batches or rows.

    Picklable when made by ``streaming_split``, so it can be handed to training workers.

    Example:
        >>> for batch in ds.iterator().iter_batches(batch_size=32):
        ...     pass
    """

    def __init__(self, source: BundleSource, name: str = "Dataset") -> None:
        self._source = source
        self._name = name

    def __repr__(self) -> str:
        return f"DataIterator({self._name})"

    def _source_fn(self) -> BundleSource:
        return self._source

    def iter_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256,
                     batch_format: Optional[str] = "default", drop_last: bool = False,
                     local_shuffle_buffer_size: Optional[int] = None,
                     local_shuffle_seed: Optional[int] = None) -> Iterator[Any]:
        """Yield batches of ``batch_size`` rows.

        Args:
            prefetch_batches: blocks fetched ahead on a background thread (0: none).
            batch_size: rows per batch (the last may be smaller); ``None``: one batch
                per block.
            batch_format: ``"default"``/``"numpy"``, ``"pandas"`` or ``"pyarrow"``.
            drop_last: drop a final batch smaller than ``batch_size``.
            local_shuffle_buffer_size: shuffle rows within a buffer of at least this
                many rows before batching.
            local_shuffle_seed: seed for the local shuffle.

        Returns:
            An iterator of batches.

        Raises:
            InvalidArgumentError: bad ``batch_size`` or ``batch_format``.

        Example:
            >>> for batch in ds.iter_batches(batch_size=2):
            ...     batch["id"]
        """
        fmt = check_batch_format(batch_format, "iter_batches")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InvalidArgumentError("iter_batches", f"batch_size must be a positive int or "
                                                       f"None, got {batch_size!r}")
        if local_shuffle_buffer_size is not None and batch_size is None:
            raise InvalidArgumentError("iter_batches", "local_shuffle_buffer_size needs a batch_size")
        return self._iter_batches(prefetch_batches, batch_size, fmt, drop_last,
                                  local_shuffle_buffer_size, local_shuffle_seed)

    def _iter_batches(self, prefetch_batches: int, batch_size: Optional[int], fmt: str,
                      drop_last: bool, shuffle_buffer: Optional[int],
                      shuffle_seed: Optional[int]) -> Iterator[Any]:
        blocks = _blocks(self._source_fn(), prefetch_batches)
        try:
            if shuffle_buffer:
                batches = _shuffled_batches(blocks, batch_size or 1, shuffle_buffer, shuffle_seed)
            else:
                batches = _sized_batches(blocks, batch_size)
            for batch in batches:
                if drop_last and batch_size is not None and batch.num_rows < batch_size:
                    continue
                yield block_to_batch(batch, fmt)
        finally:
            blocks.close()

    def iter_rows(self, *, prefetch_batches: int = 1) -> Iterator[dict[str, Any]]:
        """Yield rows as dicts.

        Example:
            >>> next(iter(ds.iter_rows()))
            {'id': 0}
        """
        blocks = _blocks(self._source_fn(), prefetch_batches)
        try:
            for block in blocks:
                yield from iter_rows(block)
        finally:
            blocks.close()

    def iter_torch_batches(self, *, prefetch_batches: int = 1, batch_size: Optional[int] = 256,
                           dtypes: Any = None, device: str = "auto",
                           collate_fn: Optional[Callable[[dict[str, np.ndarray]], Any]] = None,
                           drop_last: bool = False,
                           local_shuffle_buffer_size: Optional[int] = None,
                           local_shuffle_seed: Optional[int] = None) -> Iterator[Any]:
        """Yield batches as dicts of ``torch.Tensor`` (or what ``collate_fn`` returns).

        Args:
            dtypes: a torch dtype for every column, or a dict of column to dtype.
            device: ``"auto"`` (the GPU ember assigned to this process, else CPU), or any
                torch device string.
            collate_fn: called with each numpy batch instead of the default conversion.
            Others: as in :meth:`iter_batches`.

        Returns:
            An iterator of batches.

        Example:
            >>> batch = next(iter(ds.iter_torch_batches(batch_size=4)))
            >>> batch["id"].dtype
            torch.int64
        """
        import torch

        target = _torch_device(device)
        for batch in self.iter_batches(prefetch_batches=prefetch_batches, batch_size=batch_size,
                                       batch_format="numpy", drop_last=drop_last,
                                       local_shuffle_buffer_size=local_shuffle_buffer_size,
                                       local_shuffle_seed=local_shuffle_seed):
            if collate_fn is not None:
                yield collate_fn(batch)
                continue
            out = {}
            for name, values in batch.items():
                dtype = dtypes.get(name) if isinstance(dtypes, dict) else dtypes
                if values.dtype == object or values.dtype.kind in "USV":
                    out[name] = values  # strings and objects have no tensor form
                    continue
                if not values.flags.writeable:
                    values = np.array(values)  # torch tensors must not alias read-only memory
                out[name] = torch.as_tensor(values, dtype=dtype, device=target)
            yield out


def _torch_device(device: str) -> Any:
    import torch

    if device != "auto":
        return torch.device(device)
    try:
        gpu_ids = ember.get_gpu_ids()
    except (AttributeError, ember.exceptions.EmberError):
        gpu_ids = []
    if gpu_ids and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")

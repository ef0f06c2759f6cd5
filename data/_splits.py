"""Splitting a Dataset: ``split``, ``split_at_indices``, ``split_proportionately``,
``train_test_split`` and ``streaming_split``. Mixed into :class:`ember.data.Dataset`.

``streaming_split(n)`` feeds ``n`` consumers (training workers) from ONE execution: a
coordinator actor runs the streaming executor and hands each requesting shard the next
bundle, so fast shards take more (``equal=False``), or cuts every block into ``n``
equal slices (``equal=True``, at most ``n - 1`` rows dropped per epoch). Each shard is a
picklable :class:`DataIterator`; every new iteration over a shard is a new epoch, and
an epoch starts once every shard has finished the previous one.

::

    shard i: iter_batches() --next(i, epoch)--> _SplitCoordinator actor
                                                  |-- StreamingExecutor (tasks)
             <-- [(block_ref, meta), ...] | "wait" | "done"
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence, Union

import ember
from ember.data._block import BlockMetadata, RefBundle, concat_blocks, metadata_of
from ember.data._plan import InputData, LogicalOp
from ember.data._remote import remote, rows_between, slice_ref
from ember.data.context import DataContext
from ember.data.exceptions import InvalidArgumentError
from ember.data.iterator import DataIterator, Prefetcher

if TYPE_CHECKING:
    from ember.data.dataset import MaterializedDataset

_WAIT, _DONE = "wait", "done"


def _materialized(blocks: list[tuple[Any, BlockMetadata]]) -> "MaterializedDataset":
    from ember.data.dataset import MaterializedDataset

    items = [RefBundle([b], i) for i, b in enumerate(blocks)]
    return MaterializedDataset(InputData(name="InputData", inputs=[], items=items,
                                         num_rows=sum(m.num_rows for _, m in blocks)))


def _segment(blocks: list[tuple[Any, BlockMetadata]], start: int,
             stop: int) -> list[tuple[Any, BlockMetadata]]:
    metas = {id(ref): meta for ref, meta in blocks}
    return [slice_ref(ref, metas[id(ref)], lo, hi) for ref, lo, hi in rows_between(blocks, start, stop)]


class _SplitCoordinator:
    """Actor: runs one execution per epoch and deals its bundles to ``n`` shards."""

    def __init__(self, dataset: Any, n: int, equal: bool, context: DataContext) -> None:
        DataContext._set_current(context)
        self._dataset = dataset
        self._n = n
        self._equal = equal
        self._epoch = -1
        self._finished: set[int] = set(range(n))
        self._stream: Optional[Iterator[RefBundle]] = None
        self._queues: list[collections.deque[list[Any]]] = [collections.deque() for _ in range(n)]
        self._carry: list[Any] = []

    def next(self, shard: int, epoch: int) -> Any:
        """The next bundle for ``shard`` in ``epoch``, ``"wait"`` or ``"done"``."""
        if epoch < self._epoch or shard in self._finished and epoch == self._epoch:
            return _DONE
        if epoch > self._epoch:
            if len(self._finished) < self._n or epoch != self._epoch + 1:
                return _WAIT
            self._start_epoch(epoch)
        while not self._queues[shard]:
            if not self._pull(shard):
                self._finished.add(shard)
                return _DONE
        return self._queues[shard].popleft()

    def _start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._finished = set()
        self._queues = [collections.deque() for _ in range(self._n)]
        self._carry = []
        # The execution runs ahead on its own thread, within its memory budget, while
        # shards are busy with what they already received.
        self._stream = self._dataset.iter_internal_ref_bundles(_background=True)

    def _pull(self, shard: int) -> bool:
        """Fetch one more bundle from the execution; False once it is exhausted."""
        try:
            bundle = next(self._stream)  # type: ignore[arg-type]
        except StopIteration:
            return False
        if not self._equal:
            self._queues[shard].append(bundle.blocks)
            return True
        self._deal_equally(bundle)
        return True

    def _deal_equally(self, bundle: RefBundle) -> None:
        # Rows are cut into n equal slices; the < n leftover rows of each bundle wait in
        # the carry until n of them have gathered, so every shard gets the same count.
        tables = self._carry + [t for t in ember.get(bundle.refs) if t.num_rows]
        if not tables:
            return
        table = concat_blocks(tables)
        per_shard = table.num_rows // self._n
        for i in range(self._n):
            if per_shard:
                piece = table.slice(i * per_shard, per_shard)
                self._queues[i].append([(ember.put(piece), metadata_of(piece))])
        rest = table.slice(per_shard * self._n)
        self._carry = [rest] if rest.num_rows else []


class _ShardSource:
    """The bundle source of one shard; picklable (holds only the actor handle)."""

    def __init__(self, coordinator: Any, shard: int) -> None:
        self._coordinator = coordinator
        self._shard = shard
        self._epoch = 0

    def __call__(self, background: bool) -> Iterator[RefBundle]:
        epoch, self._epoch = self._epoch, self._epoch + 1
        bundles = self._iterate(epoch)
        # Ask for the next bundle while the consumer works on this one.
        return iter(Prefetcher(bundles, depth=2)) if background else bundles

    def _iterate(self, epoch: int) -> Iterator[RefBundle]:
        pause_s = 0.001
        while True:
            reply = ember.get(self._coordinator.next.remote(self._shard, epoch))
            if isinstance(reply, str) and reply == _WAIT:
                # Other shards are still finishing the previous epoch; back off gently.
                time.sleep(pause_s)
                pause_s = min(pause_s * 2, 0.05)
                continue
            if isinstance(reply, str) and reply == _DONE:
                return
            pause_s = 0.001
            yield RefBundle(list(reply))


class SplitMixin:
    """Splitting methods of Dataset."""

    _plan: LogicalOp

    def _blocks(self) -> list[tuple[Any, BlockMetadata]]:
        mds = self.materialize()  # type: ignore[attr-defined]
        return [blk for bundle in mds._plan.items for blk in bundle.blocks]

    def split_at_indices(self, indices: Sequence[int]) -> list["MaterializedDataset"]:
        """Split at row ``indices`` into ``len(indices) + 1`` materialized datasets.

        Example:
            >>> [d.count() for d in ember.data.range(10).split_at_indices([2, 5])]
            [2, 3, 5]
        """
        if any(i < 0 for i in indices) or list(indices) != sorted(indices):
            raise InvalidArgumentError("split_at_indices", f"indices must be sorted and >= 0, "
                                                           f"got {list(indices)}")
        blocks = self._blocks()
        total = sum(m.num_rows for _, m in blocks)
        bounds = [0] + [min(i, total) for i in indices] + [total]
        return [_materialized(_segment(blocks, lo, hi)) for lo, hi in zip(bounds, bounds[1:])]

    def split_proportionately(self, proportions: Sequence[float]) -> list["MaterializedDataset"]:
        """Split into parts of the given proportions (the last part takes the rest).

        Example:
            >>> [d.count() for d in ember.data.range(10).split_proportionately([0.2, 0.5])]
            [2, 5, 3]
        """
        if not proportions or any(p <= 0 for p in proportions) or sum(proportions) >= 1:
            raise InvalidArgumentError("split_proportionately", "proportions must be positive "
                                                                "and sum to less than 1")
        blocks = self._blocks()
        total = sum(m.num_rows for _, m in blocks)
        indices, acc = [], 0.0
        for p in proportions:
            acc += p
            indices.append(int(total * acc))
        bounds = [0] + indices + [total]
        return [_materialized(_segment(blocks, lo, hi)) for lo, hi in zip(bounds, bounds[1:])]

    def split(self, n: int, *, equal: bool = False,
              locality_hints: Optional[list[Any]] = None) -> list["MaterializedDataset"]:
        """Split into ``n`` materialized datasets.

        Args:
            n: number of parts.
            equal: exactly equal row counts (dropping up to ``n - 1`` rows); otherwise
                whole blocks are dealt so row counts are as even as blocks allow.
            locality_hints: accepted for compatibility; single-node placement ignores it.

        Example:
            >>> [d.count() for d in ember.data.range(10).split(2, equal=True)]
            [5, 5]
        """
        if not isinstance(n, int) or n < 1:
            raise InvalidArgumentError("split", f"n must be a positive int, got {n!r}")
        blocks = self._blocks()
        total = sum(m.num_rows for _, m in blocks)
        if equal:
            per = total // n
            return [_materialized(_segment(blocks, i * per, (i + 1) * per)) for i in range(n)]
        parts: list[list[tuple[Any, BlockMetadata]]] = [[] for _ in range(n)]
        acc = 0
        for block in blocks:
            # A block goes to the part its middle row falls into.
            middle = acc + block[1].num_rows / 2
            index = min(int(middle * n / max(total, 1)), n - 1) if total else 0
            parts[index].append(block)
            acc += block[1].num_rows
        return [_materialized(p) for p in parts]

    def train_test_split(self, test_size: Union[int, float], *, shuffle: bool = False,
                         seed: Optional[int] = None) -> tuple["MaterializedDataset",
                                                              "MaterializedDataset"]:
        """Split into (train, test); ``test_size`` is a fraction or a row count.

        Example:
            >>> train, test = ember.data.range(10).train_test_split(0.2)
            >>> train.count(), test.count()
            (8, 2)
        """
        ds = self.random_shuffle(seed=seed) if shuffle else self  # type: ignore[attr-defined]
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise InvalidArgumentError("train_test_split", f"a float test_size must be in "
                                                               f"(0, 1), got {test_size}")
            train, test = ds.split_proportionately([1 - test_size])
            return train, test
        if not isinstance(test_size, int) or test_size < 1:
            raise InvalidArgumentError("train_test_split", f"test_size must be a positive int or "
                                                           f"a fraction, got {test_size!r}")
        total = ds.count()
        if test_size >= total:
            raise InvalidArgumentError("train_test_split", f"test_size={test_size} leaves no "
                                                           f"training rows out of {total}")
        train, test = ds.split_at_indices([total - test_size])
        return train, test

    def streaming_split(self, n: int, *, equal: bool = False,
                        locality_hints: Optional[list[Any]] = None) -> list[DataIterator]:
        """``n`` iterators that share one streaming execution (one per training worker).

        Args:
            n: number of shards.
            equal: every shard gets the same number of rows.
            locality_hints: accepted for compatibility; ignored.

        Returns:
            Picklable DataIterators; iterate each in its own worker. All shards must be
            iterated for an epoch to finish.

        Example:
            >>> a, b = ember.data.range(100).streaming_split(2, equal=True)
        """
        if not isinstance(n, int) or n < 1:
            raise InvalidArgumentError("streaming_split", f"n must be a positive int, got {n!r}")
        from ember.data.dataset import Dataset

        coordinator = remote(_SplitCoordinator).options(num_cpus=0).remote(
            Dataset(self._plan), n, equal, DataContext.get_current())
        return [DataIterator(_ShardSource(coordinator, i), f"shard {i} of {n}") for i in range(n)]


__all__ = ["SplitMixin"]

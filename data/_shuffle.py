"""All-to-all steps: repartition, random shuffle, sort (range partitioning), zip.

Each ``*_bundles`` function runs on the driver inside a barrier operator once its
inputs are complete. It launches a map wave (each input block split into one part per
output, ``num_returns=P``) and a reduce wave (one task per output, combining its parts),
and waits only for the reduce wave's small metadata. Blocks never pass through the
driver.

Sort and groupby share :func:`range_partition`: rows are sent to the output partition
whose key range holds their first sort key, with boundaries picked from a sample of
every block, so partition ``i``'s keys all precede partition ``i+1``'s and every group
lands in exactly one reducer.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np
import pyarrow as pa

import ember
from ember.data._block import (Block, BlockMetadata, RefBundle, concat_blocks, empty_block,
                               metadata_of, split_rows)
from ember.data._remote import build_block, get_results, remote, rows_between
from ember.data.exceptions import ColumnNotFoundError, InvalidArgumentError

_SAMPLES_PER_BLOCK = 20


def _flat(bundles: Sequence[RefBundle]) -> list[tuple[Any, BlockMetadata]]:
    return [block for bundle in bundles for block in bundle.blocks]


def _schema_of(blocks: Sequence[tuple[Any, BlockMetadata]]) -> Optional[pa.Schema]:
    for _, meta in blocks:
        if meta.num_rows and meta.schema is not None:
            return meta.schema
    return blocks[0][1].schema if blocks else None


def _collect(pairs: list[tuple[Any, Any]]) -> list[RefBundle]:
    metas = get_results([m for _, m in pairs])
    return [RefBundle([(ref, meta)], i) for i, ((ref, _), meta) in enumerate(zip(pairs, metas))]


def _empty_output(schema: Optional[pa.Schema]) -> tuple[Any, BlockMetadata]:
    block = empty_block(schema)
    return ember.put(block), metadata_of(block)


def _as_list(result: Any, n: int) -> list[Any]:
    return [result] if n == 1 else list(result)


# -- repartition ---------------------------------------------------------------------

def repartition_bundles(inputs: list[list[RefBundle]], num_blocks: int) -> list[RefBundle]:
    """Rows in ``num_blocks`` blocks of near-equal row counts, order kept."""
    blocks = _flat(inputs[0])
    total = sum(m.num_rows for _, m in blocks)
    pairs, start = [], 0
    empties = []
    for index, size in enumerate(split_rows(total, num_blocks)):
        parts = rows_between(blocks, start, start + size)
        start += size
        if parts:
            pairs.append(build_block(parts))
        else:
            empties.append(index)
    bundles = _collect(pairs)
    for index in empties:
        bundles.insert(index, RefBundle([_empty_output(_schema_of(blocks))], index))
    for i, bundle in enumerate(bundles):
        bundle.index = i
    return bundles


# -- random shuffle ------------------------------------------------------------------

def _shuffle_map(block: Block, num_parts: int, seed: Optional[int], index: int) -> Any:
    rng = np.random.default_rng(None if seed is None else [seed, index])
    shuffled = block.take(rng.permutation(block.num_rows)) if block.num_rows else block
    parts, offset = [], 0
    for size in split_rows(block.num_rows, num_parts):
        parts.append(shuffled.slice(offset, size))
        offset += size
    return parts[0] if num_parts == 1 else tuple(parts)


def _shuffle_reduce(seed: Optional[int], index: int, *parts: Block) -> tuple[Block, BlockMetadata]:
    rng = np.random.default_rng(None if seed is None else [seed, index, 1])
    block = concat_blocks(list(parts))
    if block.num_rows:
        block = block.take(rng.permutation(block.num_rows))
    return block, metadata_of(block)


def shuffle_bundles(inputs: list[list[RefBundle]], num_blocks: Optional[int],
                    seed: Optional[int]) -> list[RefBundle]:
    """Rows in random order across ``num_blocks`` (default: as many as the input) blocks."""
    blocks = _flat(inputs[0])
    if not blocks:
        return []
    p = num_blocks or len(blocks)
    mapper = remote(_shuffle_map).options(num_returns=p)
    parts = [_as_list(mapper.remote(ref, p, seed, i), p) for i, (ref, _) in enumerate(blocks)]
    reducer = remote(_shuffle_reduce).options(num_returns=2)
    return _collect([reducer.remote(seed, j, *[row[j] for row in parts]) for j in range(p)])


# -- range partitioning (sort, groupby) ----------------------------------------------

def check_keys(blocks: Sequence[tuple[Any, BlockMetadata]], keys: Sequence[str], operator: str) -> None:
    """Raise ColumnNotFoundError on the driver if a key is missing from the schema."""
    schema = _schema_of(blocks)
    if schema is None or not schema.names:
        return
    for key in keys:
        if key not in schema.names:
            raise ColumnNotFoundError(key, schema.names, operator)


def _sample(block: Block, key: str, count: int) -> np.ndarray:
    column = block.column(key).drop_null()
    if len(column) == 0:
        return np.empty(0, dtype=object)
    picks = np.linspace(0, len(column) - 1, num=min(count, len(column))).astype(np.int64)
    return column.take(pa.array(picks)).to_numpy(zero_copy_only=False)


def _boundaries(samples: list[np.ndarray], num_parts: int) -> np.ndarray:
    values = np.concatenate([s for s in samples if len(s)]) if any(len(s) for s in samples) \
        else np.empty(0)
    if not len(values) or num_parts <= 1:
        return values[:0]
    values = np.sort(values)
    picks = np.linspace(0, len(values) - 1, num=num_parts + 1)[1:-1].astype(np.int64)
    return values[picks]


def _partition(block: Block, key: str, boundaries: np.ndarray, descending: bool,
               num_parts: int) -> Any:
    if not block.num_rows:
        parts = [block] * num_parts
        return parts[0] if num_parts == 1 else tuple(parts)
    column = block.column(key)
    nulls = column.is_null().to_numpy(zero_copy_only=False)
    assign = np.full(block.num_rows, num_parts - 1, dtype=np.int64)
    values = column.to_numpy(zero_copy_only=False)
    if (~nulls).any():
        assign[~nulls] = np.searchsorted(boundaries, values[~nulls], side="right")
    if descending:
        assign = num_parts - 1 - assign
        assign[nulls] = num_parts - 1
    order = np.argsort(assign, kind="stable")
    counts = np.bincount(assign, minlength=num_parts)
    ordered = block.take(pa.array(order))
    parts, offset = [], 0
    for count in counts:
        parts.append(ordered.slice(offset, int(count)))
        offset += int(count)
    return parts[0] if num_parts == 1 else tuple(parts)


def sort_block(block: Block, keys: Sequence[str], descending: Sequence[bool]) -> Block:
    """A block sorted by ``keys`` (nulls last)."""
    if not block.num_rows or not keys:
        return block
    order = [(k, "descending" if d else "ascending") for k, d in zip(keys, descending)]
    return block.sort_by(order)


def _sort_reduce(keys: Sequence[str], descending: Sequence[bool],
                 *parts: Block) -> tuple[Block, BlockMetadata]:
    block = sort_block(concat_blocks(list(parts)), keys, descending)
    return block, metadata_of(block)


def range_partition(blocks: Sequence[tuple[Any, BlockMetadata]], keys: Sequence[str],
                    descending: Sequence[bool], operator: str,
                    reduce_fn: Callable[..., tuple[Block, BlockMetadata]],
                    reduce_args: tuple[Any, ...], num_parts: Optional[int] = None) -> list[RefBundle]:
    """Range-partition ``blocks`` by ``keys[0]`` and reduce each partition.

    Args:
        blocks: input ``(ref, metadata)`` pairs.
        keys: sort keys; the first decides the partition.
        descending: per-key order.
        operator: name for errors.
        reduce_fn: module-level ``reduce_fn(*reduce_args, *parts) -> (block, metadata)``.
        reduce_args: leading arguments of every reduce call.
        num_parts: partitions (default: one per input block).

    Returns:
        One bundle per partition, in key order.

    Raises:
        ColumnNotFoundError: a key column does not exist.
    """
    check_keys(blocks, keys, operator)
    if not blocks:
        return []
    p = max(1, num_parts or len(blocks))
    sampler = remote(_sample)
    samples = get_results([sampler.remote(ref, keys[0], _SAMPLES_PER_BLOCK) for ref, _ in blocks])
    try:
        bounds = _boundaries(samples, p)
    except TypeError as e:
        raise InvalidArgumentError(operator, f"column {keys[0]!r} mixes values that cannot be "
                                             f"compared: {e}") from None
    mapper = remote(_partition).options(num_returns=p)
    parts = [_as_list(mapper.remote(ref, keys[0], bounds, descending[0], p), p) for ref, _ in blocks]
    reducer = remote(reduce_fn).options(num_returns=2)
    return _collect([reducer.remote(*reduce_args, *[row[j] for row in parts]) for j in range(p)])


def sort_bundles(inputs: list[list[RefBundle]], keys: list[str],
                 descending: list[bool]) -> list[RefBundle]:
    """Rows sorted by ``keys``."""
    return range_partition(_flat(inputs[0]), keys, descending, f"Sort[{', '.join(keys)}]",
                           _sort_reduce, (keys, descending))


# -- zip -----------------------------------------------------------------------------

def _zip_blocks(left: Block, spec: Sequence[tuple[int, int]],
                *rights: Block) -> tuple[Block, BlockMetadata]:
    right = concat_blocks([b.slice(lo, hi - lo) for b, (lo, hi) in zip(rights, spec)]) \
        if rights else empty_block()
    out = left
    for i, field in enumerate(right.schema):
        name, suffix = field.name, 1
        while name in out.schema.names:
            name = f"{field.name}_{suffix}"
            suffix += 1
        out = out.append_column(pa.field(name, field.type, metadata=field.metadata),
                                right.column(i))
    return out, metadata_of(out)


def zip_bundles(inputs: list[list[RefBundle]]) -> list[RefBundle]:
    """Columns of both inputs side by side, aligned on the left input's blocks."""
    left, right = _flat(inputs[0]), _flat(inputs[1])
    left_rows = sum(m.num_rows for _, m in left)
    right_rows = sum(m.num_rows for _, m in right)
    if left_rows != right_rows:
        raise InvalidArgumentError("zip", f"the datasets have {left_rows} and {right_rows} rows; "
                                          f"zip needs equal row counts")
    zipper = remote(_zip_blocks).options(num_returns=2)
    pairs, offset = [], 0
    for ref, meta in left:
        parts = rows_between(right, offset, offset + meta.num_rows)
        offset += meta.num_rows
        if not parts and right:
            parts = [(right[0][0], 0, 0)]  # an empty slice still carries the right schema
        pairs.append(zipper.remote(ref, [(lo, hi) for _, lo, hi in parts],
                                   *[r for r, _, _ in parts]))
    return _collect(pairs)

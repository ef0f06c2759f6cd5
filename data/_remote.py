"""Small block tasks shared by several operators, and the helper that makes them remote.

Library functions are wrapped with ``ember.remote`` on first use rather than at import,
so ``import ember.data`` never touches the runtime.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import ember
from ember.data._block import Block, BlockMetadata, concat_blocks, metadata_of
from ember.data.exceptions import DataError


@functools.lru_cache(maxsize=None)
def remote(fn: Callable[..., Any]) -> Any:
    """The ``ember.remote`` version of a module-level function (made once)."""
    return ember.remote(fn)


def get_results(refs: Any) -> Any:
    """``ember.get`` for the library's own task results.

    A bad-input error raised by ember.data inside a task (a missing column, an
    unreadable file, a wrong batch type) reaches the user as that typed error, with the
    runtime's TaskError -- which carries the remote traceback -- as its cause. Errors
    from user code keep the runtime's form, which is already an instance of the user's
    exception class.
    """
    try:
        return ember.get(refs)
    except ember.exceptions.TaskError as e:
        if isinstance(e.cause, DataError):
            raise e.cause from e
        raise


def _slice_block(block: Block, start: int, stop: int) -> tuple[Block, BlockMetadata]:
    out = block.slice(start, stop - start)
    return out, metadata_of(out)


def slice_ref(ref: Any, meta: BlockMetadata, start: int, stop: int) -> tuple[Any, BlockMetadata]:
    """Rows ``[start, stop)`` of a stored block, as a new stored block.

    The metadata is computed locally (row count and a proportional size), so no wait is
    needed; the block itself is cut by a small task next to the data.
    """
    if start == 0 and stop >= meta.num_rows:
        return ref, meta
    rows = max(stop - start, 0)
    size = meta.size_bytes * rows // max(meta.num_rows, 1)
    new_meta = BlockMetadata(rows, size, meta.schema, meta.input_files)
    block_ref, _ = remote(_slice_block).options(num_returns=2, num_cpus=0).remote(ref, start, stop)
    return block_ref, new_meta


def _concat_slices(spec: Sequence[tuple[int, int]], *blocks: Block) -> tuple[Block, BlockMetadata]:
    pieces = [b.slice(lo, hi - lo) for b, (lo, hi) in zip(blocks, spec)]
    out = concat_blocks(pieces).combine_chunks() if pieces else concat_blocks([])
    return out, metadata_of(out)


def build_block(parts: Sequence[tuple[Any, int, int]]) -> tuple[Any, Any]:
    """Launch a task that concatenates row ranges of several stored blocks.

    Args:
        parts: ``(block_ref, start, stop)`` triples, in output order.

    Returns:
        ``(block_ref, metadata_ref)`` of the new block.
    """
    spec = [(lo, hi) for _, lo, hi in parts]
    return remote(_concat_slices).options(num_returns=2).remote(spec, *[r for r, _, _ in parts])


def rows_between(blocks: Sequence[tuple[Any, BlockMetadata]], start: int,
                 stop: int) -> list[tuple[Any, int, int]]:
    """The ``(ref, lo, hi)`` pieces that hold rows ``[start, stop)`` of a block list."""
    parts, offset = [], 0
    for ref, meta in blocks:
        lo, hi = max(start - offset, 0), min(stop - offset, meta.num_rows)
        if lo < hi:
            parts.append((ref, lo, hi))
        offset += meta.num_rows
        if offset >= stop:
            break
    return parts


__all__ = ["remote", "get_results", "slice_ref", "build_block", "rows_between"]

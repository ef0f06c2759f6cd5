"""Blocks: the unit of data that moves through ember.data.

A block is a ``pyarrow.Table``. Blocks live in ember's object store and travel as
``ObjectRef`` s; the executor only ever holds a block's *metadata* (rows, bytes, schema),
which every task returns inline next to the block, so scheduling decisions never fetch
data to the driver.

A ``RefBundle`` is the unit an operator consumes and produces: one or more blocks plus
their metadata. Bundles own their refs; dropping the last bundle that holds a ref frees
the block in the store, which is what bounds memory in a streaming pipeline.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Optional, Sequence

import pyarrow as pa

from ember.data._columns import column_values_for_rows, table_from_columns
from ember.data.exceptions import SchemaMismatchError

Block = pa.Table


@dataclasses.dataclass(frozen=True)
class BlockMetadata:
    """Facts about one block, known without fetching it.

    Attributes:
        num_rows: rows in the block.
        size_bytes: Arrow buffer bytes of the block.
        schema: the block's schema (``None`` only for a block not yet produced).
        input_files: files the block was read from, for error messages and stats.
        exec_s: wall seconds the producing task spent on this block.
    """

    num_rows: int
    size_bytes: int
    schema: Optional[pa.Schema]
    input_files: tuple[str, ...] = ()
    exec_s: float = 0.0


def metadata_of(block: Block, input_files: Sequence[str] = (), exec_s: float = 0.0) -> BlockMetadata:
    """Metadata describing ``block``."""
    return BlockMetadata(block.num_rows, block_size_bytes(block), block.schema,
                         tuple(input_files), exec_s)


def block_size_bytes(block: Block) -> int:
    """Bytes the block's buffers occupy (what it costs in the object store)."""
    try:
        return int(block.get_total_buffer_size())
    except AttributeError:  # pragma: no cover - pyarrow < 13
        return int(block.nbytes)


@dataclasses.dataclass
class RefBundle:
    """Blocks handed from one operator to the next, with their metadata.

    Attributes:
        blocks: ``(ObjectRef, BlockMetadata)`` pairs, in order.
        index: position of the bundle in its operator's output, used to keep order.
    """

    blocks: list[tuple[Any, BlockMetadata]]
    index: int = 0

    @property
    def num_rows(self) -> int:
        """Total rows of the bundle's blocks."""
        return sum(m.num_rows for _, m in self.blocks)

    @property
    def size_bytes(self) -> int:
        """Total bytes of the bundle's blocks."""
        return sum(m.size_bytes for _, m in self.blocks)

    @property
    def refs(self) -> list[Any]:
        """The block refs, in order."""
        return [r for r, _ in self.blocks]

    @property
    def schema(self) -> Optional[pa.Schema]:
        """Schema of the first non-empty block, else of the first block."""
        for _, m in self.blocks:
            if m.num_rows and m.schema is not None:
                return m.schema
        return self.blocks[0][1].schema if self.blocks else None


def empty_block(schema: Optional[pa.Schema] = None) -> Block:
    """A block with no rows (and no columns unless a schema is given)."""
    if schema is None:
        return pa.table({})
    return schema.empty_table()


def schema_difference(a: pa.Schema, b: pa.Schema) -> str:
    only_a = [n for n in a.names if n not in b.names]
    only_b = [n for n in b.names if n not in a.names]
    typed = [f"{n}: {a.field(n).type} vs {b.field(n).type}" for n in a.names
             if n in b.names and not a.field(n).type.equals(b.field(n).type)]
    parts = []
    if only_a:
        parts.append(f"columns {only_a} only in the first")
    if only_b:
        parts.append(f"columns {only_b} only in the second")
    if typed:
        parts.append("types differ (" + "; ".join(typed) + ")")
    return ", ".join(parts) or "column order differs"


def concat_blocks(blocks: Sequence[Block], sources: Sequence[str] = ()) -> Block:
    """Concatenate blocks into one (zero-copy: the result is chunked).

    Blocks without rows and columns are skipped; ``null``-typed columns (from empty
    batches) are promoted to the other blocks' types.

    Args:
        blocks: blocks to join, in order.
        sources: optional description of where each block came from (file names), used
            in the error message.

    Returns:
        One block with all rows.

    Raises:
        SchemaMismatchError: two blocks have incompatible schemas.
    """
    kept = [(i, b) for i, b in enumerate(blocks) if b.num_columns or b.num_rows]
    if not kept:
        return blocks[0] if blocks else empty_block()
    if len(kept) == 1:
        return kept[0][1]
    first_schema = kept[0][1].schema
    if all(b.schema.equals(first_schema, check_metadata=False) for _, b in kept[1:]):
        return pa.concat_tables([b for _, b in kept])
    # Only null-typed columns (from all-null or empty batches) are promoted; different
    # column sets or conflicting types are mixed schemas, reported with their sources.
    if all(set(b.schema.names) == set(first_schema.names) for _, b in kept[1:]):
        try:
            return pa.concat_tables([b for _, b in kept], promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            pass
    for i, b in kept[1:]:
        if not b.schema.equals(first_schema, check_metadata=False):
            name_a = sources[kept[0][0]] if sources else "block 0"
            name_b = sources[i] if sources else f"block {i}"
            raise SchemaMismatchError(name_a, name_b, schema_difference(first_schema, b.schema))
    raise AssertionError("unreachable: promotion failed on equal schemas")  # pragma: no cover


def iter_rows(block: Block) -> Iterator[dict[str, Any]]:
    """Rows of a block as dicts (tensor cells as ndarrays, objects unpickled)."""
    columns = [column_values_for_rows(f, block.column(i)) for i, f in enumerate(block.schema)]
    names = block.schema.names
    for values in zip(*columns):
        yield dict(zip(names, values))
    if not names:
        for _ in range(block.num_rows):
            yield {}


def rows_to_block(rows: Sequence[dict[str, Any]], schema_hint: Optional[pa.Schema] = None) -> Block:
    """Build a block from row dicts (the output of ``map``/``flat_map``).

    Args:
        rows: row dicts; keys may appear in any order, missing keys become nulls.
        schema_hint: schema used when ``rows`` is empty.

    Returns:
        The block.
    """
    if not rows:
        return empty_block(schema_hint)
    names: dict[str, None] = {}
    for row in rows:
        for key in row:
            names.setdefault(key, None)
    columns = {name: [row.get(name) for row in rows] for name in names}
    return table_from_columns(columns)


def split_rows(num_rows: int, num_parts: int) -> list[int]:
    """Row counts of ``num_parts`` near-equal parts (earlier parts get the remainder)."""
    base, extra = divmod(num_rows, max(num_parts, 1))
    return [base + (1 if i < extra else 0) for i in range(num_parts)]


def slice_rows(blocks: Sequence[Block], start: int, stop: int) -> Block:
    """Rows ``[start, stop)`` of the concatenation of ``blocks`` (zero-copy)."""
    pieces, offset = [], 0
    for block in blocks:
        n = block.num_rows
        lo, hi = max(start - offset, 0), min(stop - offset, n)
        if lo < hi:
            pieces.append(block.slice(lo, hi - lo))
        offset += n
        if offset >= stop:
            break
    if not pieces:
        return empty_block(blocks[0].schema if blocks else None)
    return concat_blocks(pieces)


class BlockBuffer:
    """Rows queued from a stream of blocks and cut into slices of exact sizes.

    Used to re-batch: map_batches inside a task and iter_batches on the consumer both
    see blocks of arbitrary sizes and hand out batches of ``batch_size`` rows.
    Slicing is zero-copy; rows are only copied when a batch spans two blocks.
    """

    def __init__(self) -> None:
        self._blocks: list[Block] = []
        self._rows = 0

    @property
    def num_rows(self) -> int:
        """Rows queued."""
        return self._rows

    def add(self, block: Block) -> None:
        """Queue a block's rows (empty blocks are kept only for their schema)."""
        if block.num_rows or not self._blocks:
            self._blocks.append(block)
            self._rows += block.num_rows

    def take(self, num_rows: int) -> Block:
        """Remove and return the next ``num_rows`` rows (fewer if fewer are queued)."""
        num_rows = min(num_rows, self._rows)
        out: list[Block] = []
        need = num_rows
        while need > 0:
            head = self._blocks[0]
            if head.num_rows <= need:
                out.append(head)
                self._blocks.pop(0)
                need -= head.num_rows
            else:
                out.append(head.slice(0, need))
                self._blocks[0] = head.slice(need)
                need = 0
        self._rows -= num_rows
        if not out:
            return empty_block(self._blocks[0].schema if self._blocks else None)
        if not self._rows:
            self._blocks = [b for b in self._blocks if b.num_rows]
        return concat_blocks(out)

    def take_all(self) -> Block:
        """Remove and return every queued row."""
        schema = self._blocks[0].schema if self._blocks else None
        if not self._rows:
            self._blocks = []
            return empty_block(schema)
        return self.take(self._rows)

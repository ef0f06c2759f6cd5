"""Block -> block functions behind the column and sampling transforms.

They run inside fused tasks as ``"block"`` stages, are module-level (so they pickle by
reference) and take their parameters through ``functools.partial``. Each names its
operator in the errors it raises.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from ember.data._block import Block
from ember.data._transform import TaskContext
from ember.data.exceptions import ColumnNotFoundError, InvalidArgumentError


def check_columns(block: Block, columns: Sequence[str], operator: str) -> None:
    """Raise ColumnNotFoundError for the first of ``columns`` the block lacks.

    Empty blocks without columns (from a filter that removed everything upstream of a
    schema change) are accepted: they have nothing to select from.
    """
    if block.num_columns == 0 and block.num_rows == 0:
        return
    names = block.schema.names
    for column in columns:
        if column not in names:
            raise ColumnNotFoundError(column, names, operator)


def select_columns(block: Block, ctx: TaskContext, columns: Sequence[str]) -> Block:
    """Keep ``columns``, in the given order."""
    check_columns(block, columns, ctx.operator)
    if block.num_columns == 0:
        return block
    return block.select(list(columns))


def drop_columns(block: Block, ctx: TaskContext, columns: Sequence[str]) -> Block:
    """Remove ``columns``."""
    check_columns(block, columns, ctx.operator)
    if block.num_columns == 0:
        return block
    return block.drop_columns(list(columns))


def rename_columns(block: Block, ctx: TaskContext, names: Any) -> Block:
    """Rename by a mapping ``{old: new}`` or a full list of new names."""
    if block.num_columns == 0:
        return block
    if isinstance(names, dict):
        check_columns(block, list(names), ctx.operator)
        return block.rename_columns([names.get(n, n) for n in block.schema.names])
    if len(names) != block.num_columns:
        raise InvalidArgumentError(ctx.operator, f"got {len(names)} new names for "
                                                 f"{block.num_columns} columns {block.schema.names}")
    return block.rename_columns(list(names))


def random_sample(block: Block, ctx: TaskContext, fraction: float, seed: Any) -> Block:
    """Keep each row with probability ``fraction``.

    A seeded sample is reproducible: the generator is seeded with the user's seed and
    the task's index, so each block draws its own, stable stream.
    """
    if not block.num_rows:
        return block
    rng = np.random.default_rng(None if seed is None else [seed, ctx.task_index])
    mask = rng.random(block.num_rows) < fraction
    return block.filter(pa.array(mask))

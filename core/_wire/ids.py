"""How ids are made: task ids, and object ids derived from them.

An object id is its task id (12 bytes) followed by a 4-byte little-endian index. A task's
i-th return has index i, so its id is known before the task runs (lineage, ``get``
before completion). Objects that no task returns use reserved indexes at the top of the
range, so they can never collide with a return:

    PUT_INDEX      ember.put(value)
    ARGS_INDEX     a call's arguments, too large to travel inline
    REQUEST_INDEX  a value the node manager answers a request with (pg.ready())
"""

from __future__ import annotations

import itertools
import os

from .._types import ObjectID, TaskID

PUT_INDEX = 0xFFFF_FFFF
ARGS_INDEX = 0xFFFF_FFFE
REQUEST_INDEX = 0xFFFF_FFFD

#: Bytes of a task id: a random per-process prefix and a counter.
TASK_ID_BYTES = 12


def object_id(task_id: TaskID, index: int) -> ObjectID:
    """The id of the object with ``index`` (a return position or a reserved index)."""
    return task_id + index.to_bytes(4, "little")


def return_ids(task_id: TaskID, num_returns: int) -> list[ObjectID]:
    """The ids of a task's returns, in order."""
    return [object_id(task_id, i) for i in range(num_returns)]


def task_of(oid: ObjectID) -> TaskID:
    """The task id an object id derives from."""
    return oid[:TASK_ID_BYTES]


class TaskIds:
    """Task ids unique across the cluster: 8 random bytes per process, then a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(8)
        self._counter = itertools.count(1)

    def next(self) -> TaskID:
        return self._prefix + next(self._counter).to_bytes(4, "little")

"""Keeping a failed task for replay: its function id and the inputs it was called with
go to the head (``ember.util.debug.replay`` runs them again in the user's process).

Bounded here by size (``EMBER_REPLAY_MAX_BYTES`` per task, default 8 MiB: inputs are
pickled only when the task fails, so the happy path pays nothing) and on the head by
count and total size; off per task (``debug_replay=False``) or per node
(``EMBER_DEBUG_REPLAY=0`` in the node's environment).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import cloudpickle

from .._client.runtime import Runtime
from .._wire import protocol as p

#: Largest pickled inputs kept for one task (the message must stay a small control frame).
MAX_BYTES = min(int(os.environ.get("EMBER_REPLAY_MAX_BYTES", str(8 << 20))), 12 << 20)
ENABLED = os.environ.get("EMBER_DEBUG_REPLAY", "1") != "0"


def keep_for_replay(rt: Runtime, spec: p.TaskSpec, inputs: tuple[tuple, dict], error: BaseException) -> str:
    """Send a failed task's function and inputs to the head; returns the line its error
    gets (how to replay it), or "" when it was not kept (off, too large, unpicklable)."""
    if not ENABLED or not spec.keep_inputs:
        return ""
    try:
        blob = cloudpickle.dumps(inputs)
    except Exception:  # noqa: BLE001  (inputs that cannot be pickled are just not kept)
        return ""
    if len(blob) > MAX_BYTES:
        return ""
    task_hex = spec.task_id.hex()
    summary = f"{type(error).__name__}: {error}"[:2000]
    rt.send(p.RecordFailedTask(task_hex, spec.name, spec.function_id, blob, list(sys.path), summary))
    return (f"\n(replay it in your own process, under a debugger if you like: `ember debug replay "
            f"{task_hex}` or ember.util.debug.replay(ref))")


def replay_inputs(blob: bytes) -> Any:
    """The (args, kwargs) a kept task was called with."""
    return cloudpickle.loads(blob)

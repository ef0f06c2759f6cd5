"""DataContext: the knobs that shape how datasets are cut into blocks and executed.

One context per driver process (``DataContext.get_current()``), read when a dataset is
*executed*, not when it is built, as in Ray Data. Values that tasks need (block size
targets) are copied into each task explicitly; workers never read the driver's context.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Optional

__all__ = ["DataContext", "ExecutionOptions", "ExecutionResources"]

_MiB = 1024 * 1024


@dataclasses.dataclass
class ExecutionResources:
    """Resource limits for one execution; ``None`` means "derive from the cluster".

    Attributes:
        cpu: CPUs the executor may keep busy at once.
        gpu: GPUs the executor may keep busy at once.
        object_store_memory: bytes of blocks the executor may hold in the object store
            (queued between operators plus the estimated output of running tasks).
    """

    cpu: Optional[float] = None
    gpu: Optional[float] = None
    object_store_memory: Optional[float] = None


@dataclasses.dataclass
class ExecutionOptions:
    """Options of the streaming executor.

    Attributes:
        resource_limits: caps on CPUs, GPUs and object store bytes.
        preserve_order: emit blocks in input order. ember defaults to ``True`` (Ray Data:
            ``False``) so ``take``, ``zip`` and ``limit`` are deterministic; the cost is
            that a finished block may wait for a slower one ahead of it.
        verbose_progress: keep finished operators' progress bars on screen.
    """

    resource_limits: ExecutionResources = dataclasses.field(default_factory=ExecutionResources)
    preserve_order: bool = True
    verbose_progress: bool = False


@dataclasses.dataclass
class DataContext:
    """Process-wide settings of ember.data (Ray Data's names).

    Attributes:
        target_max_block_size: reads aim for blocks at most this many bytes.
        target_min_block_size: default read parallelism keeps blocks above this size.
        read_op_min_num_blocks: default read parallelism aims for at least this many blocks.
        enable_progress_bars: ``True``/``False`` force the tqdm bars on/off; ``None`` shows
            them only in a terminal or a notebook.
        execution_options: streaming executor options (backpressure budget, order).
        object_store_memory_fraction: share of the cluster's object store the executor
            may fill when ``execution_options.resource_limits`` does not say.
        max_tasks_in_flight_per_actor: calls queued on one actor of a pool, so the next
            batch is already there when the actor finishes one.
        actor_startup_timeout_s: how long a pool waits for its first actor before it
            reports that the cluster cannot place it.

    Example:
        >>> ctx = DataContext.get_current()
        >>> ctx.enable_progress_bars = False
    """

    target_max_block_size: int = 128 * _MiB
    target_min_block_size: int = 1 * _MiB
    read_op_min_num_blocks: int = 200
    enable_progress_bars: Optional[bool] = None
    execution_options: ExecutionOptions = dataclasses.field(default_factory=ExecutionOptions)
    object_store_memory_fraction: float = 0.5
    max_tasks_in_flight_per_actor: int = 2
    actor_startup_timeout_s: float = 600.0

    @staticmethod
    def get_current() -> "DataContext":
        """The context of this process, created with defaults on first use.

        Returns:
            The shared DataContext; change its attributes to change later executions.

        Example:
            >>> DataContext.get_current().execution_options.preserve_order = True
        """
        global _current
        with _lock:
            if _current is None:
                _current = DataContext()
            return _current

    @staticmethod
    def _set_current(context: "DataContext") -> None:
        """Replace the process context (tests use this to restore defaults)."""
        global _current
        with _lock:
            _current = context


_lock = threading.Lock()
_current: Optional[DataContext] = None

"""One training worker: an ember actor that runs the user's loop on a thread of its own.

::

    driver (DataParallelTrainer.fit)                 TrainWorker actor (one per rank)
      start(WorkerStart) ----------------------->     loop thread: train_loop_per_worker(config)
      next_events() (long poll) <--- [events] ---       report() -> stage checkpoint, queue event
                                                        return / raise -> "done" / "error" event

The loop runs on its own thread so the actor stays free to answer ``next_events``: the
driver always has one such call in flight per rank, and waits on all of them at once,
so a rank that raises or whose process dies is noticed by the next ``ember.wait``
(a dead process fails its pending call with ``ActorDiedError``), never by a timeout.

Events are plain tuples (they cross the process boundary inside an actor reply):
``("report", index, metrics, staged_checkpoint_path | None)``, ``("done",)`` and
``("error", exception | None, "raised TypeName: message", traceback_text, time_s)``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import pickle
import queue
import socket
import threading
import time
import traceback
from typing import Any, Callable

import ember

from ._checkpoint import Checkpoint, copy_tree
from ._session import TrainContext, session_scope
from ._storage import StorageContext

#: At most this many reports wait for the driver before ``report`` blocks (backpressure:
#: a loop far ahead of a stalled driver must not buffer without bound).
MAX_QUEUED_EVENTS = 1024
#: How long one ``next_events`` call waits for an event before answering with none
#: (bounds how long the driver waits to drain a healthy rank after another one failed).
POLL_S = 1.0

Event = tuple[Any, ...]


@dataclasses.dataclass
class WorkerStart:
    """Everything a worker needs to run one attempt of the loop (pickled once per rank)."""

    train_fn: Callable[..., Any]
    config: dict[str, Any] | None
    pass_config: bool  #: whether the loop takes the config argument
    context: TrainContext
    checkpoint: Checkpoint | None  #: resume from here (None: fresh start)
    shards: dict[str, Any]  #: dataset name -> this rank's DataIterator
    storage_path: str
    run_name: str
    attempt: int  #: distinguishes staging folders of successive attempts


class WorkerSession:
    """The ``Session`` a Trainer worker installs: reports go to the driver as events.

    A checkpoint is copied into the run's storage *before* ``report`` returns, because
    user code typically reports from a ``TemporaryDirectory`` it deletes right after.
    Each rank stages into a folder of its own; the driver then promotes the staged folders
    of one report to ``checkpoint_NNNNNN`` (numbering needs all ranks, so it is the
    driver's job).
    """

    def __init__(self, start: WorkerStart, events: queue.Queue[Event]) -> None:
        self.context = start.context
        self._start = start
        self._events = events
        self._index = 0
        self._storage: StorageContext | None = None

    def report(self, metrics: dict[str, Any], checkpoint: Checkpoint | None) -> None:
        staged = self._stage(checkpoint) if checkpoint is not None else None
        self._events.put(("report", self._index, dict(metrics), staged))
        self._index += 1

    def _stage(self, checkpoint: Checkpoint) -> str:
        if self._storage is None:
            self._storage = StorageContext(self._start.storage_path, self._start.run_name)
        storage = self._storage
        target = (f"{storage.run_path}/.staging/attempt{self._start.attempt}-"
                  f"report{self._index:06d}-rank{self.context.world_rank}")
        copy_tree(checkpoint.filesystem, checkpoint.path, storage.filesystem, target)
        return target

    def get_checkpoint(self) -> Checkpoint | None:
        return self._start.checkpoint

    def get_dataset_shard(self, name: str) -> Any:
        try:
            return self._start.shards[name]
        except KeyError:
            known = ", ".join(repr(k) for k in self._start.shards) or "none"
            raise KeyError(f"get_dataset_shard({name!r}): the trainer has no dataset named "
                           f"{name!r} (datasets given: {known}); pass it as "
                           f"datasets={{{name!r}: ds}} to the trainer") from None


def _portable_exception(exc: BaseException) -> BaseException | None:
    """``exc`` if it survives pickling (it travels to the driver as the error's cause)."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any pickling failure means: send the text only
        return None


class TrainWorker:
    """The actor behind one rank. Subclassed per rank so logs are prefixed with the rank."""

    def __init__(self) -> None:
        self._events: queue.Queue[Event] = queue.Queue(MAX_QUEUED_EVENTS)
        self._thread: threading.Thread | None = None

    def node_info(self) -> dict[str, Any]:
        """Where this worker runs: node id, pid, hostname and GPU ids."""
        return {"node_id": ember.get_runtime_context().get_node_id(), "pid": os.getpid(),
                "hostname": socket.gethostname(), "gpu_ids": ember.get_gpu_ids()}

    def execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in this worker's process (backend set-up such as torch.distributed)."""
        return fn(*args, **kwargs)

    def start(self, start: WorkerStart) -> None:
        """Start the loop on its own thread and return at once."""
        if self._thread is not None:
            raise RuntimeError("this worker already ran a training loop; start a new group")
        # The thread runs in this call's context so the worker's log prefix and
        # ember.get_gpu_ids() keep seeing this actor (they read a context variable).
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, start),
                                        name="ember-train-loop", daemon=True)
        self._thread.start()

    def _run(self, start: WorkerStart) -> None:
        session = WorkerSession(start, self._events)
        try:
            with session_scope(session):
                if start.pass_config:
                    start.train_fn(start.config if start.config is not None else {})
                else:
                    start.train_fn()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the driver
            first_line = (str(exc).strip().splitlines() or [""])[0][:300]
            cause = f"raised {type(exc).__name__}" + (f": {first_line}" if first_line else "")
            self._events.put(("error", _portable_exception(exc), cause, traceback.format_exc(),
                              time.time()))
            return
        self._events.put(("done",))

    def next_events(self, timeout_s: float = POLL_S) -> list[Event]:
        """Events since the last call; waits up to ``timeout_s`` for the first one."""
        try:
            events = [self._events.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while True:
            try:
                events.append(self._events.get_nowait())
            except queue.Empty:
                return events


_RANK_CLASSES: dict[int, type] = {}


def worker_class(rank: int) -> type:
    """``TrainWorker`` under the name ``RayTrainWorker(rank=N)``.

    ember prefixes a worker's output with its actor's class name, so this puts the rank in
    front of every line the rank prints, ``(RayTrainWorker(rank=1) pid=...) ...``.
    """
    if rank not in _RANK_CLASSES:
        _RANK_CLASSES[rank] = type(f"RayTrainWorker(rank={rank})", (TrainWorker,),
                                   {"__module__": __name__, "__doc__": TrainWorker.__doc__})
    return _RANK_CLASSES[rank]

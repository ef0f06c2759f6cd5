"""The worker side of ember.util.multiprocessing.Pool: actors and their feeder threads.

::

    Pool.map(f, xs) -> _Chunk ... --> inbox (one FIFO) --> feeder thread i --> actor i
                                                            (one per actor)   run_chunk(f, items)
    chunk.sink._deliver(index, results or exception) <-- ember.get <---------'

Each feeder thread takes the next chunk only when its actor is free, so a slow chunk
never holds up others: the load balancing of the stdlib's shared task queue.
"""

from __future__ import annotations

import collections
import threading
import traceback
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback
from typing import Any, Callable, Literal, Optional

import cloudpickle

import ember
from ember.exceptions import ActorDiedError, EmberError, WorkerCrashedError

#: How a chunk's items are applied: f(*args, **kwds), f(x), or f(*x).
_Mode = Literal["apply", "map", "starmap"]


class _RemoteFailure:
    """An exception raised in a pool worker, carried back as a value.

    Returning it (rather than raising) lets the driver re-raise the user's own
    exception object, as the stdlib does, instead of a runtime-wrapped one.
    """

    def __init__(self, error: BaseException, traceback_str: str) -> None:
        self.error = error
        self.traceback_str = traceback_str

    def exception(self) -> BaseException:
        self.error.__cause__ = RemoteTraceback(self.traceback_str)
        return self.error


def _capture_failure(error: BaseException) -> _RemoteFailure:
    tb = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    tb = f'\n"""\n{tb}"""'
    try:
        # Exceptions whose __init__ does not match their args pickle fine but fail
        # to unpickle; find out here, where the stdlib would say MaybeEncodingError.
        cloudpickle.loads(cloudpickle.dumps(error))
    except Exception as pickling_error:  # noqa: BLE001 - any pickling failure
        error = MaybeEncodingError(pickling_error, repr(error))
    error.__traceback__ = None
    return _RemoteFailure(error, tb)


class _PoolWorker:
    """The actor behind one pool process: runs the initializer once, then chunks."""

    def __init__(self, initializer: Optional[Callable[..., Any]], initargs: tuple) -> None:
        #: Set when the initializer raised; every chunk then fails with it, which is
        #: clearer than the stdlib's endless respawning of a crashing worker.
        self._init_failure: Optional[_RemoteFailure] = None
        if initializer is not None:
            try:
                initializer(*initargs)
            except Exception as error:  # noqa: BLE001 - reported on every chunk
                self._init_failure = _capture_failure(error)

    def run_chunk(self, func: Callable[..., Any], items: list, mode: _Mode) -> Any:
        if self._init_failure is not None:
            return self._init_failure
        try:
            if mode == "apply":
                args, kwds = items[0]
                return [func(*args, **kwds)]
            if mode == "starmap":
                return [func(*x) for x in items]
            return [func(x) for x in items]
        except Exception as error:  # noqa: BLE001 - the driver re-raises it
            return _capture_failure(error)


_remote_pool_worker: Any = None


def _pool_worker_class() -> Any:
    # Kept undecorated at module level so workers unpickle the plain class by name.
    global _remote_pool_worker
    if _remote_pool_worker is None:
        _remote_pool_worker = ember.remote(_PoolWorker)
    return _remote_pool_worker


class _Chunk:
    """One unit of work for one actor call, and where its outcome goes."""

    __slots__ = ("sink", "index", "func", "items", "mode")

    def __init__(self, sink: Any, index: int, func: Callable[..., Any], items: list,
                 mode: _Mode) -> None:
        self.sink = sink
        self.index = index
        self.func = func
        self.items = items
        self.mode = mode


class _Workers:
    """The actors and their feeder threads. Kept apart from ``Pool`` so the threads
    hold no reference to the Pool and an abandoned Pool can be garbage-collected."""

    def __init__(self, n: int, initializer: Optional[Callable[..., Any]], initargs: tuple,
                 maxtasksperchild: Optional[int], remote_args: dict) -> None:
        self._make_actor = lambda: _pool_worker_class().options(**remote_args).remote(
            initializer, initargs)
        self._maxtasks = maxtasksperchild
        #: FIFO of _Chunk, then one None per feeder when the pool closes.
        self.inbox: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self.terminating = False
        self._actors = [self._make_actor() for _ in range(n)]
        self._threads = [threading.Thread(target=self._feed, args=(i,), daemon=True,
                                          name=f"ember-pool-feeder-{i}") for i in range(n)]
        for t in self._threads:
            t.start()

    def submit(self, chunk: Optional[_Chunk]) -> None:
        with self._cond:
            self.inbox.append(chunk)
            self._cond.notify()

    def stop_feeders(self) -> None:
        for _ in self._threads:
            self.submit(None)

    def terminate(self, reason: str = "Pool.terminate() was called before this task ran"
                  ) -> None:
        with self._cond:
            self.terminating = True
            dropped = [c for c in self.inbox if c is not None]
            self.inbox.clear()
            actors = list(self._actors)
        for chunk in dropped:
            chunk.sink._deliver(chunk.index, ActorDiedError("Pool worker", reason))
        for actor in actors:
            _kill_quietly(actor)
        self.stop_feeders()

    def join(self) -> None:
        # A user callback runs on a feeder thread and may itself terminate the pool.
        for t in self._threads:
            if t is not threading.current_thread():
                t.join()

    def _next_chunk(self) -> Optional[_Chunk]:
        with self._cond:
            while not self.inbox:
                self._cond.wait()
            return self.inbox.popleft()

    def _feed(self, slot: int) -> None:
        runs = 0
        while True:
            chunk = self._next_chunk()
            if chunk is None:
                break
            # Any ember call after ember.shutdown() starts a new local cluster, so
            # a feeder checks before each call it makes on its own. (A shutdown
            # between this check and the call is not caught.)
            if not ember.is_initialized():
                self._stop_after_shutdown(chunk, None)
                break
            actor = self._actors[slot]
            try:
                result = ember.get(actor.run_chunk.remote(chunk.func, chunk.items, chunk.mode))
                outcome = result.exception() if isinstance(result, _RemoteFailure) else result
                failed_system = False
            except Exception as error:  # noqa: BLE001 - run_chunk itself never raises
                # Only the runtime fails here (actor died, a value did not pickle): the
                # chunk gets its typed error, so no caller waits forever.
                outcome = error
                failed_system = isinstance(error, (ActorDiedError, WorkerCrashedError))
            if not ember.is_initialized():
                self._stop_after_shutdown(chunk, outcome)
                break
            chunk.sink._deliver(chunk.index, outcome)
            runs += 1
            # A dead actor is replaced so the pool keeps its size. The swap happens
            # under the lock terminate() takes, or terminate could miss (and leak)
            # the new actor.
            if failed_system or (self._maxtasks is not None and runs >= self._maxtasks):
                with self._cond:
                    if not self.terminating and ember.is_initialized():
                        self._actors[slot] = self._make_actor()
                        runs = 0
                _kill_quietly(actor)
        with self._cond:
            last = None if self.terminating else self._actors[slot]
        if last is not None:
            _kill_quietly(last)

    def _stop_after_shutdown(self, chunk: _Chunk, outcome: Optional[Any]) -> None:
        # The pool ends before the caller hears of the failure, so a caller that
        # reacts by submitting more finds the pool stopped rather than hanging.
        reason = "ember.shutdown() was called while the pool had work"
        self.terminate(reason)
        chunk.sink._deliver(chunk.index, outcome if outcome is not None
                            else ActorDiedError("Pool worker", reason))


def _kill_quietly(actor: Any) -> None:
    if not ember.is_initialized():
        return  # the actor went with the cluster; ember.kill would start a new one
    try:
        ember.kill(actor, no_restart=True)
    except EmberError:
        # Already dead, or ember was shut down first: either way it is gone.
        pass

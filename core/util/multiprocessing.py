"""Pool: a drop-in for ``multiprocessing.Pool`` whose worker processes are ember actors.

Change ``from multiprocessing import Pool`` to ``from ember.util.multiprocessing import
Pool`` and the same program runs its work on the ember cluster::

    driver                                              cluster
    map(f, xs) -> chunks --> inbox (one FIFO) --> feeder thread i --> actor i
                                                  (one per actor)      run_chunk(f, chunk)
    AsyncResult / iterator <-- outcome of each chunk <-- ember.get <--'

Each feeder thread takes the next chunk only when its actor is free, so slow chunks
never hold up others: the same load balancing as the stdlib's shared task queue.

Errors behave as in the stdlib: an exception raised by ``f`` comes back as that very
exception type, with the remote traceback chained as its cause. Unlike the stdlib, a
worker that dies (killed, ``os._exit``) fails the chunk it was running with the
runtime's typed error and is replaced; nothing waits forever.
"""

from __future__ import annotations

import collections
import logging
import threading
import traceback
import warnings
from multiprocessing import TimeoutError as _MpTimeoutError
from multiprocessing.pool import MaybeEncodingError, RemoteTraceback
from typing import Any, Callable, Iterable, Iterator, Literal, Optional

import cloudpickle

import ember
from ember.exceptions import ActorDiedError, EmberError, WorkerCrashedError

__all__ = ["Pool", "AsyncResult", "TimeoutError"]

#: The stdlib's class, so ``except multiprocessing.TimeoutError`` keeps working.
TimeoutError = _MpTimeoutError

_logger = logging.getLogger(__name__)

_PoolState = Literal["running", "closed", "terminated"]
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


class AsyncResult:
    """The pending result of ``apply_async`` / ``map_async`` (the stdlib's ApplyResult).

    Example:
        >>> r = pool.apply_async(pow, (2, 10))
        >>> r.get(timeout=10)
        1024
    """

    def __init__(self, n_chunks: int, single: bool,
                 callback: Optional[Callable[[Any], Any]],
                 error_callback: Optional[Callable[[BaseException], Any]]) -> None:
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._lock = threading.Lock()
        self._event = threading.Event()
        #: chunk index -> its results; complete when it holds ``_n_chunks`` entries.
        self._chunks: dict[int, list] = {}
        self._n_chunks = n_chunks
        self._error: Optional[BaseException] = None
        if n_chunks == 0:
            self._finish()

    def ready(self) -> bool:
        """Whether the call has finished (successfully or not).

        Returns:
            True once :meth:`get` would return without waiting.

        Example:
            >>> r.ready()
            True
        """
        return self._event.is_set()

    def successful(self) -> bool:
        """Whether the call finished without raising.

        Returns:
            True if it succeeded.

        Raises:
            ValueError: The call has not finished yet.

        Example:
            >>> r.successful()
            True
        """
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return self._error is None

    def wait(self, timeout: Optional[float] = None) -> None:
        """Wait until the call finishes or ``timeout`` seconds pass.

        Args:
            timeout: The most seconds to wait; None waits forever.

        Example:
            >>> r.wait(5)
        """
        self._event.wait(timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """Return the result, waiting for it if needed.

        Args:
            timeout: The most seconds to wait; None waits forever.

        Returns:
            The function's return value (a list for the map family).

        Raises:
            multiprocessing.TimeoutError: Not finished within ``timeout``.
            Exception: Whatever the function raised, as its own type.

        Example:
            >>> pool.map_async(abs, [-1, -2]).get(timeout=10)
            [1, 2]
        """
        self.wait(timeout)
        if not self.ready():
            raise TimeoutError(f"the pool call did not finish within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value

    def _deliver(self, index: int, outcome: Any) -> None:
        with self._lock:
            if self._event.is_set():
                return  # an earlier chunk failed; the stdlib also ignores the rest
            if isinstance(outcome, BaseException):
                self._error = outcome
            else:
                self._chunks[index] = outcome
                if len(self._chunks) < self._n_chunks:
                    return
        self._finish()

    def _finish(self) -> None:
        if self._error is None:
            flat = [x for i in range(self._n_chunks) for x in self._chunks[i]]
            self._value = flat[0] if self._single else flat
            self._chunks.clear()
        self._event.set()
        hook = self._callback if self._error is None else self._error_callback
        arg = self._value if self._error is None else self._error
        if hook is not None:
            try:
                hook(arg)
            except Exception:  # noqa: BLE001 - a user callback must not kill a feeder
                _logger.exception("ember.util.multiprocessing: a pool callback raised")


class _IMapIterator:
    """Results of ``imap`` / ``imap_unordered`` as chunks finish.

    Example:
        >>> it = pool.imap(abs, [-1, -2])
        >>> it.next(timeout=10)
        1
    """

    def __init__(self, ordered: bool) -> None:
        self._ordered = ordered
        self._cond = threading.Condition()
        #: Ordered: chunk index -> outcome. Unordered: outcomes in completion order.
        self._by_index: dict[int, Any] = {}
        self._arrived: collections.deque = collections.deque()
        self._next_index = 0
        #: Items (or one exception) of the chunk being handed out.
        self._current: collections.deque = collections.deque()
        #: Total chunks; None while imap() is still reading the input.
        self._n_chunks: Optional[int] = None
        self._taken = 0

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return self.next()

    def next(self, timeout: Optional[float] = None) -> Any:
        """Return the next result, waiting at most ``timeout`` seconds.

        Args:
            timeout: The most seconds to wait; None waits forever.

        Returns:
            The next result.

        Raises:
            StopIteration: Every result was returned.
            multiprocessing.TimeoutError: None arrived within ``timeout``.
            Exception: What the function raised for this item (its chunk).

        Example:
            >>> it.next(timeout=10)
            2
        """
        with self._cond:
            while not self._current:
                if self._n_chunks is not None and self._taken == self._n_chunks:
                    raise StopIteration
                outcome = self._take_chunk()
                if outcome is None:
                    if not self._cond.wait(timeout):
                        raise TimeoutError(f"no result within {timeout} s")
                    continue
                self._taken += 1
                self._current.extend([outcome] if isinstance(outcome, BaseException)
                                     else outcome)
            item = self._current.popleft()
        if isinstance(item, BaseException):
            raise item
        return item

    def _take_chunk(self) -> Any:
        if not self._ordered:
            return self._arrived.popleft() if self._arrived else None
        outcome = self._by_index.pop(self._next_index, None)
        if outcome is not None:
            self._next_index += 1
        return outcome

    def _deliver(self, index: int, outcome: Any) -> None:
        with self._cond:
            if self._ordered:
                self._by_index[index] = outcome
            else:
                self._arrived.append(outcome)
            self._cond.notify_all()

    def _set_length(self, n_chunks: int) -> None:
        with self._cond:
            self._n_chunks = n_chunks
            self._cond.notify_all()


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

    def terminate(self) -> None:
        with self._cond:
            self.terminating = True
            dropped = [c for c in self.inbox if c is not None]
            self.inbox.clear()
        for chunk in dropped:
            chunk.sink._deliver(chunk.index, ActorDiedError(
                "Pool worker", "Pool.terminate() was called before this task ran"))
        for actor in list(self._actors):
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
            chunk.sink._deliver(chunk.index, outcome)
            runs += 1
            if self.terminating:
                continue
            # A dead actor is replaced so the pool keeps its size.
            if failed_system or (self._maxtasks is not None and runs >= self._maxtasks):
                _kill_quietly(actor)
                self._actors[slot] = self._make_actor()
                runs = 0
        if not self.terminating:
            _kill_quietly(self._actors[slot])


def _kill_quietly(actor: Any) -> None:
    try:
        ember.kill(actor, no_restart=True)
    except EmberError:
        # Already dead, or ember was shut down first: either way it is gone.
        pass


class Pool:
    """A process pool with the ``multiprocessing.Pool`` API, running on ember actors.

    Args:
        processes: Number of worker actors; default: the cluster's CPU count.
        initializer: Called as ``initializer(*initargs)`` once in each worker.
        initargs: Arguments for ``initializer``.
        maxtasksperchild: Replace a worker after it ran this many chunks.
        context: Accepted for compatibility and ignored (workers are actors).
        ember_address: Cluster to join if ember is not initialized yet
            (``ember.init(address=...)``); None starts or reuses a local one.
        ember_remote_args: Actor options for each worker; default ``{"num_cpus": 1}``.

    Raises:
        ValueError: ``processes`` < 1, ``maxtasksperchild`` not positive, or the
            workers need more CPUs than the cluster has.
        TypeError: ``processes`` is not an int, or ``initializer`` is not callable.

    Example:
        >>> with Pool(2) as pool:
        ...     pool.map(abs, [-1, -2, -3])
        [1, 2, 3]
    """

    def __init__(self, processes: Optional[int] = None,
                 initializer: Optional[Callable[..., Any]] = None,
                 initargs: Iterable[Any] = (), maxtasksperchild: Optional[int] = None,
                 context: Any = None, ember_address: Optional[str] = None,
                 ember_remote_args: Optional[dict] = None) -> None:
        self._state: _PoolState = "terminated"  # until construction succeeds
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if maxtasksperchild is not None and (
                not isinstance(maxtasksperchild, int) or maxtasksperchild < 1):
            raise ValueError("maxtasksperchild must be a positive int or None")
        if processes is not None and (not isinstance(processes, int)
                                      or isinstance(processes, bool)):
            raise TypeError(f"processes must be an int or None, got {type(processes).__name__}")
        if not ember.is_initialized():
            if ember_address is not None:
                ember.init(address=ember_address)
            else:
                ember.init()
        remote_args = {"num_cpus": 1, **(ember_remote_args or {})}
        per_actor = float(remote_args["num_cpus"])
        cluster_cpus = ember.cluster_resources().get("CPU", 0)
        if processes is None:
            processes = max(int(cluster_cpus / per_actor) if per_actor > 0 else
                            int(cluster_cpus), 1)
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        needed = processes * per_actor
        if needed > cluster_cpus:
            raise ValueError(
                f"Pool(processes={processes}) needs {needed:g} CPUs but the ember cluster "
                f"has {cluster_cpus:g}. Use fewer processes, or share CPUs with "
                f"ember_remote_args={{'num_cpus': {cluster_cpus / processes:g}}}.")
        self._processes = processes
        self._workers = _Workers(processes, initializer, tuple(initargs), maxtasksperchild,
                                 remote_args)
        self._state = "running"

    def __repr__(self) -> str:
        return f"<ember.util.multiprocessing.Pool state={self._state} pool_size={self._processes}>"

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.terminate()

    def __del__(self) -> None:
        if getattr(self, "_state", None) == "running":
            warnings.warn(f"unclosed running pool {self!r}", ResourceWarning, stacklevel=2)
            # Not terminate(): killing actors from a finalizer may run during
            # interpreter shutdown. Closing lets each feeder finish and retire its actor.
            self._state = "closed"
            self._workers.stop_feeders()

    def apply(self, func: Callable[..., Any], args: Iterable[Any] = (),
              kwds: Optional[dict] = None) -> Any:
        """Call ``func(*args, **kwds)`` in a worker and return its result.

        Args:
            func: The function.
            args: Positional arguments.
            kwds: Keyword arguments.

        Returns:
            What ``func`` returned.

        Raises:
            ValueError: The pool is closed.
            Exception: What ``func`` raised, as its own type.

        Example:
            >>> pool.apply(pow, (2, 5))
            32
        """
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable[..., Any], args: Iterable[Any] = (),
                    kwds: Optional[dict] = None,
                    callback: Optional[Callable[[Any], Any]] = None,
                    error_callback: Optional[Callable[[BaseException], Any]] = None
                    ) -> AsyncResult:
        """Start ``func(*args, **kwds)`` in a worker.

        Args:
            func: The function.
            args: Positional arguments.
            kwds: Keyword arguments.
            callback: Called with the result when it succeeds (on a pool thread).
            error_callback: Called with the exception when it fails.

        Returns:
            An AsyncResult.

        Raises:
            ValueError: The pool is closed.
            TypeError: ``func`` is not callable.

        Example:
            >>> pool.apply_async(pow, (2, 5)).get(timeout=10)
            32
        """
        self._check_running()
        _check_callable(func)
        result = AsyncResult(1, True, callback, error_callback)
        self._workers.submit(_Chunk(result, 0, func, [(tuple(args), dict(kwds or {}))], "apply"))
        return result

    def map(self, func: Callable[[Any], Any], iterable: Iterable[Any],
            chunksize: Optional[int] = None) -> list:
        """``[func(x) for x in iterable]``, computed in the workers.

        Args:
            func: A one-argument function.
            iterable: The inputs.
            chunksize: Items per worker call; default splits the input in about four
                chunks per worker.

        Returns:
            The results, in input order.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.
            Exception: The first error ``func`` raised, as its own type.

        Example:
            >>> pool.map(abs, [-1, -2])
            [1, 2]
        """
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                  chunksize: Optional[int] = None,
                  callback: Optional[Callable[[Any], Any]] = None,
                  error_callback: Optional[Callable[[BaseException], Any]] = None
                  ) -> AsyncResult:
        """Start :meth:`map` and return at once.

        Args:
            func: A one-argument function.
            iterable: The inputs.
            chunksize: Items per worker call.
            callback: Called with the list of results on success.
            error_callback: Called with the first exception on failure.

        Returns:
            An AsyncResult whose ``get()`` is the list of results.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.

        Example:
            >>> pool.map_async(abs, [-1]).get(timeout=10)
            [1]
        """
        return self._map_async(func, iterable, "map", chunksize, callback, error_callback)

    def starmap(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                chunksize: Optional[int] = None) -> list:
        """Like :meth:`map`, but each input is unpacked: ``func(*args)``.

        Args:
            func: The function.
            iterable: Argument tuples.
            chunksize: Items per worker call.

        Returns:
            The results, in input order.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.
            Exception: The first error ``func`` raised.

        Example:
            >>> pool.starmap(pow, [(2, 3), (3, 2)])
            [8, 9]
        """
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]],
                      chunksize: Optional[int] = None,
                      callback: Optional[Callable[[Any], Any]] = None,
                      error_callback: Optional[Callable[[BaseException], Any]] = None
                      ) -> AsyncResult:
        """Start :meth:`starmap` and return at once.

        Args:
            func: The function.
            iterable: Argument tuples.
            chunksize: Items per worker call.
            callback: Called with the list of results on success.
            error_callback: Called with the first exception on failure.

        Returns:
            An AsyncResult.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.

        Example:
            >>> pool.starmap_async(pow, [(2, 3)]).get(timeout=10)
            [8]
        """
        return self._map_async(func, iterable, "starmap", chunksize, callback, error_callback)

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any],
             chunksize: int = 1) -> _IMapIterator:
        """Like :meth:`map`, but return an iterator that yields results as they arrive.

        The input is read (and its chunks started) before this returns.

        Args:
            func: A one-argument function.
            iterable: The inputs.
            chunksize: Items per worker call.

        Returns:
            An iterator over results in input order; ``.next(timeout)`` waits at most
            ``timeout`` seconds.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.

        Example:
            >>> list(pool.imap(abs, [-1, -2]))
            [1, 2]
        """
        return self._imap(func, iterable, chunksize, ordered=True)

    def imap_unordered(self, func: Callable[[Any], Any], iterable: Iterable[Any],
                       chunksize: int = 1) -> _IMapIterator:
        """Like :meth:`imap`, but yield results in completion order.

        Args:
            func: A one-argument function.
            iterable: The inputs.
            chunksize: Items per worker call.

        Returns:
            An iterator over results as they finish.

        Raises:
            ValueError: The pool is closed, or ``chunksize`` < 1.

        Example:
            >>> sorted(pool.imap_unordered(abs, [-1, -2]))
            [1, 2]
        """
        return self._imap(func, iterable, chunksize, ordered=False)

    def close(self) -> None:
        """Accept no more work; workers exit once the queued work is done.

        Example:
            >>> pool.close(); pool.join()
        """
        if self._state == "running":
            self._state = "closed"
            self._workers.stop_feeders()

    def terminate(self) -> None:
        """Stop the workers now; unfinished calls fail with ActorDiedError. Safe to
        call twice.

        Example:
            >>> pool.terminate()
        """
        if self._state != "terminated":
            self._state = "terminated"
            self._workers.terminate()
            self._workers.join()

    def join(self) -> None:
        """Wait for the workers to exit; call :meth:`close` or :meth:`terminate` first.

        Raises:
            ValueError: The pool is still running.

        Example:
            >>> pool.close(); pool.join()
        """
        if self._state == "running":
            raise ValueError("Pool is still running")
        self._workers.join()

    def _check_running(self) -> None:
        if self._state != "running":
            raise ValueError("Pool not running")

    def _chunks(self, iterable: Iterable[Any], chunksize: int) -> Iterator[list]:
        chunk: list = []
        for item in iterable:
            chunk.append(item)
            if len(chunk) == chunksize:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def _map_async(self, func: Callable[..., Any], iterable: Iterable[Any], mode: _Mode,
                   chunksize: Optional[int], callback: Optional[Callable[[Any], Any]],
                   error_callback: Optional[Callable[[BaseException], Any]]) -> AsyncResult:
        self._check_running()
        _check_callable(func)
        items = list(iterable)
        if chunksize is None:
            # The stdlib's rule: about four chunks per worker.
            chunksize, extra = divmod(len(items), self._processes * 4)
            chunksize = max(chunksize + (1 if extra else 0), 1)
        _check_chunksize(chunksize)
        chunks = list(self._chunks(items, chunksize))
        result = AsyncResult(len(chunks), False, callback, error_callback)
        for i, chunk in enumerate(chunks):
            self._workers.submit(_Chunk(result, i, func, chunk, mode))
        return result

    def _imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int,
              ordered: bool) -> _IMapIterator:
        self._check_running()
        _check_callable(func)
        _check_chunksize(chunksize)
        it = _IMapIterator(ordered)
        n = 0
        for n, chunk in enumerate(self._chunks(iterable, chunksize), start=1):
            self._workers.submit(_Chunk(it, n - 1, func, chunk, "map"))
        it._set_length(n)
        return it


def _check_callable(func: Any) -> None:
    if not callable(func):
        raise TypeError(f"the pool expects a callable, got {type(func).__name__}")


def _check_chunksize(chunksize: Any) -> None:
    if not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")

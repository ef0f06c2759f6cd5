"""Pool: a drop-in for ``multiprocessing.Pool`` whose worker processes are ember actors.

Change ``from multiprocessing import Pool`` to ``from ember.util.multiprocessing import
Pool`` and the same program runs its work on the ember cluster::

    Pool (this module)     checks arguments, cuts inputs into chunks
    _pool_workers.py       one actor and one feeder thread per process
    _pool_results.py       AsyncResult / imap iterators, filled as chunks finish

Errors behave as in the stdlib: an exception raised by ``f`` comes back as that very
exception type, with the remote traceback chained as its cause. Unlike the stdlib, a
worker that dies (killed, ``os._exit``) fails the chunk it was running with the
runtime's typed error and is replaced; nothing waits forever.
"""

from __future__ import annotations

import warnings
from multiprocessing import TimeoutError
from typing import Any, Callable, Iterable, Iterator, Literal, Optional

import ember
from ember.util._pool_results import AsyncResult, _IMapIterator
from ember.util._pool_workers import _Chunk, _Mode, _Workers

__all__ = ["Pool", "AsyncResult", "TimeoutError"]

_PoolState = Literal["running", "closed", "terminated"]


class Pool:
    """A process pool with the ``multiprocessing.Pool`` API, running on ember actors.

    Args:
        processes: Number of worker actors; default: the cluster's CPU count.
        initializer: Called as ``initializer(*initargs)`` once in each worker.
        initargs: Arguments for ``initializer`` (None means none, as in Ray).
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
                 initargs: Optional[Iterable[Any]] = (), maxtasksperchild: Optional[int] = None,
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
            ember.init(address=ember_address)
        remote_args = {"num_cpus": 1, **(ember_remote_args or {})}
        per_actor = float(remote_args["num_cpus"])
        cluster_cpus = ember.cluster_resources().get("CPU", 0)
        if processes is None:
            processes = _workers_that_fit(cluster_cpus, per_actor)
        if processes < 1:
            raise ValueError("Number of processes must be at least 1")
        needed = processes * per_actor
        if needed > cluster_cpus:
            raise ValueError(
                f"Pool(processes={processes}) needs {needed:g} CPUs but the ember cluster "
                f"has {cluster_cpus:g}. Use fewer processes, or share CPUs with "
                f"ember_remote_args={{'num_cpus': {cluster_cpus / processes:g}}}.")
        self._processes = processes
        self._workers = _Workers(processes, initializer, tuple(initargs or ()), maxtasksperchild,
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
        # The workers end on their own if ember is shut down under the pool.
        if self._state != "running" or self._workers.terminating:
            raise ValueError("Pool not running")

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
        chunks = list(_split(items, chunksize))
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
        for n, chunk in enumerate(_split(iterable, chunksize), start=1):
            self._workers.submit(_Chunk(it, n - 1, func, chunk, "map"))
        it._set_length(n)
        return it


def _workers_that_fit(cluster_cpus: float, cpus_per_worker: float) -> int:
    """How many workers of ``cpus_per_worker`` CPUs the cluster holds (at least 1;
    zero-CPU workers count one per CPU, like the stdlib's ``os.cpu_count()``)."""
    if cpus_per_worker <= 0:
        return max(int(cluster_cpus), 1)
    return max(int(cluster_cpus / cpus_per_worker), 1)


def _split(iterable: Iterable[Any], chunksize: int) -> Iterator[list]:
    chunk: list = []
    for item in iterable:
        chunk.append(item)
        if len(chunk) == chunksize:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_callable(func: Any) -> None:
    if not callable(func):
        raise TypeError(f"the pool expects a callable, got {type(func).__name__}")


def _check_chunksize(chunksize: Any) -> None:
    if not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")

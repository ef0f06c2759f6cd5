"""The driver side of ember.util.multiprocessing.Pool: results as chunks arrive.

A pool feeder thread calls ``_deliver(chunk_index, outcome)`` on the sink of each chunk;
the outcome is the chunk's list of results, or the exception to raise for it.
"""

from __future__ import annotations

import collections
import logging
import threading
from multiprocessing import TimeoutError
from typing import Any, Callable, Iterator, Optional

_logger = logging.getLogger("ember.util.multiprocessing")


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
        #: Set under ``_lock`` by whichever delivery completes the call, so the
        #: callbacks run exactly once even when an error and the last chunk race.
        self._done = n_chunks == 0
        if self._done:
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
            if self._done:
                return  # an earlier chunk failed; the stdlib also ignores the rest
            if isinstance(outcome, BaseException):
                self._error = outcome
            else:
                self._chunks[index] = outcome
                if len(self._chunks) < self._n_chunks:
                    return
            self._done = True
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


class _Raise:
    """Marks a failed chunk among an iterator's items (a function may *return* an
    exception object, which must come out as a value)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


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
                self._current.extend([_Raise(outcome)] if isinstance(outcome, BaseException)
                                     else outcome)
            item = self._current.popleft()
        if isinstance(item, _Raise):
            raise item.error
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

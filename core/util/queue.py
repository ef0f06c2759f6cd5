"""Queue: a FIFO that tasks, actors and the driver share, held by one async actor.

Ray's ``ray.util.queue.Queue``. The items live in an ``asyncio.Queue`` inside an actor
with an event loop, so a ``get`` that waits for an item is a suspended coroutine, not a
blocked thread: ``put`` calls from other callers keep running while it waits.

The actor answers every call with a ``(status, payload)`` pair rather than raising, so
``Empty``/``Full`` reach the caller as exactly those classes (subclasses of the stdlib
``queue.Empty``/``queue.Full``), not wrapped in a task error.

A ``Queue`` object is just the actor handle plus ``maxsize``: pickle it into tasks and
actors freely; every copy talks to the same actor.
"""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from collections.abc import Iterable
from typing import Any, Literal, Optional

import ember
from ember.exceptions import ActorDiedError

__all__ = ["Queue", "Empty", "Full"]


class Empty(_stdlib_queue.Empty):
    """``get`` found no item (non-blocking, or the timeout passed)."""


class Full(_stdlib_queue.Full):
    """``put`` found no room (non-blocking, or the timeout passed)."""


_Status = Literal["ok", "empty", "full"]
_Reply = tuple[_Status, Any]


class _QueueActor:
    """The actor that owns the items. Its ``async`` methods make ember run it on an
    event loop, so many callers can wait inside it at once."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    async def qsize(self) -> int:
        return self.queue.qsize()

    async def put(self, item: Any, timeout: Optional[float] = None) -> _Reply:
        # Try without waiting first: asyncio.wait_for with timeout=0 cancels the put
        # before it runs, which would report Full on a queue with room.
        if not self.queue.full():
            self.queue.put_nowait(item)
            return ("ok", None)
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except asyncio.TimeoutError:
            return ("full", None)
        return ("ok", None)

    async def get(self, timeout: Optional[float] = None) -> _Reply:
        if not self.queue.empty():
            return ("ok", self.queue.get_nowait())
        try:
            return ("ok", await asyncio.wait_for(self.queue.get(), timeout))
        except asyncio.TimeoutError:
            return ("empty", None)

    async def put_nowait_batch(self, items: list) -> _Reply:
        # All or nothing: a partial batch would leave the caller unable to tell
        # which items went in.
        if self.maxsize > 0 and len(items) + self.queue.qsize() > self.maxsize:
            return ("full", f"Cannot add {len(items)} items to queue of size "
                            f"{self.queue.qsize()} and maxsize {self.maxsize}.")
        for item in items:
            self.queue.put_nowait(item)
        return ("ok", None)

    async def get_nowait_batch(self, num_items: int) -> _Reply:
        if num_items > self.queue.qsize():
            return ("empty", f"Cannot get {num_items} items from queue of size "
                             f"{self.queue.qsize()}.")
        return ("ok", [self.queue.get_nowait() for _ in range(num_items)])


_remote_queue_actor: Any = None


def _queue_actor_class() -> Any:
    # Wrapped lazily and kept undecorated at module level, so workers unpickle the
    # plain class by name while the driver builds the remote class once.
    global _remote_queue_actor
    if _remote_queue_actor is None:
        _remote_queue_actor = ember.remote(_QueueActor)
    return _remote_queue_actor


def _check_timeout(timeout: Optional[float]) -> None:
    if timeout is None:
        return
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"'timeout' must be a number of seconds or None, got {timeout!r}")
    if timeout < 0:
        raise ValueError(f"'timeout' must be a non-negative number, got {timeout!r}")


def _check_get(reply: _Reply) -> Any:
    status, item = reply
    if status == "empty":
        raise Empty("Queue is empty")
    return item


class Queue:
    """A first-in first-out queue shared by the driver, tasks and actors.

    Args:
        maxsize: The most items the queue holds; 0 (or less) means no limit.
        actor_options: Options for the actor that holds the items, as for
            ``.options(...)``, e.g. ``{"num_cpus": 0, "name": "q"}``.

    Raises:
        TypeError: ``maxsize`` is not an int, or ``actor_options`` is not a dict.

    Example:
        >>> q = Queue(maxsize=10)
        >>> q.put(1)
        >>> q.get(timeout=5)
        1
    """

    def __init__(self, maxsize: int = 0, actor_options: Optional[dict] = None) -> None:
        if not isinstance(maxsize, int) or isinstance(maxsize, bool):
            raise TypeError(f"Queue(maxsize=...) must be an int, got {type(maxsize).__name__}")
        if actor_options is not None and not isinstance(actor_options, dict):
            raise TypeError("Queue(actor_options=...) must be a dict of actor options, "
                            f"e.g. {{'num_cpus': 0}}, got {type(actor_options).__name__}")
        self.maxsize = maxsize
        #: None once shutdown() ran; every call then raises ActorDiedError.
        self.actor: Any = _queue_actor_class().options(**(actor_options or {})).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        """The number of items in the queue right now.

        Returns:
            The item count (others may change it a moment later).

        Example:
            >>> q.size()
            0
        """
        return ember.get(self._actor().qsize.remote())

    def qsize(self) -> int:
        """The number of items in the queue right now (same as :meth:`size`).

        Returns:
            The item count.

        Example:
            >>> q.qsize()
            0
        """
        return self.size()

    def empty(self) -> bool:
        """Whether the queue holds no items right now.

        Returns:
            True if empty.

        Example:
            >>> q.empty()
            True
        """
        return self.size() == 0

    def full(self) -> bool:
        """Whether the queue holds ``maxsize`` items right now.

        Returns:
            True if full (never for an unbounded queue).

        Example:
            >>> Queue(maxsize=0).full()
            False
        """
        return self.maxsize > 0 and self.size() >= self.maxsize

    def put(self, item: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Add an item at the end, waiting for room if the queue is full.

        Args:
            item: Any picklable value (ObjectRefs inside it stay refs).
            block: False fails at once when full instead of waiting.
            timeout: With ``block``, the most seconds to wait; None waits forever.

        Raises:
            Full: No room (immediately, or after ``timeout``).
            ValueError: ``timeout`` is negative (TypeError: not a number).
            ActorDiedError: The queue was shut down.

        Example:
            >>> q.put("job-1", timeout=5)
        """
        self._check_put(ember.get(self._submit_put(item, block, timeout)))

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return the first item, waiting for one if the queue is empty.

        Args:
            block: False fails at once when empty instead of waiting.
            timeout: With ``block``, the most seconds to wait; None waits forever.

        Returns:
            The oldest item.

        Raises:
            Empty: No item (immediately, or after ``timeout``).
            ValueError: ``timeout`` is negative (TypeError: not a number).
            ActorDiedError: The queue was shut down.

        Example:
            >>> q.get(timeout=5)
            'job-1'
        """
        return _check_get(ember.get(self._submit_get(block, timeout)))

    async def put_async(self, item: Any, block: bool = True,
                        timeout: Optional[float] = None) -> None:
        """:meth:`put` for async code: waits without blocking the event loop.

        Args:
            item: Any picklable value.
            block: False fails at once when full.
            timeout: With ``block``, the most seconds to wait; None waits forever.

        Raises:
            Full: No room.
            ValueError: ``timeout`` is negative (TypeError: not a number).

        Example:
            >>> await q.put_async(1)
        """
        self._check_put(await self._submit_put(item, block, timeout))

    async def get_async(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """:meth:`get` for async code: waits without blocking the event loop.

        Args:
            block: False fails at once when empty.
            timeout: With ``block``, the most seconds to wait; None waits forever.

        Returns:
            The oldest item.

        Raises:
            Empty: No item.
            ValueError: ``timeout`` is negative (TypeError: not a number).

        Example:
            >>> item = await q.get_async(timeout=5)
        """
        return _check_get(await self._submit_get(block, timeout))

    def put_nowait(self, item: Any) -> None:
        """:meth:`put` without waiting.

        Args:
            item: Any picklable value.

        Raises:
            Full: The queue is full.

        Example:
            >>> q.put_nowait(1)
        """
        self.put(item, block=False)

    def get_nowait(self) -> Any:
        """:meth:`get` without waiting.

        Returns:
            The oldest item.

        Raises:
            Empty: The queue is empty.

        Example:
            >>> q.get_nowait()
            1
        """
        return self.get(block=False)

    def put_nowait_batch(self, items: Iterable[Any]) -> None:
        """Add all ``items`` at once, or none of them if they do not all fit.

        Args:
            items: An iterable of picklable values.

        Raises:
            TypeError: ``items`` is not iterable.
            Full: The queue has no room for all of them (nothing was added).

        Example:
            >>> q.put_nowait_batch([1, 2, 3])
        """
        if not isinstance(items, Iterable) or isinstance(items, (str, bytes)):
            raise TypeError(f"Argument 'items' must be an iterable of items, got "
                            f"{type(items).__name__}")
        status, message = ember.get(self._actor().put_nowait_batch.remote(list(items)))
        if status == "full":
            raise Full(message)

    def get_nowait_batch(self, num_items: int) -> list:
        """Remove and return the first ``num_items`` items, or none if fewer are there.

        Args:
            num_items: How many items to take.

        Returns:
            The items, oldest first.

        Raises:
            TypeError: ``num_items`` is not an int.
            ValueError: ``num_items`` is negative.
            Empty: Fewer than ``num_items`` items are in the queue (nothing was taken).

        Example:
            >>> q.get_nowait_batch(2)
            [1, 2]
        """
        if not isinstance(num_items, int) or isinstance(num_items, bool):
            raise TypeError(f"Argument 'num_items' must be an int, got {type(num_items).__name__}")
        if num_items < 0:
            raise ValueError(f"'num_items' must be nonnegative, got {num_items}")
        status, payload = ember.get(self._actor().get_nowait_batch.remote(num_items))
        if status == "empty":
            raise Empty(payload)
        return payload

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """Stop the queue's actor; the items in it are dropped. Safe to call twice.

        Callers still waiting in ``get``/``put`` get ActorDiedError.

        Args:
            force: Accepted for Ray compatibility; the actor is always stopped at once
                (every client call is synchronous, so there is nothing to let finish).
            grace_period_s: Accepted for Ray compatibility; unused.

        Example:
            >>> q.shutdown()
        """
        # After ember.shutdown() the actor is gone already, and ember.kill would
        # start a new local cluster just to kill it.
        if self.actor is not None and ember.is_initialized():
            ember.kill(self.actor, no_restart=True)
        self.actor = None

    def _submit_put(self, item: Any, block: bool, timeout: Optional[float]) -> Any:
        if not block:
            return self._actor().put.remote(item, 0)
        _check_timeout(timeout)
        return self._actor().put.remote(item, timeout)

    def _check_put(self, reply: _Reply) -> None:
        if reply[0] == "full":
            raise Full(f"Queue is full (maxsize={self.maxsize})")

    def _submit_get(self, block: bool, timeout: Optional[float]) -> Any:
        if not block:
            return self._actor().get.remote(0)
        _check_timeout(timeout)
        return self._actor().get.remote(timeout)

    def _actor(self) -> Any:
        if self.actor is None:
            raise ActorDiedError("Queue", "the queue was shut down with Queue.shutdown()")
        return self.actor

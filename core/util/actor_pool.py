"""ActorPool: spread calls over a fixed set of actors, one call per actor at a time.

Ray's ``ray.util.ActorPool`` with the same names and the same ordering rules, built on
ember's public API only (``ember.wait`` / ``ember.get``). The pool never creates or kills
actors; it only decides which idle actor gets the next value::

    submit(fn, v) --idle actor?--yes--> fn(actor, v) -> ref   (in flight)
                   \\--no--> pending submits (FIFO)
    get_next*()   <-- result of a finished ref; its actor goes back to idle, which
                      immediately starts the oldest pending submit.

The pool is a plain driver-side object: it is not thread-safe and not meant to be
shared between processes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Optional, Union

import ember
from ember.exceptions import GetTimeoutError

__all__ = ["ActorPool"]

#: What ``fn(actor, value)`` returns: one ref, or a list of refs for ``num_returns>1``.
_Future = Union["ember.ObjectRef", list]
#: A hashable key for a future (a list of refs becomes a tuple).
_FutureKey = Any

_TIMEOUT_MSG = "Timed out waiting for result"


def _key(future: _Future) -> _FutureKey:
    return tuple(future) if isinstance(future, list) else future


def _as_ref_list(future: _Future) -> list:
    return list(future) if isinstance(future, list) else [future]


class ActorPool:
    """A pool of existing actors that work through submitted values.

    Each actor runs at most one submitted call at a time; values submitted while every
    actor is busy wait in the pool (not in the actors' queues), so a slow actor never
    holds up work that another actor could do.

    Args:
        actors: The actor handles to use. The pool takes them as they are; it does not
            create, restart or kill them.

    Raises:
        TypeError: ``actors`` is not an iterable of actor handles.

    Example:
        >>> pool = ActorPool([Doubler.remote(), Doubler.remote()])
        >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2, 3]))
        [2, 4, 6]
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        if actors is None or isinstance(actors, (str, bytes)) or not hasattr(actors, "__iter__"):
            raise TypeError(
                f"ActorPool expects a list of actor handles, got {type(actors).__name__}. "
                "Create the actors first: ActorPool([MyActor.remote() for _ in range(4)])."
            )
        #: Actors with no call in flight; the pool pops from the end (LIFO, like Ray).
        self._idle_actors: list[Any] = list(actors)
        #: future key -> (submission index, actor running it). Non-empty iff has_next().
        self._future_to_actor: dict[_FutureKey, tuple[int, Any]] = {}
        #: submission index -> future, for every call still in flight.
        self._index_to_future: dict[int, _Future] = {}
        self._next_task_index = 0
        #: The submission index get_next() returns next; only ever grows.
        self._next_return_index = 0
        #: Submits that found no idle actor, oldest first.
        self._pending_submits: list[tuple[Callable[[Any, Any], _Future], Any]] = []

    def map(self, fn: Callable[[Any, Any], _Future], values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` to every value on the pool's actors; yield results in order.

        Results still pending from earlier submissions are dropped first, as in Ray.

        Args:
            fn: ``fn(actor, value)`` must call one actor method and return its ref,
                e.g. ``lambda a, v: a.double.remote(v)``.
            values: The values to process.

        Returns:
            A generator of results in the order of ``values``.

        Raises:
            TypeError: ``fn`` is not callable.
            Exception: Whatever a call raised, re-raised when its result is reached.

        Example:
            >>> list(pool.map(lambda a, v: a.double.remote(v), [1, 2]))
            [2, 4]
        """
        self._drop_unreturned(self.get_next)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next()

        return results()

    def map_unordered(self, fn: Callable[[Any, Any], _Future],
                      values: Iterable[Any]) -> Iterator[Any]:
        """Like :meth:`map`, but yield each result as soon as it is ready.

        Args:
            fn: ``fn(actor, value)`` returning the ref of one actor call.
            values: The values to process.

        Returns:
            A generator of results in completion order.

        Raises:
            TypeError: ``fn`` is not callable.

        Example:
            >>> sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [1, 2]))
            [2, 4]
        """
        self._drop_unreturned(self.get_next_unordered)
        for v in values:
            self.submit(fn, v)

        def results() -> Iterator[Any]:
            while self.has_next():
                yield self.get_next_unordered()

        return results()

    def submit(self, fn: Callable[[Any, Any], _Future], value: Any) -> None:
        """Schedule ``fn(actor, value)`` on an idle actor, or queue it until one is free.

        Args:
            fn: ``fn(actor, value)`` returning the ref of one actor call.
            value: The value to pass.

        Raises:
            TypeError: ``fn`` is not callable, or (when an actor was idle) it returned
                something other than an ObjectRef or a list of them.

        Example:
            >>> pool.submit(lambda a, v: a.double.remote(v), 1)
            >>> pool.get_next()
            2
        """
        if not callable(fn):
            raise TypeError(
                f"ActorPool.submit expects fn(actor, value) -> ObjectRef, got a "
                f"{type(fn).__name__}. Example: pool.submit(lambda a, v: a.method.remote(v), x)."
            )
        if not self._idle_actors:
            self._pending_submits.append((fn, value))
            return
        actor = self._idle_actors.pop()
        try:
            future = fn(actor, value)
            _check_future(future)
        except BaseException:
            # fn never started a call on this actor: keep it, or the pool would shrink.
            self._idle_actors.append(actor)
            raise
        self._future_to_actor[_key(future)] = (self._next_task_index, actor)
        self._index_to_future[self._next_task_index] = future
        self._next_task_index += 1

    def has_next(self) -> bool:
        """Whether any submitted call has a result still to be returned.

        Returns:
            True while a call is in flight (pending submits start as actors free up).

        Example:
            >>> while pool.has_next():
            ...     print(pool.get_next())
        """
        return bool(self._future_to_actor)

    def get_next(self, timeout: Optional[float] = None,
                 ignore_if_timedout: bool = False) -> Any:
        """Return the result of the oldest submission not yet returned.

        Args:
            timeout: Seconds to wait; None waits forever.
            ignore_if_timedout: On timeout, drop that submission (its actor returns to
                the pool) so the next call moves on to the following one.

        Returns:
            The call's result.

        Raises:
            StopIteration: Nothing is in flight.
            ValueError: Called after :meth:`get_next_unordered` already returned the
                result this would return (mixing the two is not allowed).
            GetTimeoutError: (a TimeoutError) the result was not ready in time.
            Exception: Whatever the call raised.

        Example:
            >>> pool.submit(lambda a, v: a.double.remote(v), 1)
            >>> pool.get_next(timeout=10)
            2
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        index = self._next_return_index
        if index not in self._index_to_future:
            raise ValueError(
                "It is not allowed to call get_next() after get_next_unordered(): the "
                "result get_next() would return was already returned out of order."
            )
        future = self._index_to_future[index]
        timed_out = False
        if timeout is not None:
            refs = _as_ref_list(future)
            ready, _ = ember.wait(refs, num_returns=len(refs), timeout=timeout)
            if len(ready) < len(refs):
                if not ignore_if_timedout:
                    raise GetTimeoutError(_TIMEOUT_MSG)
                timed_out = True
        del self._index_to_future[index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(_key(future))
        self._return_actor(actor)
        if timed_out:
            raise GetTimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return ember.get(future)

    def get_next_unordered(self, timeout: Optional[float] = None,
                           ignore_if_timedout: bool = False) -> Any:
        """Return the result of any finished submission.

        Args:
            timeout: Seconds to wait; None waits forever.
            ignore_if_timedout: On timeout, drop the oldest submission still in flight
                (its actor returns to the pool).

        Returns:
            The result of whichever call finished.

        Raises:
            StopIteration: Nothing is in flight.
            GetTimeoutError: (a TimeoutError) nothing finished in time.
            Exception: Whatever the call raised.

        Example:
            >>> pool.submit(lambda a, v: a.double.remote(v), 1)
            >>> pool.get_next_unordered()
            2
        """
        if not self.has_next():
            raise StopIteration("No more results to get")
        # A multi-return call counts as finished once its first ref is ready; get()
        # below then waits for the rest, which the same actor call produces.
        first_ref = {_as_ref_list(self._index_to_future[index])[0]: key
                     for key, (index, _) in self._future_to_actor.items()}
        ready, _ = ember.wait(list(first_ref), num_returns=1, timeout=timeout)
        if ready:
            key = first_ref[ready[0]]
        elif not ignore_if_timedout:
            raise GetTimeoutError(_TIMEOUT_MSG)
        else:
            key = _key(self._index_to_future[min(self._index_to_future)])
        index, actor = self._future_to_actor.pop(key)
        future = self._index_to_future.pop(index)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        if not ready:
            raise GetTimeoutError(f"{_TIMEOUT_MSG}. The task {future} has been ignored.")
        return ember.get(future)

    def has_free(self) -> bool:
        """Whether an actor is idle and no submit is waiting for one.

        Returns:
            True if :meth:`pop_idle` would return an actor.

        Example:
            >>> if pool.has_free():
            ...     actor = pool.pop_idle()
        """
        return bool(self._idle_actors) and not self._pending_submits

    def pop_idle(self) -> Optional[Any]:
        """Take an idle actor out of the pool.

        Returns:
            An actor handle, or None if none is free (see :meth:`has_free`).

        Example:
            >>> actor = pool.pop_idle()
            >>> pool.push(actor)
        """
        if self.has_free():
            return self._idle_actors.pop()
        return None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool; it starts the oldest pending submit, if any.

        Args:
            actor: An actor handle not already in this pool.

        Raises:
            ValueError: The actor already belongs to this pool.

        Example:
            >>> pool.push(Doubler.remote())
        """
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle_actors or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)

    def _return_actor(self, actor: Any) -> None:
        self._idle_actors.append(actor)
        if self._pending_submits:
            self.submit(*self._pending_submits.pop(0))

    def _drop_unreturned(self, get_one: Callable[..., Any]) -> None:
        # map() starts afresh: results of earlier submissions nobody collected are
        # skipped without waiting, so their actors come back (Ray does the same).
        # A skipped call that failed is skipped too: nobody asked for its result.
        while self.has_next():
            try:
                get_one(timeout=0, ignore_if_timedout=True)
            except Exception:  # noqa: BLE001 - the value is discarded either way
                pass


def _check_future(future: Any) -> None:
    refs = future if isinstance(future, list) else [future]
    object_ref = getattr(ember, "ObjectRef", None)
    if object_ref is None:
        return
    if not refs or not all(isinstance(r, object_ref) for r in refs):
        raise TypeError(
            f"ActorPool: fn(actor, value) must return the ObjectRef of an actor call, got "
            f"{type(future).__name__}. Did you forget `.remote`? e.g. "
            "lambda a, v: a.method.remote(v)."
        )

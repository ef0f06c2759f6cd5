"""``@serve.batch``: concurrent calls on one replica become one call with a list.

Callers park on a future; a flusher sends the batch when it reaches ``max_batch_size``
or when ``batch_wait_timeout_s`` has passed since its first call. All on the replica's
event loop, so no locks.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Callable

from .exceptions import ServeConfigError


class _BatchQueue:
    def __init__(self, fn: Callable[..., Any], max_batch_size: int, wait_s: float) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s
        self.pending: list[tuple[Any, asyncio.Future]] = []
        self.timer: asyncio.TimerHandle | None = None
        #: sizes of the batches run so far (for tests and tuning)
        self.batch_sizes: list[int] = []

    def add(self, self_obj: Any, item: Any) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.pending.append((item, fut))
        if len(self.pending) >= self.max_batch_size:
            self._flush(self_obj)
        elif self.timer is None:
            self.timer = loop.call_later(self.wait_s, self._flush, self_obj)
        return fut

    def _flush(self, self_obj: Any) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.pending = self.pending[:self.max_batch_size], self.pending[self.max_batch_size:]
        if self.pending:
            self.timer = asyncio.get_running_loop().call_later(self.wait_s, self._flush, self_obj)
        if batch:
            asyncio.get_running_loop().create_task(self._run(self_obj, batch))

    async def _run(self, self_obj: Any, batch: list[tuple[Any, asyncio.Future]]) -> None:
        self.batch_sizes.append(len(batch))
        del self.batch_sizes[:-1000]
        items = [item for item, _ in batch]
        try:
            result = self.fn(self_obj, items) if self_obj is not None else self.fn(items)
            if inspect.isawaitable(result):
                result = await result
            if not isinstance(result, (list, tuple)) or len(result) != len(batch):
                raise TypeError(f"@serve.batch function {self.fn.__name__!r} must return a list with one "
                                f"result per input ({len(batch)}), got {type(result).__name__}"
                                f"{' of length ' + str(len(result)) if hasattr(result, '__len__') else ''}")
            for (_, fut), value in zip(batch, result):
                if not fut.done():
                    fut.set_result(value)
        except BaseException as e:  # every caller in the batch sees the batch's error
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(e)


def batch(_fn: Callable[..., Any] | None = None, *, max_batch_size: int = 10,
          batch_wait_timeout_s: float = 0.01) -> Any:
    """Batch concurrent calls: the decorated ``async def f(self, items: list)`` returns a list.

    Example::

        @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.005)
        async def predict(self, inputs: list[float]) -> list[float]: ...

    Raises:
        ServeConfigError: max_batch_size < 1 or a negative batch_wait_timeout_s.
    """
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
        raise ServeConfigError(f"max_batch_size must be an integer >= 1, got {max_batch_size!r}")
    if not isinstance(batch_wait_timeout_s, (int, float)) or batch_wait_timeout_s < 0:
        raise ServeConfigError(f"batch_wait_timeout_s must be a number >= 0, got {batch_wait_timeout_s!r}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params) and params[0] == "self"
        attr = f"__serve_batch_{fn.__name__}"
        free_queue: list[_BatchQueue] = []

        def queue_of(self_obj: Any) -> _BatchQueue:
            if self_obj is None:
                if not free_queue:
                    free_queue.append(_BatchQueue(fn, max_batch_size, batch_wait_timeout_s))
                return free_queue[0]
            q = self_obj.__dict__.get(attr)
            if q is None:
                q = _BatchQueue(fn, max_batch_size, batch_wait_timeout_s)
                self_obj.__dict__[attr] = q
            return q

        if is_method:
            @functools.wraps(fn)
            async def method(self: Any, item: Any) -> Any:
                return await queue_of(self).add(self, item)
            method._serve_batch_queue = queue_of  # type: ignore[attr-defined]
            return method

        @functools.wraps(fn)
        async def function(item: Any) -> Any:
            return await queue_of(None).add(None, item)
        function._serve_batch_queue = queue_of  # type: ignore[attr-defined]
        return function

    if _fn is not None:
        return wrap(_fn)
    return wrap

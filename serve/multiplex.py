"""``@serve.multiplexed``: a per-replica LRU of models loaded by id."""

from __future__ import annotations

import asyncio
import collections
import functools
import inspect
from typing import Any, Callable

from .exceptions import ServeConfigError


def multiplexed(_fn: Callable[..., Any] | None = None, *, max_num_models_per_replica: int = 3) -> Any:
    """Cache what ``async def get_model(self, model_id)`` loads, evicting the least recently used.

    Callers ``await self.get_model(serve.get_multiplexed_model_id())``; concurrent loads of
    one id share one load.
    """
    if isinstance(max_num_models_per_replica, bool) or not isinstance(max_num_models_per_replica, int) \
            or max_num_models_per_replica < 1:
        raise ServeConfigError("max_num_models_per_replica must be an integer >= 1, got "
                               f"{max_num_models_per_replica!r}")

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        attr = f"__serve_models_{fn.__name__}"

        @functools.wraps(fn)
        async def load(self: Any, model_id: str) -> Any:
            if not isinstance(model_id, str) or not model_id:
                raise ServeConfigError("a multiplexed model id must be a non-empty string (set the "
                                       "serve_multiplexed_model_id header or handle.options("
                                       f"multiplexed_model_id=...)), got {model_id!r}")
            cache: collections.OrderedDict = self.__dict__.setdefault(attr, collections.OrderedDict())
            if model_id in cache:
                cache.move_to_end(model_id)
                return await asyncio.shield(cache[model_id])
            while len(cache) >= max_num_models_per_replica:
                _, old = cache.popitem(last=False)
                old.cancel() if not old.done() else None

            async def do_load() -> Any:
                result = fn(self, model_id)
                return await result if inspect.isawaitable(result) else result

            task = asyncio.ensure_future(do_load())
            cache[model_id] = task
            try:
                return await asyncio.shield(task)
            except BaseException:
                cache.pop(model_id, None)
                raise

        return load

    if _fn is not None:
        return wrap(_fn)
    return wrap

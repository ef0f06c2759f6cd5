"""``@ember.remote`` on a function: RemoteFunction with ``.remote()`` and ``.options()``."""

from __future__ import annotations

import functools
from typing import Any, Callable


from . import protocol as p
from .function_export import export, register
from .arguments import encode_args
from .options import TASK_OPTIONS, resource_shape, validate
from .runtime import Runtime


class RemoteFunction:
    """A function that runs as a task: ``f.remote(*args)`` returns ObjectRef(s)."""

    def __init__(self, fn: Callable, options: dict[str, Any]) -> None:
        self._function = fn
        self._options = validate(dict(options), TASK_OPTIONS, f"remote function `{fn.__name__}`")
        self._name = fn.__qualname__
        self._exported: tuple[bytes, bytes] | None = None
        self._scheduling: tuple[p.SchedulingRequest, tuple] | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function `{self._name}` cannot be called directly. Instead of "
                        f"`{self._name}(...)`, use `{self._name}.remote(...)` and ember.get() the result.")

    def options(self, **options: Any) -> "RemoteFunction":
        """A copy with some options overridden, e.g. ``f.options(num_gpus=1).remote(x)``."""
        validate(options, TASK_OPTIONS, f"remote function `{self._name}`")
        clone = RemoteFunction.__new__(RemoteFunction)
        clone.__dict__.update(self.__dict__)
        clone._options = {**self._options, **options}
        clone._scheduling = None
        return clone

    def _ensure_registered(self, rt: Runtime) -> bytes:
        if self._exported is None:
            self._exported = export(self._function)
        return register(rt, self._exported)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from .api import _runtime
        from .worker import current_task
        rt = _runtime()
        rt.drain_releases()
        opts = self._options
        function_id = self._ensure_registered(rt)
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{self._name}`")
        num_returns = opts.get("num_returns", 1)
        if num_returns is None:
            num_returns = 1
        name = opts.get("name") or self._name
        spec = p.TaskSpec(rt.next_task_id(), name, function_id, payload, (), num_returns,
                          rt.worker_id, max_calls=opts.get("max_calls") or 0,
                          env_vars=(opts.get("runtime_env") or {}).get("env_vars") or None)
        if self._scheduling is None:  # per options, not per call: 100k queued tasks share it
            from .scheduling import scheduling_request
            request = scheduling_request(opts, resource_shape(opts, 1.0))
            self._scheduling = (request, (tuple(sorted(request.shape.items())), repr(request.strategy)))
        request, key = self._scheduling
        parent = current_task.get()
        max_retries = opts.get("max_retries")
        refs = rt.submitter.submit(spec, request, key, 3 if max_retries is None else max_retries,
                                   opts.get("retry_exceptions") or False, held, dep_ids,
                                   parent.task_id if parent is not None else None)
        if num_returns == 1:
            return refs[0]
        return refs

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ember does not implement Ray's DAG API (.bind); call .remote()")

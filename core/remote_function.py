"""``@ember.remote`` on a function: RemoteFunction with ``.remote()`` and ``.options()``."""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Callable

from ._client import context
from ._wire import protocol as p
from ._client.arguments import encode_args
from ._client.function_export import export, register
from .object_ref import ObjectRef
from .object_ref_generator import ObjectRefGenerator
from ._client.options import TASK_OPTIONS, check_generator_options, resource_shape, validate
from ._client.runtime import Runtime
from ._client.scheduling import scheduling_key, scheduling_request, with_process_env

#: Failed tasks keep their inputs for ember.util.debug.replay unless the driver runs with
#: EMBER_DEBUG_REPLAY=0 (or the task says debug_replay=False).
REPLAY_BY_DEFAULT = os.environ.get("EMBER_DEBUG_REPLAY", "1") != "0"
#: Ray's default: a task whose worker dies is run again up to 3 times.
DEFAULT_MAX_RETRIES = 3


class RemoteFunction:
    """A function that runs as a task: ``f.remote(*args)`` returns ObjectRef(s).

    Holds the function, its options (validated once) and, per options, the scheduling
    request its tasks share; the function is exported to the cluster on first use.
    """

    def __init__(self, fn: Callable, options: dict[str, Any]) -> None:
        self._function = fn
        self._options = validate(dict(options), TASK_OPTIONS, f"remote function `{fn.__name__}`")
        self._name = fn.__qualname__
        #: Ray's rule: a function that yields streams its values unless num_returns says otherwise.
        self._is_generator = is_generator_function(fn)
        check_generator_options(self._options, self._is_generator, f"`{self._name}`")
        self._exported: tuple[bytes, bytes] | None = None
        #: (request, scheduling key, resources assigned, the default env it was made for).
        self._scheduling: tuple[p.SchedulingRequest, tuple, dict[str, float] | None, dict | None] | None = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"remote function `{self._name}` cannot be called directly. Instead of "
                        f"`{self._name}(...)`, use `{self._name}.remote(...)` and ember.get() the result.")

    def options(self, **options: Any) -> "RemoteFunction":
        """A copy with some options overridden, e.g. ``f.options(num_gpus=1).remote(x)``."""
        validate(options, TASK_OPTIONS, f"remote function `{self._name}`")
        merged = {**self._options, **options}
        check_generator_options(merged, self._is_generator, f"`{self._name}`")
        clone = RemoteFunction.__new__(RemoteFunction)
        clone.__dict__.update(self.__dict__)
        clone._options = merged
        clone._scheduling = None
        return clone

    def _ensure_registered(self, rt: Runtime) -> bytes:
        if self._exported is None:
            self._exported = export(self._function)
        return register(rt, self._exported)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        rt = context.runtime()
        rt.objects.drain_releases()
        opts = self._options
        function_id = self._ensure_registered(rt)
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{self._name}`")
        num_returns = opts.get("num_returns")
        if num_returns is None:
            num_returns = "streaming" if self._is_generator else 1
        generator = num_returns if isinstance(num_returns, str) else None
        name = opts.get("name") or self._name
        parent = context.current_task.get()
        inherited = parent.captured_group() if parent is not None else None
        default_env = rt.default_process_env
        where = f"remote function `{self._name}`"
        if inherited is not None:  # runs in the caller's group: decided per call
            shape = resource_shape(opts, 1.0)
            request = with_process_env(scheduling_request(opts, shape, inherited_group=inherited),
                                       opts.get("runtime_env"), default_env, where)
            key = scheduling_key(request)
            assigned = _assigned(shape)
        else:
            # Per options (and env inherited), not per call: 100k queued tasks share it.
            if self._scheduling is None or self._scheduling[3] is not default_env:
                shape = resource_shape(opts, 1.0)
                request = with_process_env(scheduling_request(opts, shape), opts.get("runtime_env"),
                                           default_env, where)
                self._scheduling = (request, scheduling_key(request), _assigned(shape), default_env)
            request, key, assigned, _ = self._scheduling
        backpressure = opts.get("_generator_backpressure_num_objects") or -1
        spec = p.TaskSpec(rt.next_task_id(), name, function_id, payload, (),
                          1 if generator else num_returns,
                          rt.worker_id, max_calls=opts.get("max_calls") or 0,
                          env_vars=(opts.get("runtime_env") or {}).get("env_vars") or None,
                          placement_group=request.placement_group,
                          enable_task_events=opts.get("enable_task_events") is not False,
                          keep_inputs=opts.get("debug_replay", REPLAY_BY_DEFAULT),
                          resources=assigned, generator=generator,
                          backpressure_num_objects=backpressure)
        stream = rt.generators.open(spec.task_id, name, None, backpressure) \
            if generator == "streaming" else None
        max_retries = opts.get("max_retries")
        return_ids = rt.submitter.submit(
            spec, request, key, DEFAULT_MAX_RETRIES if max_retries is None else max_retries,
            _retry_exceptions(opts.get("retry_exceptions")), held, dep_ids,
            parent.task_id if parent is not None else None)
        if stream is not None:
            rt.generators.watch(stream)
            return ObjectRefGenerator(stream, ObjectRef(return_ids[0]))
        refs = [ObjectRef(oid) for oid in return_ids]
        if num_returns == 1 or generator == "dynamic":
            return refs[0]
        return refs

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ember does not implement Ray's DAG API (.bind); call .remote()")


def _assigned(shape: dict[str, float]) -> dict[str, float] | None:
    """What a task's spec says it was given (``get_assigned_resources``): None stands for
    the default ``{"CPU": 1.0}``, so the common spec carries nothing extra."""
    return None if shape == {"CPU": 1.0} else dict(shape)


def _retry_exceptions(value: bool | list | tuple | None) -> bool | tuple[type[BaseException], ...]:
    """``retry_exceptions`` as the submitters read it: a bool or a tuple of classes."""
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return bool(value)


def is_generator_function(fn: Callable) -> bool:
    """Whether ``fn`` yields (sync or async), seen through functools.partial and wrappers."""
    target = inspect.unwrap(fn)
    while isinstance(target, functools.partial):
        target = target.func
    return inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target)

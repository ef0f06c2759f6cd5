"""``@ember.remote`` on a class: ActorClass, ActorHandle and ActorMethod.

    A.remote(*args) -> CreateActor (the node manager places it, runs __init__) -> handle
    handle.m.remote(x) -> ActorSubmitter (ordered, direct to the actor's worker) -> refs
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, TypeVar

import cloudpickle

from ._client import context
from ._wire import serialization
from ._wire import protocol as p
from ._types import ActorID
from ._client.arguments import encode_args
from ._client.function_export import export, register
from .object_ref import ObjectRef
from ._client.local_objects import LocalObjectTable
from ._client.options import (ACTOR_OPTIONS, GENERATOR_RETURNS, METHOD_OPTIONS, check_generator_options,
                              resource_shape, validate)
from .object_ref_generator import ObjectRefGenerator
from .remote_function import _retry_exceptions, is_generator_function
from ._client.runtime import Runtime
from ._client.scheduling import scheduling_request, with_process_env

_F = TypeVar("_F", bound=Callable)

#: Ray's readiness call every actor answers (``ember.get(a.__ray_ready__.remote())`` is
#: True once ``__init__`` ran); the worker answers it without looking at the class.
READY_METHOD = "__ray_ready__"

#: The default max_concurrency of an async actor (Ray's): calls interleave at each await.
ASYNC_MAX_CONCURRENCY = 1000


def method(num_returns: int | str | None = None, **options: Any) -> Callable[[_F], _F]:
    """Decorator for actor methods: ``@ember.method(num_returns=2)``,
    ``@ember.method(max_task_retries=3, retry_exceptions=[IOError])``,
    ``@ember.method(num_returns="streaming")`` (the default for methods that yield).

    Raises:
        InvalidOptionError: an unknown or unsupported option, or a generator option on a
            method that does not yield.
    """
    given = {"num_returns": num_returns, **options} if num_returns is not None else dict(options)
    validate(given, METHOD_OPTIONS, "ember.method")

    def decorate(fn: _F) -> _F:
        check_generator_options(given, is_generator_function(fn), f"method `{fn.__name__}`")
        fn.__ember_method_options__ = given
        return fn

    return decorate


def _methods_of(cls: type) -> tuple[dict[str, dict[str, Any]], bool]:
    """Each method's options (num_returns at least) and whether the class is async."""
    methods: dict[str, dict[str, Any]] = {}
    is_async = False
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        options = dict(getattr(member, "__ember_method_options__", None) or {})
        if options.get("num_returns") is None:  # Ray's default: a method that yields streams
            options["num_returns"] = "streaming" if is_generator_function(member) else 1
        methods[name] = options
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            is_async = True
    return methods, is_async


class ActorClass:
    """A class whose instances live in their own worker: ``A.remote(*args)`` -> handle.

    Holds the class and its options (validated once); the class is exported to the
    cluster on first use and its constructor's ref arguments are resolved before the
    node manager places the actor (restarts re-run ``__init__`` with the same values).
    """

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = validate(dict(options), ACTOR_OPTIONS, f"actor class `{cls.__name__}`")
        self._exported: tuple[bytes, bytes] | None = None
        self.__name__ = cls.__name__
        self.__doc__ = cls.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor class `{self._cls.__name__}` cannot be instantiated directly. Instead "
                        f"of `{self._cls.__name__}(...)`, use `{self._cls.__name__}.remote(...)`.")

    def options(self, **options: Any) -> "ActorClass":
        validate(options, ACTOR_OPTIONS, f"actor class `{self._cls.__name__}`")
        clone = ActorClass.__new__(ActorClass)
        clone.__dict__.update(self.__dict__)
        clone._options = {**self._options, **options}
        return clone

    def _ensure_registered(self, rt: Runtime) -> bytes:
        if self._exported is None:
            self._exported = export(self._cls)
        return register(rt, self._exported)

    def remote(self, *args: Any, **kwargs: Any) -> "ActorHandle":
        rt = context.runtime()
        rt.objects.drain_releases()
        opts = self._options
        class_id = self._ensure_registered(rt)
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{self._cls.__name__}.__init__`")
        # Deps of the constructor are resolved here: the actor may restart long after.
        if dep_ids:
            rt.objects.values(dep_ids, None)
        deps = [rt.objects.resolved_arg(oid) for oid in dep_ids]
        methods, is_async = _methods_of(self._cls)
        events = opts.get("enable_task_events") is not False
        method_options = _non_default(methods, events)
        if opts.get("num_cpus") is None:
            # Ray's default: 1 CPU to place the actor, none held while it lives.
            shape, hold = resource_shape(opts, 1.0), resource_shape(opts, 0.0)
        else:
            shape, hold = resource_shape(opts, opts["num_cpus"]), None
        parent = context.current_task.get()
        request = with_process_env(
            scheduling_request(opts, shape, hold, inherited_group=parent.captured_group() if parent else None),
            opts.get("runtime_env"), rt.default_process_env, f"actor `{self._cls.__name__}`")
        namespace = opts.get("namespace") or (rt.namespace if opts.get("name") else None)
        max_concurrency = opts.get("max_concurrency") or (ASYNC_MAX_CONCURRENCY if is_async else 1)
        spec = p.ActorSpec(
            actor_id=os.urandom(16), class_id=class_id, class_name=self._cls.__name__,
            payload=payload, deps=deps, request=request, owner_id=rt.worker_id, job_id=rt.job_id,
            name=opts.get("name"), namespace=namespace, detached=opts.get("lifetime") == "detached",
            max_restarts=opts.get("max_restarts") or 0, max_task_retries=opts.get("max_task_retries") or 0,
            max_concurrency=max_concurrency, is_async=is_async,
            methods={name: o["num_returns"] for name, o in methods.items()},
            get_if_exists=bool(opts.get("get_if_exists")),
            env_vars=(opts.get("runtime_env") or {}).get("env_vars") or None,
            enable_task_events=events,
            method_options=cloudpickle.dumps(method_options) if method_options else None)
        info, _ = rt.call(lambda rid: p.CreateActor(rid, spec))
        # The node manager now holds our reference (and the constructor's stored args).
        rt.objects.add_actor(info.actor_id)
        handle = handle_from_info(info, max_pending_calls=opts.get("max_pending_calls") or -1)
        del held
        return handle


def _non_default(methods: dict[str, dict[str, Any]], events: bool) -> dict[str, dict[str, Any]]:
    """The methods whose options say more than their num_returns (retries, events);
    ``events`` False (the actor's ``enable_task_events``) is every method's default."""
    out = {}
    for name, o in methods.items():
        if not events and "enable_task_events" not in o:
            o = {**o, "enable_task_events": False}
        if set(o) - {"num_returns"}:
            out[name] = {k: v for k, v in o.items() if k != "num_returns"}
    return out


def handle_from_info(info: p.ActorInfo, max_pending_calls: int = -1) -> "ActorHandle":
    """A handle for the actor ``info`` describes, with the options its methods were
    declared with (``@ember.method``), whoever created it: handles from ``get_actor``
    call with the same retries, returns and events as the creator's."""
    options = cloudpickle.loads(info.method_options) if info.method_options else None
    return ActorHandle(info.actor_id, info.class_name, info.methods, info.is_async,
                       method_options=options, max_pending_calls=max_pending_calls)


class ActorHandle:
    """A reference to a live actor; picklable, so it can be passed to tasks and actors.

    Counts itself in the object table of the runtime current when it was made (the actor
    lives while any handle does, as in Ray). It knows each method's ``num_returns`` and
    the method-level options set with ``@ember.method``; ``max_pending_calls`` limits the
    calls waiting for results from this process.
    """

    def __init__(self, actor_id: ActorID, class_name: str, methods: dict[str, int | str], is_async: bool,
                 _counted: bool = False, method_options: dict[str, dict[str, Any]] | None = None,
                 max_pending_calls: int = -1) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._is_async = is_async
        self._method_options = method_options or {}
        self._max_pending_calls = max_pending_calls
        self._table: LocalObjectTable | None = context.objects
        if self._table is not None and not _counted:
            self._table.incref(actor_id)

    def __del__(self) -> None:
        table = getattr(self, "_table", None)
        if table is not None:
            table.release(self._actor_id)

    def __getattr__(self, name: str) -> "ActorMethod":
        if name == READY_METHOD:
            return ActorMethod(self, name, {"num_returns": 1})
        if name.startswith("__") or name not in self.__dict__.get("_methods", {}):
            if name.startswith("_") and name not in self.__dict__.get("_methods", {}):
                raise AttributeError(name)
            raise AttributeError(f"actor `{self._class_name}` has no method {name!r}; its methods are "
                                 f"{', '.join(sorted(m for m in self._methods if not m.startswith('_')))}")
        return ActorMethod(self, name, {"num_returns": self._methods[name],
                                        **self._method_options.get(name, {})})

    def __reduce__(self) -> Any:
        serialization.note_contained(self)
        return (_rebuild_handle, (self._actor_id, self._class_name, self._methods, self._is_async,
                                  self._method_options, self._max_pending_calls))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ember_actor_id(self) -> bytes:
        return self._actor_id


def _rebuild_handle(actor_id: ActorID, class_name: str, methods: dict[str, int | str], is_async: bool,
                    method_options: dict[str, dict[str, Any]] | None = None,
                    max_pending_calls: int = -1) -> ActorHandle:
    table = context.objects
    if table is not None:
        table.borrow_actor(actor_id)
    return ActorHandle(actor_id, class_name, methods, is_async, _counted=table is not None,
                       method_options=method_options, max_pending_calls=max_pending_calls)


class ActorMethod:
    """``handle.method``: call it with ``.remote()``; ``.options()`` overrides
    num_returns, name, max_task_retries or retry_exceptions for one call."""

    def __init__(self, handle: ActorHandle, name: str, options: dict[str, Any]) -> None:
        self._handle = handle
        self._name = name
        self._options = options

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods cannot be called directly. Instead of "
                        f"`handle.{self._name}(...)`, use `handle.{self._name}.remote(...)`.")

    def options(self, **options: Any) -> "ActorMethod":
        validate(options, METHOD_OPTIONS, f"actor method `{self._name}`")
        merged = {**self._options, **options}
        # A handle knows a method yields only when it streams by default; otherwise the
        # worker checks (a TypeError from the call).
        declared = self._handle._methods[self._name]
        check_generator_options(merged, True if declared in GENERATOR_RETURNS else None,
                                f"method `{self._name}`")
        return ActorMethod(self._handle, self._name, merged)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        rt = context.runtime()
        rt.objects.drain_releases()
        h = self._handle
        opts = self._options
        num_returns = opts.get("num_returns", 1)
        generator = num_returns if isinstance(num_returns, str) else None
        name = opts.get("name") or f"{h._class_name}.{self._name}"
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{name}`")
        held.append(h)
        backpressure = opts.get("_generator_backpressure_num_objects") or -1
        spec = p.TaskSpec(rt.next_task_id(), name, b"", payload, [], 1 if generator else num_returns,
                          rt.worker_id, actor_id=h._actor_id, method=self._name, generator=generator,
                          backpressure_num_objects=backpressure,
                          enable_task_events=opts.get("enable_task_events") is not False)
        stream = rt.generators.open(spec.task_id, name, h._actor_id, backpressure) \
            if generator == "streaming" else None
        try:
            return_ids = rt.actor_submitter.submit(
                h._actor_id, h._class_name, spec, held, dep_ids,
                max_task_retries=opts.get("max_task_retries"),
                retry_exceptions=_retry_exceptions(opts.get("retry_exceptions")),
                max_pending_calls=h._max_pending_calls)
        except BaseException:
            if stream is not None:
                rt.generators.forget(stream)
            raise
        if stream is not None:
            rt.generators.watch(stream)
            return ObjectRefGenerator(stream, ObjectRef(return_ids[0]))
        refs = [ObjectRef(oid) for oid in return_ids]
        if num_returns == 1 or generator == "dynamic":
            return refs[0]
        if num_returns == 0:
            return None
        return refs

"""``@ember.remote`` on a class: ActorClass, ActorHandle and ActorMethod."""

from __future__ import annotations

import inspect
import os
from typing import Any


from . import protocol as p
from .function_export import export, register
from . import serialization
from .arguments import encode_args
from .options import ACTOR_OPTIONS, METHOD_OPTIONS, resource_shape, validate
from .runtime import Runtime
from .scheduling import scheduling_request


def method(num_returns: int = 1, **options: Any) -> Any:
    """Decorator for actor methods: ``@ember.method(num_returns=2)``."""
    validate({"num_returns": num_returns, **options}, METHOD_OPTIONS, "ember.method")

    def decorate(fn: Any) -> Any:
        fn.__ember_num_returns__ = num_returns
        return fn

    return decorate


def _methods_of(cls: type) -> tuple[dict[str, int], bool]:
    methods: dict[str, int] = {}
    is_async = False
    for name, member in inspect.getmembers(cls, predicate=inspect.isfunction):
        methods[name] = getattr(member, "__ember_num_returns__", 1)
        if inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member):
            is_async = True
    return methods, is_async


class ActorClass:
    """A class whose instances live in their own worker: ``A.remote(*args)`` -> handle."""

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
        from .api import _runtime
        rt = _runtime()
        rt.drain_releases()
        opts = self._options
        class_id = self._ensure_registered(rt)
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{self._cls.__name__}.__init__`")
        # Deps of the constructor are resolved here: the actor may restart long after.
        values = rt.get_values(held[:len(dep_ids)], None) if dep_ids else []
        deps = []
        for oid, value in zip(dep_ids, values):
            deps.append(rt.resolved_arg(oid))
        methods, is_async = _methods_of(self._cls)
        if opts.get("num_cpus") is None:
            # Ray's default: 1 CPU to place the actor, none held while it lives.
            shape, hold = resource_shape(opts, 1.0), resource_shape(opts, 0.0)
        else:
            shape, hold = resource_shape(opts, opts["num_cpus"]), None
        request = scheduling_request(opts, shape, hold)
        namespace = opts.get("namespace") or (rt.namespace if opts.get("name") else None)
        max_concurrency = opts.get("max_concurrency") or (1000 if is_async else 1)
        spec = p.ActorSpec(
            actor_id=os.urandom(16), class_id=class_id, class_name=self._cls.__name__,
            payload=payload, deps=deps, request=request, owner_id=rt.worker_id, job_id=rt.job_id,
            name=opts.get("name"), namespace=namespace, detached=opts.get("lifetime") == "detached",
            max_restarts=opts.get("max_restarts") or 0, max_task_retries=opts.get("max_task_retries") or 0,
            max_concurrency=max_concurrency, is_async=is_async, methods=methods,
            get_if_exists=bool(opts.get("get_if_exists")),
            env_vars=(opts.get("runtime_env") or {}).get("env_vars") or None)
        info, _ = rt.call(lambda rid: p.CreateActor(rid, spec))
        # The node manager now holds our reference (and the constructor's stored args).
        with rt.lock:
            rt.actor_ids.add(info.actor_id)
        handle = ActorHandle(info.actor_id, info.class_name, info.methods, info.is_async)
        del held
        return handle


class ActorHandle:
    """A reference to a live actor; picklable, so it can be passed to tasks and actors."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict[str, int], is_async: bool,
                 _counted: bool = False) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._is_async = is_async
        from . import object_ref
        self._rt = object_ref._runtime_hooks
        if self._rt is not None and not _counted:
            self._rt.incref(actor_id)

    def __del__(self) -> None:
        rt = getattr(self, "_rt", None)
        if rt is not None:
            rt.releases.append(self._actor_id)

    def __getattr__(self, name: str) -> "ActorMethod":
        if name.startswith("__") or name not in self.__dict__.get("_methods", {}):
            if name.startswith("_") and name not in self.__dict__.get("_methods", {}):
                raise AttributeError(name)
            raise AttributeError(f"actor `{self._class_name}` has no method {name!r}; its methods are "
                                 f"{', '.join(sorted(m for m in self._methods if not m.startswith('_')))}")
        return ActorMethod(self, name, self._methods[name])

    def __reduce__(self) -> Any:
        serialization.note_contained(self)
        return (_rebuild_handle, (self._actor_id, self._class_name, self._methods, self._is_async))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ember_actor_id(self) -> bytes:
        return self._actor_id


def _rebuild_handle(actor_id: bytes, class_name: str, methods: dict[str, int], is_async: bool) -> ActorHandle:
    from . import object_ref
    rt = object_ref._runtime_hooks
    if rt is not None:
        rt.borrow_actor(actor_id)
        return ActorHandle(actor_id, class_name, methods, is_async, _counted=True)
    return ActorHandle(actor_id, class_name, methods, is_async)


class ActorMethod:
    """``handle.method``: call it with ``.remote()``."""

    def __init__(self, handle: ActorHandle, name: str, num_returns: int) -> None:
        self._handle = handle
        self._name = name
        self._num_returns = num_returns

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"actor methods cannot be called directly. Instead of "
                        f"`handle.{self._name}(...)`, use `handle.{self._name}.remote(...)`.")

    def options(self, **options: Any) -> "ActorMethod":
        validate(options, METHOD_OPTIONS, f"actor method `{self._name}`")
        return ActorMethod(self._handle, self._name, options.get("num_returns", self._num_returns))

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        from .api import _runtime
        rt = _runtime()
        rt.drain_releases()
        h = self._handle
        name = f"{h._class_name}.{self._name}"
        payload, dep_ids, held = encode_args(rt, args, kwargs, f"`{name}`")
        held.append(h)
        spec = p.TaskSpec(rt.next_task_id(), name, b"", payload, [], self._num_returns, rt.worker_id,
                          actor_id=h._actor_id, method=self._name)
        refs = rt.actor_submitter.submit(h._actor_id, h._class_name, spec, held, dep_ids)
        if self._num_returns == 1:
            return refs[0]
        if self._num_returns == 0:
            return None
        return refs

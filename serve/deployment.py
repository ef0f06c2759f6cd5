"""``@serve.deployment``, ``Deployment.bind`` and the application graph it builds.

A bound application is a tree of (deployment, constructor arguments); a deployment bound
into another's arguments arrives in that constructor as a DeploymentHandle. ``build``
flattens the tree into one record per deployment, which is what the controller deploys.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

from .config import DeploymentConfig, apply_options


class Deployment:
    """A class or function that Serve runs as replicas; make one with ``@serve.deployment``."""

    def __init__(self, target: Any, config: DeploymentConfig, route_prefix: str | None = None) -> None:
        self._target = target
        self._config = config
        self._route_prefix = route_prefix

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def func_or_class(self) -> Any:
        return self._target

    @property
    def num_replicas(self) -> int:
        return self._config.num_replicas

    @property
    def user_config(self) -> Any:
        return self._config.user_config

    @property
    def max_ongoing_requests(self) -> int:
        return self._config.max_ongoing_requests

    def options(self, **options: Any) -> "Deployment":
        """A copy with options overridden (same names as ``@serve.deployment``)."""
        route_prefix = options.pop("route_prefix", self._route_prefix)
        return Deployment(self._target, apply_options(self._config, options), route_prefix)

    def bind(self, *args: Any, **kwargs: Any) -> "Application":
        """This deployment with constructor arguments: an application ``serve.run`` can start."""
        return Application(self, args, kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"deployment {self.name!r} cannot be called directly; use "
                        f"`{self.name}.bind(...)` and `serve.run(...)`, then call it through the "
                        "handle serve.run returns")

    def __repr__(self) -> str:
        return f"Deployment(name={self.name!r})"


class Application:
    """A deployment bound to constructor arguments (the root of an application graph)."""

    def __init__(self, deployment: Deployment, args: tuple, kwargs: dict) -> None:
        self._deployment = deployment
        self._args = args
        self._kwargs = kwargs

    @property
    def deployment(self) -> Deployment:
        return self._deployment

    def __repr__(self) -> str:
        return f"Application({self._deployment.name!r})"


@dataclasses.dataclass
class BuiltDeployment:
    """One deployment of an application, ready to hand to the controller."""
    name: str
    config: DeploymentConfig
    target: Any
    args: tuple
    kwargs: dict
    is_ingress: bool


def build(app: Application, app_name: str) -> list[BuiltDeployment]:
    """Flatten ``app`` into one record per deployment, the ingress first.

    Nested Applications in constructor arguments become DeploymentHandles. The same
    deployment bound twice with different arguments gets a ``_1`` suffix, as in Ray.
    """
    from .handle import DeploymentHandle
    out: list[BuiltDeployment] = []
    seen: dict[int, str] = {}
    names: set[str] = set()

    def visit(node: Application, is_ingress: bool) -> str:
        if id(node) in seen:
            return seen[id(node)]
        name = node._deployment.name
        base, i = name, 1
        while name in names:
            name, i = f"{base}_{i}", i + 1
        names.add(name)
        seen[id(node)] = name

        def convert(value: Any) -> Any:
            if isinstance(value, Application):
                return DeploymentHandle(visit(value, False), app_name)
            if isinstance(value, Deployment):
                raise TypeError(f"deployment {value.name!r} is passed unbound into {base!r}; pass "
                                f"`{value.name}.bind(...)` instead")
            if isinstance(value, list):
                return [convert(v) for v in value]
            if isinstance(value, tuple):
                return tuple(convert(v) for v in value)
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            return value

        record = BuiltDeployment(name, dataclasses.replace(node._deployment._config, name=name),
                                 node._deployment._target, (), {}, is_ingress)
        out.append(record)
        record.args = tuple(convert(a) for a in node._args)
        record.kwargs = {k: convert(v) for k, v in node._kwargs.items()}
        return name

    visit(app, True)
    return out


def deployment(_target: Any = None, **options: Any) -> Any:
    """Make a class or function a Serve deployment.

    ``@serve.deployment`` or ``@serve.deployment(num_replicas=2, max_ongoing_requests=10, ...)``.
    Options: name, num_replicas (int or "auto"), max_ongoing_requests, max_queued_requests,
    ray_actor_options / num_cpus / num_gpus / resources, autoscaling_config, user_config,
    health_check_period_s, health_check_timeout_s, graceful_shutdown_timeout_s.

    Raises:
        ServeConfigError: an unknown option or a bad value.
    """
    def wrap(target: Any) -> Deployment:
        if not (inspect.isclass(target) or callable(target)):
            raise TypeError(f"@serve.deployment decorates a class or a function, got {target!r}")
        name = options.get("name") or getattr(target, "__name__", "Deployment")
        route_prefix = options.pop("route_prefix", None)
        config = apply_options(DeploymentConfig(name=name), {k: v for k, v in options.items()})
        return Deployment(target, config, route_prefix)

    if _target is not None and not options:
        return wrap(_target)
    if _target is not None:
        return wrap(_target)
    return wrap


def function_wrapper(fn: Callable[..., Any]) -> type:
    """A class whose ``__call__`` is ``fn``: function deployments run as the same replica code."""
    is_async = inspect.iscoroutinefunction(fn)
    is_gen = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)

    if is_gen:
        class _FunctionDeployment:  # type: ignore[no-redef]
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)
    elif is_async:
        class _FunctionDeployment:  # type: ignore[no-redef]
            async def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return await fn(*args, **kwargs)
    else:
        class _FunctionDeployment:  # type: ignore[no-redef]
            def __call__(self, *args: Any, **kwargs: Any) -> Any:
                return fn(*args, **kwargs)
    _FunctionDeployment.__name__ = getattr(fn, "__name__", "function")
    return _FunctionDeployment


def dumps(value: Any) -> bytes:
    """cloudpickle, plus the few objects it cannot round-trip that ingress apps contain.

    starlette's ``State`` (in every Starlette/FastAPI app) recurses forever when unpickled
    by value, because its ``__getattr__`` reads an attribute that is not restored yet.
    """
    import io

    import cloudpickle

    class _Pickler(cloudpickle.CloudPickler):
        def reducer_override(self, obj: Any) -> Any:
            from starlette.datastructures import State
            if type(obj) is State:
                return (State, (dict(obj._state),))
            return super().reducer_override(obj)

    buf = io.BytesIO()
    _Pickler(buf, protocol=5).dump(value)
    return buf.getvalue()

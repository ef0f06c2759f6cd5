"""serve.run / start / status / delete / shutdown and the handle getters (driver side)."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import ember
from ember.exceptions import ActorDiedError, TaskError

from .controller import ServeController
from .deployment import Application, Deployment, build, dumps
from .exceptions import DeployFailedError, NotAnApplicationError, ServeConfigError, ServeError
from .handle import DeploymentHandle
from .router import reset_routers
from .snapshot import CONTROLLER_NAME, SERVE_NAMESPACE, client, get_controller, reset_client

logger = logging.getLogger("ember.serve")
DEFAULT_HTTP_OPTIONS = {"host": "127.0.0.1", "port": 8000}


@dataclasses.dataclass
class DeploymentStatusOverview:
    status: str
    status_trigger: str
    replica_states: dict[str, int]
    message: str


@dataclasses.dataclass
class ApplicationStatusOverview:
    status: str
    message: str
    route_prefix: str | None
    deployments: dict[str, DeploymentStatusOverview]


@dataclasses.dataclass
class ServeStatus:
    """``serve.status()``: every application and deployment, with Ray's status names."""
    applications: dict[str, ApplicationStatusOverview]
    http_host: str | None = None
    http_port: int | None = None


def _unwrap(e: BaseException) -> BaseException:
    """A ServeError raised in the controller, as the driver should see it."""
    cause = getattr(e, "cause", None)
    if isinstance(e, TaskError) and isinstance(cause, ServeError):
        return cause
    return e


def _controller_or_none() -> Any:
    try:
        return ember.get_actor(CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
    except ValueError:
        return None


def start(http_options: dict[str, Any] | None = None, detached: bool = True, **_kwargs: Any) -> None:
    """Start Serve on this cluster: the controller and the HTTP proxy (127.0.0.1:8000 by default).

    Raises:
        PortInUseError: the port is taken (nothing is left running).
    """
    if http_options is not None and not isinstance(http_options, dict):
        raise ServeConfigError(f"http_options must be a dict like {{'host': '127.0.0.1', 'port': 8000}}, "
                               f"got {http_options!r}")
    options = {**DEFAULT_HTTP_OPTIONS, **(http_options or {})}
    controller = _controller_or_none()
    created = controller is None
    if created:
        controller = ember.remote(ServeController).options(
            name=CONTROLLER_NAME, namespace=SERVE_NAMESPACE, lifetime="detached", num_cpus=0,
            max_concurrency=100000, get_if_exists=True).remote(options)
    try:
        ember.get(controller.start_http.remote(options))
    except Exception as e:
        if created:
            _kill_controller(controller)
        raise _unwrap(e) from None


def _kill_controller(controller: Any) -> None:
    """Kill the controller and wait until its name is free (so a retry starts a fresh one)."""
    ember.kill(controller)
    deadline = time.monotonic() + 10.0
    while _controller_or_none() is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def run(target: Application, *, name: str = "default", route_prefix: str | None = "/",
        blocking: bool = False, **_kwargs: Any) -> DeploymentHandle:
    """Deploy (or update) an application and return a handle to its ingress deployment.

    Args:
        target: ``MyDeployment.bind(...)``.
        name: the application's name (several may run at once).
        route_prefix: where HTTP requests reach it (None: handles only).
        blocking: serve until Ctrl-C, then shut down.

    Raises:
        NotAnApplicationError: ``target`` is not a bound application.
        RoutePrefixConflictError: another application serves ``route_prefix``.
        DeployFailedError: a constructor raised, or the replicas can never be placed.
    """
    if isinstance(target, Deployment):
        raise NotAnApplicationError(f"serve.run needs a bound application; got deployment "
                                    f"{target.name!r}. Call serve.run({target.name}.bind(...))")
    if not isinstance(target, Application):
        raise NotAnApplicationError(f"serve.run needs a bound application like MyDeployment.bind(), got "
                                    f"{type(target).__name__}: {target!r}")
    if not isinstance(name, str) or not name:
        raise ServeConfigError(f"application name must be a non-empty string, got {name!r}")
    if route_prefix is None and target.deployment._route_prefix is not None:
        route_prefix = target.deployment._route_prefix
    if route_prefix is not None and (not isinstance(route_prefix, str) or not route_prefix.startswith("/")):
        raise ServeConfigError(f"route_prefix must start with '/', like '/{route_prefix}', got {route_prefix!r}")
    if route_prefix is not None and len(route_prefix) > 1:
        route_prefix = route_prefix.rstrip("/")
    built = build(target, name)
    payload = []
    for d in built:
        try:
            code = dumps((d.target, d.args, d.kwargs))
        except Exception as e:
            raise ServeConfigError(f"the constructor arguments of deployment {d.name!r} cannot be "
                                   f"serialized ({type(e).__name__}: {e}); pass picklable values, or "
                                   "create the object inside the deployment's __init__") from None
        payload.append((d.name, d.config, code, d.is_ingress))
    if _controller_or_none() is None:
        start()
    controller = get_controller()
    try:
        ember.get(controller.deploy_app.remote(name, route_prefix, payload))
    except Exception as e:
        raise _unwrap(e) from None
    _wait_for_app(controller, name)
    handle = DeploymentHandle(built[0].name, name)
    if blocking:
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            shutdown()
    return handle


def _wait_for_app(controller: Any, name: str) -> None:
    while True:
        st = ember.get(controller.status.remote())["applications"].get(name)
        if st is None:
            raise DeployFailedError(name, "it was deleted while deploying")
        if st["status"] == "RUNNING":
            # Make sure this process's routers see the new replicas before returning.
            c = client(controller)
            c.refresh()
            return
        if st["status"] == "DEPLOY_FAILED":
            raise DeployFailedError(name, st["message"])
        time.sleep(0.02)


def status() -> ServeStatus:
    """Every application's and deployment's status (empty if Serve is not running)."""
    controller = _controller_or_none()
    if controller is None:
        return ServeStatus({})
    try:
        raw = ember.get(controller.status.remote())
    except ActorDiedError:  # shut down while we asked
        return ServeStatus({})
    apps = {}
    for app_name, a in raw["applications"].items():
        deps = {n: DeploymentStatusOverview(d["status"], d["status_trigger"], d["replica_states"], d["message"])
                for n, d in a["deployments"].items()}
        apps[app_name] = ApplicationStatusOverview(a["status"], a["message"], a["route_prefix"], deps)
    return ServeStatus(apps, raw.get("http_host"), raw.get("http_port"))


def delete(name: str, _blocking: bool = True) -> None:
    """Stop an application (its replicas drain first); a no-op if there is none."""
    controller = _controller_or_none()
    if controller is not None:
        ember.get(controller.delete_app.remote(name))


def shutdown() -> None:
    """Stop every application, drain in-flight requests, stop the proxy (freeing its port)."""
    if not ember.is_initialized():
        return
    controller = _controller_or_none()
    reset_client()
    reset_routers()
    if controller is None:
        return
    try:
        ember.get(controller.shutdown.remote(), timeout=120)
    except ActorDiedError:  # already gone: nothing left to drain
        pass
    finally:
        _kill_controller(controller)


def get_app_handle(name: str) -> DeploymentHandle:
    """A handle to an application's ingress deployment.

    Raises:
        ServeError: no such application.
    """
    raw = ember.get(get_controller().status.remote())["applications"]
    if name not in raw:
        raise ServeError(f"no application named {name!r}; running: {sorted(raw) or 'none'}")
    return DeploymentHandle(raw[name]["ingress"], name)


def get_deployment_handle(deployment_name: str, app_name: str | None = None) -> DeploymentHandle:
    """A handle to one deployment of an application (the only/“default” app if not given)."""
    raw = ember.get(get_controller().status.remote())["applications"]
    if app_name is None:
        app_name = "default" if "default" in raw or len(raw) != 1 else next(iter(raw))
    if app_name not in raw or deployment_name not in raw[app_name]["deployments"]:
        raise ServeError(f"no deployment {deployment_name!r} in application {app_name!r}; running: "
                         f"{ {a: sorted(v['deployments']) for a, v in raw.items()} }")
    return DeploymentHandle(deployment_name, app_name)


def ingress(app: Any) -> Any:
    """Class decorator: HTTP requests to this deployment go to the ASGI ``app`` (starlette/FastAPI)."""
    if not callable(app):
        raise ServeConfigError(f"serve.ingress needs an ASGI app (starlette or FastAPI), got {app!r}")

    def wrap(cls: type) -> type:
        if not isinstance(cls, type):
            raise ServeConfigError("@serve.ingress(app) decorates a class (below @serve.deployment)")
        cls.__serve_asgi_app__ = app
        return cls

    return wrap

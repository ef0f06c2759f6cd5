"""Every error ember.serve raises to a user.

Each names the application, deployment or option involved and says what to do.
Ray's names are kept as aliases so ``except serve.exceptions.RayServeException`` ports.
"""

from __future__ import annotations

from ember.exceptions import EmberError


class ServeError(EmberError):
    """Base class of every ember.serve error."""


class ServeConfigError(ServeError, ValueError):
    """A deployment or application option is invalid; the message names it and the fix."""


class NotAnApplicationError(ServeError, TypeError):
    """``serve.run`` was given something that is not a bound application."""


class RoutePrefixConflictError(ServeError, ValueError):
    """Two applications asked for the same route prefix."""


class PortInUseError(ServeError, OSError):
    """The HTTP proxy could not bind its port because something else holds it."""


class DeployFailedError(ServeError):
    """An application could not be deployed (constructor raised, or replicas can never be placed)."""

    def __init__(self, app_name: str, message: str) -> None:
        self.app_name = app_name
        self.message = message
        super().__init__(app_name, message)

    def __str__(self) -> str:
        return f"application {self.app_name!r} failed to deploy (DEPLOY_FAILED): {self.message}"

    def __reduce__(self) -> tuple:
        return (DeployFailedError, (self.app_name, self.message))


class BackPressureError(ServeError):
    """A deployment's ``max_queued_requests`` is exceeded (HTTP 503)."""

    def __init__(self, deployment: str, max_queued_requests: int) -> None:
        self.deployment = deployment
        self.max_queued_requests = max_queued_requests
        super().__init__(deployment, max_queued_requests)

    def __str__(self) -> str:
        return (f"deployment {self.deployment!r} has {self.max_queued_requests} requests queued "
                f"(max_queued_requests); retry later or raise max_queued_requests / num_replicas")

    def __reduce__(self) -> tuple:
        return (BackPressureError, (self.deployment, self.max_queued_requests))


class DeploymentUnavailableError(ServeError):
    """No live replica of a deployment could take a request (all died or none started)."""


class ReplicaDiedError(DeploymentUnavailableError):
    """The replica running a request died while the request was running on it."""


class RequestTimeoutError(ServeError, TimeoutError):
    """A request ran longer than ``request_timeout_s`` (HTTP 408)."""


class NotRunningError(ServeError):
    """An API that needs a running Serve instance was called before ``serve.start``/``serve.run``."""


RayServeException = ServeError

__all__ = ["ServeError", "ServeConfigError", "NotAnApplicationError", "RoutePrefixConflictError",
           "PortInUseError", "DeployFailedError", "BackPressureError", "DeploymentUnavailableError",
           "ReplicaDiedError", "RequestTimeoutError", "NotRunningError", "RayServeException"]

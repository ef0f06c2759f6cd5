"""What a replica knows about itself and about the request it is running."""

from __future__ import annotations

import contextvars
import dataclasses
from typing import Any

from .exceptions import ServeError


@dataclasses.dataclass
class ReplicaContext:
    """``serve.get_replica_context()``: the replica this code runs in."""
    app_name: str
    deployment: str
    replica_id: str
    servable_object: Any = None

    @property
    def replica_tag(self) -> str:
        return self.replica_id


_replica: ReplicaContext | None = None

#: The model id the current request asked for (header ``serve_multiplexed_model_id``).
request_model_id: contextvars.ContextVar[str] = contextvars.ContextVar("serve_model_id", default="")
#: The current request's id (also in the HTTP response header ``x-request-id``).
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("serve_request_id", default="")


def set_replica_context(ctx: ReplicaContext) -> None:
    global _replica
    _replica = ctx


def get_replica_context() -> ReplicaContext:
    """The running replica's context.

    Raises:
        ServeError: called outside a replica (e.g. in the driver).
    """
    if _replica is None:
        raise ServeError("serve.get_replica_context() works only inside a deployment's replica; "
                         "call it from a deployment's __init__ or methods")
    return _replica


def get_multiplexed_model_id() -> str:
    """The model id of the current request ("" if it named none)."""
    return request_model_id.get()

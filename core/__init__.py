"""ember: a Ray-compatible runtime for distributed machine learning in Python."""

from . import exceptions
from .actor import ActorClass, ActorHandle
from .api import (available_resources, cancel, cluster_resources, exit_actor, get, get_actor,
                  get_gpu_ids, get_runtime_context, init, is_initialized, kill, method, nodes,
                  object_store_stats, put, remote, shutdown, wait)
from .object_ref import ObjectRef
from .remote_function import RemoteFunction

__version__ = "0.1.0"

__all__ = [
    "ActorClass", "ActorHandle", "ObjectRef", "RemoteFunction", "available_resources", "cancel",
    "cluster_resources", "exceptions", "exit_actor", "get", "get_actor", "get_gpu_ids",
    "get_runtime_context", "init", "is_initialized", "kill", "method", "nodes",
    "object_store_stats", "put", "remote", "shutdown", "wait",
]

"""ember.serve: deployments behind HTTP, with replicas, composition, batching and autoscaling.

Ray Serve's API on ember (``from ember import serve``)::

    @serve.deployment(num_replicas=2)
    class Model:
        async def __call__(self, request):
            return {"ok": True}

    serve.run(Model.bind())          # http://127.0.0.1:8000/
"""

from __future__ import annotations

from . import exceptions
from .api import (ApplicationStatusOverview, DeploymentStatusOverview, ServeStatus, delete,
                  get_app_handle, get_deployment_handle, ingress, run, shutdown, start, status)
from .batching import batch
from .config import AutoscalingConfig, DeploymentConfig
from .context import ReplicaContext, get_multiplexed_model_id, get_replica_context
from .deployment import Application, Deployment, deployment
from .handle import DeploymentHandle, DeploymentResponse, DeploymentResponseGenerator
from .multiplex import multiplexed

__all__ = [
    "Application", "ApplicationStatusOverview", "AutoscalingConfig", "Deployment", "DeploymentConfig",
    "DeploymentHandle", "DeploymentResponse", "DeploymentResponseGenerator", "DeploymentStatusOverview",
    "ReplicaContext", "ServeStatus", "batch", "delete", "deployment", "exceptions", "get_app_handle",
    "get_deployment_handle", "get_multiplexed_model_id", "get_replica_context", "ingress", "multiplexed",
    "run", "shutdown", "start", "status",
]

"""ember's autoscaler: worker nodes launched for pending work, removed when idle.

``plan`` decides (a pure function), a ``NodeProvider`` acts (``LocalNodeProvider`` on
this machine, ``SSHNodeProvider`` on a list of hosts), the ``Monitor`` loops between
them, and ``ember up cluster.yaml`` / ``ember down cluster.yaml`` run it all.
``ember.autoscaler.sdk.request_resources`` asks for capacity ahead of work.
See docs/autoscaler.md.
"""

from __future__ import annotations

from .config import ClusterConfig, NodeTypeConfig, ProviderConfig, load_config
from .errors import AutoscalerNotRunningError, ClusterConfigError, ClusterLaunchError
from .local_provider import LocalNodeProvider
from .monitor import Monitor
from .planner import NodeState, NodeType, PendingGroup, Plan, plan
from .provider import NodeProvider
from .ssh_provider import SSHNodeProvider

__all__ = ["AutoscalerNotRunningError", "ClusterConfig", "ClusterConfigError", "ClusterLaunchError",
           "LocalNodeProvider", "Monitor", "NodeProvider", "NodeState", "NodeType", "NodeTypeConfig",
           "PendingGroup", "Plan", "ProviderConfig", "SSHNodeProvider", "load_config", "plan"]

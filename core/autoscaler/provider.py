"""The NodeProvider interface: how the autoscaler starts and stops machines.

A provider knows nothing about demand; it launches nodes of a type, terminates them,
lists the ones it launched and tags them (type, status, why a launch failed). The
monitor matches a provider node to the cluster node that joined from its address.
Ray's providers have the same verbs (``create_node``, ``terminate_node``,
``non_terminated_nodes``, ``node_tags``), so porting a cloud provider is mechanical.
"""

from __future__ import annotations

import shlex
from abc import ABC, abstractmethod
from typing import Literal

from .._types import ResourceShape

ProviderNodeStatus = Literal["launching", "failed"]

TAG_NODE_TYPE = "ember-node-type"
#: "launching" until the process exits; "failed" when it exited (the monitor decides
#: "running" itself, from the cluster's node table).
TAG_NODE_STATUS = "ember-node-status"
#: Why a launch failed: the last line the start command wrote.
TAG_LAUNCH_ERROR = "ember-launch-error"


class NodeProvider(ABC):
    """Starts and stops worker nodes for the autoscaler (one instance per cluster)."""

    @abstractmethod
    def create_node(self, node_type: str, resources: ResourceShape, count: int) -> list[str]:
        """Start ``count`` nodes of ``node_type`` offering ``resources``; returns their
        provider ids at once (the nodes join the head later, or fail)."""

    @abstractmethod
    def terminate_node(self, node_id: str) -> None:
        """Stop the node (idempotent); it leaves ``non_terminated_nodes`` at once."""

    @abstractmethod
    def non_terminated_nodes(self) -> list[str]:
        """Ids of nodes created and not yet terminated (launching, joined or failed)."""

    @abstractmethod
    def node_tags(self, node_id: str) -> dict[str, str]:
        """TAG_NODE_TYPE, TAG_NODE_STATUS and, after a failure, TAG_LAUNCH_ERROR."""

    @abstractmethod
    def internal_address(self, node_id: str) -> str:
        """``ip:port`` (or ``ip`` where one node runs per host) the node's manager listens on;
        matched against ``ember.nodes()``'s NodeManagerAddress / NodeManagerPort."""

    def shutdown(self) -> None:
        """Terminate every node this provider still runs."""
        for node_id in self.non_terminated_nodes():
            self.terminate_node(node_id)


def resource_flags(resources: ResourceShape) -> str:
    """``ember start`` flags that declare ``resources`` (shell-quoted)."""
    flags = []
    custom = {}
    for name, amount in sorted(resources.items()):
        if name == "CPU":
            flags += ["--num-cpus", f"{amount:g}"]
        elif name == "GPU":
            flags += ["--num-gpus", f"{amount:g}"]
        elif name == "object_store_memory":
            flags += ["--object-store-memory", str(int(amount))]
        else:
            custom[name] = amount
    if "CPU" not in resources:
        flags += ["--num-cpus", "0"]  # else `ember start` offers every core of the machine
    if custom:
        import json
        flags += ["--resources", json.dumps(custom, sort_keys=True)]
    return shlex.join(flags)

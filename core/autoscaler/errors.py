"""The autoscaler's typed errors: each names the thing that is wrong and the fix."""

from __future__ import annotations

from ..exceptions import EmberError


class ClusterConfigError(EmberError, ValueError):
    """A field of the cluster YAML is missing, misspelled or out of range.

    Attributes:
        path: the YAML file (or "<dict>" for a config given as a mapping).
        field: the dotted field, e.g. ``available_node_types.cpu2.max_workers``.
        problem: what is wrong with it; fix: what to write instead.
    """

    def __init__(self, path: str, field: str, problem: str, fix: str) -> None:
        self.path, self.field, self.problem, self.fix = path, field, problem, fix
        super().__init__(path, field, problem, fix)

    def __str__(self) -> str:
        return f"cluster config {self.path}: `{self.field}` {self.problem}; {self.fix}"


class AutoscalerNotRunningError(EmberError):
    """``request_resources`` was called on a cluster without an autoscaler."""

    def __str__(self) -> str:
        return ("no autoscaler runs on this cluster, so request_resources() has nobody to ask: "
                "start the cluster with `ember up cluster.yaml` (or run ember.autoscaler.Monitor)")


class ClusterLaunchError(EmberError):
    """``ember up`` / ``ember down`` could not start or stop part of the cluster."""

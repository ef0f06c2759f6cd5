"""``BackendConfig``: what a framework needs set up on the worker group before the loop.

A DataParallelTrainer runs the same loop on every rank; a backend wires the ranks together
(TorchConfig: a torch.distributed process group). The base class wires nothing, which is
all a loop of plain numpy or scikit-learn per worker needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._config import ScalingConfig
    from ._worker_group import WorkerGroup


class BackendConfig:
    """No collective set-up (Ray's ``ray.train.backend.BackendConfig``)."""

    @property
    def backend_name(self) -> str:
        return "none"

    def on_start(self, group: WorkerGroup, scaling: ScalingConfig) -> None:
        """Called once the workers are placed, before the loop starts on any rank.

        Raises:
            GroupCallError: the set-up failed on a rank (counted as that rank's failure).
        """

    def on_shutdown(self, group: WorkerGroup) -> None:
        """Called before the group is killed (best effort: a failed group may be gone)."""

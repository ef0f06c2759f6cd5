"""The errors ember.train raises (Ray Train's names where Ray has one)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from ember.exceptions import EmberError

__all__ = ["CheckpointError", "RendezvousTimeoutError", "SessionMisuseError", "StorageError",
           "TrainConfigError", "TrainingFailedError", "WorkerFailure"]


class TrainConfigError(EmberError, ValueError):
    """A configuration value that cannot work; the message names it and the fix."""


class SessionMisuseError(EmberError, RuntimeError):
    """A session function (``report``, ``get_context``, ...) called outside a training loop."""

    def __init__(self, function: str) -> None:
        super().__init__(function)
        self.function = function

    def __str__(self) -> str:
        return (f"ember.train.{self.function}() was called outside a training loop: call it "
                "inside the train_loop_per_worker function that a Trainer runs (or inside a "
                "function trainable that ember.tune runs), not in the driver")


class CheckpointError(EmberError, ValueError):
    """A checkpoint that does not exist or cannot be read."""


class StorageError(EmberError, OSError):
    """A ``storage_path`` that cannot hold the run's results."""


class RendezvousTimeoutError(EmberError, TimeoutError):
    """The workers did not all join the process group within the timeout."""

    def __init__(self, missing_ranks: list[int], world_size: int, address: str,
                 timeout_s: float) -> None:
        super().__init__(missing_ranks, world_size, address, timeout_s)
        self.missing_ranks = missing_ranks
        self.world_size = world_size
        self.address = address
        self.timeout_s = timeout_s

    def __str__(self) -> str:
        ranks = ", ".join(str(r) for r in self.missing_ranks) or "unknown"
        return (f"torch.distributed rendezvous at {self.address} timed out after "
                f"{self.timeout_s:g} s: rank(s) {ranks} of {self.world_size} never joined. "
                "Check that every node can reach rank 0's node at that address and port "
                "(firewall, GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME), or raise "
                "TorchConfig(timeout_s=...)")


FailureKind = Literal["raised", "died"]


@dataclasses.dataclass
class WorkerFailure:
    """How one rank ended: it raised in the loop, or its process died."""

    rank: int
    node_id: str
    node_ip: str
    pid: int
    kind: FailureKind
    #: "raised ValueError" or the runtime's account of the death (signal, exit code).
    exit_cause: str
    traceback: str = ""
    error: BaseException | None = None
    attempt: int = 0
    root_cause: bool = False

    def describe(self) -> str:
        mark = " [root cause]" if self.root_cause else ""
        where = f"node {self.node_id[:12] or '?'} ({self.node_ip or '?'}), pid {self.pid}"
        return f"rank {self.rank} on {where}{mark}: {self.exit_cause}"


class TrainingFailedError(EmberError, RuntimeError):
    """A run failed more often than ``FailureConfig.max_failures`` allows.

    The message names the first failing rank (the root cause), its node and how it ended,
    and carries that worker's remote traceback; ``__cause__`` is the worker's error.

    Attributes:
        failures: every rank failure of the last attempt, root cause first.
        attempts: how many times the group was started.
    """

    def __init__(self, *args: Any, failures: list[WorkerFailure] | None = None,
                 attempts: int = 1, max_failures: int = 0) -> None:
        super().__init__(*args)
        self.failures = list(failures or [])
        self.attempts = attempts
        self.max_failures = max_failures

    @property
    def root_cause(self) -> WorkerFailure | None:
        return next((f for f in self.failures if f.root_cause), None)

    def __str__(self) -> str:
        root = self.root_cause
        if root is None:
            return super().__str__()
        lines = [f"training failed: {root.describe()}"]
        if root.traceback:
            lines.append("remote traceback of rank %d:\n%s" % (root.rank, root.traceback.rstrip()))
        for other in self.failures:
            if other is not root:
                lines.append(f"also failed afterwards: {other.describe()}")
        limit = "unlimited" if self.max_failures < 0 else str(self.max_failures)
        lines.append(f"the worker group was started {self.attempts} time(s) "
                     f"(FailureConfig(max_failures={limit})); fix the error above, or raise "
                     "max_failures to restart from the latest checkpoint more often")
        return "\n".join(lines)

    def __reduce__(self) -> Any:
        return (_rebuild_training_failed, (self.args, self.failures, self.attempts,
                                           self.max_failures))


def _rebuild_training_failed(args: tuple[Any, ...], failures: list[WorkerFailure],
                             attempts: int, max_failures: int) -> TrainingFailedError:
    return TrainingFailedError(*args, failures=failures, attempts=attempts,
                               max_failures=max_failures)

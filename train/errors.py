"""The errors ember.train raises (Ray Train's names where Ray has one)."""

from __future__ import annotations

from ember.exceptions import EmberError

__all__ = ["CheckpointError", "SessionMisuseError", "StorageError", "TrainConfigError",
           "TrainingFailedError"]


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


class TrainingFailedError(EmberError, RuntimeError):
    """A run failed more often than ``FailureConfig.max_failures`` allows.

    The message names the first failing rank (the root cause), its node and how it ended,
    and carries that worker's remote traceback; ``__cause__`` is the worker's error.
    """

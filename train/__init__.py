"""ember.train: distributed training on ember (Ray Train's API).

    from ember.train import ScalingConfig, RunConfig, CheckpointConfig, Checkpoint
    from ember.train.torch import TorchTrainer
"""

from ._backend import BackendConfig
from ._checkpoint import Checkpoint
from ._config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ._result import Result
from ._session import TrainContext, get_checkpoint, get_context, get_dataset_shard, report
from ._trainer import DataParallelTrainer
from .errors import (CheckpointError, RendezvousTimeoutError, SessionMisuseError, StorageError,
                     TrainConfigError, TrainingFailedError, WorkerFailure)

__all__ = [
    "BackendConfig", "Checkpoint", "CheckpointConfig", "CheckpointError", "DataParallelTrainer",
    "FailureConfig", "RendezvousTimeoutError", "Result", "RunConfig", "ScalingConfig",
    "SessionMisuseError", "StorageError", "TorchTrainer", "TrainConfigError", "TrainContext",
    "TrainingFailedError", "WorkerFailure", "get_checkpoint", "get_context",
    "get_dataset_shard", "report",
]


def __getattr__(name: str) -> object:
    # ember.train.TorchTrainer without importing torch for users who never touch it.
    if name == "TorchTrainer":
        from .torch import TorchTrainer
        return TorchTrainer
    raise AttributeError(f"module 'ember.train' has no attribute {name!r}")

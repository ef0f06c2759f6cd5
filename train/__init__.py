"""ember.train: distributed training on ember (Ray Train's API).

    from ember.train import ScalingConfig, RunConfig, CheckpointConfig, Checkpoint
    from ember.train.torch import TorchTrainer
"""

from ._checkpoint import Checkpoint
from ._config import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ._result import Result
from ._session import TrainContext, get_checkpoint, get_context, get_dataset_shard, report
from .errors import (CheckpointError, SessionMisuseError, StorageError, TrainConfigError,
                     TrainingFailedError)

__all__ = [
    "Checkpoint", "CheckpointConfig", "CheckpointError", "FailureConfig", "Result", "RunConfig",
    "ScalingConfig", "SessionMisuseError", "StorageError", "TrainConfigError", "TrainContext",
    "TrainingFailedError", "get_checkpoint", "get_context", "get_dataset_shard", "report",
]

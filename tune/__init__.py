"""ember.tune: hyperparameter sweeps on ember (Ray Tune's API).

    from ember import tune
    tuner = tune.Tuner(trainable, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20))
    best = tuner.fit().get_best_result()
"""

from ember.train import (Checkpoint, CheckpointConfig, FailureConfig, Result, RunConfig,
                         get_checkpoint, get_context, report)

from .registry import get_env_creator, register_env, register_trainable
from .trainable import Trainable

__all__ = [
    "Checkpoint", "CheckpointConfig", "FailureConfig", "Result", "RunConfig", "Trainable",
    "get_checkpoint", "get_context", "get_env_creator", "register_env", "register_trainable",
    "report",
]

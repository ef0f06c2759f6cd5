"""ember.tune: hyperparameter sweeps on ember (Ray Tune's API).

    from ember import tune
    tuner = tune.Tuner(trainable, param_space={"lr": tune.loguniform(1e-4, 1e-1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=20))
    best = tuner.fit().get_best_result()
"""

from ember.train import (Checkpoint, CheckpointConfig, FailureConfig, Result, RunConfig,
                         get_checkpoint, get_context, report)

from ._controller import TrialFailedError
from .callback import Callback
from .errors import TrialNeverReportedError, TuneConfigError, TuneError, TuneRestoreError
from .registry import get_env_creator, register_env, register_trainable
from .resources import PlacementGroupFactory, with_parameters, with_resources
from .result_grid import ResultGrid
from .search.sample import (choice, grid_search, lograndint, loguniform, qlograndint,
                            qloguniform, qrandint, qrandn, quniform, randint, randn,
                            sample_from, uniform)
from .stopper import Stopper
from .trainable import Trainable
from .tuner import TuneConfig, Tuner

__all__ = [
    "Callback", "Checkpoint", "CheckpointConfig", "FailureConfig", "PlacementGroupFactory", "Result",
    "ResultGrid", "RunConfig", "Stopper", "Trainable", "TrialFailedError",
    "TrialNeverReportedError", "TuneConfig", "TuneConfigError", "TuneError",
    "TuneRestoreError", "Tuner", "choice", "get_checkpoint", "get_context", "get_env_creator",
    "grid_search", "lograndint", "loguniform", "qlograndint", "qloguniform", "qrandint",
    "qrandn", "quniform", "randint", "randn", "register_env", "register_trainable", "report",
    "sample_from", "uniform", "with_parameters", "with_resources",
]

"""The configuration objects of a training run (Ray Train's names and defaults).

They are plain dataclasses, checked when built so that a mistake is reported at the line
that made it rather than minutes later inside a worker. ember.tune reuses ``RunConfig``,
``CheckpointConfig`` and ``FailureConfig`` as they are, as Ray Tune does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal

from .errors import TrainConfigError

PlacementStrategy = Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"]
ScoreOrder = Literal["max", "min"]

_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclasses.dataclass
class ScalingConfig:
    """How many workers a run has and what each one holds.

    Args:
        num_workers: training processes (one rank each).
        use_gpu: give every worker one GPU (unless ``resources_per_worker`` says otherwise).
        resources_per_worker: the resource shape of one worker, e.g. ``{"CPU": 2, "GPU": 1}``;
            by default 1 CPU, plus 1 GPU with ``use_gpu``.
        placement_strategy: how the workers' bundles are laid out across nodes.
        trainer_resources: accepted for Ray compatibility; ember's trainer runs in the
            driver and holds nothing, so only ``None`` or ``{}``/zeros are allowed.

    Example:
        >>> ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1})
    """

    num_workers: int = 1
    use_gpu: bool = False
    resources_per_worker: dict[str, float] | None = None
    placement_strategy: PlacementStrategy = "PACK"
    trainer_resources: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) \
                or self.num_workers < 1:
            raise TrainConfigError(
                f"ScalingConfig(num_workers={self.num_workers!r}): num_workers must be an int >= 1")
        if self.placement_strategy not in _STRATEGIES:
            raise TrainConfigError(
                f"ScalingConfig(placement_strategy={self.placement_strategy!r}): use one of "
                f"{', '.join(_STRATEGIES)}")
        for name, amount in (self.resources_per_worker or {}).items():
            if not isinstance(amount, (int, float)) or amount < 0 or math.isnan(amount):
                raise TrainConfigError(
                    f"ScalingConfig(resources_per_worker={{{name!r}: {amount!r}}}): amounts "
                    "must be non-negative numbers")
        if any(v for v in (self.trainer_resources or {}).values()):
            raise TrainConfigError(
                f"ScalingConfig(trainer_resources={self.trainer_resources!r}): ember's trainer "
                "coordinates from the driver and reserves nothing; drop trainer_resources")

    @property
    def worker_resources(self) -> dict[str, float]:
        """The resource shape of one worker, defaults filled in."""
        shape = dict(self.resources_per_worker) if self.resources_per_worker is not None else {}
        if self.resources_per_worker is None or "CPU" not in shape:
            shape.setdefault("CPU", 1.0)
        if self.use_gpu and "GPU" not in shape:
            shape["GPU"] = 1.0
        return {k: float(v) for k, v in shape.items() if v}

    @property
    def num_gpus_per_worker(self) -> float:
        return self.worker_resources.get("GPU", 0.0)


@dataclasses.dataclass
class CheckpointConfig:
    """Which checkpoints a run keeps.

    Args:
        num_to_keep: keep at most this many (the best by ``checkpoint_score_attribute``,
            else the most recent); ``None`` keeps all. The latest checkpoint is always
            kept as well, since a restart resumes from it.
        checkpoint_score_attribute: a reported metric to rank checkpoints by.
        checkpoint_score_order: ``"max"`` or ``"min"``.
        checkpoint_frequency / checkpoint_at_end: for class trainables in ember.tune.
    """

    num_to_keep: int | None = None
    checkpoint_score_attribute: str | None = None
    checkpoint_score_order: ScoreOrder = "max"
    checkpoint_frequency: int = 0
    checkpoint_at_end: bool | None = None

    def __post_init__(self) -> None:
        if self.num_to_keep is not None and (not isinstance(self.num_to_keep, int)
                                             or self.num_to_keep < 1):
            raise TrainConfigError(
                f"CheckpointConfig(num_to_keep={self.num_to_keep!r}): use None (keep all) "
                "or an int >= 1")
        if self.checkpoint_score_order not in ("max", "min"):
            raise TrainConfigError(
                f"CheckpointConfig(checkpoint_score_order={self.checkpoint_score_order!r}): "
                "use 'max' or 'min'")
        if not isinstance(self.checkpoint_frequency, int) or self.checkpoint_frequency < 0:
            raise TrainConfigError(
                f"CheckpointConfig(checkpoint_frequency={self.checkpoint_frequency!r}): "
                "use an int >= 0 (0 = never)")


@dataclasses.dataclass
class FailureConfig:
    """How often a run is restarted after a failure.

    Args:
        max_failures: restarts allowed (from the latest checkpoint); 0 means none,
            -1 means without limit.
        fail_fast: ember.tune: stop the whole sweep at the first trial error.
    """

    max_failures: int = 0
    fail_fast: bool | str = False

    def __post_init__(self) -> None:
        if not isinstance(self.max_failures, int) or self.max_failures < -1:
            raise TrainConfigError(
                f"FailureConfig(max_failures={self.max_failures!r}): use an int >= 0, "
                "or -1 for unlimited restarts")


@dataclasses.dataclass
class RunConfig:
    """Where a run's results go and how it is kept alive.

    Args:
        name: the run's folder under ``storage_path`` (default: a generated name).
        storage_path: a local directory or a pyarrow filesystem URI; default
            ``~/ember_results``.
        checkpoint_config: which checkpoints to keep.
        failure_config: how many restarts.
        stop: ember.tune stopping criteria (dict, callable or ``Stopper``).
        verbose: 0 silent, 1 status table/progress lines (default), 2 every result.
        callbacks: ember.tune callbacks.
        progress_reporter: accepted for Ray compatibility.
    """

    name: str | None = None
    storage_path: str | None = None
    checkpoint_config: CheckpointConfig | None = None
    failure_config: FailureConfig | None = None
    stop: dict[str, Any] | Callable[..., bool] | Any | None = None
    verbose: int | None = None
    callbacks: list[Any] | None = None
    progress_reporter: Any = None
    log_to_file: bool | str = False

    def __post_init__(self) -> None:
        if self.checkpoint_config is None:
            self.checkpoint_config = CheckpointConfig()
        if self.failure_config is None:
            self.failure_config = FailureConfig()
        if self.name is not None and (not isinstance(self.name, str) or not self.name
                                      or "/" in self.name):
            raise TrainConfigError(
                f"RunConfig(name={self.name!r}): use a non-empty folder name without '/'")

"""Deployment and autoscaling options: one validated, picklable record each.

Validation happens where the user writes the option (``@serve.deployment``,
``.options``), so a typo fails at the line that made it, not later inside the controller.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from typing import Any

from .exceptions import ServeConfigError

#: Replica CPU reservation when the user sets none (Ray Serve's default).
DEFAULT_NUM_CPUS = 1.0


@dataclasses.dataclass(frozen=True)
class AutoscalingConfig:
    """Bounds and pace of autoscaling; decisions live in autoscaling.py."""
    min_replicas: int = 1
    max_replicas: int = 1
    target_ongoing_requests: float = 2.0
    upscale_delay_s: float = 30.0
    downscale_delay_s: float = 600.0
    metrics_interval_s: float = 0.5
    initial_replicas: int | None = None

    @classmethod
    def from_user(cls, value: Any, deployment: str) -> "AutoscalingConfig":
        if isinstance(value, AutoscalingConfig):
            return value
        if not isinstance(value, dict):
            raise ServeConfigError(f"autoscaling_config of deployment {deployment!r} must be a dict like "
                                   f"{{'min_replicas': 1, 'max_replicas': 4}}, got {value!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        # Ray accepts a few more keys than ember acts on; they are accepted and ignored.
        ignored = {"look_back_period_s", "smoothing_factor", "upscale_smoothing_factor",
                   "downscale_smoothing_factor", "upscaling_factor", "downscaling_factor"}
        for key in value:
            if key not in fields and key not in ignored:
                close = difflib.get_close_matches(key, sorted(fields), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ServeConfigError(f"unknown autoscaling_config key {key!r} for deployment "
                                       f"{deployment!r}.{hint}")
        config = cls(**{k: v for k, v in value.items() if k in fields})
        for name in ("min_replicas", "max_replicas"):
            _check_int(f"autoscaling_config[{name!r}]", getattr(config, name), 0, deployment)
        if config.max_replicas < max(config.min_replicas, 1):
            raise ServeConfigError(f"autoscaling_config of deployment {deployment!r}: max_replicas "
                                   f"({config.max_replicas}) must be >= min_replicas "
                                   f"({config.min_replicas}) and >= 1")
        for name in ("target_ongoing_requests", "upscale_delay_s", "downscale_delay_s", "metrics_interval_s"):
            _check_number(f"autoscaling_config[{name!r}]", getattr(config, name), deployment)
        if config.target_ongoing_requests <= 0:
            raise ServeConfigError(f"autoscaling_config[target_ongoing_requests] of {deployment!r} "
                                   "must be > 0")
        return config


@dataclasses.dataclass(frozen=True)
class DeploymentConfig:
    """Everything about a deployment except its code and constructor arguments."""
    name: str
    num_replicas: int = 1
    max_ongoing_requests: int = 5
    max_queued_requests: int = -1
    ray_actor_options: dict = dataclasses.field(default_factory=dict)
    autoscaling_config: AutoscalingConfig | None = None
    user_config: Any = None
    health_check_period_s: float = 10.0
    health_check_timeout_s: float = 30.0
    graceful_shutdown_timeout_s: float = 20.0
    graceful_shutdown_wait_loop_s: float = 2.0

    def initial_replicas(self) -> int:
        a = self.autoscaling_config
        if a is None:
            return self.num_replicas
        return a.initial_replicas if a.initial_replicas is not None else max(a.min_replicas, 1)

    def resource_shape(self) -> dict[str, float]:
        """What one replica reserves, in ember's resource names."""
        opts = self.ray_actor_options
        cpus = opts.get("num_cpus")
        shape = {"CPU": float(DEFAULT_NUM_CPUS if cpus is None else cpus)}
        if opts.get("num_gpus"):
            shape["GPU"] = float(opts["num_gpus"])
        for key, amount in (opts.get("resources") or {}).items():
            shape[key] = float(amount)
        return {k: v for k, v in shape.items() if v}


_OPTION_NAMES = {"name", "num_replicas", "max_ongoing_requests", "max_queued_requests",
                 "ray_actor_options", "num_cpus", "num_gpus", "resources", "autoscaling_config",
                 "user_config", "health_check_period_s", "health_check_timeout_s",
                 "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s", "route_prefix",
                 "version", "max_concurrent_queries", "logging_config"}
_ACTOR_OPTION_NAMES = {"num_cpus", "num_gpus", "resources", "memory", "runtime_env",
                       "scheduling_strategy", "accelerator_type"}


def _check_int(name: str, value: Any, minimum: int, deployment: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ServeConfigError(f"{name} of deployment {deployment!r} must be an integer >= {minimum}, "
                               f"got {value!r}")


def _check_number(name: str, value: Any, deployment: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
        raise ServeConfigError(f"{name} of deployment {deployment!r} must be a number >= 0, got {value!r}")


def apply_options(base: DeploymentConfig, options: dict[str, Any]) -> DeploymentConfig:
    """``base`` with user ``options`` applied and checked.

    Raises:
        ServeConfigError: an unknown option (with the closest valid one) or a bad value.
    """
    name = options.get("name", base.name)
    for key in options:
        if key not in _OPTION_NAMES:
            close = difflib.get_close_matches(key, sorted(_OPTION_NAMES), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ServeConfigError(f"unknown deployment option {key!r} for deployment {name!r}.{hint}")
    changes: dict[str, Any] = {}
    actor_opts = dict(base.ray_actor_options)
    if options.get("ray_actor_options") is not None:
        rao = options["ray_actor_options"]
        if not isinstance(rao, dict):
            raise ServeConfigError(f"ray_actor_options of deployment {name!r} must be a dict like "
                                   f"{{'num_cpus': 1}}, got {rao!r}")
        for key in rao:
            if key not in _ACTOR_OPTION_NAMES:
                raise ServeConfigError(f"ray_actor_options key {key!r} of deployment {name!r} is not "
                                       f"supported; use one of {sorted(_ACTOR_OPTION_NAMES)}")
        actor_opts.update(rao)
    for key in ("num_cpus", "num_gpus", "resources"):
        if options.get(key) is not None:
            actor_opts[key] = options[key]
    for key in ("num_cpus", "num_gpus"):
        if actor_opts.get(key) is not None:
            _check_number(key, actor_opts[key], name)
    changes["ray_actor_options"] = actor_opts
    if "name" in options:
        if not isinstance(name, str) or not name:
            raise ServeConfigError(f"deployment name must be a non-empty string, got {name!r}")
        changes["name"] = name
    if options.get("max_concurrent_queries") is not None:  # Ray's older name
        options = {**options, "max_ongoing_requests": options["max_concurrent_queries"]}
    num_replicas = options.get("num_replicas")
    if num_replicas == "auto":
        options = {**options, "autoscaling_config": options.get("autoscaling_config") or
                   {"min_replicas": 1, "max_replicas": 100, "target_ongoing_requests": 2}}
    elif num_replicas is not None:
        _check_int("num_replicas", num_replicas, 0, name)
        changes["num_replicas"] = num_replicas
    if options.get("max_ongoing_requests") is not None:
        _check_int("max_ongoing_requests", options["max_ongoing_requests"], 1, name)
        changes["max_ongoing_requests"] = options["max_ongoing_requests"]
    if options.get("max_queued_requests") is not None:
        _check_int("max_queued_requests", options["max_queued_requests"], -1, name)
        changes["max_queued_requests"] = options["max_queued_requests"]
    if options.get("autoscaling_config") is not None:
        changes["autoscaling_config"] = AutoscalingConfig.from_user(options["autoscaling_config"], name)
    if "user_config" in options:
        changes["user_config"] = options["user_config"]
    for key in ("health_check_period_s", "health_check_timeout_s", "graceful_shutdown_timeout_s",
                "graceful_shutdown_wait_loop_s"):
        if options.get(key) is not None:
            _check_number(key, options[key], name)
            changes[key] = float(options[key])
    return dataclasses.replace(base, **changes)

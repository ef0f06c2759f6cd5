"""Validation of ``@remote`` / ``.options()`` arguments, with errors that show the fix."""

from __future__ import annotations

import difflib
import numbers
from typing import Any, Mapping

from .._resources import ACCELERATOR_RESOURCE_PREFIX
from ..exceptions import InvalidOptionError
from ..runtime_env import validate_runtime_env

#: Ray's placement-group options from before scheduling strategies, still in its docs:
#: they are turned into a PlacementGroupSchedulingStrategy (see scheduling.py).
LEGACY_PLACEMENT_OPTIONS = {"placement_group", "placement_group_bundle_index",
                            "placement_group_capture_child_tasks"}
_COMMON = {"num_cpus", "num_gpus", "memory", "resources", "name", "scheduling_strategy",
           "runtime_env", "accelerator_type", "label_selector", "_metadata", "object_store_memory",
           "enable_task_events"} | LEGACY_PLACEMENT_OPTIONS
#: ``debug_replay`` (ember only): keep a failed task's inputs for ember.util.debug.replay.
TASK_OPTIONS = _COMMON | {"num_returns", "max_retries", "retry_exceptions", "max_calls", "debug_replay",
                          "_generator_backpressure_num_objects"}
ACTOR_OPTIONS = _COMMON | {"namespace", "lifetime", "max_concurrency", "max_restarts",
                           "max_task_retries", "get_if_exists", "max_pending_calls",
                           "concurrency_groups"}
METHOD_OPTIONS = {"num_returns", "name", "concurrency_group", "max_task_retries", "retry_exceptions",
                  "enable_task_events", "_generator_backpressure_num_objects"}
#: ``num_returns`` values for generator functions, besides a count.
GENERATOR_RETURNS = ("streaming", "dynamic")

#: Ray options ember knows but does not implement: a value other than None is refused
#: with the way to get the same effect, never silently ignored.
UNSUPPORTED = {
    "label_selector": "ember nodes carry no labels. Use a custom resource (start nodes with "
                      "resources={'zone-a': 1}, ask for resources={'zone-a': 0.01}) or "
                      "NodeAffinitySchedulingStrategy",
    "concurrency_groups": "ember has no concurrency groups. Use max_concurrency= for the whole actor "
                          "(an async actor interleaves up to that many calls)",
    "concurrency_group": "ember has no concurrency groups. Use max_concurrency= on the actor",
    "object_store_memory": "ember does not reserve object store memory per task or actor; the node's "
                           "store is shared (size it with ember.init(object_store_memory=...))",
}


#: How much of a node's ``accelerator_type:<model>`` resource one request takes (Ray's).
ACCELERATOR_TYPE_TAKE = 0.001


def _check_number(name: str, value: Any, minimum: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidOptionError(f"{name} must be a number, got {value!r} ({type(value).__name__}); "
                                 f"e.g. {name}=1")
    if value < minimum:
        raise InvalidOptionError(f"{name} must be >= {minimum:g}, got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidOptionError(f"{name} must be an integer >= {minimum}, got {value!r}")


def validate(options: dict[str, Any], allowed: set[str], what: str,
             unsupported: Mapping[str, str] = UNSUPPORTED) -> dict[str, Any]:
    """Check names and values; returns the options unchanged.

    ``unsupported``: names refused with a value other than None, and why (the Ray options
    ember does not implement, by default).

    Raises:
        InvalidOptionError: an unknown name (with the closest valid one) or a bad value.
    """
    for name, value in options.items():
        if name not in allowed:
            close = difflib.get_close_matches(name, sorted(allowed), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidOptionError(f"unknown option {name!r} for {what}.{hint} Valid options: "
                                     f"{', '.join(sorted(o for o in allowed if not o.startswith('_')))}")
        if value is None:
            continue
        if name in unsupported:
            raise InvalidOptionError(f"{name}={value!r} is not supported (for {what}): "
                                     f"{unsupported[name]}.")
        if name in ("num_cpus", "memory", "object_store_memory"):
            _check_number(name, value)
        elif name == "num_gpus":
            _check_number(name, value)
            if value > 1 and value != int(value):
                raise InvalidOptionError(f"num_gpus above 1 must be a whole number, got {value!r}")
        elif name == "resources":
            if not isinstance(value, dict):
                raise InvalidOptionError(f"resources must be a dict like {{'TPU': 1}}, got {value!r}")
            for key, amount in value.items():
                if key in ("CPU", "GPU"):
                    raise InvalidOptionError(f"use num_cpus=/num_gpus= instead of resources={{{key!r}: ...}}")
                _check_number(f"resources[{key!r}]", amount)
        elif name == "num_returns":
            if value not in GENERATOR_RETURNS:
                if isinstance(value, str) or isinstance(value, bool) or not isinstance(value, int) \
                        or value < 0:
                    raise InvalidOptionError(
                        f"num_returns must be an integer >= 0, 'streaming' or 'dynamic' (for "
                        f"generator functions), got {value!r}")
        elif name == "_generator_backpressure_num_objects":
            if isinstance(value, bool) or not isinstance(value, int) or (value < 1 and value != -1):
                raise InvalidOptionError(
                    f"_generator_backpressure_num_objects must be a positive integer (the values a "
                    f"generator may have waiting before it pauses; 1 behaves like a plain Python "
                    f"generator) or -1 to turn back-pressure off, got {value!r}")
        elif name == "max_pending_calls":
            _check_int(name, value, -1)
            if value == 0:
                raise InvalidOptionError("max_pending_calls must be -1 (no limit) or at least 1, got 0")
        elif name in ("max_retries", "max_restarts", "max_task_retries"):
            _check_int(name, value, -1)
        elif name in ("max_calls",):
            _check_int(name, value, 0)
        elif name == "max_concurrency":
            _check_int(name, value, 1)
        elif name == "retry_exceptions":
            ok = isinstance(value, bool) or (isinstance(value, (list, tuple)) and all(
                isinstance(t, type) and issubclass(t, BaseException) for t in value))
            if not ok:
                raise InvalidOptionError("retry_exceptions must be True/False or a list of exception "
                                         f"classes, got {value!r}")
        elif name == "runtime_env":
            validate_runtime_env(value, what)
        elif name == "lifetime":
            if value not in ("detached", "non_detached"):
                raise InvalidOptionError(f"lifetime must be 'detached' or 'non_detached', got {value!r}")
        elif name in ("name", "namespace"):
            if not isinstance(value, str) or not value:
                raise InvalidOptionError(f"{name} must be a non-empty string, got {value!r}")
        elif name in ("get_if_exists", "enable_task_events", "placement_group_capture_child_tasks",
                      "debug_replay"):
            if not isinstance(value, bool):
                raise InvalidOptionError(f"{name} must be True or False, got {value!r}")
        elif name == "accelerator_type":
            if not isinstance(value, str) or not value:
                raise InvalidOptionError(f"accelerator_type must be a type name such as 'A100' (see "
                                         f"ember.util.accelerators), got {value!r}")
        elif name == "placement_group_bundle_index":
            _check_int(name, value, -1)
    return options


def resource_shape(options: dict[str, Any], default_cpus: float) -> dict[str, float]:
    """The scheduling shape an options dict asks for."""
    shape: dict[str, float] = {}
    cpus = options.get("num_cpus")
    shape["CPU"] = float(default_cpus if cpus is None else cpus)
    if options.get("num_gpus"):
        shape["GPU"] = float(options["num_gpus"])
    if options.get("memory"):
        shape["memory"] = float(options["memory"])
    for key, amount in (options.get("resources") or {}).items():
        shape[key] = float(amount)
    if options.get("accelerator_type"):
        # Ray's rule: nodes offer accelerator_type:<model> (1.0) for their GPUs' model; a
        # request takes a sliver of it, so it runs only where that model is.
        shape[ACCELERATOR_RESOURCE_PREFIX + options["accelerator_type"]] = ACCELERATOR_TYPE_TAKE
    return {k: v for k, v in shape.items() if v}


def check_generator_options(options: dict[str, Any], is_generator: bool | None, what: str) -> None:
    """Options that only make sense for a generator function, checked against the function.

    ``is_generator`` None: not known here (an actor handle's method); the worker checks.

    Raises:
        InvalidOptionError: num_returns="streaming"/"dynamic" on a function that does not
            yield, or back-pressure on a task that does not stream.
    """
    num_returns = options.get("num_returns")
    if num_returns in GENERATOR_RETURNS and is_generator is False:
        raise InvalidOptionError(
            f"num_returns={num_returns!r} needs a generator function (one that uses `yield`), and "
            f"{what} does not yield. Yield the values, or drop num_returns={num_returns!r}")
    backpressure = options.get("_generator_backpressure_num_objects")
    if backpressure is not None and backpressure != -1:
        streaming = num_returns == "streaming" or (num_returns is None and is_generator is not False)
        if not streaming:
            raise InvalidOptionError(
                f"_generator_backpressure_num_objects applies to generators with "
                f"num_returns='streaming' (the default for generator functions), and {what} "
                f"{'does not yield' if is_generator is False else f'has num_returns={num_returns!r}'}; "
                f"drop the option")

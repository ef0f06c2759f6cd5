"""What a trial holds: ``with_resources``, ``PlacementGroupFactory``, ``with_parameters``.

A trial's *request* is the resources its own process holds; a trial that starts other
work (an ember.train Trainer's workers) also has a *budget*: what the sweep must keep free
for it so that trials queue instead of starving each other. Ray's convention, followed
here: the trainer's workers request their own resources, and the trial itself holds
little.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import ember

from .errors import TuneConfigError

__all__ = ["PlacementGroupFactory", "normalize_resources", "with_parameters", "with_resources"]

_ALIASES = {"cpu": "CPU", "gpu": "GPU", "num_cpus": "CPU", "num_gpus": "GPU",
            "memory": "memory"}


def normalize_resources(resources: dict[str, Any], where: str) -> dict[str, float]:
    """``{"cpu": 2, "gpu": 0.5}`` -> ``{"CPU": 2.0, "GPU": 0.5}``, checked."""
    shape: dict[str, float] = {}
    for name, amount in resources.items():
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
            raise TuneConfigError(f"{where}: {name}={amount!r} must be a number >= 0")
        key = _ALIASES.get(name, name)
        if amount:
            shape[key] = shape.get(key, 0.0) + float(amount)
    return shape


class PlacementGroupFactory:
    """Bundles one trial reserves together (Ray's class): bundle 0 runs the trial.

    Example:
        >>> tune.with_resources(train_fn, tune.PlacementGroupFactory([{"CPU": 1}, {"CPU": 2}]))
    """

    def __init__(self, bundles: list[dict[str, float]], strategy: str = "PACK") -> None:
        if not isinstance(bundles, list) or not bundles or \
                not all(isinstance(b, dict) for b in bundles):
            raise TuneConfigError(f"PlacementGroupFactory({bundles!r}): pass a non-empty list "
                                  "of resource dicts, e.g. [{'CPU': 1}, {'CPU': 2}]")
        self.bundles = [normalize_resources(b, "PlacementGroupFactory") for b in bundles]
        self.strategy = strategy

    @property
    def head_bundle(self) -> dict[str, float]:
        return self.bundles[0]

    @property
    def required_resources(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for name, amount in bundle.items():
                total[name] = total.get(name, 0.0) + amount
        return total

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupFactory) and other.bundles == self.bundles \
            and other.strategy == self.strategy

    def __hash__(self) -> int:
        return hash(repr(self))

    def __repr__(self) -> str:
        return f"PlacementGroupFactory({self.bundles!r}, strategy={self.strategy!r})"


def with_resources(trainable: Any, resources: Any) -> Any:
    """Give every trial of ``trainable`` these resources (a dict, a factory, or a function).

    Example:
        >>> tuner = tune.Tuner(tune.with_resources(train_fn, {"cpu": 2}), ...)
    """
    if isinstance(resources, dict):
        resources = normalize_resources(resources, f"with_resources({resources!r})")
    elif not isinstance(resources, PlacementGroupFactory) and not callable(resources):
        raise TuneConfigError(f"with_resources(..., {resources!r}): pass a dict like "
                              "{'cpu': 2}, a PlacementGroupFactory, or a function of the config")
    if inspect.isclass(trainable):
        return type(trainable.__name__, (trainable,), {"_ember_resources": resources})
    if not callable(trainable):
        raise TuneConfigError(f"with_resources({trainable!r}, ...): pass a function or a "
                              "Trainable class")

    @functools.wraps(trainable)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return trainable(*args, **kwargs)

    wrapped._ember_resources = resources  # type: ignore[attr-defined]
    return wrapped


def with_parameters(trainable: Any, **kwargs: Any) -> Any:
    """Pass large objects (datasets, models) to every trial once, through the object store.

    Each value is ``ember.put`` once in the driver; a trial gets it with ``ember.get``, so
    100 trials on one node share one copy instead of pickling it into each config.

    Example:
        >>> tuner = tune.Tuner(tune.with_parameters(train_fn, data=big_array), ...)
        >>> def train_fn(config, data): ...
    """
    refs = {name: ember.put(value) for name, value in kwargs.items()}
    if inspect.isclass(trainable):
        base_setup = trainable.setup

        def setup(self: Any, config: dict[str, Any], **extra: Any) -> Any:
            values = {name: ember.get(ref) for name, ref in refs.items()}
            return base_setup(self, config, **values, **extra)

        return type(trainable.__name__, (trainable,), {"setup": setup, "_ember_refs": refs})
    if not callable(trainable):
        raise TuneConfigError(f"with_parameters({trainable!r}, ...): pass a function or a "
                              "Trainable class")

    @functools.wraps(trainable)
    def wrapped(config: dict[str, Any]) -> Any:
        values = {name: ember.get(ref) for name, ref in refs.items()}
        return trainable(config, **values)

    wrapped._ember_refs = refs  # type: ignore[attr-defined]  # keeps the objects alive
    return wrapped


def resource_request(trainable: Any, config: dict[str, Any]) -> Any:
    """The resources one trial of ``trainable`` with ``config`` asks for (None: default)."""
    request = getattr(trainable, "_ember_resources", None)
    if request is None and inspect.isclass(trainable) and \
            hasattr(trainable, "default_resource_request"):
        request = trainable.default_resource_request(config)
    if callable(request) and not isinstance(request, PlacementGroupFactory):
        request = request(config)
    if isinstance(request, dict):
        request = normalize_resources(request, "the trial's resources")
    return request


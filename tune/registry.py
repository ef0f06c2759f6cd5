"""Names for environments and trainables (Ray's ``ray.tune.registry``).

``register_env("my-env", creator)`` lets ember.rl build an environment by name on every
env runner; ``register_trainable`` lets ``Tuner("name")`` find a trainable. Registrations
live in the driver's process and travel to workers inside the configs that use them (the
creator is pickled by value with cloudpickle), so no cluster-wide registry is needed.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

_ENVS: dict[str, Callable[..., Any]] = {}
_TRAINABLES: dict[str, Any] = {}


def register_env(name: str, env_creator: Callable[..., Any]) -> None:
    """Register ``env_creator(env_config) -> gymnasium.Env`` under ``name``.

    Example:
        >>> register_env("corridor", lambda cfg: Corridor(cfg["length"]))
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_env(name={name!r}): name must be a non-empty string")
    if not callable(env_creator):
        raise TypeError(f"register_env({name!r}, {env_creator!r}): env_creator must be "
                        "callable, taking the env_config dict and returning an env")
    _ENVS[name] = env_creator


def get_env_creator(name: str) -> Callable[..., Any] | None:
    """The creator registered under ``name``, or None."""
    return _ENVS.get(name)


def register_trainable(name: str, trainable: Any) -> None:
    """Register a function or ``Trainable`` class so ``Tuner(name)`` finds it."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_trainable(name={name!r}): name must be a non-empty string")
    if not callable(trainable):
        raise TypeError(f"register_trainable({name!r}, ...): pass a function or a Trainable "
                        "class")
    _TRAINABLES[name] = trainable


def get_trainable_cls(name: str) -> Any:
    """The trainable registered as ``name``, else an ember.rl algorithm of that name, else None."""
    if name in _TRAINABLES:
        return _TRAINABLES[name]
    # Imported on demand: ember.rl builds on ember.tune, so a module-level import would
    # make a circle, and sweeps that never name an algorithm never pay for torch's import.
    try:
        algorithms = importlib.import_module("ember.rl.algorithms")
    except ImportError:
        return None
    lookup = getattr(algorithms, "get_algorithm_class", None)
    return lookup(name) if lookup is not None else None

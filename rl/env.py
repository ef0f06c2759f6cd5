"""Turning ``.environment(env, env_config)`` into a picklable creator of gymnasium envs.

An env is named three ways, as in RLlib: a string registered with
``ember.tune.register_env``, a gymnasium id (``"CartPole-v1"``), or an ``gymnasium.Env``
subclass / callable taking ``env_config``. The creator is resolved once on the driver
(where the registry lives) and shipped to env runners by value.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import gymnasium as gym

from .errors import RLConfigError, UnknownEnvError

EnvSpec = str | type | Callable[..., gym.Env] | None


def _registered_creator(name: str) -> Callable[..., gym.Env] | None:
    """ember.tune's env registry, if ember.tune is importable (it is optional here)."""
    try:
        from ember.tune.registry import get_env_creator
    except ImportError:
        return None
    return get_env_creator(name)


class EnvCreator:
    """Makes one env: ``creator()``. Picklable (the registry lookup is already done)."""

    def __init__(self, make: Callable[[dict], gym.Env], env_config: dict, name: str) -> None:
        self._make = make
        self.env_config = dict(env_config)
        #: Human-readable name of the env for messages (the id or the class name).
        self.name = name

    def __call__(self) -> gym.Env:
        env = self._make(self.env_config)
        if not isinstance(env, gym.Env):
            raise TypeError(f"the creator of env {self.name} returned {type(env).__name__}, not a "
                            "gymnasium.Env; return an env instance from the creator.")
        return env


def _gym_make(env_id: str) -> Callable[[dict], gym.Env]:
    def make(env_config: dict) -> gym.Env:
        return gym.make(env_id, **env_config)
    return make


def _call_with_config(factory: Callable[..., gym.Env]) -> Callable[[dict], gym.Env]:
    def make(env_config: dict) -> gym.Env:
        return factory(env_config)
    return make


def resolve_env(env: EnvSpec, env_config: dict | None) -> EnvCreator:
    """Returns a creator for ``env``; raises UnknownEnvError for an unknown id.

    Example::

        make = resolve_env("CartPole-v1", {})
        env = make()
    """
    config = dict(env_config or {})
    if env is None:
        raise RLConfigError("env", "no environment is set",
                            "Call .environment('CartPole-v1') (or an env class) on the config.")
    if isinstance(env, str):
        creator = _registered_creator(env)
        if creator is not None:
            return EnvCreator(_call_with_config(creator), config, env)
        if env in gym.registry:
            return EnvCreator(_gym_make(env), config, env)
        raise UnknownEnvError(env, difflib.get_close_matches(env, list(gym.registry), n=3))
    if isinstance(env, type) and issubclass(env, gym.Env):
        return EnvCreator(_call_with_config(env), config, env.__name__)
    if callable(env):
        return EnvCreator(_call_with_config(env), config, getattr(env, "__name__", repr(env)))
    raise RLConfigError("env", f"{env!r} is neither an env id, an env class nor a creator",
                        "Pass a gymnasium id string, a gymnasium.Env subclass or a callable.")


def env_spaces(creator: EnvCreator) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one env made by ``creator`` and closed again."""
    env = creator()
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()

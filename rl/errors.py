"""Errors ember.rl raises for bad configs, environments and checkpoints.

Each is also an instance of the builtin a Ray user would catch (``ValueError``), and its
message names the offending value and the call that fixes it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ember.exceptions import EmberError


class RLConfigError(EmberError, ValueError):
    """An algorithm config value is invalid or inconsistent with another one."""

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(field, problem, fix)

    def __str__(self) -> str:
        return f"invalid config `{self.field}`: {self.problem}. {self.fix}"


class UnknownEnvError(EmberError, ValueError):
    """The env id is neither registered with ember.tune nor a gymnasium id."""

    def __init__(self, env_id: str, close_matches: Sequence[str] = ()) -> None:
        self.env_id = env_id
        self.close_matches = list(close_matches)
        super().__init__(env_id, self.close_matches)

    def __str__(self) -> str:
        hint = f" Did you mean {', '.join(repr(m) for m in self.close_matches)}?" if self.close_matches else ""
        return (f"unknown env {self.env_id!r}: it is not registered with "
                f"ember.tune.register_env and not a gymnasium id.{hint} Register a creator with "
                f"`ember.tune.register_env({self.env_id!r}, lambda env_config: MyEnv(env_config))`, "
                "or pass the env class itself to .environment(env=MyEnv).")


class UnsupportedSpaceError(EmberError, ValueError):
    """The algorithm cannot act in (or observe) the env's spaces."""

    def __init__(self, algorithm: str, env_name: str, which: str, space: object, supported: str) -> None:
        self.algorithm = algorithm
        self.env_name = env_name
        self.which = which
        self.space = space
        self.supported = supported
        super().__init__(algorithm, env_name, which, space, supported)

    def __str__(self) -> str:
        return (f"{self.algorithm} does not support the {self.which} space {self.space} of env "
                f"{self.env_name}: {self.algorithm} needs {self.supported}. Pick an algorithm "
                f"that does (PPO: Discrete or Box actions; DQN: Discrete; SAC: Box), or wrap the env.")


class NotACheckpointError(EmberError, ValueError):
    """A path given to ``restore``/``from_checkpoint`` holds no ember.rl checkpoint."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(path, reason)

    def __str__(self) -> str:
        return (f"{self.path!r} is not an ember.rl checkpoint ({self.reason}). Pass the "
                "directory that algo.save() wrote (it holds rl_checkpoint.json).")

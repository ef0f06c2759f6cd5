"""AlgorithmConfig: RLlib's builder of algorithm settings (``PPOConfig().environment(...)``).

Every setting is a plain attribute with RLlib's name; the builder methods group them the
way RLlib does (``environment``, ``env_runners``, ``training``, ``learners``,
``evaluation``, ``debugging``, ``fault_tolerance``, ``reporting``) and reject unknown
names with the closest known one. ``to_dict()`` / ``from_dict()`` round-trip, which is
what lets Tune pass a (resolved) dict back to ``Algorithm.setup``.
"""

from __future__ import annotations

import copy
import difflib
import warnings
from typing import Any, ClassVar, TypeVar

from .errors import RLConfigError

Self = TypeVar("Self", bound="AlgorithmConfig")

ACTIVATIONS = ("tanh", "relu", "linear", "silu", "swish", "elu")

#: Settings shared by every algorithm, per builder method. An algorithm adds its own
#: ``training`` keys in ``_ALGO_TRAINING``.
_COMMON: dict[str, dict[str, Any]] = {
    "environment": {"env": None, "env_config": {}},
    "env_runners": {"num_env_runners": 0, "num_envs_per_env_runner": 1,
                    "rollout_fragment_length": "auto", "num_cpus_per_env_runner": 1,
                    "sample_timeout_s": 60.0, "explore": True},
    "training": {"lr": 5e-5, "gamma": 0.99, "train_batch_size": 4000,
                 "model": {"fcnet_hiddens": [256, 256], "fcnet_activation": "tanh"},
                 "grad_clip": None},
    "learners": {"num_learners": 0, "num_gpus_per_learner": 0, "num_cpus_per_learner": 1},
    "evaluation": {"evaluation_interval": None, "evaluation_duration": 10,
                   "evaluation_duration_unit": "episodes", "evaluation_config": {}},
    "debugging": {"seed": None, "log_level": "WARN"},
    "fault_tolerance": {"restart_failed_env_runners": True, "max_num_env_runner_restarts": 1000},
    "reporting": {"metrics_num_episodes_for_smoothing": 100,
                  "min_sample_timesteps_per_iteration": 0},
}


class AlgorithmConfig:
    """Settings of one algorithm; ``.build_algo()`` turns them into an ``Algorithm``.

    Example::

        from ember.rl.algorithms.ppo import PPOConfig
        algo = (PPOConfig().environment("CartPole-v1")
                .env_runners(num_env_runners=2).training(lr=1e-3).build_algo())
        print(algo.train()["env_runners"]["episode_return_mean"])
    """

    #: The Algorithm subclass ``build_algo`` instantiates (typed loosely: algorithm.py imports
    #: this module, so naming Algorithm here would make an import circle).
    algo_class: ClassVar[type | None] = None
    #: The algorithm's own ``training`` keys and their defaults (override the common ones).
    _ALGO_TRAINING: ClassVar[dict[str, Any]] = {}

    def __init__(self, algo_class: type | None = None) -> None:
        if algo_class is not None:
            self.algo_class = algo_class
        for key, value in self._defaults().items():
            setattr(self, key, copy.deepcopy(value))

    # -- the builder methods ---------------------------------------------------------

    def environment(self: Self, env: Any = None, *, env_config: dict | None = None) -> Self:
        """The env: a gymnasium id, a name given to ember.tune.register_env, or an Env class."""
        if env is not None:
            self.env = env
        if env_config is not None:
            if not isinstance(env_config, dict):
                raise RLConfigError("env_config", f"got {type(env_config).__name__}", "Pass a dict.")
            self.env_config = dict(env_config)
        return self

    def env_runners(self: Self, **kwargs: Any) -> Self:
        """num_env_runners, num_envs_per_env_runner, rollout_fragment_length,
        num_cpus_per_env_runner, sample_timeout_s, explore."""
        return self._set("env_runners", kwargs)

    def training(self: Self, **kwargs: Any) -> Self:
        """lr, gamma, train_batch_size, model={"fcnet_hiddens", "fcnet_activation"}, grad_clip
        and the algorithm's own knobs (see its config class)."""
        if "model" in kwargs and kwargs["model"] is not None:
            kwargs["model"] = {**self.model, **kwargs["model"]}
        if "lambda" in kwargs:
            kwargs["lambda_"] = kwargs.pop("lambda")
        return self._set("training", kwargs)

    def rl_module(self: Self, *, model_config: dict | None = None) -> Self:
        """RLlib's newer spelling of ``training(model=...)``."""
        return self.training(model=model_config) if model_config else self

    def learners(self: Self, **kwargs: Any) -> Self:
        """num_learners (0: learn on the driver), num_gpus_per_learner, num_cpus_per_learner."""
        return self._set("learners", kwargs)

    def evaluation(self: Self, **kwargs: Any) -> Self:
        """evaluation_interval (iterations; None: only on ``evaluate()``),
        evaluation_duration (episodes), evaluation_config (e.g. {"explore": True})."""
        return self._set("evaluation", kwargs)

    def debugging(self: Self, **kwargs: Any) -> Self:
        """seed (makes sampling and learning reproducible), log_level."""
        return self._set("debugging", kwargs)

    def fault_tolerance(self: Self, **kwargs: Any) -> Self:
        """restart_failed_env_runners, max_num_env_runner_restarts."""
        return self._set("fault_tolerance", kwargs)

    def reporting(self: Self, **kwargs: Any) -> Self:
        """metrics_num_episodes_for_smoothing (episodes in the return mean),
        min_sample_timesteps_per_iteration."""
        return self._set("reporting", kwargs)

    def framework(self: Self, framework: str = "torch", **_ignored: Any) -> Self:
        """Only torch is supported."""
        if framework != "torch":
            raise RLConfigError("framework", f"{framework!r} is not supported",
                                "ember.rl learns with torch; call .framework('torch') or leave it out.")
        return self

    def api_stack(self: Self, **_ignored: Any) -> Self:
        """Accepted for RLlib compatibility; ember.rl has one (RLlib's new) API stack."""
        return self

    # -- dict form -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Every setting as a dict (RLlib's ``"lambda"`` spelling), plus ``algo``."""
        out = {key: copy.deepcopy(getattr(self, key)) for key in self._defaults()}
        if "lambda_" in out:
            out["lambda"] = out.pop("lambda_")
        if self.algo_class is not None:
            out["algo"] = self.algo_class.__name__
        return out

    def update_from_dict(self: Self, config: dict[str, Any]) -> Self:
        """Sets every known key of ``config``; warns about unknown ones."""
        known = self._defaults()
        for key, value in config.items():
            key = "lambda_" if key == "lambda" else key
            if key == "algo":
                continue
            if key == "model" and isinstance(value, dict):
                value = {**self.model, **value}
            if key not in known:
                warnings.warn(f"ignoring unknown {type(self).__name__} key {key!r}", stacklevel=2)
                continue
            setattr(self, key, value)
        return self

    @classmethod
    def from_dict(cls: type[Self], config: dict[str, Any]) -> Self:
        """The config that ``to_dict`` came from."""
        return cls().update_from_dict(config)

    def copy(self: Self, copy_frozen: bool | None = None) -> Self:
        """A deep copy (the env class or creator is shared, not copied)."""
        clone = copy.copy(self)
        for key in self._defaults():
            if key != "env":
                setattr(clone, key, copy.deepcopy(getattr(self, key)))
        return clone

    # -- checks and building -------------------------------------------------------------

    def validate(self) -> None:
        """Raises RLConfigError naming the first invalid setting and how to fix it."""
        _positive_int(self, "train_batch_size")
        _int_at_least(self, "num_env_runners", 0)
        _int_at_least(self, "num_envs_per_env_runner", 1)
        _int_at_least(self, "num_learners", 0)
        _int_at_least(self, "metrics_num_episodes_for_smoothing", 1)
        if self.rollout_fragment_length != "auto":
            _positive_int(self, "rollout_fragment_length")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise RLConfigError("lr", f"{self.lr!r} is not a positive number", "Use e.g. training(lr=3e-4).")
        if not (isinstance(self.gamma, (int, float)) and 0.0 <= self.gamma <= 1.0):
            raise RLConfigError("gamma", f"{self.gamma!r} is outside [0, 1]", "Use e.g. training(gamma=0.99).")
        if self.evaluation_duration_unit != "episodes":
            raise RLConfigError("evaluation_duration_unit", f"{self.evaluation_duration_unit!r} is not supported",
                                "ember.rl evaluates whole episodes: use evaluation_duration_unit='episodes'.")
        hiddens = self.model.get("fcnet_hiddens")
        if not (isinstance(hiddens, (list, tuple)) and all(isinstance(h, int) and h > 0 for h in hiddens)):
            raise RLConfigError("model.fcnet_hiddens", f"{hiddens!r} is not a list of positive ints",
                                "Use e.g. training(model={'fcnet_hiddens': [64, 64]}).")
        if self.model.get("fcnet_activation") not in ACTIVATIONS:
            raise RLConfigError("model.fcnet_activation", f"{self.model.get('fcnet_activation')!r} is unknown",
                                f"Use one of {', '.join(ACTIVATIONS)}.")
        if self.num_gpus_per_learner and self.num_learners == 0:
            import torch
            if not torch.cuda.is_available():
                raise RLConfigError("num_gpus_per_learner", "no CUDA device is visible to the driver",
                                    "Set num_gpus_per_learner=0 or run where a GPU is present.")

    def get_rollout_fragment_length(self) -> int:
        """Steps each env of each runner takes per sampling round ("auto": fill the batch)."""
        if self.rollout_fragment_length != "auto":
            return int(self.rollout_fragment_length)
        envs = max(1, self.num_env_runners) * self.num_envs_per_env_runner
        return max(1, -(-self.train_batch_size // envs))

    def build_algo(self, env: Any = None) -> Any:
        """Validates the settings and returns a ready Algorithm (env runners started)."""
        if env is not None:
            self.environment(env)
        if self.algo_class is None:
            raise RLConfigError("algo_class", "this config is not tied to an algorithm",
                                "Use PPOConfig(), DQNConfig() or SACConfig().")
        return self.algo_class(config=self.copy())

    build = build_algo

    # -- helpers -------------------------------------------------------------------

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for section in _COMMON.values():
            merged.update(section)
        merged.update(cls._ALGO_TRAINING)
        return merged

    @classmethod
    def _section_keys(cls, section: str) -> set[str]:
        keys = set(_COMMON[section])
        if section == "training":
            keys |= set(cls._ALGO_TRAINING)
        return keys

    def _set(self: Self, section: str, kwargs: dict[str, Any]) -> Self:
        allowed = self._section_keys(section)
        for key, value in kwargs.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise RLConfigError(key, f"{type(self).__name__}.{section}() has no setting {key!r}",
                                    f"Known settings: {', '.join(sorted(allowed))}.{hint}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={self.env!r}, lr={self.lr}, train_batch_size={self.train_batch_size})"


def _positive_int(config: AlgorithmConfig, name: str) -> None:
    _int_at_least(config, name, 1)


def _int_at_least(config: AlgorithmConfig, name: str, minimum: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise RLConfigError(name, f"{value!r} is not an int >= {minimum}",
                            f"Set {name} to an integer of at least {minimum}.")

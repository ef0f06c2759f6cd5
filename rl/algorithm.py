"""Algorithm: an ember.tune Trainable that samples with env runners and learns with learners.

    algo = PPOConfig().environment("CartPole-v1").build_algo()
    algo.train()   -> Trainable.train -> step():
                        training_step()          sample rounds (EnvRunnerGroup) + learner updates
                        + env_runners/..., learners/..., timers/... (RLlib's result layout)
    algo.save(dir) -> rl_checkpoint.json, config.pkl, learner_state.pt, algo_state.pkl
    Algorithm.from_checkpoint(dir) -> the same algorithm, same weights

Because it is a Trainable, ``Tuner(PPO, param_space=config.to_dict())`` runs it as a
trial: Tune passes the (resolved) dict to ``setup``, which rebuilds the config from it.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, ClassVar

import cloudpickle
import gymnasium as gym
import numpy as np
import torch

from ember.tune import PlacementGroupFactory
from ember.tune.trainable import Trainable

from .config import AlgorithmConfig
from .env import env_spaces, resolve_env
from .env_runner import Postprocess
from .env_runner_group import EnvRunnerGroup
from .errors import NotACheckpointError, UnsupportedSpaceError
from .learner import Learner
from .learner_group import LearnerGroup
from .metrics import EpisodeMetrics, summarize
from .policies import NumpyPolicy

CHECKPOINT_MARKER = "rl_checkpoint.json"
CHECKPOINT_FORMAT = "ember.rl/1"


class Algorithm(Trainable):
    """Base of PPO, DQN and SAC. Subclasses set the class attributes and ``training_step``.

    Example::

        algo = PPOConfig().environment("CartPole-v1").build_algo()
        for _ in range(5):
            print(algo.train()["env_runners"]["episode_return_mean"])
        path = algo.save("/tmp/ppo").path
        algo.stop()
        same = Algorithm.from_checkpoint(path)
    """

    config_class: ClassVar[type[AlgorithmConfig]] = AlgorithmConfig
    learner_class: ClassVar[type[Learner]]
    postprocess: ClassVar[Postprocess] = "gae"
    #: Action spaces the algorithm can act in, and how to say so in an error.
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (gym.spaces.Discrete, gym.spaces.Box)
    action_spaces_text: ClassVar[str] = "a Discrete or Box action space"

    def __init__(self, config: AlgorithmConfig | dict[str, Any] | None = None, env: Any = None,
                 **kwargs: Any) -> None:
        if isinstance(config, AlgorithmConfig):
            self._given_config: AlgorithmConfig | None = config.copy()
            config_dict = config.to_dict()
        else:
            self._given_config = None
            config_dict = dict(config or {})
        if env is not None:
            config_dict["env"] = env
            if self._given_config is not None:
                self._given_config.environment(env)
        self._stopped = True
        super().__init__(config_dict, **kwargs)
        #: The AlgorithmConfig (RLlib's ``algo.config``), rebuilt from the dict Tune passes.
        self.config = self.algo_config  # type: ignore[assignment]

    @classmethod
    def default_resource_request(cls, config: AlgorithmConfig | dict[str, Any]) -> PlacementGroupFactory:
        """What one Tune trial of this algorithm reserves (RLlib's request): a bundle for the
        algorithm itself, one per env runner and one per learner actor, in one group, so a
        sweep never starts more trials than their runners can run beside."""
        if isinstance(config, AlgorithmConfig):
            config = config.to_dict()
        settings = cls.get_default_config().update_from_dict(dict(config))
        bundles: list[dict[str, float]] = [{"CPU": 1.0}]
        if settings.num_learners == 0 and settings.num_gpus_per_learner:
            bundles[0]["GPU"] = float(settings.num_gpus_per_learner)  # it learns itself
        runner = {"CPU": float(settings.num_cpus_per_env_runner)}
        learner = {"CPU": float(settings.num_cpus_per_learner),
                   "GPU": float(settings.num_gpus_per_learner)}
        for shape, count in ((runner, settings.num_env_runners), (learner, settings.num_learners)):
            shape = {name: amount for name, amount in shape.items() if amount > 0}
            if shape:  # a 0-CPU runner needs no bundle: it runs beside the others
                bundles += [shape] * count
        return PlacementGroupFactory(bundles, strategy="PACK")

    @classmethod
    def get_default_config(cls) -> AlgorithmConfig:
        """A fresh config of this algorithm with its defaults."""
        return cls.config_class()

    # -- Trainable -----------------------------------------------------------------

    def setup(self, config: dict[str, Any]) -> None:
        """Validates the config, makes the env once for its spaces, starts runners and learners."""
        algo_config = self._given_config or self.get_default_config().update_from_dict(config)
        self._given_config = None
        algo_config.validate()
        self.validate_config(algo_config)
        self.algo_config = algo_config
        self.env_creator = resolve_env(algo_config.env, algo_config.env_config)
        self.observation_space, self.action_space = env_spaces(self.env_creator)
        self._check_spaces()
        self.rng = np.random.default_rng(algo_config.seed)
        self.learner_group = LearnerGroup(self.learner_class, algo_config, self.observation_space,
                                          self.action_space)
        try:
            self.env_runner_group = EnvRunnerGroup(
                self.env_creator, algo_config.num_env_runners, algo_config.num_envs_per_env_runner,
                algo_config.num_cpus_per_env_runner, algo_config.seed, self.postprocess,
                algo_config.gamma, getattr(algo_config, "lambda_", 1.0),
                restart_failed=algo_config.restart_failed_env_runners,
                max_restarts=algo_config.max_num_env_runner_restarts,
                sample_timeout_s=algo_config.sample_timeout_s)
        except BaseException:
            self.learner_group.stop()  # no learner actors outlive a failed build
            raise
        self._stopped = False
        self.metrics = EpisodeMetrics(algo_config.metrics_num_episodes_for_smoothing)
        self.weights = self.learner_group.runner_weights()
        self.timers: dict[str, float] = {}
        self._module: torch.nn.Module | None = None

    def validate_config(self, config: AlgorithmConfig) -> None:
        """Algorithm-specific checks (raise RLConfigError)."""

    def step(self) -> dict[str, Any]:
        """One training iteration in RLlib's result layout."""
        self.timers = {"env_runner_sampling_timer": 0.0, "learner_update_timer": 0.0, "synch_weights": 0.0}
        learner_stats = self.training_step()
        self._module = None
        result: dict[str, Any] = {
            "env_runners": self.metrics.summary(),
            "learners": {"default_policy": learner_stats},
            "num_env_steps_sampled_lifetime": self.metrics.num_env_steps_sampled_lifetime,
            "fault_tolerance": {"num_healthy_workers": self.env_runner_group.num_healthy,
                                "num_remote_worker_restarts": self.env_runner_group.num_restarts},
            "timers": dict(self.timers),
        }
        interval = self.algo_config.evaluation_interval
        if interval and (self.iteration + 1) % interval == 0:
            result["evaluation"] = self.evaluate()
        return result

    def training_step(self) -> dict[str, float]:
        """Samples and learns once; returns the learner stats. Implemented per algorithm."""
        raise NotImplementedError

    # -- helpers for training_step ---------------------------------------------------

    def sample(self, num_steps: int, **kwargs: Any) -> list[dict[str, np.ndarray]]:
        """One sampling round on every runner with the current weights; records episodes."""
        start = time.perf_counter()
        results = self.env_runner_group.sample(self.weights, num_steps, **kwargs)
        for r in results:
            self.metrics.record(r["episode_returns"], r["episode_lens"], r["num_env_steps"])
        self.timers["env_runner_sampling_timer"] += time.perf_counter() - start
        return [r["batch"] for r in results]

    def learn(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One learner update, then fresh runner weights for the next round."""
        start = time.perf_counter()
        stats = self.learner_group.update(batch, {
            "num_env_steps_sampled_lifetime": self.metrics.num_env_steps_sampled_lifetime})
        middle = time.perf_counter()
        self.weights = self.learner_group.runner_weights()
        self.timers["learner_update_timer"] += middle - start
        self.timers["synch_weights"] += time.perf_counter() - middle
        return stats

    # -- evaluation and acting ------------------------------------------------------------

    def evaluate(self) -> dict[str, Any]:
        """Runs ``evaluation_duration`` episodes (no exploration unless evaluation_config says so)."""
        cfg = self.algo_config
        explore = bool(cfg.evaluation_config.get("explore", False))
        results = self.env_runner_group.evaluate(self.weights, cfg.evaluation_duration, explore)
        returns = [x for r in results for x in r["episode_returns"]][:cfg.evaluation_duration]
        lengths = [x for r in results for x in r["episode_lens"]][:cfg.evaluation_duration]
        stats = summarize(returns, lengths)
        stats["num_episodes"] = len(returns)
        return {"env_runners": stats}

    def get_module(self, module_id: str = "default_policy") -> torch.nn.Module:
        """The trained torch module on the driver (a copy when learners are actors)."""
        if self.learner_group.local is not None:
            return self.learner_group.local.module
        if self._module is None:
            module = self.learner_class.build_module(self.algo_config, self.observation_space,
                                                     self.action_space)
            module.load_state_dict(self.learner_group.get_state()["module"])
            self._module = module
        return self._module

    def compute_single_action(self, observation: Any, explore: bool = False) -> Any:
        """The policy's action for one observation (greedy unless ``explore``)."""
        obs = np.asarray(observation, dtype=np.float32)[None]
        if explore:
            actions, _ = NumpyPolicy(self.weights).act(obs, True, self.rng, self._explore_epsilon())
            action = NumpyPolicy(self.weights).to_env(actions)[0]
        else:
            action = self.get_module().greedy_action(obs)[0]  # type: ignore[operator]
        return int(action) if isinstance(self.action_space, gym.spaces.Discrete) else action

    def _explore_epsilon(self) -> float:
        return 0.0

    # -- checkpoints ------------------------------------------------------------------

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        """Writes config, learner state (weights, optimizers) and counters into the directory."""
        with open(os.path.join(checkpoint_dir, CHECKPOINT_MARKER), "w") as f:
            json.dump({"format": CHECKPOINT_FORMAT, "algorithm": type(self).__name__,
                       "env": self.env_creator.name}, f)
        with open(os.path.join(checkpoint_dir, "config.pkl"), "wb") as f:
            cloudpickle.dump(self.algo_config, f)
        torch.save(self.learner_group.get_state(), os.path.join(checkpoint_dir, "learner_state.pt"))
        with open(os.path.join(checkpoint_dir, "algo_state.pkl"), "wb") as f:
            cloudpickle.dump({"metrics": self.metrics.get_state(), "extra": self.extra_state()}, f)
        return None

    def load_checkpoint(self, checkpoint: dict[str, Any] | str) -> None:
        """Restores what ``save_checkpoint`` wrote; NotACheckpointError for anything else."""
        if not isinstance(checkpoint, str):
            raise NotACheckpointError(repr(type(checkpoint)), "expected a checkpoint directory")
        read_marker(checkpoint)
        state = torch.load(os.path.join(checkpoint, "learner_state.pt"), weights_only=False)
        self.learner_group.set_state(state)
        with open(os.path.join(checkpoint, "algo_state.pkl"), "rb") as f:
            algo_state = cloudpickle.load(f)
        self.metrics = EpisodeMetrics(self.algo_config.metrics_num_episodes_for_smoothing)
        self.metrics.set_state(algo_state["metrics"])
        self.set_extra_state(algo_state["extra"])
        self.weights = self.learner_group.runner_weights()
        self._module = None

    def extra_state(self) -> dict[str, Any]:
        """Algorithm state besides the learner's (e.g. DQN's exploration schedule position)."""
        return {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        """Inverse of ``extra_state``."""

    def restore(self, checkpoint: Any) -> None:
        """Loads a checkpoint written by ``save`` (a Checkpoint or its directory)."""
        read_marker(str(getattr(checkpoint, "path", checkpoint)))
        super().restore(checkpoint)

    @classmethod
    def from_checkpoint(cls, path: Any) -> "Algorithm":
        """Builds the checkpointed algorithm (same config) and restores its state.

        Raises:
            NotACheckpointError: ``path`` holds no ember.rl checkpoint.
        """
        path = str(getattr(path, "path", path))
        read_marker(path)
        with open(os.path.join(path, "config.pkl"), "rb") as f:
            config: AlgorithmConfig = cloudpickle.load(f)
        algo = config.build_algo()
        algo.restore(path)
        return algo

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        """Runners and learners are built for one config, so Tune makes a new trial instead."""
        return False

    def cleanup(self) -> None:
        """Stops env runners and learner actors; safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self.env_runner_group.stop()
        self.learner_group.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(env={getattr(self, 'env_creator', None) and self.env_creator.name})"

    # -- internals ------------------------------------------------------------------------

    def _check_spaces(self) -> None:
        name = type(self).__name__
        if not isinstance(self.action_space, self.action_spaces):
            raise UnsupportedSpaceError(name, self.env_creator.name, "action", self.action_space,
                                        self.action_spaces_text)
        if not isinstance(self.observation_space, gym.spaces.Box):
            raise UnsupportedSpaceError(name, self.env_creator.name, "observation",
                                        self.observation_space, "a Box observation space (flatten others "
                                        "with gymnasium.wrappers.FlattenObservation)")


def read_marker(path: str) -> dict[str, Any]:
    """The checkpoint's marker file; NotACheckpointError when missing or foreign."""
    if not os.path.isdir(path):
        raise NotACheckpointError(path, "no such directory")
    marker = os.path.join(path, CHECKPOINT_MARKER)
    if not os.path.exists(marker):
        raise NotACheckpointError(path, f"it has no {CHECKPOINT_MARKER}")
    try:
        with open(marker) as f:
            meta = json.load(f)
    except (OSError, ValueError) as exc:
        raise NotACheckpointError(path, f"{CHECKPOINT_MARKER} is unreadable: {exc}") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise NotACheckpointError(path, f"format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}")
    return meta

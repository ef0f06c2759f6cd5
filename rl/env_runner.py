"""EnvRunner: steps a vector of gymnasium envs with the latest policy; runs in an ember actor.

    driver                         EnvRunner actor (x num_env_runners)
    ember.put(weights) ──ref──►    sample(weights, num_steps)
                                     T x  policy.act(obs) -> env.step(actions)   (numpy)
                                     postprocess: GAE or transitions
    ember.wait / get  ◄──batch──   {"batch": flat arrays, "episode_returns": [...], ...}

The runner keeps its envs and the unfinished episodes between calls, so an episode may
span iterations; only finished episodes are reported. Envs use gymnasium's same-step
autoreset: the observation after a finished episode is already the next episode's first
one, and the last observation of the finished one comes in ``info["final_obs"]``.
This module imports no torch, so a runner starts fast.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import gymnasium as gym
import numpy as np

from .env import EnvCreator
from .policies import NumpyPolicy
from .postprocessing import compute_gae, transitions

Postprocess = Literal["gae", "transitions"]


class EnvRunner:
    """Collects experience from ``num_envs`` copies of one env.

    Args:
        env_creator: makes one env (see ember.rl.env.resolve_env).
        num_envs: envs stepped together in one ``gymnasium.vector.SyncVectorEnv``.
        seed: base seed; runner ``index`` seeds its envs from ``seed + 1000 * index``.
        index: this runner's position in its group (0 is the driver-local runner).
        postprocess: ``"gae"`` (on-policy) or ``"transitions"`` (replay).
        gamma, lambda_: discount and GAE lambda for ``"gae"``.
    """

    def __init__(self, env_creator: EnvCreator, num_envs: int, seed: int | None, index: int,
                 postprocess: Postprocess, gamma: float = 0.99, lambda_: float = 1.0) -> None:
        self.env = gym.vector.SyncVectorEnv([env_creator] * num_envs,
                                            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        self.num_envs = num_envs
        self.postprocess = postprocess
        self.gamma = gamma
        self.lambda_ = lambda_
        base = None if seed is None else seed + 1000 * index
        self.rng = np.random.default_rng(base)
        self.obs, _ = self.env.reset(seed=None if base is None else [base + i for i in range(num_envs)])
        self.episode_return = np.zeros(num_envs, dtype=np.float64)
        self.episode_len = np.zeros(num_envs, dtype=np.int64)
        self.env_creator = env_creator
        self.eval_env: gym.vector.VectorEnv | None = None
        self.eval_seed = None if base is None else base + 500

    def pid(self) -> int:
        """The runner's process id (tests kill it to check that training carries on)."""
        return os.getpid()

    def ping(self) -> bool:
        """True once the actor is up (its envs are made)."""
        return True

    def sample(self, weights: dict[str, Any], num_steps: int, explore: bool = True,
               epsilon: float = 0.0, random_actions: bool = False) -> dict[str, Any]:
        """``num_steps`` steps of every env with ``weights``; returns a flat batch and episodes.

        ``random_actions`` samples the action space uniformly (SAC's warm-up);
        ``epsilon`` is DQN's exploration rate.
        """
        policy = NumpyPolicy(weights)
        n = self.num_envs
        need_next = self.postprocess == "transitions"
        obs_shape = self.obs.shape[1:]
        traj: dict[str, np.ndarray] = {
            "obs": np.empty((num_steps, n, *obs_shape), dtype=np.float32),
            "rewards": np.empty((num_steps, n), dtype=np.float32),
            "terminateds": np.empty((num_steps, n), dtype=bool),
            "truncateds": np.empty((num_steps, n), dtype=bool),
            "final_obs": np.zeros((num_steps, n, *obs_shape), dtype=np.float32),
        }
        if need_next:
            traj["next_obs"] = np.empty((num_steps, n, *obs_shape), dtype=np.float32)
        actions_list: list[np.ndarray] = []
        extras_list: list[dict[str, np.ndarray]] = []
        returns: list[float] = []
        lengths: list[int] = []
        space = self.env.action_space
        for t in range(num_steps):
            traj["obs"][t] = self.obs
            if random_actions:
                actions, extras = np.asarray(space.sample()), {}
            else:
                actions, extras = policy.act(self.obs, explore, self.rng, epsilon)
            obs, rewards, terminated, truncated, infos = self.env.step(policy.to_env(actions))
            actions_list.append(actions)
            extras_list.append(extras)
            traj["rewards"][t] = rewards
            traj["terminateds"][t] = terminated
            traj["truncateds"][t] = truncated
            if need_next:
                traj["next_obs"][t] = obs
            self.episode_return += rewards
            self.episode_len += 1
            done = terminated | truncated
            if done.any():
                for i in np.flatnonzero(done):
                    final = infos["final_obs"][i]
                    traj["final_obs"][t, i] = final
                    if need_next:
                        traj["next_obs"][t, i] = final
                    returns.append(float(self.episode_return[i]))
                    lengths.append(int(self.episode_len[i]))
                self.episode_return[done] = 0.0
                self.episode_len[done] = 0
            self.obs = obs
        traj["actions"] = np.stack(actions_list)
        for key in extras_list[0] if extras_list and extras_list[0] else ():
            traj[key] = np.stack([e[key] for e in extras_list])
        if self.postprocess == "gae":
            batch = compute_gae(traj, policy, self.obs, self.gamma, self.lambda_)
        else:
            batch = transitions(traj)
        return {"batch": batch, "episode_returns": returns, "episode_lens": lengths,
                "num_env_steps": num_steps * n}

    def evaluate(self, weights: dict[str, Any], num_episodes: int, explore: bool = False) -> dict[str, Any]:
        """Runs ``num_episodes`` whole episodes on separate envs; returns their returns and lengths."""
        if self.eval_env is None:
            self.eval_env = gym.vector.SyncVectorEnv(
                [self.env_creator] * min(self.num_envs, max(1, num_episodes)),
                autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
        env = self.eval_env
        policy = NumpyPolicy(weights)
        seeds = None if self.eval_seed is None else [self.eval_seed + i for i in range(env.num_envs)]
        obs, _ = env.reset(seed=seeds)
        if self.eval_seed is not None:
            self.eval_seed += env.num_envs
        ret = np.zeros(env.num_envs)
        length = np.zeros(env.num_envs, dtype=np.int64)
        returns: list[float] = []
        lengths: list[int] = []
        while len(returns) < num_episodes:
            actions, _ = policy.act(obs, explore, self.rng)
            obs, rewards, terminated, truncated, _ = env.step(policy.to_env(actions))
            ret += rewards
            length += 1
            done = terminated | truncated
            for i in np.flatnonzero(done):
                returns.append(float(ret[i]))
                lengths.append(int(length[i]))
            ret[done] = 0.0
            length[done] = 0
        return {"episode_returns": returns[:num_episodes], "episode_lens": lengths[:num_episodes]}

    def stop(self) -> None:
        """Closes the envs."""
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

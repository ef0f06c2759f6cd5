"""Acting in numpy: what env runners run at every env step.

Runners never import torch: a learner exports its networks as numpy layers
(``Layers``, weights ``[in, out]``) once per iteration, and a forward pass of a small MLP
over a handful of envs in numpy costs microseconds where torch's dispatch costs tens of
them. That per-step cost is most of a CartPole runner's time.

The weights dict (one ``ember.put`` per iteration) has a ``kind``:
``"categorical"`` / ``"gaussian"`` (PPO: ``pi``, ``vf`` and for gaussian ``log_std``),
``"q"`` (DQN: ``q`` or dueling ``trunk``/``value``/``advantage``), and
``"squashed_gaussian"`` (SAC: ``pi`` giving mean and log-std, tanh-squashed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

PolicyKind = Literal["categorical", "gaussian", "q", "squashed_gaussian"]
Layers = list[tuple[np.ndarray, np.ndarray]]

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def _silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0), "linear": lambda x: x,
    "silu": _silu, "swish": _silu, "elu": _elu,
}


def mlp_forward(layers: Layers, x: np.ndarray, activation: str, activate_last: bool = False) -> np.ndarray:
    """``x`` through linear layers with ``activation`` between them (and after the last if asked)."""
    act = _ACTIVATIONS[activation]
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        x = x @ w + b
        if i < last or activate_last:
            x = act(x)
    return x


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class NumpyPolicy:
    """Actions (and what the algorithm needs of them) for a batch of observations."""

    def __init__(self, weights: dict[str, Any]) -> None:
        self.w = weights
        self.kind: PolicyKind = weights["kind"]
        self.activation: str = weights["activation"]

    def act(self, obs: np.ndarray, explore: bool, rng: np.random.Generator,
            epsilon: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(actions as the learner sees them, extras such as ``logp`` and ``vf``)."""
        obs = obs.astype(np.float32, copy=False).reshape(len(obs), -1)
        if self.kind == "categorical":
            return self._categorical(obs, explore, rng)
        if self.kind == "gaussian":
            return self._gaussian(obs, explore, rng)
        if self.kind == "q":
            return self._epsilon_greedy(obs, explore, rng, epsilon), {}
        return self._squashed(obs, explore, rng), {}

    def value(self, obs: np.ndarray) -> np.ndarray:
        """The value head's estimate (PPO only)."""
        obs = obs.astype(np.float32, copy=False).reshape(len(obs), -1)
        return mlp_forward(self.w["vf"], obs, self.activation)[:, 0]

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """Learner-side actions to what the env accepts (gaussian actions are clipped)."""
        if self.kind == "gaussian":
            return np.clip(actions, self.w["action_low"], self.w["action_high"])
        return actions

    def _categorical(self, obs: np.ndarray, explore: bool,
                     rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        logp_all = _log_softmax(mlp_forward(self.w["pi"], obs, self.activation))
        if explore:  # Gumbel-max: one uniform draw per action, no cumulative sums
            gumbel = -np.log(-np.log(rng.random(logp_all.shape)))
            actions = np.argmax(logp_all + gumbel, axis=-1)
        else:
            actions = np.argmax(logp_all, axis=-1)
        logp = np.take_along_axis(logp_all, actions[:, None], axis=-1)[:, 0]
        return actions, {"logp": logp.astype(np.float32), "vf": self.value(obs).astype(np.float32)}

    def _gaussian(self, obs: np.ndarray, explore: bool,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        mean = mlp_forward(self.w["pi"], obs, self.activation)
        log_std = np.broadcast_to(self.w["log_std"], mean.shape)
        actions = mean + np.exp(log_std) * rng.standard_normal(mean.shape) if explore else mean
        logp = (-0.5 * ((actions - mean) / np.exp(log_std)) ** 2 - log_std
                - 0.5 * np.log(2 * np.pi)).sum(axis=-1)
        return actions.astype(np.float32), {"logp": logp.astype(np.float32),
                                            "vf": self.value(obs).astype(np.float32)}

    def _epsilon_greedy(self, obs: np.ndarray, explore: bool, rng: np.random.Generator,
                        epsilon: float) -> np.ndarray:
        greedy = np.argmax(q_values(self.w, obs), axis=-1)
        if not explore or epsilon <= 0.0:
            return greedy
        random_actions = rng.integers(0, self.w["num_actions"], size=len(obs))
        return np.where(rng.random(len(obs)) < epsilon, random_actions, greedy)

    def _squashed(self, obs: np.ndarray, explore: bool, rng: np.random.Generator) -> np.ndarray:
        out = mlp_forward(self.w["pi"], obs, self.activation)
        mean, log_std = np.split(out, 2, axis=-1)
        u = mean + np.exp(np.clip(log_std, LOG_STD_MIN, LOG_STD_MAX)) * rng.standard_normal(mean.shape) \
            if explore else mean
        low, high = self.w["action_low"], self.w["action_high"]
        return (low + (np.tanh(u) + 1.0) * 0.5 * (high - low)).astype(np.float32)


def q_values(weights: dict[str, Any], obs: np.ndarray) -> np.ndarray:
    """Q(obs, ·) of a plain or dueling Q network."""
    act = weights["activation"]
    if "trunk" not in weights:
        return mlp_forward(weights["q"], obs, act)
    features = mlp_forward(weights["trunk"], obs, act, activate_last=True)
    value = mlp_forward(weights["value"], features, act)
    advantage = mlp_forward(weights["advantage"], features, act)
    return value + advantage - advantage.mean(axis=-1, keepdims=True)

"""The torch networks the learners train, and their export to runner (numpy) weights.

Each module is what ``algo.get_module()`` returns: ``forward_inference({"obs": x})``
gives ``{"action_dist_inputs": ...}`` as in RLlib (logits for discrete actions, mean and
log-std for continuous ones, Q-values for DQN).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from .policies import LOG_STD_MAX, LOG_STD_MIN

_TORCH_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh, "relu": nn.ReLU, "linear": nn.Identity, "silu": nn.SiLU, "swish": nn.SiLU,
    "elu": nn.ELU,
}


def mlp(in_dim: int, hiddens: list[int], activation: str, out_dim: int | None,
        out_gain: float = 1.0) -> nn.Sequential:
    """Linear layers with ``activation`` between them; ``out_dim=None`` ends on a hidden layer."""
    layers: list[nn.Module] = []
    size = in_dim
    for h in hiddens:
        layers += [nn.Linear(size, h), _TORCH_ACTIVATIONS[activation]()]
        size = h
    if out_dim is not None:
        last = nn.Linear(size, out_dim)
        nn.init.orthogonal_(last.weight, gain=out_gain)
        nn.init.zeros_(last.bias)
        layers.append(last)
    return nn.Sequential(*layers)


def export_layers(seq: nn.Module) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Linear layers of ``seq`` as numpy ``(W[in, out], b)`` pairs, in order."""
    return [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
            for m in seq.modules() if isinstance(m, nn.Linear)]


def obs_tensor(module: nn.Module, obs: Any) -> torch.Tensor:
    """``obs`` as a float tensor on ``module``'s device (a learner may live on a GPU)."""
    device = next(module.parameters()).device
    if isinstance(obs, torch.Tensor):
        return obs.to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device)


def flat_dim(space: gym.Space) -> int:
    """Size of one flattened observation or action."""
    return int(np.prod(space.shape)) if space.shape else 1


class PPOModule(nn.Module):
    """Policy and value networks (separate trunks) for Discrete or Box actions."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, model: dict[str, Any]) -> None:
        super().__init__()
        hiddens, act = list(model["fcnet_hiddens"]), model["fcnet_activation"]
        obs_dim = flat_dim(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.activation = act
        out = int(action_space.n) if self.discrete else flat_dim(action_space)
        self.pi = mlp(obs_dim, hiddens, act, out, out_gain=0.01)
        self.vf = mlp(obs_dim, hiddens, act, 1, out_gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(out))
            self.action_low = np.asarray(action_space.low, dtype=np.float32)
            self.action_high = np.asarray(action_space.high, dtype=np.float32)

    def dist(self, obs: torch.Tensor) -> torch.distributions.Distribution:
        """The action distribution at ``obs``."""
        out = self.pi(obs)
        if self.discrete:
            return torch.distributions.Categorical(logits=out)
        return torch.distributions.Independent(torch.distributions.Normal(out, self.log_std.exp()), 1)

    def logp_entropy(self, obs: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log pi(actions | obs) and the mean entropy, without torch.distributions' overhead."""
        out = self.pi(obs)
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            logp = logp_all.gather(1, actions.long()[:, None])[:, 0]
            return logp, -(logp_all.exp() * logp_all).sum(-1).mean()
        std = self.log_std.exp()
        logp = (-0.5 * ((actions - out) / std).pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum()
        return logp, entropy

    def forward_inference(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"action_dist_inputs": logits | concat(mean, log_std)}`` for ``batch["obs"]``."""
        with torch.no_grad():
            out = self.pi(obs_tensor(self, batch["obs"]))
            if not self.discrete:
                out = torch.cat([out, self.log_std.expand_as(out)], dim=-1)
        return {"action_dist_inputs": out}

    def greedy_action(self, obs: np.ndarray) -> np.ndarray:
        """The most likely action (discrete) or the mean (continuous, clipped to the space)."""
        out = self.forward_inference({"obs": obs})["action_dist_inputs"].cpu().numpy()
        if self.discrete:
            return out.argmax(-1)
        mean = out[..., : out.shape[-1] // 2]
        return np.clip(mean, self.action_low, self.action_high)

    def runner_weights(self) -> dict[str, Any]:
        """Numpy weights for ember.rl.policies (kind "categorical" or "gaussian")."""
        w: dict[str, Any] = {"kind": "categorical" if self.discrete else "gaussian",
                             "activation": self.activation, "pi": export_layers(self.pi),
                             "vf": export_layers(self.vf)}
        if not self.discrete:
            w.update(log_std=self.log_std.detach().cpu().numpy().copy(), action_low=self.action_low,
                     action_high=self.action_high)
        return w


class QNetwork(nn.Module):
    """Q(obs, ·) for Discrete actions, plain or dueling (value + centred advantage heads)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, model: dict[str, Any],
                 dueling: bool) -> None:
        super().__init__()
        hiddens, act = list(model["fcnet_hiddens"]), model["fcnet_activation"]
        obs_dim, n = flat_dim(obs_space), int(action_space.n)
        self.activation, self.dueling, self.num_actions = act, dueling, n
        if dueling:
            self.trunk = mlp(obs_dim, hiddens, act, None)
            width = hiddens[-1] if hiddens else obs_dim
            self.value = mlp(width, [], act, 1)
            self.advantage = mlp(width, [], act, n)
        else:
            self.q = mlp(obs_dim, hiddens, act, n)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.dueling:
            return self.q(obs)
        features = self.trunk(obs)
        advantage = self.advantage(features)
        return self.value(features) + advantage - advantage.mean(-1, keepdim=True)

    def forward_inference(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"action_dist_inputs": Q-values}`` (greedy action = argmax)."""
        with torch.no_grad():
            return {"action_dist_inputs": self(obs_tensor(self, batch["obs"]))}

    def greedy_action(self, obs: np.ndarray) -> np.ndarray:
        return self.forward_inference({"obs": obs})["action_dist_inputs"].cpu().numpy().argmax(-1)

    def runner_weights(self) -> dict[str, Any]:
        """Numpy weights for ember.rl.policies (kind "q")."""
        w: dict[str, Any] = {"kind": "q", "activation": self.activation, "num_actions": self.num_actions}
        if self.dueling:
            w.update(trunk=export_layers(self.trunk), value=export_layers(self.value),
                     advantage=export_layers(self.advantage))
        else:
            w["q"] = export_layers(self.q)
        return w


class SACModule(nn.Module):
    """Squashed-Gaussian actor and twin Q critics (targets live in the learner)."""

    def __init__(self, obs_space: gym.Space, action_space: gym.Space, model: dict[str, Any],
                 twin_q: bool = True) -> None:
        super().__init__()
        hiddens, act = list(model["fcnet_hiddens"]), model["fcnet_activation"]
        obs_dim, act_dim = flat_dim(obs_space), flat_dim(action_space)
        self.activation = act
        self.pi = mlp(obs_dim, hiddens, act, 2 * act_dim)
        self.q1 = mlp(obs_dim + act_dim, hiddens, act, 1)
        self.q2 = mlp(obs_dim + act_dim, hiddens, act, 1) if twin_q else None
        low = np.asarray(action_space.low, dtype=np.float32)
        high = np.asarray(action_space.high, dtype=np.float32)
        self.action_low, self.action_high = low, high
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0))
        self.register_buffer("bias", torch.as_tensor((high + low) / 2.0))

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized action in the env's range and its log-probability."""
        mean, log_std = self.pi(obs).chunk(2, dim=-1)
        std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        u = mean + std * torch.randn_like(mean)
        y = torch.tanh(u)
        logp = torch.distributions.Normal(mean, std).log_prob(u) - torch.log(self.scale * (1 - y.pow(2)) + 1e-6)
        return y * self.scale + self.bias, logp.sum(-1)

    def q_values(self, obs: torch.Tensor, actions: torch.Tensor) -> list[torch.Tensor]:
        """[Q1(s, a), Q2(s, a)] (one entry without twin Q)."""
        x = torch.cat([obs, actions], dim=-1)
        return [q(x)[:, 0] for q in (self.q1, self.q2) if q is not None]

    def forward_inference(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``{"action_dist_inputs": concat(mean, log_std)}`` before tanh squashing."""
        with torch.no_grad():
            return {"action_dist_inputs": self.pi(obs_tensor(self, batch["obs"]))}

    def greedy_action(self, obs: np.ndarray) -> np.ndarray:
        out = self.forward_inference({"obs": obs})["action_dist_inputs"]
        mean = out.chunk(2, dim=-1)[0]
        return (torch.tanh(mean) * self.scale + self.bias).cpu().numpy()

    def runner_weights(self) -> dict[str, Any]:
        """Numpy weights for ember.rl.policies (kind "squashed_gaussian")."""
        return {"kind": "squashed_gaussian", "activation": self.activation, "pi": export_layers(self.pi),
                "action_low": self.action_low, "action_high": self.action_high}

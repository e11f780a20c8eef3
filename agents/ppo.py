"""PPO (stable-baselines3) as a fusion policy: continuous weights per request, with their density.

Saved as a torch state dict (``ppo_policy.pt``, loaded with ``torch.load(..., weights_only=True)``) plus
the spaces and network shape as JSON (``ppo.json``): never SB3's cloudpickled zip.
"""

from __future__ import annotations

import json
import math
import numbers
import pickle  # only for the error that torch.load(weights_only=True) raises
from pathlib import Path

import numpy as np
import torch

from fusionsim.agents.base import Policy, check_batch, check_seed
from fusionsim.common.io import atomic_target, atomic_write_json

POLICY_FILE = "ppo_policy.pt"
"""The actor-critic's state dict."""
SPEC_FILE = "ppo.json"
"""What rebuilds the actor-critic: observation bounds, action size, network architecture."""
OPTIMIZER_FILE = "ppo_optimizer.pt"
"""The optimizer's state dict (in training checkpoints only)."""


class PPOPolicy(Policy):
    """Wraps a stable-baselines3 ``ActorCriticPolicy`` (Gaussian actions in [-1, 1]^A) in the policy interface.

    ``act`` samples actions from the model's diagonal Gaussian N(mu(x), (std_scale * sigma)^2) and clips them
    to the box [-1, 1]^A (the ``weights`` action mode: softmax onto the simplex), or with ``deterministic``
    returns the clipped mean. The propensity is :meth:`action_density`: the density of the *clipped* action's
    law, whose coordinates each have a density inside (-1, 1) and an atom at each bound (the Gaussian's mass
    beyond it). Two such policies' densities at a logged action are an exact importance weight for it. The
    draws come from the policy's own Generator (``seed``), so a seeded policy gives the same actions again.
    ``update`` does nothing: PPO learns in its own rollout loop (``fusionsim train --agent ppo``).

    Args:
        policy: the SB3 actor-critic. deterministic: act with the mean. std_scale: > 0, the factor on the
            Gaussian's standard deviation (above 1, a wider logger of the same policy, whose logs support
            the policy's own actions). seed: the Generator of the draws (None: fresh entropy).
    """

    name = "ppo"
    action_mode = "weights"

    def __init__(self, policy, deterministic: bool = False, std_scale: float = 1.0, seed: int | None = None) -> None:
        if isinstance(std_scale, bool) or not isinstance(std_scale, numbers.Real) or not 0 < std_scale < math.inf:
            raise ValueError(f"std_scale must be a positive finite number; got {std_scale!r}")
        self.policy, self.deterministic, self.std_scale = policy, deterministic, float(std_scale)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)

    def sampling(self, std_scale: float = 1.0, seed: int | None = None) -> "PPOPolicy":
        """The same network acting stochastically, its standard deviation times ``std_scale``, drawing from a
        Generator seeded with ``seed``."""
        return PPOPolicy(self.policy, deterministic=False, std_scale=std_scale, seed=seed)

    def gaussian(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The mean (B, A) and standard deviation (B, A), float64, of the Gaussian the policy draws from at
        ``contexts`` (B, D) (the model's, its standard deviation times ``std_scale``)."""
        check_batch(contexts)
        with torch.no_grad():
            obs, _ = self.policy.obs_to_tensor(np.asarray(contexts, dtype=np.float32))
            normal = self.policy.get_distribution(obs).distribution
            mean, std = normal.mean.cpu().numpy(), normal.stddev.cpu().numpy()
        return mean.astype(np.float64), np.broadcast_to(std, mean.shape).astype(np.float64) * self.std_scale

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions (B, A) float32 in [-1, 1] (sampled and clipped, or the clipped mean with ``deterministic``)
        and their density (B,) float64 (:meth:`action_density`)."""
        mean, std = self.gaussian(contexts)
        raw = mean if self.deterministic else mean + std * self.rng.standard_normal(mean.shape)
        actions = np.clip(raw, -1.0, 1.0).astype(np.float32)
        return actions, clipped_gaussian_density(actions, mean, std)

    def action_density(self, contexts: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(B,) float64: the density of the policy's clipped Gaussian at ``actions`` (B, A) in [-1, 1] given
        ``contexts`` (B, D) (:func:`clipped_gaussian_density`); e.g. the evaluation policy's density of each
        logged action, for importance weights."""
        mean, std = self.gaussian(contexts)
        actions = np.asarray(actions, dtype=np.float64)
        if actions.shape != mean.shape:
            raise ValueError(f"actions must have shape {mean.shape}, one per context; got {actions.shape}")
        if not (np.abs(actions) <= 1.0).all():  # also rejects nan
            raise ValueError(f"actions must lie in [-1, 1] (the clipped action box); got "
                             f"{actions[~(np.abs(actions) <= 1.0)][0]}")
        return clipped_gaussian_density(actions, mean, std)

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]

    def config(self) -> dict:
        space = self.policy.observation_space
        return {"observation_low": space.low.tolist(), "observation_high": space.high.tolist(),
                "n_actions": int(self.policy.action_space.shape[0]), "net_arch": _net_arch(self.policy),
                "std_scale": self.std_scale, "seed": self.seed}

    def save(self, folder: str | Path) -> None:
        """Write ``ppo_policy.pt`` (state dict) and ``ppo.json`` (spec) into ``folder``, each atomically."""
        folder = Path(folder)
        with atomic_target(folder / POLICY_FILE) as tmp:
            torch.save(self.policy.state_dict(), tmp)
        atomic_write_json(folder / SPEC_FILE, {"name": self.name, "config": self.config()})

    @classmethod
    def load(cls, folder: str | Path, deterministic: bool = False) -> "PPOPolicy":
        """The policy saved by :meth:`save` in ``folder``; a ValueError naming the file when it is missing,
        corrupt or does not fit its spec."""
        import gymnasium as gym
        from stable_baselines3.common.policies import ActorCriticPolicy

        folder = Path(folder)
        spec_path, weights_path = folder / SPEC_FILE, folder / POLICY_FILE
        if not spec_path.is_file() or not weights_path.is_file():
            raise ValueError(f"{folder} holds no PPO policy ({SPEC_FILE} and {POLICY_FILE}); train one with "
                             "fusionsim train --agent ppo")
        try:
            spec = json.loads(spec_path.read_text())
            config = spec["config"]
            low = np.asarray(config["observation_low"], dtype=np.float32)
            high = np.asarray(config["observation_high"], dtype=np.float32)
            n_actions, net_arch = int(config["n_actions"]), config["net_arch"]
            if spec.get("name") != cls.name or low.shape != high.shape or low.ndim != 1 or n_actions < 1:
                raise ValueError("not a PPO spec")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            raise ValueError(f"{spec_path} is corrupt or not a PPO policy spec") from None
        policy = ActorCriticPolicy(gym.spaces.Box(low, high, dtype=np.float32),
                                   gym.spaces.Box(-1.0, 1.0, (n_actions,), dtype=np.float32),
                                   lr_schedule=lambda _: 0.0, net_arch=net_arch)
        try:
            policy.load_state_dict(torch.load(weights_path, weights_only=True, map_location="cpu"))
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
            raise ValueError(f"{weights_path} is corrupt or does not fit {SPEC_FILE} "
                             f"({type(exc).__name__})") from None
        policy.set_training_mode(False)
        return cls(policy, deterministic)


def clipped_gaussian_density(actions: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(B,) float64: the density of clip(N(mean, diag(std^2)), -1, 1) at ``actions`` (B, A) in [-1, 1].

    Per coordinate, with Phi the standard normal CDF: phi((a - mean) / std) / std inside (-1, 1) (a density
    with respect to length), Phi((mean - 1) / std) at a = 1 and Phi((-1 - mean) / std) at a = -1 (the mass
    clipped onto the bound, with respect to a unit atom there); the product over the A coordinates. ``mean``,
    ``std`` (B, A), std > 0. Computed in log space (``torch.special.log_ndtr`` for the tails).
    """
    a = torch.as_tensor(np.asarray(actions, dtype=np.float64))
    mu = torch.as_tensor(np.asarray(mean, dtype=np.float64))
    sigma = torch.as_tensor(np.asarray(std, dtype=np.float64))
    z = (a - mu) / sigma
    inside = -0.5 * z * z - torch.log(sigma) - 0.5 * math.log(2 * math.pi)
    upper = torch.special.log_ndtr((mu - 1.0) / sigma)
    lower = torch.special.log_ndtr((-1.0 - mu) / sigma)
    log_density = torch.where(a >= 1.0, upper, torch.where(a <= -1.0, lower, inside))
    return torch.exp(log_density.sum(dim=-1)).numpy()


def _net_arch(policy) -> dict:
    """The actor and critic hidden sizes of an SB3 MLP policy."""
    def sizes(net) -> list[int]:
        return [m.out_features for m in net if isinstance(m, torch.nn.Linear)]

    return {"pi": sizes(policy.mlp_extractor.policy_net), "vf": sizes(policy.mlp_extractor.value_net)}

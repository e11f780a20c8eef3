"""PPO (stable-baselines3) as a fusion policy: continuous weights per request, with their density.

Saved as a torch state dict (``ppo_policy.pt``, loaded with ``torch.load(..., weights_only=True)``) plus
the spaces and network shape as JSON (``ppo.json``): never SB3's cloudpickled zip.
"""

from __future__ import annotations

import json
import pickle  # only for the error that torch.load(weights_only=True) raises
from pathlib import Path

import numpy as np
import torch

from fusionsim.agents.base import Policy, check_batch
from fusionsim.common.io import atomic_target, atomic_write_json

POLICY_FILE = "ppo_policy.pt"
"""The actor-critic's state dict."""
SPEC_FILE = "ppo.json"
"""What rebuilds the actor-critic: observation bounds, action size, network architecture."""
OPTIMIZER_FILE = "ppo_optimizer.pt"
"""The optimizer's state dict (in training checkpoints only)."""


class PPOPolicy(Policy):
    """Wraps a stable-baselines3 ``ActorCriticPolicy`` (Gaussian actions in [-1, 1]^A) in the policy interface.

    ``act`` samples actions in [-1, 1]^A (the ``weights`` action mode: softmax onto the simplex) from the
    model's Gaussian; the propensity is the Gaussian density of the sampled action before clipping to the
    box (a density, not a probability; for kernel-smoothed off-policy estimators). ``update`` does nothing:
    PPO learns in its own rollout loop (``fusionsim train --agent ppo``).
    """

    name = "ppo"
    action_mode = "weights"

    def __init__(self, policy, deterministic: bool = False) -> None:
        self.policy, self.deterministic = policy, deterministic

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sampled actions (B, A) float32 (or the Gaussian's mean with ``deterministic``) and their
        density (B,) float64."""
        check_batch(contexts)
        with torch.no_grad():
            obs, _ = self.policy.obs_to_tensor(np.asarray(contexts, dtype=np.float32))
            distribution = self.policy.get_distribution(obs)
            actions = distribution.get_actions(deterministic=self.deterministic)
            density = torch.exp(distribution.log_prob(actions))
        return np.clip(actions.cpu().numpy(), -1.0, 1.0), density.cpu().numpy().astype(np.float64)

    def config(self) -> dict:
        space = self.policy.observation_space
        return {"observation_low": space.low.tolist(), "observation_high": space.high.tolist(),
                "n_actions": int(self.policy.action_space.shape[0]), "net_arch": _net_arch(self.policy)}

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


def _net_arch(policy) -> dict:
    """The actor and critic hidden sizes of an SB3 MLP policy."""
    def sizes(net) -> list[int]:
        return [m.out_features for m in net if isinstance(m, torch.nn.Linear)]

    return {"pi": sizes(policy.mlp_extractor.policy_net), "vf": sizes(policy.mlp_extractor.value_net)}

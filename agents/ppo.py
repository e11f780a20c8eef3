"""PPO (stable-baselines3) as a fusion policy: continuous weights per request, with their density."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fusionsim.agents.base import Policy, check_batch


class PPOPolicy(Policy):
    """Wraps a trained stable-baselines3 PPO model in the policy interface.

    ``act`` samples actions in [-1, 1]^A (the ``weights`` action mode: softmax onto the simplex) from the
    model's Gaussian; the propensity is the Gaussian density of the sampled action before clipping to the
    box (a density, not a probability; for kernel-smoothed off-policy estimators). ``update`` does nothing:
    PPO learns in its own rollout loop (``fusionsim train --agent ppo``).
    """

    name = "ppo"
    action_mode = "weights"

    def __init__(self, model, deterministic: bool = False) -> None:
        self.model, self.deterministic = model, deterministic

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sampled actions (or the Gaussian's mean with ``deterministic``) and their density."""
        check_batch(contexts)
        policy = self.model.policy
        with torch.no_grad():
            obs, _ = policy.obs_to_tensor(np.asarray(contexts, dtype=np.float32))
            distribution = policy.get_distribution(obs)
            actions = distribution.get_actions(deterministic=self.deterministic)
            density = torch.exp(distribution.log_prob(actions))
        return np.clip(actions.cpu().numpy(), -1.0, 1.0), density.cpu().numpy().astype(np.float64)

    def config(self) -> dict:
        return {}

    def save(self, path: str | Path) -> None:
        self.model.save(str(path))

    @classmethod
    def load(cls, path: str | Path, deterministic: bool = False) -> "PPOPolicy":
        from stable_baselines3 import PPO

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {path} does not exist")
        try:
            return cls(PPO.load(str(path), device="cpu"), deterministic)
        except Exception as exc:  # SB3 raises many kinds for a damaged zip
            raise ValueError(f"checkpoint {path} is corrupt or not a PPO model ({type(exc).__name__})") from None

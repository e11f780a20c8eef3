"""The policy interface every fusion policy implements (batched: first axis = requests)."""

from __future__ import annotations

import abc
import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from fusionsim.recommenders.io import atomic_write_text


class Policy(abc.ABC):
    """A fusion policy: maps contexts (B, D) to actions and the probability it chose them.

    ``action_mode`` says how the environment reads the actions (see ``envs.fusion.ActionMapper``):
    ``"arm"``/``"grid"`` -> (B,) int64 indices, ``"weights"``/``"simplex"`` -> (B, A) float32 vectors.
    """

    name: ClassVar[str]
    action_mode: str

    @abc.abstractmethod
    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions for ``contexts`` (B, D) float32 and their propensities (B,) float64: the probability
        (probability density for continuous actions) with which this policy chose each action."""

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        """P(action | context) for every action: (B, n_actions), rows summing to 1, for off-policy
        evaluation. Policies whose probabilities have no closed form (Thompson sampling, PPO) raise."""
        raise NotImplementedError(f"policy '{self.name}' has no closed-form action distribution; evaluate an "
                                  "epsilon-greedy or deterministic policy off-policy")

    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from a batch of (context, action, reward); static policies ignore it."""
        check_batch(contexts, rewards=rewards)

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable constructor arguments."""

    def save(self, path: str | Path) -> None:
        """Write ``{"name", "config"}`` as JSON, atomically."""
        atomic_write_text(Path(path), json.dumps({"name": self.name, "config": self.config()}, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        payload = json.loads(Path(path).read_text())
        if payload.get("name") != cls.name:
            raise ValueError(f"{path} holds a '{payload.get('name')}' policy, not '{cls.name}'")
        return cls(**payload["config"])


def check_batch(contexts: np.ndarray, width: int | None = None, rewards: np.ndarray | None = None) -> None:
    """Raise ValueError naming the argument when ``contexts`` is not (B, width) finite or ``rewards``
    is not (B,) finite."""
    contexts = np.asarray(contexts)
    if contexts.ndim != 2:
        raise ValueError(f"contexts must be a 2-D array (requests, features); got shape {contexts.shape}")
    if width is not None and contexts.shape[1] != width:
        raise ValueError(f"contexts must have {width} features per row; got {contexts.shape[1]}")
    if rewards is not None:
        rewards = np.asarray(rewards)
        if rewards.shape != (len(contexts),):
            raise ValueError(f"rewards must have shape ({len(contexts)},); got {rewards.shape}")
        if not np.isfinite(rewards.sum()) and not np.isfinite(rewards).all():  # the sum is the fast check
            bad = int(np.flatnonzero(~np.isfinite(rewards))[0])
            raise ValueError(f"rewards must be finite; got {rewards[bad]} at row {bad}")


def epsilon_greedy(rng: np.random.Generator, greedy: np.ndarray, n_actions: int,
                   epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Each round takes its ``greedy`` (B,) action, or with probability ``epsilon`` a uniform one; returns the
    actions (B,) and their exact propensities: 1 - epsilon + epsilon / K for the greedy action, epsilon / K
    for any other. With epsilon 0 no random numbers are drawn."""
    b = len(greedy)
    if epsilon == 0.0:
        return greedy, np.ones(b)
    explore = rng.random(b) < epsilon
    actions = np.where(explore, rng.integers(0, n_actions, b), greedy)
    return actions, np.where(actions == greedy, 1 - epsilon + epsilon / n_actions, epsilon / n_actions)


def epsilon_greedy_distribution(greedy: np.ndarray, n_actions: int, epsilon: float) -> np.ndarray:
    """The action probabilities (B, K) of :func:`epsilon_greedy` for ``greedy`` (B,)."""
    out = np.full((len(greedy), n_actions), epsilon / n_actions)
    out[np.arange(len(greedy)), greedy] += 1.0 - epsilon
    return out

"""Context-free bandits over discrete actions (arms or weight-grid points): epsilon-greedy, UCB1 and
Gaussian Thompson sampling. Batched: a batch of B rounds acts with the same statistics, then updates."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionsim.agents.base import Policy, check_batch, epsilon_greedy, epsilon_greedy_distribution
from fusionsim.agents.checkpoint import load_arrays, save_arrays


class _MeanBandit(Policy):
    """Per-action counts and reward means."""

    def __init__(self, n_actions: int, seed: int | None = None, action_mode: str = "arm") -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1; got {n_actions}")
        if action_mode not in ("arm", "grid"):
            raise ValueError(f"action_mode = {action_mode!r} is not allowed: must be 'arm' or 'grid'")
        self.n_actions, self.seed, self.action_mode = n_actions, seed, action_mode
        self.rng = np.random.default_rng(seed)
        self.counts = np.zeros(n_actions)
        self.means = np.zeros(n_actions)

    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        check_batch(contexts, rewards=rewards)
        actions = np.asarray(actions)
        if actions.shape != (len(rewards),) or actions.dtype.kind not in "iu" or \
                actions.astype(np.int64, copy=False).view(np.uint64).max(initial=0) >= self.n_actions:
            raise ValueError(f"actions must be {len(rewards)} integers in [0, {self.n_actions})")
        n = np.bincount(actions, minlength=self.n_actions)
        total = np.bincount(actions, weights=np.asarray(rewards, dtype=np.float64), minlength=self.n_actions)
        self.counts += n
        seen = self.counts > 0
        self.means[seen] += (total[seen] - n[seen] * self.means[seen]) / self.counts[seen]

    def save(self, path: str | Path) -> None:
        save_arrays(path, self.name, self.config(), {"counts": self.counts, "means": self.means})

    @classmethod
    def load(cls, path: str | Path) -> "_MeanBandit":
        config, arrays = load_arrays(path, cls.name, ("counts", "means"))
        policy = cls(**config)
        if arrays["counts"].shape != (policy.n_actions,):
            raise ValueError(f"checkpoint {path} is corrupt: {arrays['counts'].shape[0]} counts for "
                             f"{policy.n_actions} actions")
        policy.counts, policy.means = arrays["counts"], arrays["means"]
        return policy


class EpsilonGreedy(_MeanBandit):
    """The best mean so far with probability 1 - epsilon, else a uniform action; propensities exact.
    Untried actions count as best (each is tried once first)."""

    name = "eps"

    def __init__(self, n_actions: int, epsilon: float = 0.1, seed: int | None = None,
                 action_mode: str = "arm") -> None:
        super().__init__(n_actions, seed, action_mode)
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
        self.epsilon = float(epsilon)

    def _greedy(self, contexts: np.ndarray) -> np.ndarray:
        check_batch(contexts)
        return np.full(len(contexts), int(np.argmax(np.where(self.counts > 0, self.means, np.inf))))

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        return epsilon_greedy_distribution(self._greedy(contexts), self.n_actions, self.epsilon)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return epsilon_greedy(self.rng, self._greedy(contexts), self.n_actions, self.epsilon)

    def config(self) -> dict:
        return {"n_actions": self.n_actions, "epsilon": self.epsilon, "seed": self.seed,
                "action_mode": self.action_mode}


class UCB1(_MeanBandit):
    """UCB1 (Auer et al. 2002): argmax mean + c sqrt(2 ln n /
    n_a); untried actions first. Deterministic: propensity 1. A batch acts with one choice."""

    name = "ucb"

    def __init__(self, n_actions: int, c: float = 1.0, seed: int | None = None, action_mode: str = "arm") -> None:
        super().__init__(n_actions, seed, action_mode)
        if not c >= 0:
            raise ValueError(f"c must be >= 0; got {c}")
        self.c = float(c)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_batch(contexts)
        total = max(self.counts.sum(), 1.0)
        bonus = self.c * np.sqrt(2.0 * np.log(total) / np.maximum(self.counts, 1e-12))
        ucb = np.where(self.counts > 0, self.means + bonus, np.inf)
        return np.full(len(contexts), int(np.argmax(ucb))), np.ones(len(contexts))

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        actions, _ = self.act(contexts)
        out = np.zeros((len(contexts), self.n_actions))
        out[np.arange(len(actions)), actions] = 1.0
        return out

    def config(self) -> dict:
        return {"n_actions": self.n_actions, "c": self.c, "seed": self.seed, "action_mode": self.action_mode}


class GaussianThompson(_MeanBandit):
    """Thompson sampling with a Gaussian posterior per action: mean_a + sigma / sqrt(1 + n_a) * z; each
    round draws its own sample. Propensities by Monte-Carlo (``propensity_draws``), floored at
    1 / propensity_draws."""

    name = "ts"

    def __init__(self, n_actions: int, sigma: float = 1.0, propensity_draws: int = 256, seed: int | None = None,
                 action_mode: str = "arm") -> None:
        super().__init__(n_actions, seed, action_mode)
        if not sigma > 0 or propensity_draws < 1:
            raise ValueError(f"sigma must be > 0 and propensity_draws >= 1; got {sigma}, {propensity_draws}")
        self.sigma, self.propensity_draws = float(sigma), int(propensity_draws)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_batch(contexts)
        scale = self.sigma / np.sqrt(1.0 + self.counts)
        samples = self.means + scale * self.rng.standard_normal((len(contexts), self.n_actions))
        actions = np.argmax(samples, axis=1)
        draws = self.means + scale * self.rng.standard_normal((self.propensity_draws, self.n_actions))
        share = np.bincount(np.argmax(draws, axis=1), minlength=self.n_actions) / self.propensity_draws
        return actions, np.maximum(share[actions], 1.0 / self.propensity_draws)

    def config(self) -> dict:
        return {"n_actions": self.n_actions, "sigma": self.sigma, "propensity_draws": self.propensity_draws,
                "seed": self.seed, "action_mode": self.action_mode}

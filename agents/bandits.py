"""Context-free bandits over discrete actions (arms or weight-grid points): epsilon-greedy, UCB1 and
Gaussian Thompson sampling. Batched: a batch of B rounds acts with the same statistics, then updates."""

from __future__ import annotations

import numpy as np

from fusionsim.agents.base import (Policy, check_action_mode, check_contexts, check_count, check_discrete_actions,
                                   check_real, check_rewards, check_seed, epsilon_greedy, epsilon_greedy_distribution)


class _MeanBandit(Policy):
    """Per-action counts and reward means."""

    def __init__(self, n_actions: int, seed: int | None = None, action_mode: str = "arm") -> None:
        self.n_actions, self.action_mode = check_count("n_actions", n_actions), check_action_mode(action_mode)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.counts = np.zeros(self.n_actions)
        self.means = np.zeros(self.n_actions)

    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add a batch: contexts (B, D) finite (not used), actions (B,) ints in [0, K), rewards (B,) finite."""
        n_rounds = len(check_contexts(contexts))
        rewards = check_rewards(rewards, n_rounds)
        actions = check_discrete_actions(actions, n_rounds, self.n_actions)
        n = np.bincount(actions, minlength=self.n_actions)
        total = np.bincount(actions, weights=rewards.astype(np.float64, copy=False), minlength=self.n_actions)
        self.counts += n
        seen = self.counts > 0
        self.means[seen] += (total[seen] - n[seen] * self.means[seen]) / self.counts[seen]

    def state_arrays(self) -> dict[str, np.ndarray]:
        """``counts`` (K,) and ``means`` (K,) float64."""
        return {"counts": self.counts, "means": self.means}

    def set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.counts, self.means = arrays["counts"], arrays["means"]

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]


class EpsilonGreedy(_MeanBandit):
    """The best mean so far with probability 1 - epsilon, else a uniform action; propensities exact.
    Untried actions count as best (each is tried once first)."""

    name = "eps"

    def __init__(self, n_actions: int, epsilon: float = 0.1, seed: int | None = None,
                 action_mode: str = "arm") -> None:
        super().__init__(n_actions, seed, action_mode)
        self.epsilon = check_real("epsilon", epsilon, "in [0, 1]")

    def _greedy(self, contexts: np.ndarray) -> np.ndarray:
        contexts = check_contexts(contexts)
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
        self.c = check_real("c", c, ">= 0")

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contexts = check_contexts(contexts)
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
        self.sigma = check_real("sigma", sigma, "> 0")
        self.propensity_draws = check_count("propensity_draws", propensity_draws)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contexts = check_contexts(contexts)
        scale = self.sigma / np.sqrt(1.0 + self.counts)
        samples = self.means + scale * self.rng.standard_normal((len(contexts), self.n_actions))
        actions = np.argmax(samples, axis=1)
        draws = self.means + scale * self.rng.standard_normal((self.propensity_draws, self.n_actions))
        share = np.bincount(np.argmax(draws, axis=1), minlength=self.n_actions) / self.propensity_draws
        return actions, np.maximum(share[actions], 1.0 / self.propensity_draws)

    def config(self) -> dict:
        return {"n_actions": self.n_actions, "sigma": self.sigma, "propensity_draws": self.propensity_draws,
                "seed": self.seed, "action_mode": self.action_mode}

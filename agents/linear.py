"""Contextual linear bandits over discrete actions: LinUCB (disjoint) and linear Thompson sampling.

Both keep, per action a, the ridge statistics A_a = lambda I + sum x x^T and b_a = sum r x, with
theta_a = A_a^-1 b_a. One round at a time (B = 1), A_a^-1 is updated with Sherman-Morrison; a batch
of B > 1 rounds (delayed feedback: the whole batch acted with the same parameters) is added at once
and the inverses recomputed. With ``discount`` gamma < 1 old evidence fades (a window of about
1 / (1 - gamma) rounds, for drift): A <- gamma A + (1 - gamma) lambda I + x x^T, b <- gamma b + r x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionsim.agents.base import Policy, check_batch, epsilon_greedy, epsilon_greedy_distribution
from fusionsim.agents.checkpoint import load_arrays, save_arrays


class _LinearBandit(Policy):
    """Shared ridge statistics and their updates."""

    action_mode = "arm"

    def __init__(self, n_actions: int, n_features: int, ridge: float = 1.0, discount: float = 1.0,
                 seed: int | None = None, action_mode: str = "arm") -> None:
        if n_actions < 1:
            raise ValueError(f"n_actions must be >= 1; got {n_actions}")
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1; got {n_features}")
        if not ridge > 0:
            raise ValueError(f"ridge must be > 0; got {ridge}")
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1]; got {discount}")
        if action_mode not in ("arm", "grid"):
            raise ValueError(f"action_mode = {action_mode!r} is not allowed: must be 'arm' or 'grid'")
        self.n_actions, self.n_features = n_actions, n_features
        self.ridge, self.discount, self.seed, self.action_mode = float(ridge), float(discount), seed, action_mode
        self.rng = np.random.default_rng(seed)
        eye = np.eye(n_features)
        self._A = np.repeat(ridge * eye[None], n_actions, axis=0)
        self._A_stale = False  # the per-round path keeps only A^-1; A is rebuilt from it when needed
        # A^-1 and theta in one array (K, d + 1, d), so one matmul with x gives A^-1 x and theta . x
        self._stats = np.zeros((n_actions, n_features + 1, n_features))
        self.A_inv = self._stats[:, :n_features]
        self.theta = self._stats[:, n_features]
        self.A_inv[:] = eye / ridge
        self.b = np.zeros((n_actions, n_features))
        self.rounds = 0

    @property
    def A(self) -> np.ndarray:
        """(K, d, d) = lambda I + sum x x^T per action."""
        if self._A_stale:
            self._A = np.linalg.inv(self.A_inv)
            self._A_stale = False
        return self._A

    @A.setter
    def A(self, value: np.ndarray) -> None:
        self._A, self._A_stale = value, False

    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add a batch of (context, action, reward) rounds: (B, d), (B,) ints, (B,) finite floats."""
        contexts = np.asarray(contexts, dtype=np.float64)
        check_batch(contexts, self.n_features, rewards)
        actions = np.asarray(actions)
        if actions.shape != (len(contexts),) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be {len(contexts)} integers; got {actions.dtype} of shape {actions.shape}")
        if actions.astype(np.int64, copy=False).view(np.uint64).max() >= self.n_actions:  # negatives too
            bad = int(np.flatnonzero((actions < 0) | (actions >= self.n_actions))[0])
            raise ValueError(f"actions must be in [0, {self.n_actions}); got {actions[bad]} at row {bad}")
        rewards = np.asarray(rewards, dtype=np.float64)
        self.rounds += len(actions)
        if self.discount < 1.0:
            self._discounted_update(contexts, actions, rewards)
        elif len(actions) == 1:
            self._sherman_morrison(contexts[0], int(actions[0]), float(rewards[0]))
        else:
            A = self.A
            for a in np.unique(actions):
                x = contexts[actions == a]
                A[a] += x.T @ x
                self.b[a] += x.T @ rewards[actions == a]
            touched = np.unique(actions)
            self.A_inv[touched] = np.linalg.inv(A[touched])
            self.theta[touched] = np.einsum("aij,aj->ai", self.A_inv[touched], self.b[touched])

    def _sherman_morrison(self, x: np.ndarray, a: int, r: float) -> None:
        inv = self.A_inv[a]
        u = inv @ x
        inv -= np.multiply.outer(u, u * (1.0 / (1.0 + x @ u)))
        self._A_stale = True
        self.b[a] += r * x
        self.theta[a] = inv @ self.b[a]

    def _discounted_update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """The rounds of the batch one after another, in closed form: after n rounds the old statistics
        carry gamma^n, round i carries gamma^(n-1-i), and the ridge term is kept at lambda I."""
        n, g = len(actions), self.discount
        carry = g ** (n - 1 - np.arange(n))
        A = self.A
        A *= g ** n
        A += (1 - g ** n) * self.ridge * np.eye(self.n_features)
        self.b *= g ** n
        for a in np.unique(actions):
            rows = actions == a
            x, w = contexts[rows], carry[rows]
            A[a] += (x * w[:, None]).T @ x
            self.b[a] += x.T @ (w * rewards[rows])
        self.A = A
        self.A_inv[:] = np.linalg.inv(A)
        self.theta[:] = np.einsum("aij,aj->ai", self.A_inv, self.b)

    def _check_contexts(self, contexts: np.ndarray) -> np.ndarray:
        contexts = np.asarray(contexts, dtype=np.float64)
        check_batch(contexts, self.n_features)
        if not np.isfinite(contexts.sum()) and not np.isfinite(contexts).all():  # the sum is the fast check
            row = int(np.flatnonzero(~np.isfinite(contexts).all(axis=1))[0])
            raise ValueError(f"contexts must be finite; got a non-finite value at row {row}")
        return contexts

    # ----------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Statistics and config in one ``.npz`` written atomically."""
        save_arrays(path, self.name, self.config(), {"A": self.A, "A_inv": self.A_inv, "b": self.b,
                                                     "theta": self.theta, "rounds": np.array(self.rounds)})

    @classmethod
    def load(cls, path: str | Path) -> "_LinearBandit":
        config, arrays = load_arrays(path, cls.name, ("A", "A_inv", "b", "theta", "rounds"))
        policy = cls(**config)
        shape = (policy.n_actions, policy.n_features)
        if arrays["b"].shape != shape or arrays["A"].shape != shape + (policy.n_features,):
            raise ValueError(f"checkpoint {path} is corrupt: statistics of shape {arrays['b'].shape} do not fit "
                             f"{policy.n_actions} actions x {policy.n_features} features")
        policy.A, policy.b = arrays["A"], arrays["b"]
        policy.A_inv[:], policy.theta[:] = arrays["A_inv"], arrays["theta"]
        policy.rounds = int(arrays["rounds"])
        return policy

    def _base_config(self) -> dict:
        return {"n_actions": self.n_actions, "n_features": self.n_features, "ridge": self.ridge,
                "discount": self.discount, "seed": self.seed, "action_mode": self.action_mode}


class LinUCB(_LinearBandit):
    """Disjoint LinUCB (Li, Chu, Langford and Schapire 2010): choose argmax_a theta_a . x + alpha
    sqrt(x^T A_a^-1 x), ties to the lowest index. With ``epsilon`` > 0 a uniformly random action is
    taken instead with probability epsilon, so every action has propensity >= epsilon / K (for
    off-policy evaluation); propensity of the greedy action = 1 - epsilon + epsilon / K.

    Args:
        n_actions, n_features: K arms (or grid points) and context width d. alpha: exploration bonus.
        ridge: lambda of A = lambda I + ... . discount: gamma in (0, 1] (1 = no forgetting).
        epsilon: in [0, 1]. seed: the policy's Generator (used only when epsilon > 0).
    """

    name = "linucb"

    def __init__(self, n_actions: int, n_features: int, alpha: float = 1.0, ridge: float = 1.0,
                 discount: float = 1.0, epsilon: float = 0.0, seed: int | None = None,
                 action_mode: str = "arm") -> None:
        super().__init__(n_actions, n_features, ridge, discount, seed, action_mode)
        if not alpha >= 0:
            raise ValueError(f"alpha must be >= 0; got {alpha}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1]; got {epsilon}")
        self.alpha, self.epsilon = float(alpha), float(epsilon)

    def scores(self, contexts: np.ndarray) -> np.ndarray:
        """Upper confidence bounds (B, K)."""
        contexts = self._check_contexts(contexts)
        if len(contexts) == 1:
            x = contexts[0]
            stats_x = self._stats @ x  # (K, d + 1): A^-1 x, then theta . x
            mean, width = stats_x[:, -1], np.sqrt(np.maximum(stats_x[:, :-1] @ x, 0.0))
            return (mean + self.alpha * width)[None, :]
        mean = contexts @ self.theta.T
        # x^T A_a^-1 x for every round and action: one batched matmul, then a row-wise dot
        width = np.sqrt(np.maximum(np.einsum("kbj,bj->bk", contexts @ self.A_inv, contexts), 0.0))
        return mean + self.alpha * width

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        return epsilon_greedy_distribution(np.argmax(self.scores(contexts), axis=1), self.n_actions, self.epsilon)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return epsilon_greedy(self.rng, np.argmax(self.scores(contexts), axis=1), self.n_actions, self.epsilon)

    def config(self) -> dict:
        return {**self._base_config(), "alpha": self.alpha, "epsilon": self.epsilon}


class LinTS(_LinearBandit):
    """Linear Thompson sampling (Agrawal and Goyal 2013): per round draw theta~_a ~ N(theta_a, v^2 A_a^-1)
    for each action from its own random stream and choose argmax theta~_a . x. The propensity of the
    chosen action is estimated from ``propensity_draws`` further independent draws (the share of draws in
    which it is the argmax), floored at 1 / propensity_draws.

    Args:
        n_actions, n_features, ridge, discount, seed: as :class:`LinUCB`. v: posterior scale.
        propensity_draws: Monte-Carlo draws per round for the propensity (>= 1).
    """

    name = "lints"

    def __init__(self, n_actions: int, n_features: int, v: float = 0.5, ridge: float = 1.0, discount: float = 1.0,
                 propensity_draws: int = 64, seed: int | None = None, action_mode: str = "arm") -> None:
        super().__init__(n_actions, n_features, ridge, discount, seed, action_mode)
        if not v > 0:
            raise ValueError(f"v must be > 0; got {v}")
        if propensity_draws < 1:
            raise ValueError(f"propensity_draws must be >= 1; got {propensity_draws}")
        self.v, self.propensity_draws = float(v), int(propensity_draws)
        self.arm_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n_actions)]

    def _sampled_scores(self, contexts: np.ndarray, draws: int) -> np.ndarray:
        """(draws, B, K) scores under independent posterior draws; each action uses its own stream."""
        b, k = len(contexts), self.n_actions
        out = np.empty((draws, b, k))
        mean = contexts @ self.theta.T  # (B, K)
        for a in range(k):  # K streams, each vectorised over draws and rounds
            chol = np.linalg.cholesky(self.v ** 2 * self.A_inv[a] + 1e-12 * np.eye(self.n_features))
            z = self.arm_rngs[a].standard_normal((draws, b, self.n_features))
            out[:, :, a] = mean[:, a] + np.einsum("nbj,ij,bi->nb", z, chol, contexts)
        return out

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contexts = self._check_contexts(contexts)
        actions = np.argmax(self._sampled_scores(contexts, 1)[0], axis=1)
        winners = np.argmax(self._sampled_scores(contexts, self.propensity_draws), axis=2)  # (draws, B)
        hits = (winners == actions[None, :]).sum(axis=0)
        return actions, np.maximum(hits, 1) / self.propensity_draws

    def config(self) -> dict:
        return {**self._base_config(), "v": self.v, "propensity_draws": self.propensity_draws}

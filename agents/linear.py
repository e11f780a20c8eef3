"""Contextual linear bandits over discrete actions: LinUCB (disjoint) and linear Thompson sampling.

Both keep, per action a, the ridge statistics A_a = lambda I + sum x x^T and b_a = sum r x, with
theta_a = A_a^-1 b_a. One round at a time (B = 1), A_a^-1 is updated with Sherman-Morrison; a batch
of B > 1 rounds (delayed feedback: the whole batch acted with the same parameters) is added at once
and the inverses recomputed. With ``discount`` gamma < 1 old evidence fades (a window of about
1 / (1 - gamma) rounds, for drift): A <- gamma A + (1 - gamma) lambda I + x x^T, b <- gamma b + r x.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.blas import daxpy, dger

from fusionsim.agents.base import (Policy, check_action_mode, check_contexts, check_count, check_discrete_actions,
                                   check_real, check_rewards, check_seed, epsilon_greedy, epsilon_greedy_distribution)


_F64 = np.dtype(np.float64)
_ONE = np.ones(1)


class _LinearBandit(Policy):
    """Shared ridge statistics and their updates."""

    action_mode = "arm"

    def __init__(self, n_actions: int, n_features: int, ridge: float = 1.0, discount: float = 1.0,
                 seed: int | None = None, action_mode: str = "arm") -> None:
        self.n_actions, self.n_features = check_count("n_actions", n_actions), check_count("n_features", n_features)
        self.ridge, self.discount = check_real("ridge", ridge, "> 0"), check_real("discount", discount, "in (0, 1]")
        self.seed, self.action_mode = check_seed(seed), check_action_mode(action_mode)
        self.rng = np.random.default_rng(self.seed)
        k, d = self.n_actions, self.n_features
        self._one_round = (1, d)  # the shape of one context row, for the per-round path
        eye = np.eye(d)
        self._A = np.repeat(self.ridge * eye[None], k, axis=0)
        self._A_stale = False  # the per-round path keeps only A^-1; A is rebuilt from it when needed
        # A^-1 and theta in one array (K, d + 1, d), so one matmul with x gives A^-1 x and theta . x
        self._stats = np.zeros((k, d + 1, d))
        self.A_inv = self._stats[:, :d]
        self.theta = self._stats[:, d]
        self.A_inv[:] = eye / self.ridge
        self.b = np.zeros((k, d))
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
        """Add a batch of (context, action, reward) rounds: (B, d) finite, (B,) ints in [0, K), (B,) finite.
        A batch that fails a check changes nothing."""
        if self._update_one_round(contexts, actions, rewards):
            return
        contexts = check_contexts(contexts, self.n_features).astype(np.float64, copy=False)
        n = len(contexts)
        rewards = check_rewards(rewards, n).astype(np.float64, copy=False)
        actions = check_discrete_actions(actions, n, self.n_actions)
        if self.discount < 1.0:
            self._discounted_update(contexts, actions, rewards)
        elif n == 1:
            x, a = contexts[0], int(actions[0])
            u = self.A_inv[a].dot(x)
            self._sherman_morrison(x, a, float(rewards[0]), u, float(x.dot(u)))
        elif n:
            A = self.A
            touched = self._add_per_action(A, contexts, actions, rewards)
            self.A_inv[touched] = np.linalg.inv(A[touched])
            self.theta[touched] = np.einsum("aij,aj->ai", self.A_inv[touched], self.b[touched])
        self.rounds += n

    def _add_per_action(self, A: np.ndarray, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                        weights: np.ndarray | None = None) -> np.ndarray:
        """Add sum w x x^T to A[a] (K, d, d) and sum w r x to b[a] (K, d) for each action a of the batch, over
        its rounds (w = 1 when ``weights`` (B,) is None); return the actions touched, ascending. The rounds are
        sorted by action once, so each action's rounds are one slice."""
        order = np.argsort(actions, kind="stable")
        xs, rs = contexts[order], rewards[order]
        ws = None if weights is None else weights[order]
        counts = np.bincount(actions, minlength=self.n_actions)
        ends = np.cumsum(counts).tolist()
        touched = np.flatnonzero(counts)
        for a in touched.tolist():
            lo, hi = ends[a] - int(counts[a]), ends[a]
            x, r = xs[lo:hi], rs[lo:hi]
            if ws is None:
                A[a] += x.T @ x
                self.b[a] += x.T @ r
            else:
                w = ws[lo:hi]
                A[a] += (x * w[:, None]).T @ x
                self.b[a] += x.T @ (w * r)
        return touched

    def _update_one_round(self, contexts: object, actions: object, rewards: object) -> bool:
        """The per-round path: when the batch is one round given as float64 (1, d), integer (1,) and float64
        (1,) arrays, valid and undiscounted, add it with Sherman-Morrison and return True; otherwise change
        nothing and return False (the checked path then names what is wrong)."""
        if not (type(contexts) is np.ndarray and type(actions) is np.ndarray and type(rewards) is np.ndarray
                and contexts.shape == self._one_round and contexts.dtype is _F64 and actions.shape == (1,)
                and actions.dtype.kind in "iu" and rewards.shape == (1,) and rewards.dtype is _F64
                and self.discount == 1.0):
            return False
        a, r, x = int(actions[0]), float(rewards[0]), contexts[0]
        # x . x is NaN or +inf exactly when x holds a non-finite value (or overflows): one dot is the check
        if not (0 <= a < self.n_actions and math.isfinite(r) and math.isfinite(x.dot(x))):
            return False
        u = self.A_inv[a].dot(x)  # ndarray.dot: the same product as @, less overhead on small arrays
        self._sherman_morrison(x, a, r, u, float(x.dot(u)))
        self.rounds += 1
        return True

    def _sherman_morrison(self, x: np.ndarray, a: int, r: float, u: np.ndarray, q: float) -> None:
        """Add round (x (d,), a, r) to action a given u = A_a^-1 x (d,) and q = x . u."""
        inv, b = self.A_inv[a], self.b[a]
        # in place with BLAS: A^-1 -= u u^T / (1 + q) (rank one, on the transposed view: the update is
        # symmetric) and b += r x; both act on C-contiguous blocks of arrays this class allocated
        dger(-1.0 / (1.0 + q), u, u, a=inv.T, overwrite_a=1)
        daxpy(x, b, a=r)
        self._A_stale = True
        inv.dot(b, out=self.theta[a])

    def _discounted_update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """The rounds of the batch one after another, in closed form: after n rounds the old statistics
        carry gamma^n, round i carries gamma^(n-1-i), and the ridge term is kept at lambda I."""
        n, g = len(actions), self.discount
        carry = g ** (n - 1 - np.arange(n))
        A = self.A
        A *= g ** n
        A += (1 - g ** n) * self.ridge * np.eye(self.n_features)
        self.b *= g ** n
        self._add_per_action(A, contexts, actions, rewards, carry)
        self.A = A
        self.A_inv[:] = np.linalg.inv(A)
        self.theta[:] = np.einsum("aij,aj->ai", self.A_inv, self.b)

    def _check_contexts(self, contexts: np.ndarray) -> np.ndarray:
        """``contexts`` as float64 (B, d), checked finite."""
        return check_contexts(contexts, self.n_features).astype(np.float64, copy=False)

    # ----------------------------------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """``A`` and ``A_inv`` (K, d, d), ``b`` and ``theta`` (K, d) float64, ``rounds`` () int64."""
        return {"A": self.A, "A_inv": self.A_inv, "b": self.b, "theta": self.theta,
                "rounds": np.array(self.rounds, dtype=np.int64)}

    def set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.A = arrays["A"]
        self.A_inv[:], self.theta[:], self.b[:] = arrays["A_inv"], arrays["theta"], arrays["b"]
        self.rounds = int(arrays["rounds"])

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]

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
        self.alpha, self.epsilon = check_real("alpha", alpha, ">= 0"), check_real("epsilon", epsilon, "in [0, 1]")

    def scores(self, contexts: np.ndarray) -> np.ndarray:
        """Upper confidence bounds (B, K)."""
        contexts = self._check_contexts(contexts)
        if len(contexts) == 1:
            return self._one_round_scores(contexts[0])[None, :]
        mean = contexts @ self.theta.T
        # x^T A_a^-1 x for every round and action: one batched matmul, then a row-wise dot
        width = np.sqrt(np.maximum(np.einsum("kbj,bj->bk", contexts @ self.A_inv, contexts), 0.0))
        return mean + self.alpha * width

    def _one_round_scores(self, x: np.ndarray) -> np.ndarray:
        """Upper confidence bounds (K,) for one finite float64 context x (d,)."""
        stats_x = self._stats @ x  # (K, d + 1): A^-1 x, then theta . x
        return stats_x[:, -1] + self.alpha * np.sqrt(np.maximum(stats_x[:, :-1].dot(x), 0.0))

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        return epsilon_greedy_distribution(np.argmax(self.scores(contexts), axis=1), self.n_actions, self.epsilon)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions (B,) int64 and propensities (B,) float64 for contexts (B, d)."""
        greedy = None
        if type(contexts) is np.ndarray and contexts.shape == self._one_round and contexts.dtype is _F64:
            x = contexts[0]  # the per-round path: one float64 row, checked by one dot (NaN or +inf exactly
            if math.isfinite(x.dot(x)):  # when x holds a non-finite value, or overflows: then the checked path)
                greedy = np.array([self._one_round_scores(x).argmax()])
                if self.epsilon == 0.0:
                    return greedy, _ONE.copy()
        if greedy is None:
            greedy = np.argmax(self.scores(contexts), axis=1)
        return epsilon_greedy(self.rng, greedy, self.n_actions, self.epsilon)

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
        self.v, self.propensity_draws = check_real("v", v, "> 0"), check_count("propensity_draws", propensity_draws)
        self.arm_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(self.n_actions)]

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

    def generators(self) -> list[np.random.Generator]:
        return [self.rng, *self.arm_rngs]

    def config(self) -> dict:
        return {**self._base_config(), "v": self.v, "propensity_draws": self.propensity_draws}

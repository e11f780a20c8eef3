"""Contextual bandits over the blend-weight grid that share strength across blends: JointLinUCB and
JointLinTS, one ridge regression on joint features of the context and the blend.

The disjoint LinUCB of ``agents.linear`` keeps one model per grid point, so each of the G points learns
alone from the rounds that chose it. A grid point is a weight vector w on the simplex; where the reward is
smooth in w, one model can score every blend and learn from every round. That is LinUCB's hybrid model (Li,
Chu, Langford and Schapire 2010, section 3.2) with only its shared part, E[r | x, w] = z^T beta for
features z shared by all actions, here z = phi(x, w):

    phi(x, w) = x (outer) q(w)  (F = d * Q features),   q(w) = [w_i1 w_i2 ... w_ik for i1 <= i2 <= ... <= ik],

flattened with index i * Q + j for x_i q_j: q holds every monomial of degree k = ``degree`` in the A weights,
Q = C(A + k - 1, k) of them. On the simplex they are a basis of the polynomials of degree <= k (a term of
lower degree is itself times (sum_i w_i)^(k - its degree) = 1), so no constant or lower-degree feature is
needed: degree 2 is the quadratic model [w_i, w_i w_j] without its redundant columns (w_i = sum_j w_i w_j).
The reward model theta . phi(x, w) is, for every context, a polynomial of degree k in the blend with
coefficients linear in x. With degree >= grid_resolution the monomials span every function on the grid (a
disjoint model, reparametrised); lower degrees share more strength across blends and assume more smoothness.

Statistics: A = lambda I + sum phi phi^T (F, F), b = sum r phi (F,), theta = A^-1 b. A batch of one round
updates A^-1 by Sherman-Morrison; a batch of B > 1 rounds (all acted with the same parameters) is added to
A at once and A^-1 recomputed with ``np.linalg.inv``, as is every discounted update. With ``discount``
gamma < 1 old evidence fades as in LinUCB: per round A <- gamma A + (1 - gamma) lambda I + phi phi^T,
b <- gamma b + r phi.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from fusionsim.agents.base import (Policy, check_contexts, check_count, check_discrete_actions, check_real,
                                   check_rewards, check_seed, epsilon_greedy, epsilon_greedy_distribution)

MAX_JOINT_FEATURES = 4096
"""Most joint features F a policy may have (A and A^-1 are F x F: 128 MiB each at the limit), so a typo in
``degree`` fails instead of allocating for minutes."""


def _compositions(total: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every tuple of ``parts`` non-negative integers summing to ``total``, in descending lexicographic order."""
    if parts == 1:
        yield (total,)
        return
    for first in range(total, -1, -1):
        for rest in _compositions(total - first, parts - 1):
            yield (first, *rest)


def blend_grid(n_arms: int, resolution: int) -> np.ndarray:
    """The weight grid of ``envs.fusion.simplex_grid`` in the same order, as float64 (G, A): every vector of
    multiples of 1 / resolution summing to 1, the one-hot points first (in arm order), then the others in
    descending lexicographic order. (agents import no envs, so the grid is rebuilt here.)"""
    points = np.array(list(_compositions(resolution, n_arms)), dtype=np.float64).reshape(-1, n_arms)
    one_hot = points.max(axis=1) == resolution
    return np.concatenate([points[one_hot], points[~one_hot]]) / resolution


def blend_features(weights: np.ndarray, degree: int) -> np.ndarray:
    """q(w): every monomial of degree ``degree`` of each row of ``weights`` (G, A), in the order of
    ``itertools.combinations_with_replacement`` (degree 2: w_0 w_0, w_0 w_1, ..., w_1 w_1, ...): (G, Q) with
    Q = C(A + degree - 1, degree)."""
    factors = np.array(list(itertools.combinations_with_replacement(range(weights.shape[1]), degree)))
    return np.prod(weights[:, factors], axis=2)


class _JointRidge(Policy):
    """The joint ridge statistics (see the module docstring), their updates and checkpoints."""

    action_mode = "grid"

    def __init__(self, n_actions: int, n_features: int, n_arms: int, grid_resolution: int, degree: int,
                 ridge: float, discount: float, seed: int | None) -> None:
        self.n_actions, self.n_features = check_count("n_actions", n_actions), check_count("n_features", n_features)
        self.n_arms, self.grid_resolution = check_count("n_arms", n_arms), check_count("grid_resolution",
                                                                                         grid_resolution)
        self.degree = check_count("degree", degree)
        self.ridge, self.discount = check_real("ridge", ridge, "> 0"), check_real("discount", discount, "in (0, 1]")
        self.seed = check_seed(seed)
        points = math.comb(self.grid_resolution + self.n_arms - 1, self.n_arms - 1)
        if self.n_actions != points:
            raise ValueError(f"n_actions must be the number of grid points, C(grid_resolution + n_arms - 1, "
                             f"n_arms - 1) = {points} for {self.n_arms} arms at grid_resolution "
                             f"{self.grid_resolution}; got {self.n_actions}")
        size = self.n_features * math.comb(self.n_arms + self.degree - 1, self.degree)
        if size > MAX_JOINT_FEATURES:
            raise ValueError(f"degree {self.degree} with {self.n_arms} arms and {self.n_features} context features "
                             f"gives {size:,} joint features; must give at most {MAX_JOINT_FEATURES:,}")
        self.rng = np.random.default_rng(self.seed)
        self.grid = blend_grid(self.n_arms, self.grid_resolution)
        self.grid_features = blend_features(self.grid, self.degree)  # q(w_g) of every grid point (G, Q)
        self.n_blend_features = self.grid_features.shape[1]
        self.A = self.ridge * np.eye(size)
        self.A_inv = np.eye(size) / self.ridge
        self.b = np.zeros(size)
        self.theta = np.zeros(size)
        self.rounds = 0

    def joint_features(self, contexts: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """phi(x, w_a) (B, F) for float64 contexts (B, d) and grid indices (B,)."""
        return (contexts[:, :, None] * self.grid_features[actions][:, None, :]).reshape(len(contexts), -1)

    def _check_contexts(self, contexts: np.ndarray) -> np.ndarray:
        return check_contexts(contexts, self.n_features).astype(np.float64, copy=False)

    def _means(self, contexts: np.ndarray) -> np.ndarray:
        """theta . phi(x, w_g) (B, G) for checked float64 contexts (B, d)."""
        d, q = self.n_features, self.n_blend_features
        return contexts @ (self.theta.reshape(d, q) @ self.grid_features.T)

    def mean_rewards(self, contexts: np.ndarray) -> np.ndarray:
        """The model's reward estimates theta . phi(x, w_g) (B, G) for contexts (B, d)."""
        return self._means(self._check_contexts(contexts))

    def _blend_covariances(self, contexts: np.ndarray) -> np.ndarray:
        """N(x) (B, Q, Q) with N(x)_jl = sum_ik x_i x_k M[i, j, k, l], M = A^-1 viewed as (d, Q, d, Q), for
        checked float64 contexts (B, d): phi(x, w)^T A^-1 phi(x, w') = q(w)^T N(x) q(w')."""
        d, q = self.n_features, self.n_blend_features
        context_pairs = (contexts[:, :, None] * contexts[:, None, :]).reshape(len(contexts), d * d)
        inverse_by_context_pair = self.A_inv.reshape(d, q, d, q).transpose(0, 2, 1, 3).reshape(d * d, q * q)
        return (context_pairs @ inverse_by_context_pair).reshape(len(contexts), q, q)

    # ------------------------------------------------------------------------------------------- learning
    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Add a batch of rounds: contexts (B, d) finite, actions (B,) ints in [0, G), rewards (B,) finite.
        A batch that fails a check changes nothing."""
        contexts = self._check_contexts(contexts)
        n = len(contexts)
        rewards = check_rewards(rewards, n).astype(np.float64, copy=False)
        actions = check_discrete_actions(actions, n, self.n_actions)
        if not n:
            return
        phi = self.joint_features(contexts, actions)
        if self.discount < 1.0:
            self._discounted_update(phi, rewards)
        elif n == 1:
            self._sherman_morrison(phi[0], float(rewards[0]))
        else:
            self.A += phi.T @ phi
            self.b += phi.T @ rewards
            self._invert()
        self.rounds += n

    def _sherman_morrison(self, phi: np.ndarray, reward: float) -> None:
        """Add one round (phi (F,), reward): A^-1 <- A^-1 - (A^-1 phi)(A^-1 phi)^T / (1 + phi^T A^-1 phi)."""
        u = self.A_inv @ phi
        self.A_inv -= np.outer(u, u / (1.0 + phi @ u))
        self.A += np.outer(phi, phi)
        self.b += reward * phi
        np.dot(self.A_inv, self.b, out=self.theta)

    def _discounted_update(self, phi: np.ndarray, rewards: np.ndarray) -> None:
        """The rounds of the batch one after another, in closed form: after n rounds the old statistics
        carry gamma^n, round i carries gamma^(n-1-i), and the ridge term stays lambda I."""
        n, g = len(phi), self.discount
        carry = g ** (n - 1 - np.arange(n))
        self.A *= g ** n
        self.A += (1 - g ** n) * self.ridge * np.eye(len(self.A))
        self.A += (phi * carry[:, None]).T @ phi
        self.b *= g ** n
        self.b += phi.T @ (carry * rewards)
        self._invert()

    def _invert(self) -> None:
        """A^-1 and theta = A^-1 b recomputed from A and b."""
        self.A_inv[:] = np.linalg.inv(self.A)
        np.dot(self.A_inv, self.b, out=self.theta)

    # ----------------------------------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """``A`` and ``A_inv`` (F, F), ``b`` and ``theta`` (F,) float64, ``rounds`` () int64."""
        return {"A": self.A, "A_inv": self.A_inv, "b": self.b, "theta": self.theta,
                "rounds": np.array(self.rounds, dtype=np.int64)}

    def set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self.A[:], self.A_inv[:], self.b[:], self.theta[:] = arrays["A"], arrays["A_inv"], arrays["b"], arrays["theta"]
        self.rounds = int(arrays["rounds"])

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]

    def _base_config(self) -> dict:
        return {"n_actions": self.n_actions, "n_features": self.n_features, "n_arms": self.n_arms,
                "grid_resolution": self.grid_resolution, "degree": self.degree, "ridge": self.ridge,
                "discount": self.discount, "seed": self.seed}


class JointLinUCB(_JointRidge):
    """LinUCB with one ridge model over joint context-blend features (see the module docstring): choose
    argmax_g theta . phi(x, w_g) + alpha sqrt(phi(x, w_g)^T A^-1 phi(x, w_g)) over the G grid points,
    ties to the lowest index. With ``epsilon`` > 0 a uniformly random grid point is taken instead with
    probability epsilon: the greedy point has propensity 1 - epsilon + epsilon / G, every other epsilon / G.

    Scores never form the (B, G, F) features: the width of point g is sqrt(q_g^T N(x) q_g), with N(x) the
    (Q, Q) matrix of one request (``_blend_covariances``).

    Args:
        n_actions: G, the number of grid points: must equal C(grid_resolution + n_arms - 1, n_arms - 1).
        n_features: d, the context width. n_arms: A, the arms a grid point blends.
        grid_resolution: steps per unit of the grid (as ``envs.fusion.simplex_grid``), >= 1.
        degree: of the polynomial in the blend weights, >= 1 (see the module docstring).
        ridge: lambda of A = lambda I + ..., > 0. discount: gamma in (0, 1] (1 = no forgetting).
        alpha: exploration bonus, >= 0. epsilon: in [0, 1].
        seed: the policy's Generator (used only when epsilon > 0).
    """

    name = "joint_linucb"

    def __init__(self, n_actions: int, n_features: int, n_arms: int, grid_resolution: int, degree: int = 2,
                 alpha: float = 1.0, ridge: float = 1.0, discount: float = 1.0, epsilon: float = 0.0,
                 seed: int | None = None) -> None:
        super().__init__(n_actions, n_features, n_arms, grid_resolution, degree, ridge, discount, seed)
        self.alpha, self.epsilon = check_real("alpha", alpha, ">= 0"), check_real("epsilon", epsilon, "in [0, 1]")
        q = self.n_blend_features
        # q_g q_g^T of every grid point, flattened (G, Q * Q): the squared width is its dot with N(x) flattened
        self._grid_feature_products = np.einsum("gj,gl->gjl", self.grid_features, self.grid_features).reshape(-1, q * q)

    def _widths(self, contexts: np.ndarray) -> np.ndarray:
        covariances = self._blend_covariances(contexts).reshape(len(contexts), -1)
        return np.sqrt(np.maximum(covariances @ self._grid_feature_products.T, 0.0))

    def widths(self, contexts: np.ndarray) -> np.ndarray:
        """Confidence widths sqrt(phi(x, w_g)^T A^-1 phi(x, w_g)) (B, G) for contexts (B, d)."""
        return self._widths(self._check_contexts(contexts))

    def scores(self, contexts: np.ndarray) -> np.ndarray:
        """Upper confidence bounds (B, G) for contexts (B, d)."""
        contexts = self._check_contexts(contexts)
        if self.alpha == 0.0:  # greedy: the widths cannot change the argmax
            return self._means(contexts)
        return self._means(contexts) + self.alpha * self._widths(contexts)

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        return epsilon_greedy_distribution(np.argmax(self.scores(contexts), axis=1), self.n_actions, self.epsilon)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (B,) int64 and propensities (B,) float64 for contexts (B, d)."""
        return epsilon_greedy(self.rng, np.argmax(self.scores(contexts), axis=1), self.n_actions, self.epsilon)

    def config(self) -> dict:
        return {**self._base_config(), "alpha": self.alpha, "epsilon": self.epsilon}


class JointLinTS(_JointRidge):
    """Linear Thompson sampling (Agrawal and Goyal 2013) on the joint model: per round draw
    theta~ ~ N(theta, v^2 A^-1) and choose argmax_g theta~ . phi(x, w_g). The scores of one request are
    linear in theta~, so they are drawn directly as N(means, v^2 Q_G N(x) Q_G^T) with Q_G the grid features
    (G, Q): means + v Q_G S(x) z, S(x) S(x)^T = N(x), z ~ N(0, I_Q): Q numbers per draw instead of F. The
    propensity of the chosen point is the share of ``propensity_draws`` further draws (from a second,
    independent stream) in which it is the argmax, floored at 1 / propensity_draws.

    Args:
        n_actions, n_features, n_arms, grid_resolution, degree, ridge, discount: as :class:`JointLinUCB`.
        v: posterior scale, > 0. propensity_draws: Monte-Carlo draws per round for the propensity (>= 1).
        seed: seeds the choice stream and the propensity stream.
    """

    name = "joint_lints"

    def __init__(self, n_actions: int, n_features: int, n_arms: int, grid_resolution: int, degree: int = 2,
                 v: float = 0.2, ridge: float = 1.0, discount: float = 1.0, propensity_draws: int = 16,
                 seed: int | None = None) -> None:
        super().__init__(n_actions, n_features, n_arms, grid_resolution, degree, ridge, discount, seed)
        self.v, self.propensity_draws = check_real("v", v, "> 0"), check_count("propensity_draws", propensity_draws)
        self.propensity_rng = np.random.default_rng(np.random.SeedSequence(self.seed).spawn(1)[0])

    def sampled_scores(self, contexts: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
        """Scores theta~ . phi(x, w_g) under ``draws`` posterior draws per request from ``rng``: (draws, B, G)
        for contexts (B, d)."""
        return self._sampled_scores(self._check_contexts(contexts), draws, rng)

    def _sampled_scores(self, contexts: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
        covariances = self._blend_covariances(contexts)
        # S(x) = cholesky(N(x) + jitter I): N(x) is positive semi-definite (0 for x = 0), and rounding must not
        # make it indefinite; the jitter, 1e-10 of the largest variance plus 1e-12, changes no choice that matters
        diagonal = np.diagonal(covariances, axis1=1, axis2=2)
        jitter = 1e-10 * diagonal.max(axis=1) + 1e-12
        roots = np.linalg.cholesky(covariances + jitter[:, None, None] * np.eye(self.n_blend_features))
        z = rng.standard_normal((draws, len(contexts), self.n_blend_features))
        noise = np.matmul(z.transpose(1, 0, 2), roots.transpose(0, 2, 1)).transpose(1, 0, 2)  # S(x) z (draws, B, Q)
        return self._means(contexts) + self.v * (noise @ self.grid_features.T)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Grid indices (B,) int64 and Monte-Carlo propensities (B,) float64 for contexts (B, d)."""
        contexts = self._check_contexts(contexts)
        actions = np.argmax(self._sampled_scores(contexts, 1, self.rng)[0], axis=1)
        winners = np.argmax(self._sampled_scores(contexts, self.propensity_draws, self.propensity_rng), axis=2)
        hits = (winners == actions[None, :]).sum(axis=0)
        return actions, np.maximum(hits, 1) / self.propensity_draws

    def generators(self) -> list[np.random.Generator]:
        return [self.rng, self.propensity_rng]

    def config(self) -> dict:
        return {**self._base_config(), "v": self.v, "propensity_draws": self.propensity_draws}

"""Marginalised inverse propensity scoring over action embeddings (MIPS; Saito and Joachims 2022), ported from
the Open Bandit Pipeline (obp 0.5.7, ``obp.ope.estimators_embed``) for a known p(e | a): obp's class names,
dataclass fields (in obp's order), ``estimator_name`` values ("mipw", "snmipw") and ``estimate_policy_value``
/ ``estimate_interval`` arguments in obp's order (which differ between the two methods: ``p_e_a`` comes
before ``position`` in the first, after it in the second), with ``**kwargs`` for the rest, so obp's
``OffPolicyEvaluation``, which passes every array to every estimator, drives these classes too.

Besides the estimators, functions that turn fusionsim's weight-grid actions into discrete embeddings
(:func:`grid_embedding`, :func:`largest_arm_embedding`, :func:`coarse_grid_embedding`) and the p(e | a) of a
deterministic embedding (:func:`deterministic_p_e_a`).

Arrays (n rounds, A actions, len_list slots, D embedding dimensions, C values per dimension):

* ``reward`` (n,), ``action`` (n,) ints in [0, A), ``position`` (n,) ints in [0, len_list) (None: one slot);
* ``action_dist`` (n, A, len_list) = pi_e(a | x_i, p_i);
* ``pi_b`` (n, A, len_list) = pi_b(a | x_i, p_i), the logging policy's whole distribution in every round (not
  only at the logged action); also (n, A): the distribution at each round's position;
* ``p_e_a`` (A, C, D): p_e_a[a, c, d] = p(e_d = c | a), the known conditional distribution of each embedding
  dimension given the action, each dimension drawn independently given a (obp's model; every (a, d) sums to
  1 over c); also (A, C) for D = 1. A deterministic embedding e(a) is one-hot: :func:`deterministic_p_e_a`;
* ``action_embed`` (n, D) ints in [0, C): e_i, the embedding logged with round i; also (n,) for D = 1.

Formulas. With p(e | a) = prod_d p_e_a[a, e_d, d] and, for a policy pi, the marginal
p(e | x, pi) = sum_a pi(a | x) p(e | a), the marginal importance weight of round i is

    w(x_i, e_i) = p(e_i | x_i, pi_e) / p(e_i | x_i, pi_b)

* MIPW (MIPS):   V = mean_i w(x_i, e_i) r_i
* SNMIPW:        V = sum_i w(x_i, e_i) r_i / sum_i w(x_i, e_i)

For a deterministic embedding, p(e | x, pi) is the probability pi gives the actions that share e:
w(x_i, e_i) = sum_{a: e(a) = e_i} pi_e(a | x_i) / sum_{a: e(a) = e_i} pi_b(a | x_i). When every action has its
own embedding, w(x, e) = w(x, a) and MIPS is IPS (SNMIPW is SNIPW).

When is it unbiased? MIPS is unbiased only when (1) the reward depends on the action through the embedding
alone, "no direct effect": E[r | x, a, e] = E[r | x, e], and (2) pi_b gives every embedding that pi_e can
produce a positive probability ("common embedding support": p(e | x, pi_e) > 0 implies p(e | x, pi_b) > 0).
Neither is checked (neither can be, from a log). With a direct effect it is biased: for a deterministic
embedding with q(x, a) = E[r | x, a] and pi(a | x, e) = pi(a | x) 1{e(a) = e} / p(e | x, pi) (the policy's
choice among the actions sharing e),

    E[MIPS] - V(pi_e) = E_x sum_e p(e | x, pi_e) sum_{a: e(a) = e} (pi_b(a | x, e) - pi_e(a | x, e)) q(x, a),

zero when q is constant within each embedding, or when both policies split each embedding's mass among its
actions alike. What MIPS buys is variance: w(x, e) = E_{pi_b}[w(x, a) | x, e], the conditional expectation of
IPS's weight given the embedding, so its weights vary less than IPS's (under no direct effect its variance is
at most IPS's; Saito and Joachims 2022, Section 3). The coarser the embedding, the lower the variance and, if
the reward has a direct effect, the larger the bias.

``estimate_interval`` is a percentile bootstrap over rounds, vectorised over resamples
(:func:`~fusionsim.experiments.evaluation.estimators.bootstrap_means`), with obp's keys ("mean",
"95.0% CI (lower)", "95.0% CI (upper)"). SNMIPW recomputes its normaliser in every resample (obp resamples
per-round terms normalised once), so its intervals differ from obp's; point estimates agree with obp's.

Differences from obp 0.5.7:

* ``p_e_a`` is required. obp estimates the weights from ``context`` with a logistic regression of a on (x, e)
  when ``p_e_a`` is None; that is not implemented (``context`` is accepted and ignored).
* ``embedding_selection_method`` must be None: obp's data-driven selection ("exact", "greedy") is not
  implemented (obp's selection ignores ``p_e_a`` and works on weights estimated from ``context``).
  ``min_emb_dim`` and ``delta``, which only that selection uses, are validated as obp does (``delta`` may
  also be an int) and otherwise unused.
* With several embedding dimensions, p(e | x, pi) is the joint marginal sum_a pi(a | x) prod_d p(e_d | a),
  the quantity whose ratio makes MIPS unbiased; obp multiplies the per-dimension marginals,
  prod_d sum_a pi(a | x) p(e_d | a), which is not the same. With one dimension (as every fusionsim embedding
  here) the two agree.
* obp's docstring gives ``action_embed`` as (n_actions, dim); its code reads it per round, (n_rounds, dim), as
  here.
* Stricter checks: ``p_e_a`` must hold distributions; the logged embedding must be possible for the logged
  action (p(e_i | a_i) > 0) and have positive probability under pi_b; the logged action must have positive
  probability under pi_b. Bad input raises :class:`OPEInputError` with a one-line message naming the argument,
  the first bad row and what is allowed.

Yuta Saito and Thorsten Joachims. "Off-Policy Evaluation for Large Action Spaces via Embeddings", ICML 2022.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fusionsim.experiments.evaluation.estimators import (BaseOffPolicyEstimator, OPEInputError, OPEInputTypeError,
                                                         _at_position, _first_bad, check_inputs)

__all__ = ["EMBEDDING_METHODS", "MIPS", "MIPS_ESTIMATORS", "SNMIPS", "MarginalizedInverseProbabilityWeighting",
           "SelfNormalizedMarginalizedInverseProbabilityWeighting", "check_embed_inputs", "coarse_grid_embedding",
           "deterministic_p_e_a", "grid_embedding", "largest_arm_embedding", "marginal_importance_weights"]

PROBABILITY_ATOL = 1e-6
"""How far from 1 a row of ``pi_b``, a (action, dimension) of ``p_e_a`` or a grid point may sum (as the
discrete estimators' check of ``action_dist``)."""

GRID_DECIMALS = 6
"""Grid weights are compared after rounding to this many decimals (float32 grids: k / resolution is exact to
about 1e-7), so that ties between arms are found and broken by the documented rule, not by rounding noise."""

_CHUNK_ELEMENTS = 1 << 22
"""Rounds are weighted in chunks of about this many (round, action) entries, to bound memory."""


# ------------------------------------------------------------------------------------------- grid embeddings
def _check_grid(grid: object) -> np.ndarray:
    """``grid`` (n_actions, n_arms) as float64: points of the simplex (finite, >= 0, rows summing to 1)."""
    points = np.asarray(grid, dtype=np.float64)
    if points.ndim != 2 or points.shape[0] < 1 or points.shape[1] < 1:
        raise OPEInputError(f"grid must be 2-D (n_actions, n_arms) with at least one point and one arm; got shape "
                            f"{points.shape}")
    bad = ~(np.isfinite(points) & (points >= 0)).all(axis=1)
    if bad.any():
        raise OPEInputError(f"grid must hold arm weights (finite, >= 0); row {_first_bad(bad)} is "
                            f"{points[_first_bad(bad)].tolist()}")
    sums = points.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROBABILITY_ATOL
    if bad.any():
        raise OPEInputError(f"grid rows must sum to 1 (points of the simplex); row {_first_bad(bad)} sums to "
                            f"{sums[_first_bad(bad)]}")
    return points


def largest_arm_embedding(grid: np.ndarray) -> np.ndarray:
    """The embedding "which arm has the largest weight": (n_actions,) int64 in [0, n_arms), for ``grid``
    (n_actions, n_arms), e.g. ``envs.fusion.simplex_grid(n_arms, resolution)``. Ties (e.g. [0.5, 0.5, 0])
    go to the arm listed first. n_arms embedding values; every one-hot point is its arm's own.
    """
    points = np.round(_check_grid(grid), GRID_DECIMALS)
    return np.argmax(points, axis=1).astype(np.int64)  # argmax takes the first of equal maxima


def coarse_grid_embedding(grid: np.ndarray, coarse_resolution: int) -> np.ndarray:
    """The embedding "the blend rounded to the coarser grid at ``coarse_resolution``": (n_actions,) int64, the
    index of the rounded point in ``envs.fusion.simplex_grid(n_arms, coarse_resolution)`` (so there are
    ``len(simplex_grid(n_arms, coarse_resolution))`` embedding values, not all necessarily used).

    Rounding keeps the weights on the simplex (largest remainder, Hamilton's method): with R =
    ``coarse_resolution`` each arm first gets floor(R w_k) units of 1/R, then the units still missing to make R
    go one each to the arms with the largest remainders R w_k - floor(R w_k); equal remainders go to the arm
    with the larger weight, then to the arm listed first. So [0.75, 0.25] rounds to [1, 0] and [0.25, 0.75] to
    [0, 1] at R = 2, and [0.5, 0.5] stays. At the grid's own resolution (or a multiple of it) every point is its
    own embedding, and MIPS is IPS.
    """
    if not isinstance(coarse_resolution, numbers.Integral) or isinstance(coarse_resolution, bool) \
            or coarse_resolution < 1:
        raise OPEInputError(f"coarse_resolution must be an integer >= 1; got {coarse_resolution!r}")
    # imported here: importing fusionsim.envs takes seconds, and the estimators need none of it
    from fusionsim.envs.fusion import simplex_grid

    points = _check_grid(grid)
    resolution = int(coarse_resolution)
    scaled = np.round(points * resolution, GRID_DECIMALS)
    units = np.floor(scaled)
    remainder = np.round(scaled - units, GRID_DECIMALS)
    missing = (resolution - units.sum(axis=1)).astype(np.int64)  # in [0, n_arms - 1]
    n_arms = points.shape[1]
    # per row, arms by remainder (largest first), then weight (largest first), then arm index
    order = np.lexsort((np.broadcast_to(np.arange(n_arms), points.shape), -scaled, -remainder), axis=1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n_arms), points.shape), axis=1)
    units = (units + (rank < missing[:, None])).astype(np.int64)
    coarse = np.rint(simplex_grid(n_arms, resolution).astype(np.float64) * resolution).astype(np.int64)
    base = resolution + 1
    codes = coarse @ (base ** np.arange(n_arms, dtype=np.int64))
    order = np.argsort(codes)
    found = order[np.searchsorted(codes, units @ (base ** np.arange(n_arms, dtype=np.int64)), sorter=order)]
    return found.astype(np.int64)


EMBEDDING_METHODS = ("largest-arm", "coarse-grid")
"""The grid embeddings :func:`grid_embedding` provides."""


def grid_embedding(grid: np.ndarray, method: str = "largest-arm", coarse_resolution: int = 2) -> np.ndarray:
    """A discrete embedding of the weight-grid actions: (n_actions,) int64 embedding ids for ``grid``
    (n_actions, n_arms), the points of ``envs.fusion.simplex_grid(n_arms, resolution)``.

    ``method``: "largest-arm" (:func:`largest_arm_embedding`: the arm with the largest weight, n_arms values)
    or "coarse-grid" (:func:`coarse_grid_embedding`: the blend rounded to the grid at ``coarse_resolution``).
    Many actions share an embedding, which is what lowers MIPS's variance; MIPS with it is unbiased only if the
    reward depends on the blend through the embedding alone (see the module docstring). With the per-round ids
    ``embedding[action]`` as ``action_embed`` and ``deterministic_p_e_a(embedding)`` as ``p_e_a``.
    """
    if method == "largest-arm":
        return largest_arm_embedding(grid)
    if method == "coarse-grid":
        return coarse_grid_embedding(grid, coarse_resolution)
    raise OPEInputError(f"method must be one of {', '.join(repr(m) for m in EMBEDDING_METHODS)}; got {method!r}")


def deterministic_p_e_a(embedding: np.ndarray, n_embeddings: int | None = None) -> np.ndarray:
    """p(e | a) = 1{e = embedding[a]} in obp's ``p_e_a`` shape (n_actions, n_embeddings, 1), for
    ``embedding`` (n_actions,) ints in [0, n_embeddings) (None: max + 1)."""
    ids = np.asarray(embedding)
    if ids.ndim != 1 or len(ids) == 0 or ids.dtype.kind not in "iu":
        raise OPEInputError(f"embedding must be 1-D integers, one embedding id per action; got shape {ids.shape}, "
                            f"dtype {ids.dtype}")
    if (ids < 0).any():
        raise OPEInputError(f"embedding must be integers >= 0; got {ids[_first_bad(ids < 0)]} at action "
                            f"{_first_bad(ids < 0)}")
    size = int(ids.max()) + 1 if n_embeddings is None else n_embeddings
    if not isinstance(size, numbers.Integral) or isinstance(size, bool) or size <= ids.max():
        raise OPEInputError(f"n_embeddings must be an integer > every embedding id (> {int(ids.max())}); got "
                            f"{n_embeddings!r}")
    p_e_a = np.zeros((len(ids), int(size), 1))
    p_e_a[np.arange(len(ids)), ids, 0] = 1.0
    return p_e_a


# ------------------------------------------------------------------------------------------------ input checks
def check_embed_inputs(estimator_name: str, action: np.ndarray, action_embed: np.ndarray, pi_b: np.ndarray,
                       action_dist: np.ndarray, p_e_a: np.ndarray, reward: np.ndarray | None = None,
                       position: np.ndarray | None = None, n_actions: int | None = None) -> tuple[np.ndarray, ...]:
    """Validate the arrays of the module docstring and return (reward or None, action (n,), action_embed
    (n, D), pi_b (n, A) and pi_e (n, A) at each round's position, p_e_a (A, C, D)). ``n_actions`` (an
    estimator's field), when given, must be ``action_dist``'s number of actions. Checks, in order:
    ``action_dist``, ``reward``, ``action``, ``position`` (as the discrete estimators check them);
    ``n_actions``; ``pi_b``; ``p_e_a``; ``action_embed``; the logged embedding possible for the logged action;
    p(e_i | x_i, pi_b) > 0; pi_b(a_i | x_i) > 0."""
    reward, action, _, action_dist, position, _ = check_inputs(action_dist, reward, action, None, position)
    n, n_actions_dist, _ = action_dist.shape
    if action is None:
        raise OPEInputError(f"{estimator_name} needs action; got None")
    if n_actions is not None and n_actions != n_actions_dist:
        raise OPEInputError(f"action_dist has {n_actions_dist} actions (axis 1) but n_actions = {n_actions}")
    pi_b = _check_pi_b(estimator_name, pi_b, action_dist.shape)
    pi_b = pi_b if pi_b.ndim == 2 else _at_position(pi_b, position)
    p_e_a = _check_p_e_a(estimator_name, p_e_a, n_actions_dist)
    embed = _check_action_embed(estimator_name, action_embed, n, p_e_a.shape)
    rows = np.arange(n)
    logged = np.ones(n)
    for d in range(p_e_a.shape[2]):
        logged *= p_e_a[action, embed[:, d], d]
    if not (logged > 0).all():
        row = _first_bad(~(logged > 0))
        raise OPEInputError(f"action_embed must be possible for the logged action: p_e_a gives action {action[row]} "
                            f"embedding {_embed_text(embed[row])} probability 0 at row {row}")
    pi_e = _at_position(action_dist, position)
    p_b = _marginals(pi_b, embed, p_e_a)
    if not (p_b > 0).all():
        row = _first_bad(~(p_b > 0))
        raise OPEInputError(f"pi_b must give the logged embedding a positive probability; p(e | x, pi_b) = 0 at row "
                            f"{row} (embedding {_embed_text(embed[row])})")
    chosen = pi_b[rows, action]
    if not (chosen > 0).all():
        row = _first_bad(~(chosen > 0))
        raise OPEInputError(f"pi_b must give the logged action a positive probability; got 0 at row {row} "
                            f"(action {action[row]})")
    return reward, action, embed, pi_b, pi_e, p_e_a


def _embed_text(e: np.ndarray) -> str:
    return str(int(e[0])) if len(e) == 1 else str(e.tolist())


def _check_pi_b(estimator_name: str, pi_b: object, dist_shape: tuple[int, int, int]) -> np.ndarray:
    if pi_b is None:
        raise OPEInputError(f"{estimator_name} needs pi_b (n_rounds, n_actions, len_list), the logging policy's "
                            "distribution in every round; got None")
    array = np.asarray(pi_b, dtype=np.float64)
    if array.shape not in (dist_shape, dist_shape[:2]):
        raise OPEInputError(f"pi_b must have action_dist's shape {dist_shape} or {dist_shape[:2]}; got "
                            f"{array.shape}")
    values = array.reshape(len(array), -1)
    bad = ~(np.isfinite(values) & (values >= 0)).all(axis=1)
    if bad.any():
        raise OPEInputError(f"pi_b must hold probabilities; row {_first_bad(bad)} has a negative or non-finite value")
    sums = array.sum(axis=1)
    bad = np.abs(sums - 1.0) > PROBABILITY_ATOL
    if bad.any():
        row = _first_bad(bad if bad.ndim == 1 else bad.any(axis=1))
        raise OPEInputError(f"pi_b must sum to 1 over actions; row {row} sums to {sums[row].tolist()}")
    return array


def _check_p_e_a(estimator_name: str, p_e_a: object, n_actions: int) -> np.ndarray:
    if p_e_a is None:
        raise OPEInputError(f"{estimator_name} needs p_e_a (n_actions, n_cat_per_dim, n_cat_dim), the known "
                            "p(e | a) (weights estimated from context, obp's fallback, are not implemented); got None")
    array = np.asarray(p_e_a, dtype=np.float64)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise OPEInputError(f"p_e_a must be 3-D (n_actions, n_cat_per_dim, n_cat_dim), or 2-D for one embedding "
                            f"dimension; got shape {array.shape}")
    if array.shape[0] != n_actions or array.shape[1] < 1 or array.shape[2] < 1:
        raise OPEInputError(f"p_e_a must have one row per action ({n_actions}, action_dist's axis 1) and at least "
                            f"one embedding value and dimension; got shape {array.shape}")
    bad = ~(np.isfinite(array) & (array >= 0) & (array <= 1)).all(axis=(1, 2))
    if bad.any():
        raise OPEInputError(f"p_e_a must hold probabilities in [0, 1]; action {_first_bad(bad)} has a value outside "
                            "[0, 1] or not finite")
    sums = array.sum(axis=1)  # (n_actions, n_cat_dim)
    bad = np.abs(sums - 1.0) > PROBABILITY_ATOL
    if bad.any():
        a, d = np.argwhere(bad)[0]
        raise OPEInputError(f"p_e_a must sum to 1 over the embedding values of each action and dimension; action "
                            f"{a}, dimension {d} sums to {sums[a, d]}")
    return array


def _check_action_embed(estimator_name: str, action_embed: object, n: int,
                        p_e_a_shape: tuple[int, int, int]) -> np.ndarray:
    if action_embed is None:
        raise OPEInputError(f"{estimator_name} needs action_embed (n_rounds, n_cat_dim), the embedding logged with "
                            "each round; got None")
    embed = np.asarray(action_embed)
    _, n_values, n_dims = p_e_a_shape
    if embed.ndim == 1:
        embed = embed[:, None]
    if embed.shape != (n, n_dims):
        raise OPEInputError(f"action_embed must have shape ({n}, {n_dims}) (n_rounds, n_cat_dim = p_e_a.shape[2]); "
                            f"got {np.shape(action_embed)}")
    if embed.dtype.kind not in "iu":
        raise OPEInputError(f"action_embed must be integers (embedding ids); got dtype {embed.dtype}")
    bad = (embed < 0) | (embed >= n_values)
    if bad.any():
        row, d = np.argwhere(bad)[0]
        where = f"row {row}" if n_dims == 1 else f"row {row}, dimension {d}"
        raise OPEInputError(f"action_embed must be integers in [0, {n_values}) (n_cat_per_dim = p_e_a.shape[1]); "
                            f"got {embed[row, d]} at {where}")
    return embed.astype(np.int64)


# ------------------------------------------------------------------------------------------------------ weights
def _marginals(pi: np.ndarray, embed: np.ndarray, p_e_a: np.ndarray) -> np.ndarray:
    """p(e_i | x_i, pi) = sum_a pi[i, a] prod_d p_e_a[a, e_id, d], (n,), in chunks of rounds."""
    n, n_actions = pi.shape
    out = np.empty(n)
    step = max(1, _CHUNK_ELEMENTS // max(n_actions, 1))
    for start in range(0, n, step):
        stop = min(n, start + step)
        given = np.take(p_e_a[:, :, 0], embed[start:stop, 0], axis=1).T  # (rows, A): p(e_i0 | a)
        for d in range(1, p_e_a.shape[2]):
            given *= np.take(p_e_a[:, :, d], embed[start:stop, d], axis=1).T
        out[start:stop] = np.einsum("na,na->n", pi[start:stop], given)
    return out


def _weights(action_embed: np.ndarray, pi_b: np.ndarray, pi_e: np.ndarray, p_e_a: np.ndarray) -> np.ndarray:
    return _marginals(pi_e, action_embed, p_e_a) / _marginals(pi_b, action_embed, p_e_a)


def marginal_importance_weights(action: np.ndarray, action_embed: np.ndarray, pi_b: np.ndarray,
                                action_dist: np.ndarray, p_e_a: np.ndarray,
                                position: np.ndarray | None = None) -> np.ndarray:
    """w(x_i, e_i) = p(e_i | x_i, pi_e) / p(e_i | x_i, pi_b), (n_rounds,), with the arrays and checks of the
    estimators (module docstring). ``w * reward`` are MIPS's per-round contributions."""
    _, _, embed, pi_b, pi_e, p_e_a = check_embed_inputs("marginal_importance_weights", action, action_embed, pi_b,
                                                        action_dist, p_e_a, position=position)
    return _weights(embed, pi_b, pi_e, p_e_a)


# --------------------------------------------------------------------------------------------------- estimators
def _check_integer(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise OPEInputTypeError(f"{name} must be an integer >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise OPEInputError(f"{name} must be an integer >= {minimum}; got {value}")


@dataclass
class MarginalizedInverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Marginalised IPW (MIPW; MIPS in Saito and Joachims 2022): V = mean_i w(x_i, e_i) r_i, with the marginal
    weight w(x, e) = p(e | x, pi_e) / p(e | x, pi_b), p(e | x, pi) = sum_a pi(a | x) p(e | a), from a known
    ``p_e_a``.

    Unbiased only when the reward depends on the action through the embedding alone (no direct effect:
    E[r | x, a, e] = E[r | x, e]) and pi_b covers every embedding pi_e can produce; biased otherwise, by the
    amount in the module docstring. Its variance is lower than IPS's the more actions share an embedding.

    Fields (obp's): ``n_actions`` (an integer >= 2, action_dist's axis 1); ``embedding_selection_method`` =
    None (must be None: obp's "exact"/"greedy" selection is not implemented); ``min_emb_dim`` = 1 (integer
    >= 1) and ``delta`` = 0.05 (in [0, 1]), validated, used only by that selection; ``estimator_name`` = "mipw".
    """

    needs_pscore: ClassVar[bool] = False
    n_actions: int
    embedding_selection_method: str | None = None
    min_emb_dim: int = 1
    delta: float = 0.05
    estimator_name: str = "mipw"

    def __post_init__(self) -> None:
        _check_integer("n_actions", self.n_actions, 2)
        if self.embedding_selection_method is not None:
            raise OPEInputError(f"embedding_selection_method must be None (obp's data-driven embedding selection, "
                                f"'exact' or 'greedy', is not implemented); got {self.embedding_selection_method!r}")
        _check_integer("min_emb_dim", self.min_emb_dim, 1)
        if not isinstance(self.delta, numbers.Real) or isinstance(self.delta, bool):
            raise OPEInputTypeError(f"delta must be a number in [0, 1]; got {self.delta!r} "
                                    f"({type(self.delta).__name__})")
        if not 0 <= self.delta <= 1:
            raise OPEInputError(f"delta must be a number in [0, 1]; got {self.delta}")

    def _rounds(self, reward=None, action=None, action_embed=None, pi_b=None, action_dist=None, p_e_a=None,
                position=None) -> tuple[np.ndarray, ...]:
        if reward is None:
            raise OPEInputError(f"{self.estimator_name} needs reward; got None")
        reward, _, embed, pi_b, pi_e, p_e_a = check_embed_inputs(
            self.estimator_name, action, action_embed, pi_b, action_dist, p_e_a, reward=reward, position=position,
            n_actions=self.n_actions)
        return self._components(reward, _weights(embed, pi_b, pi_e, p_e_a))

    def _components(self, reward, w):
        return (w * reward,)

    def estimate_policy_value(self, reward: np.ndarray, action: np.ndarray, action_embed: np.ndarray,
                              pi_b: np.ndarray, action_dist: np.ndarray, context: np.ndarray | None = None,
                              p_e_a: np.ndarray | None = None, position: np.ndarray | None = None,
                              **kwargs) -> float:
        """The estimated value of the evaluation policy ``action_dist`` (mean reward per round).

        reward (n_rounds,); action (n_rounds,) ints in [0, n_actions); action_embed (n_rounds, n_cat_dim) (or
        (n_rounds,)) ints in [0, n_cat_per_dim), the logged embeddings; pi_b (n_rounds, n_actions, len_list)
        (or (n_rounds, n_actions)), the logging distribution; action_dist (n_rounds, n_actions, len_list) =
        pi_e; context ignored (obp uses it only without p_e_a); p_e_a (n_actions, n_cat_per_dim, n_cat_dim)
        (or (n_actions, n_cat_per_dim)) = p(e | a), required; position (n_rounds,) ints in [0, len_list),
        needed when len_list > 1. ``**kwargs`` (pscore, estimated_rewards_by_reg_model, ... as obp's
        OffPolicyEvaluation passes them) is ignored.
        """
        return self._value(reward=reward, action=action, action_embed=action_embed, pi_b=pi_b,
                           action_dist=action_dist, p_e_a=p_e_a, position=position)

    def estimate_interval(self, reward: np.ndarray, action: np.ndarray, action_embed: np.ndarray, pi_b: np.ndarray,
                          action_dist: np.ndarray, context: np.ndarray | None = None,
                          position: np.ndarray | None = None, p_e_a: np.ndarray | None = None, alpha: float = 0.05,
                          n_bootstrap_samples: int = 10000, random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over rounds of the estimate: ``{"mean", "95.0% CI (lower)", "95.0% CI
        (upper)"}`` (obp's keys; the level follows ``alpha``). The arrays as in ``estimate_policy_value`` (in
        obp's order for this method: ``position`` before ``p_e_a``); ``n_bootstrap_samples`` resamples, drawn
        from ``random_state`` (None, an int, a Generator or a RandomState).
        """
        return self._interval(alpha, n_bootstrap_samples, random_state, reward=reward, action=action,
                              action_embed=action_embed, pi_b=pi_b, action_dist=action_dist, p_e_a=p_e_a,
                              position=position)


@dataclass
class SelfNormalizedMarginalizedInverseProbabilityWeighting(MarginalizedInverseProbabilityWeighting):
    """Self-normalised MIPW (SNMIPW): V = sum_i w(x_i, e_i) r_i / sum_i w(x_i, e_i), w the marginal weight of
    :class:`MarginalizedInverseProbabilityWeighting`. Biased in finite samples but consistent under the same
    assumptions as MIPW (no direct effect, common embedding support); with every action its own embedding it
    is SNIPW. Fields as MIPW's, ``estimator_name`` = "snmipw".
    """

    estimator_name: str = "snmipw"

    def _components(self, reward, w):
        return w * reward, w

    def _combine(self, weighted_reward, weight):
        return weighted_reward / weight


MIPS = MarginalizedInverseProbabilityWeighting
"""The paper's name for MIPW."""
SNMIPS = SelfNormalizedMarginalizedInverseProbabilityWeighting
"""The self-normalised MIPS (obp's SNMIPW)."""

MIPS_ESTIMATORS = {"mipw": MarginalizedInverseProbabilityWeighting,
                   "snmipw": SelfNormalizedMarginalizedInverseProbabilityWeighting}
"""The embedding estimator classes by ``estimator_name``; ``MIPS_ESTIMATORS[name](n_actions=...)``."""

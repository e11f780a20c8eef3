"""Estimated propensities, for logs whose logging policy did not record them (or whose record is not
trusted): a behaviour-policy model pi_b-hat(a | x), cross-fitted, so that a round's own action never
predicts itself, and clipped from below.

The model is a multinomial logistic regression of the logged action on the context (with an intercept and
an L2 penalty ``ridge`` on the slopes), fitted by L-BFGS on the other folds' rounds. A clipped propensity
``max(pi_b-hat, clip)`` bounds every importance weight by pi_e / clip: it trades variance for bias where
the logger really was that unlikely. The estimators take them as obp does: ``estimated_pscore`` with
``use_estimated_pscore=True`` (``estimators.py``).

Estimated propensities make an estimate depend on the behaviour model being right: a logger that used
features the model lacks, or a deterministic logger (no overlap), cannot be corrected for. The ``ope``
report says so whenever they are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from fusionsim.experiments.evaluation.estimators import OPEInputError


@dataclass
class EstimatedPropensities:
    """``pscore`` (n,) the cross-fitted, clipped pi_b-hat(a_i | x_i) of each round's logged action;
    ``clipped`` the share of rounds raised to ``clip``; ``log_loss`` the held-out mean negative
    log-likelihood of the logged actions (before clipping; log(n_actions) is what a uniform guess scores)."""

    pscore: np.ndarray
    clip: float
    clipped: float
    log_loss: float


def _fit(x: np.ndarray, actions: np.ndarray, n_actions: int, ridge: float) -> np.ndarray:
    """Coefficients (d, n_actions) of the multinomial logistic regression of ``actions`` on ``x`` (n, d),
    column 0 the intercept (not penalised)."""
    n, d = x.shape
    penalty = np.full((d, 1), ridge)
    penalty[0] = 0.0

    rows = np.arange(n)

    def loss_and_gradient(flat: np.ndarray) -> tuple[float, np.ndarray]:
        theta = flat.reshape(d, n_actions)
        logits = x @ theta
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        total = p.sum(axis=1)
        p /= total[:, None]
        loss = float(np.mean(np.log(total) - logits[rows, actions])) + 0.5 * float(np.sum(penalty * theta ** 2))
        p[rows, actions] -= 1.0
        gradient = x.T @ p / n + penalty * theta
        return loss, gradient.ravel()

    result = optimize.minimize(loss_and_gradient, np.zeros(d * n_actions), jac=True, method="L-BFGS-B",
                               options={"maxiter": 200})
    return result.x.reshape(d, n_actions)


def cross_fitted_propensities(contexts: np.ndarray, actions: np.ndarray, n_actions: int, n_folds: int = 2,
                              clip: float | None = None, ridge: float = 1e-4, seed: int = 0) -> EstimatedPropensities:
    """pi_b-hat(a_i | x_i) for logged ``actions`` (n,) in [0, n_actions) at ``contexts`` (n, D), each from the
    model fitted on the other ``n_folds - 1`` folds (rounds assigned to folds at random by ``seed``), clipped
    from below at ``clip`` (None: 1 / (10 n_actions), a tenth of the uniform logger's propensity)."""
    contexts = np.asarray(contexts, dtype=np.float64)
    actions = np.asarray(actions)
    if contexts.ndim != 2 or len(contexts) != len(actions):
        raise OPEInputError(f"contexts must be (n, D) with one row per action; got {contexts.shape} for "
                            f"{len(actions)} actions")
    if not np.issubdtype(actions.dtype, np.integer) or actions.min() < 0 or actions.max() >= n_actions:
        bad = np.flatnonzero((actions < 0) | (actions >= n_actions) | (actions != np.floor(actions)))
        row = int(bad[0]) if len(bad) else 0
        raise OPEInputError(f"actions must be integers in [0, {n_actions}); got {actions[row]} at row {row}")
    if n_folds < 2 or n_folds > len(actions):
        raise OPEInputError(f"n_folds must be in [2, {len(actions)}] (the rounds); got {n_folds}")
    clip = 1.0 / (10 * n_actions) if clip is None else float(clip)
    if not 0.0 < clip <= 1.0 / n_actions:
        raise OPEInputError(f"clip must be in (0, 1 / n_actions = {1.0 / n_actions:.6g}]; got {clip}")
    # standardised contexts (constant columns dropped) behind an intercept: L-BFGS converges on them
    spread = contexts.std(axis=0)
    varying = spread > 0
    z = (contexts[:, varying] - contexts[:, varying].mean(axis=0)) / spread[varying]
    x = np.column_stack([np.ones(len(z)), z])
    fold = np.random.default_rng(seed).permutation(len(actions)) % n_folds
    chosen = np.empty(len(actions))
    for f in range(n_folds):
        held_out = fold == f
        theta = _fit(x[~held_out], actions[~held_out], n_actions, ridge)
        logits = x[held_out] @ theta
        log_p = logits - special.logsumexp(logits, axis=1, keepdims=True)
        chosen[held_out] = np.exp(np.take_along_axis(log_p, actions[held_out, None], axis=1)[:, 0])
    log_loss = float(-np.mean(np.log(np.maximum(chosen, 1e-300))))
    pscore = np.maximum(chosen, clip)
    return EstimatedPropensities(pscore=pscore, clip=clip, clipped=float(np.mean(chosen < clip)), log_loss=log_loss)

"""The reward model of the doubly robust estimators: ridge regression per action, cross-fitted."""

from __future__ import annotations

import numpy as np


def cross_fitted_rewards(contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray, n_actions: int,
                         n_folds: int = 2, ridge: float = 1.0, seed: int = 0) -> np.ndarray:
    """q-hat (n, n_actions): for each round, a ridge regression of reward on context per action, fitted
    on the other folds (so a round's own reward never predicts itself; Chernozhukov et al. 2018)."""
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2; got {n_folds}")
    n, d = contexts.shape
    fold = np.random.default_rng(seed).permutation(n) % n_folds
    out = np.empty((n, n_actions))
    eye = ridge * np.eye(d)
    for f in range(n_folds):
        train = fold != f
        x, a, r = contexts[train], actions[train], rewards[train]
        theta = np.empty((n_actions, d))
        for k in range(n_actions):
            xk = x[a == k]
            theta[k] = np.linalg.solve(xk.T @ xk + eye, xk.T @ r[a == k])
        out[fold == f] = contexts[fold == f] @ theta.T
    return out

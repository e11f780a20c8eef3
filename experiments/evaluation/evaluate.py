"""One evaluation loop for every off-policy flow: each estimator's point estimate, bootstrap interval and,
when the true value is known (simulation), its relative error."""

from __future__ import annotations

import numpy as np


def evaluate(estimators: dict[str, object], data: dict[str, np.ndarray], truth: float | None = None,
             n_bootstrap_samples: int = 1000, random_state: int = 0, alpha: float = 0.05) -> dict[str, dict]:
    """Estimate the policy value with every estimator on ``data``.

    Args:
        estimators: name -> an estimator with obp's ``estimate_policy_value(**data)`` and
            ``estimate_interval(**data, alpha, n_bootstrap_samples, random_state)``.
        data: obp's keyword arrays, e.g. ``reward`` (n,), ``action`` (n,), ``pscore`` (n,), ``action_dist``
            (n, n_actions, len_list), ``position`` (n,), ``estimated_rewards_by_reg_model`` (n, n_actions,
            len_list); each estimator takes the ones it needs.
        truth: the policy's true value when it is known (simulated logs), for the relative error.

    Returns:
        name -> {"estimate", "ci_lower", "ci_upper"} (the (1 - alpha) bootstrap interval), plus
        "relative_error" = |estimate - truth| / |truth| when ``truth`` is given.
    """
    level = 100 * (1 - alpha)
    results = {}
    for name, estimator in estimators.items():
        value = float(estimator.estimate_policy_value(**data))
        interval = estimator.estimate_interval(**data, alpha=alpha, n_bootstrap_samples=n_bootstrap_samples,
                                               random_state=random_state)
        result = {"estimate": value, "ci_lower": float(interval[f"{level}% CI (lower)"]),
                  "ci_upper": float(interval[f"{level}% CI (upper)"])}
        if truth is not None:
            result["relative_error"] = abs(value - truth) / abs(truth)
        results[name] = result
    return results

"""Position bias of a position-based click model (PBM) from an impression log.

Under the PBM a shown item is clicked when it is examined and attractive, independently:
``P(click | item i at position k) = theta_k * gamma_i`` (Richardson et al. 2007; Chuklin, Markov and de
Rijke 2015, "Click Models for Web Search", ch. 3 and 4). Only the products are observed, so theta is
identified up to a factor: both estimators report theta relative to the top position (theta_0 = 1).

- :func:`randomized_position_bias`: where the logger put the slate's items in a uniformly random order
  (``fusionsim simulate --shuffle-slates``, or a shop's randomisation bucket), an item's attraction is
  independent of its position, so ``CTR_k / CTR_0 = theta_k / theta_0`` (intervention harvesting in its
  simplest form, Joachims et al. 2017; Agarwal et al. 2019). Intervals by the delta method on the ratio of
  two means, with requests as the independent units.
- :func:`pbm_em`: any log where items appear at several positions; expectation-maximisation of the PBM
  likelihood over theta_k and one gamma per item (Chuklin et al. 2015, section 4.2; Wang et al. 2018).
- :func:`randomized_pbm`: the whole PBM of a log whose items were put at positions independently of
  everything else (a uniformly random logger): theta_k is the click rate at position k, and each item's
  attraction is shrunk toward the average by empirical Bayes, as a sparse log (a few clicks per item)
  needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats


@dataclass
class PositionBias:
    """``relative`` (K,) theta_k / theta_0, with its 95% interval ``low``/``high`` (K,) (NaN where the
    estimator gives none) from ``impressions`` (K,) impressions per position."""

    relative: np.ndarray
    low: np.ndarray
    high: np.ndarray
    impressions: np.ndarray

    def decay(self) -> float:
        """The exponent d of ``theta_k / theta_0 = 1 / log2(k + 2) ** d`` (k = 0 the top) that fits best by
        least squares on the logarithms (the form of the scenarios' ``examination_decay``)."""
        k = np.arange(1, len(self.relative))
        ok = self.relative[1:] > 0
        x, y = np.log(np.log2(k[ok] + 2.0)), np.log(self.relative[1:][ok])
        return float(-(x @ y) / (x @ x))


def randomized_position_bias(request_id: np.ndarray, position: np.ndarray, click: np.ndarray,
                             level: float = 0.95) -> PositionBias:
    """Relative examination per position from impressions whose order was randomised: ``request_id``,
    ``position`` (0 = top) and ``click`` (0/1), each (n,). The ratio CTR_k / CTR_0 of the positions'
    click sums over their impressions; its interval by the delta method for the ratio of two sums with
    per-request click counts as the units (the top and position k share requests)."""
    request_id, position = np.asarray(request_id), np.asarray(position, dtype=np.int64)
    click = np.asarray(click, dtype=np.float64)
    _, request = np.unique(request_id, return_inverse=True)
    n_requests, n_positions = request.max() + 1, position.max() + 1
    clicks = np.zeros((n_requests, n_positions))
    shown = np.zeros((n_requests, n_positions))
    np.add.at(clicks, (request, position), click)
    np.add.at(shown, (request, position), 1.0)
    ctr = clicks.sum(axis=0) / shown.sum(axis=0)
    relative = ctr / ctr[0]
    # ratio R = (sum c_k / sum s_k) / (sum c_0 / sum s_0): linearised per-request residual
    # e = (c_k - ctr_k s_k) / (ctr_k S_k) - (c_0 - ctr_0 s_0) / (ctr_0 S_0) (relative error of R), S = sum s
    with np.errstate(invalid="ignore", divide="ignore"):
        top = (clicks[:, 0] - ctr[0] * shown[:, 0]) / (ctr[0] * shown[:, 0].sum())
        residual = (clicks - ctr * shown) / (ctr * shown.sum(axis=0)) - top[:, None]
    half = stats.norm.ppf(0.5 + level / 2) * relative * np.sqrt(n_requests) * residual.std(axis=0, ddof=1)
    half[0] = 0.0
    return PositionBias(relative, relative - half, relative + half, shown.sum(axis=0).astype(np.int64))


@dataclass
class PBM:
    """A fitted position-based model: examination ``theta`` (K,) per position and attraction ``gamma``
    (n_items,) per item (NaN for items never shown), so that P(click) = theta_k gamma_i."""

    theta: np.ndarray
    gamma: np.ndarray

    def click_probability(self, item: np.ndarray, position: np.ndarray) -> np.ndarray:
        """theta[position] * gamma[item] (n,); an item the fit never saw (or beyond its ids) gets the mean
        attraction of the items it saw."""
        item = np.asarray(item, dtype=np.int64)
        known = (item < len(self.gamma)) & (item >= 0)
        gamma = np.full(len(item), np.nanmean(self.gamma))
        seen = self.gamma[item[known]]
        gamma[known] = np.where(np.isnan(seen), gamma[known], seen)
        return self.theta[np.asarray(position, dtype=np.int64)] * gamma


def log_likelihood(probability: np.ndarray, click: np.ndarray, floor: float = 1e-6) -> float:
    """Mean Bernoulli log-likelihood per impression of 0/1 ``click`` (n,) under ``probability`` (n,)
    (clipped to [floor, 1 - floor])."""
    p = np.clip(np.asarray(probability, dtype=np.float64), floor, 1.0 - floor)
    c = np.asarray(click, dtype=np.float64)
    return float(np.mean(c * np.log(p) + (1.0 - c) * np.log1p(-p)))


def pbm_em(item: np.ndarray, position: np.ndarray, click: np.ndarray, iterations: int = 200,
           tolerance: float = 1e-7) -> tuple[PositionBias, PBM]:
    """Fit the PBM by expectation-maximisation on impressions ``item`` (n,) ids, ``position`` (n,) 0 = top,
    ``click`` (n,) 0/1; until no theta moves by more than ``tolerance`` or ``iterations`` passes. Returns
    the position bias relative to the top (no interval) and the fitted model (its gamma (max id + 1,) on
    the scale of its theta).

    Each pass, for an unclicked impression the posterior of "examined but not attractive" is
    theta (1 - gamma) / (1 - theta gamma) and of "attractive but not examined" (1 - theta) gamma /
    (1 - theta gamma); theta_k and gamma_i become the means over their impressions of the click plus
    that posterior."""
    item, position = np.asarray(item, dtype=np.int64), np.asarray(position, dtype=np.int64)
    click = np.asarray(click, dtype=np.float64)
    n_items, n_positions = item.max() + 1, position.max() + 1
    per_position = np.bincount(position, minlength=n_positions).astype(np.float64)
    per_item = np.bincount(item, minlength=n_items).astype(np.float64)
    theta = np.full(n_positions, 0.5)
    gamma = np.clip(np.bincount(item, weights=click, minlength=n_items) / np.maximum(per_item, 1) * 2, 1e-4, 1 - 1e-4)
    unclicked = 1.0 - click
    for _ in range(iterations):
        t, g = theta[position], gamma[item]
        denominator = np.maximum(1.0 - t * g, 1e-12)
        examined = click + unclicked * t * (1.0 - g) / denominator
        attractive = click + unclicked * (1.0 - t) * g / denominator
        new_theta = np.clip(np.bincount(position, weights=examined, minlength=n_positions) / per_position, 1e-6, 1.0)
        gamma = np.clip(np.bincount(item, weights=attractive, minlength=n_items) / np.maximum(per_item, 1),
                        1e-6, 1 - 1e-6)
        moved = np.abs(new_theta - theta).max()
        theta = new_theta
        if moved < tolerance:
            break
    gamma = np.where(per_item > 0, gamma, np.nan)
    nan = np.full(n_positions, np.nan)
    return PositionBias(theta / theta[0], nan, nan, per_position.astype(np.int64)), PBM(theta, gamma)


PRIOR_STRENGTHS = np.logspace(-2, 4, 121)
"""The grid over which :func:`randomized_pbm` picks its prior strength s (pseudo expected clicks)."""


def randomized_pbm(item: np.ndarray, position: np.ndarray, click: np.ndarray, n_items: int,
                   n_positions: int, prior_strength: float | None = None) -> tuple[PBM, float]:
    """The PBM of impressions ``item`` (n,), ``position`` (n,) 0 = top and ``click`` (n,) 0/1 whose items were
    assigned to positions independently of the shopper (a uniformly random logger), and its prior strength.

    theta_k (n_positions,) is the click rate at position k; gamma_i (n_items,) the item's multiplier on it,
    so that P(click | i at k) = theta_k gamma_i and the average item has gamma 1. With e_i the clicks the
    item's impressions would get at their positions' rates, its clicks c_i ~ Poisson(gamma_i e_i) with
    gamma_i ~ Gamma(s, s) (mean 1); the prior strength s maximises the marginal, negative binomial,
    likelihood of every item's clicks over :data:`PRIOR_STRENGTHS`, and gamma_i is the posterior mean
    (c_i + s) / (e_i + s) (Gamma-Poisson empirical Bayes). A given ``prior_strength`` is used instead of the
    chosen one; 0 is the maximum-likelihood fit, gamma_i = c_i / e_i (unshrunk: unbiased for any weighting of
    the items fixed apart from this log, e.g. another policy's choice frequencies, where shrinkage pulls a
    policy that favours good items toward the average). Items never shown get NaN; a log without clicks gets
    theta 0, gamma 1 and s = inf."""
    item, position = np.asarray(item, dtype=np.int64), np.asarray(position, dtype=np.int64)
    click = np.asarray(click, dtype=np.float64)
    shown_at = np.bincount(position, minlength=n_positions).astype(np.float64)
    theta = np.bincount(position, weights=click, minlength=n_positions) / np.maximum(shown_at, 1.0)
    expected = np.bincount(item, weights=theta[position], minlength=n_items)
    clicks = np.bincount(item, weights=click, minlength=n_items)
    shown = np.bincount(item, minlength=n_items) > 0
    if clicks.sum() == 0:
        return PBM(theta, np.where(shown, 1.0, np.nan)), float("inf")
    if prior_strength is None:
        c, e = clicks[shown][None, :], expected[shown][None, :]
        s = PRIOR_STRENGTHS[:, None]
        marginal = (special.gammaln(c + s) - special.gammaln(s) - special.gammaln(c + 1.0)
                    + s * np.log(s / (s + e)) + special.xlogy(c, e / (s + e))).sum(axis=1)
        strength = float(PRIOR_STRENGTHS[int(np.argmax(marginal))])
    else:
        strength = float(prior_strength)
    gamma = np.full(n_items, np.nan)
    with np.errstate(invalid="ignore"):  # 0 / 0 at s = 0 for an item shown only where nothing was clicked: NaN
        gamma[shown] = (clicks[shown] + strength) / (expected[shown] + strength)
    return PBM(theta, gamma), strength

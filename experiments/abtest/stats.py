"""A/B test statistics on per-shopper metrics (the shopper is the unit of randomisation and of analysis).

* Welch's t for a difference of per-shopper means, with the Welch-Satterthwaite degrees of freedom.
* Ratio metrics (CTR = sum clicks / sum impressions of a bucket) with the delta method:
  Var(X-bar / Y-bar) ~ (1/n) (s_X^2 / m_Y^2 - 2 m_X s_XY / m_Y^3 + m_X^2 s_Y^2 / m_Y^4).
* CUPED (Deng et al. 2013): Y' = Y - theta (X - mean X), theta = Cov(Y, X) / Var(X), X a pre-period metric.
* Sample-ratio mismatch: chi-square test of bucket sizes against the planned split.
* Holm's step-down correction for several comparisons.
* Minimum detectable effect at power 1 - beta: (z_{1-alpha/2} + z_{1-beta}) * SE of the difference.
* Wilson's score interval of a proportion (a false-positive rate, a coverage): with z = z_{1-alpha/2},
  (p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats


@dataclass
class Comparison:
    """Treatment (b) against control (a): means, absolute and relative lift, 95% CI of the absolute lift,
    p-value, and the minimum detectable effect at 80% power."""

    mean_a: float
    mean_b: float
    lift: float
    relative_lift: float
    ci_lower: float
    ci_upper: float
    p_value: float
    mde: float

    def to_dict(self) -> dict:
        return asdict(self)


def minimum_detectable_effect(se: float, alpha: float = 0.05, power: float = 0.8) -> float:
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def welch(a: np.ndarray, b: np.ndarray, alpha: float = 0.05) -> Comparison:
    """Difference of means b - a of per-shopper values with Welch's t."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each bucket needs at least 2 shoppers; got {len(a)} and {len(b)}")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = np.sqrt(va + vb)
    diff = b.mean() - a.mean()
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if se > 0 else np.inf
    t = diff / se if se > 0 else 0.0
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return Comparison(float(a.mean()), float(b.mean()), float(diff), float(diff / a.mean()) if a.mean() else np.nan,
                      float(diff - half), float(diff + half), float(2 * stats.t.sf(abs(t), df)),
                      minimum_detectable_effect(float(se), alpha))


def ratio_variance(numerator: np.ndarray, denominator: np.ndarray) -> tuple[float, float]:
    """(sum numerator / sum denominator, its delta-method variance) for per-shopper numerator/denominator."""
    x, y = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    n = len(x)
    mx, my = x.mean(), y.mean()
    cov = np.cov(x, y, ddof=1)
    var = (cov[0, 0] / my ** 2 - 2 * mx * cov[0, 1] / my ** 3 + mx ** 2 * cov[1, 1] / my ** 4) / n
    return float(mx / my), float(var)


def ratio(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray,
          alpha: float = 0.05) -> Comparison:
    """Difference of ratio metrics b - a (e.g. CTR) with the delta method and a normal test."""
    ra, va = ratio_variance(num_a, den_a)
    rb, vb = ratio_variance(num_b, den_b)
    se = np.sqrt(va + vb)
    diff = rb - ra
    z = diff / se if se > 0 else 0.0
    half = stats.norm.ppf(1 - alpha / 2) * se
    return Comparison(ra, rb, float(diff), float(diff / ra) if ra else np.nan, float(diff - half),
                      float(diff + half), float(2 * stats.norm.sf(abs(z))), minimum_detectable_effect(float(se), alpha))


def cuped(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """CUPED-adjusted metric: y - theta (x - mean x) with theta = Cov(y, x) / Var(x) over all shoppers."""
    y, x = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
    var = x.var(ddof=1)
    theta = np.cov(y, x, ddof=1)[0, 1] / var if var > 0 else 0.0
    return y - theta * (x - x.mean())


def sample_ratio_mismatch(counts: np.ndarray, planned_shares: np.ndarray) -> tuple[float, float]:
    """(chi-square statistic, p-value) of bucket sizes ``counts`` against ``planned_shares``."""
    counts = np.asarray(counts, dtype=np.float64)
    expected = np.asarray(planned_shares, dtype=np.float64) / np.sum(planned_shares) * counts.sum()
    statistic = float(((counts - expected) ** 2 / expected).sum())
    return statistic, float(stats.chi2.sf(statistic, len(counts) - 1))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson's score interval of the proportion ``successes / n`` (NaN for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    z, p = float(stats.norm.ppf(1 - alpha / 2)), successes / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(center - half), float(center + half)

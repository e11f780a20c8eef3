"""The statistics of an impression log that a fitted shop must reproduce, each with its 95% interval, and
their comparison between a real (or held-out) log and a simulated one.

Every statistic is a ratio of sums over independent units — shoppers where every row has a known
``user_id`` (a shopper's requests share her taste, across her visits too, so they are not independent),
else sessions where the log has ``session_id``, else requests; session lengths over sessions — so its
standard error is the delta method's for a ratio estimator,
``se(R) = sqrt(sum_u (a_u - R b_u)^2) / sum_u b_u`` over units u with sums a_u, b_u (Cochran 1977, 6.3).
Two logs are independent samples: the difference's interval is ``d +- z sqrt(se_1^2 + se_2^2)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats

Z95 = float(stats.norm.ppf(0.975))
HOUR_BINS = ("00-06", "06-12", "12-18", "18-24")
"""Hours of the day (timestamps are in days) whose click rates are compared."""
PRICE_BANDS = ("cheap", "mid", "dear")
"""Bands of ``log_relative_price`` whose click rates are compared: below -PRICE_BAND_EDGE, within, above."""
PRICE_BAND_EDGE = 0.3
"""log(price / leaf median) beyond which an item is cheap or dear for its category (about 26% below / 35% above)."""
SESSION_BINS = ((1, 1), (2, 3), (4, 7), (8, None))
"""Session lengths (requests) whose shares are compared: 1, 2-3, 4-7, 8 or more."""


@dataclass(frozen=True)
class Estimate:
    """A statistic's ``value``, standard error ``se``, 95% interval and the number of independent ``units``."""

    value: float
    se: float
    units: int

    @property
    def low(self) -> float:
        return self.value - Z95 * self.se

    @property
    def high(self) -> float:
        return self.value + Z95 * self.se


def ratio_estimate(numerators: np.ndarray, denominators: np.ndarray) -> Estimate:
    """sum(numerators) / sum(denominators) over independent units (n,), with the delta method's standard
    error (module docstring); NaN when the denominators sum to zero."""
    a, b = np.asarray(numerators, dtype=np.float64), np.asarray(denominators, dtype=np.float64)
    total = b.sum()
    if total <= 0:
        return Estimate(float("nan"), float("nan"), len(a))
    ratio = a.sum() / total
    return Estimate(float(ratio), float(np.sqrt(np.sum((a - ratio * b) ** 2)) / total), len(a))


def independent_units(impressions: pd.DataFrame) -> np.ndarray:
    """The independent unit (n,) int of each row: its shopper where every shopper is known, else its session,
    else its request."""
    if (impressions["user_id"].to_numpy() >= 0).all():
        column = "user_id"
    else:
        column = "session_id" if "session_id" in impressions else "request_id"
    return pd.factorize(impressions[column])[0]


def log_statistics(impressions: pd.DataFrame) -> dict[str, Estimate]:
    """The statistics of an impression log (``envs.calibration.schema``): click rate at each position, on
    each surface, of each segment (with ``segment``), at each quarter of the day (:data:`HOUR_BINS`), in each
    price band (with ``log_relative_price``: :data:`PRICE_BANDS`), clicks
    per request, purchases per click (with ``purchase``), and, with ``session_id``,
    requests per session and the shares of sessions by length (:data:`SESSION_BINS`)."""
    out: dict[str, Estimate] = {}
    unit = independent_units(impressions)
    n = unit.max() + 1
    requests = impressions.groupby(unit)["request_id"].nunique().to_numpy(np.float64)
    click = impressions["click"].to_numpy(np.float64)
    position = impressions["position"].to_numpy(np.int64)
    for k in np.unique(position):
        shown = position == k
        out[f"CTR at position {k + 1}"] = ratio_estimate(np.bincount(unit, weights=click * shown, minlength=n),
                                                         np.bincount(unit, weights=shown, minlength=n))
    groups = [("on", impressions["surface"].astype(str).to_numpy())]
    if "segment" in impressions:
        groups.append(("of segment", impressions["segment"].astype(str).to_numpy()))
    hour = (impressions["timestamp"].to_numpy(np.float64) % 1.0) * 24.0
    groups.append(("at hours", np.array(HOUR_BINS)[np.minimum((hour // 6).astype(np.int64), 3)]))
    if "log_relative_price" in impressions:  # how attraction moves with price, within the item's category
        relative = impressions["log_relative_price"].to_numpy(np.float64)
        band = (relative > -PRICE_BAND_EDGE).astype(np.int64) + (relative > PRICE_BAND_EDGE)
        groups.append(("at price", np.array(PRICE_BANDS)[band]))
    for word, labels in groups:
        for name in sorted(set(labels)):
            on = labels == name
            out[f"CTR {word} {name}"] = ratio_estimate(np.bincount(unit, weights=click * on, minlength=n),
                                                       np.bincount(unit, weights=on, minlength=n))
    out["clicks per request"] = ratio_estimate(np.bincount(unit, weights=click, minlength=n), requests)
    if "purchase" in impressions:
        bought = impressions["purchase"].to_numpy(np.float64)
        out["purchases per click"] = ratio_estimate(np.bincount(unit, weights=bought, minlength=n),
                                                    np.bincount(unit, weights=click, minlength=n))
    if "session_id" in impressions:
        lengths = impressions.groupby("session_id")["request_id"].nunique().to_numpy(np.float64)
        out["requests per session"] = ratio_estimate(lengths, np.ones(len(lengths)))
        for low, high in SESSION_BINS:
            inside = (lengths >= low) & (lengths <= (np.inf if high is None else high))
            label = f"{low}" if high == low else (f"{low}+" if high is None else f"{low}-{high}")
            out[f"share of sessions of {label} requests"] = ratio_estimate(inside, np.ones(len(lengths)))
    return out


@dataclass(frozen=True)
class Comparison:
    """One statistic in a real and a simulated log: the difference simulated - real, its 95% interval and
    the verdict ("consistent" where the interval holds 0, "differs" elsewhere)."""

    statistic: str
    real: Estimate
    simulated: Estimate
    difference: float
    low: float
    high: float
    verdict: str

    def to_dict(self) -> dict:
        row = asdict(self)
        for side in ("real", "simulated"):
            estimate = getattr(self, side)
            row[side] = {"value": estimate.value, "ci95": [estimate.low, estimate.high], "units": estimate.units}
        return row


def compare_statistics(real: dict[str, Estimate], simulated: dict[str, Estimate]) -> list[Comparison]:
    """Every statistic both logs have, in ``real``'s order (the two logs independent samples)."""
    rows = []
    for name, r in real.items():
        if name not in simulated:
            continue
        s = simulated[name]
        difference = s.value - r.value
        half = Z95 * float(np.hypot(r.se, s.se))
        verdict = "consistent" if difference - half <= 0 <= difference + half else "differs"
        rows.append(Comparison(name, r, s, difference, difference - half, difference + half, verdict))
    return rows

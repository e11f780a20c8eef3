"""A/B statistics against scipy and hand-computed values, and calibration on simulated data."""

import numpy as np
import pytest
from scipy import stats as sp

from fusionsim.experiments.abtest.stats import cuped, holm, minimum_detectable_effect, ratio, ratio_variance, sample_ratio_mismatch, welch


def test_welch_matches_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(1.2, 2.0, 200)
    result = welch(a, b)
    reference = sp.ttest_ind(b, a, equal_var=False)
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-10)
    assert result.lift == pytest.approx(b.mean() - a.mean())
    assert result.ci_lower < result.lift < result.ci_upper
    ci = reference.confidence_interval(0.95)
    assert (result.ci_lower, result.ci_upper) == pytest.approx((ci.low, ci.high), rel=1e-10)


def test_ratio_variance_hand_computed():
    x, y = np.array([1.0, 3.0]), np.array([2.0, 4.0])  # means 2, 3; var x = 2, var y = 2, cov = 2
    value, variance = ratio_variance(x, y)
    assert value == pytest.approx(2 / 3)
    assert variance == pytest.approx((2 / 9 - 2 * 2 * 2 / 27 + 4 * 2 / 81) / 2)


def test_delta_method_matches_the_spread_of_simulated_ratios():
    rng = np.random.default_rng(1)
    estimates, variances = [], []
    for _ in range(400):
        impressions = rng.integers(1, 30, 500).astype(float)
        clicks = rng.binomial(impressions.astype(int), rng.beta(2, 20, 500)).astype(float)
        r, v = ratio_variance(clicks, impressions)
        estimates.append(r)
        variances.append(v)
    assert np.var(estimates) == pytest.approx(np.mean(variances), rel=0.2)


def test_cuped_keeps_the_mean_and_cuts_the_variance():
    rng = np.random.default_rng(2)
    x = rng.normal(10, 3, 5000)
    y = 0.8 * x + rng.normal(0, 1, 5000)
    adjusted = cuped(y, x)
    assert adjusted.mean() == pytest.approx(y.mean())
    assert adjusted.var() < 0.2 * y.var()


def test_sample_ratio_mismatch_matches_scipy():
    statistic, p = sample_ratio_mismatch(np.array([5100, 4900]), np.array([0.5, 0.5]))
    reference = sp.chisquare([5100, 4900], [5000, 5000])
    assert (statistic, p) == pytest.approx((reference.statistic, reference.pvalue))


def test_holm_hand_computed():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03])), [0.03, 0.06, 0.06])


def test_mde_at_80_percent_power():
    assert minimum_detectable_effect(1.0) == pytest.approx(1.959964 + 0.841621, rel=1e-5)


def test_aa_tests_reject_at_the_nominal_rate():
    rng = np.random.default_rng(3)
    rejections = [welch(rng.exponential(1.0, 400), rng.exponential(1.0, 400)).p_value < 0.05 for _ in range(1000)]
    assert 0.035 <= np.mean(rejections) <= 0.065
    impressions = lambda: rng.integers(1, 20, 400).astype(float)  # noqa: E731
    ratio_rejections = []
    for _ in range(500):
        ia, ib = impressions(), impressions()
        ratio_rejections.append(ratio(rng.binomial(ia.astype(int), 0.1), ia,
                                      rng.binomial(ib.astype(int), 0.1), ib).p_value < 0.05)
    assert 0.03 <= np.mean(ratio_rejections) <= 0.07

"""``evaluate``: the one loop every off-policy flow goes through."""

import numpy as np
import pytest

from fusionsim.experiments.evaluation import ESTIMATORS, evaluate


def test_evaluate_gives_each_estimate_its_interval_and_relative_error():
    # 4 rounds repeated 25 times, 2 actions, one slot; the evaluation policy always plays action 1
    data = {"reward": np.tile([1.0, 0.0, 1.0, 1.0], 25), "action": np.tile([1, 0, 1, 0], 25),
            "pscore": np.tile([0.5, 0.5, 0.25, 0.5], 25), "action_dist": np.tile([[[0.0], [1.0]]], (100, 1, 1))}
    results = evaluate({"ipw": ESTIMATORS["ips"](), "snipw": ESTIMATORS["snips"]()}, data, truth=1.5,
                       n_bootstrap_samples=200, random_state=3)
    # IPW: (1/0.5 + 1/0.25) / 4 = 1.5; SNIPW: (2 + 4) / (2 + 4) = 1
    assert results["ipw"]["estimate"] == pytest.approx(1.5)
    assert results["snipw"]["estimate"] == pytest.approx(1.0)
    assert results["ipw"]["relative_error"] == pytest.approx(0.0)
    assert results["snipw"]["relative_error"] == pytest.approx(1 / 3)
    for r in results.values():
        assert r["ci_lower"] <= r["ci_upper"]
    again = evaluate({"ipw": ESTIMATORS["ips"]()}, data, n_bootstrap_samples=200, random_state=3)
    assert again["ipw"]["ci_lower"] == results["ipw"]["ci_lower"] and "relative_error" not in again["ipw"]

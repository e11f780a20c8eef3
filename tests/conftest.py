from pathlib import Path

import numpy as np
import pytest
import yaml

from fusionsim.envs.scenario import Scenario, load_scenario
from fusionsim.envs.shop import make_shop

SMALL = {"world.n_items": 1200, "world.n_users": 3000, "world.n_top_categories": 2, "world.n_leaf_per_top": 3,
         "world.n_brands": 40, "candidates.trending_size": 300, "traffic.requests_per_day": 20000}
"""A shop small enough for fast tests: 6 leaves, 1,200 items, 3,000 shoppers."""


def small_scenario(name: str = "default", **overrides: object) -> Scenario:
    return load_scenario(name, **{**SMALL, **overrides})


def write_small_scenario(folder: Path, name: str = "small.yaml") -> Path:
    """The small shop as a scenario file ``folder / name``, for commands that take ``--scenario``."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return path


@pytest.fixture(scope="session")
def small() -> Scenario:
    return small_scenario()


@pytest.fixture(scope="session")
def small_shop(small):
    return make_shop(small)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def check_bootstrap_interval(estimator, data: dict, **extra) -> None:
    """obp's estimate_interval contract: keys mean and the (1 - alpha) bounds around the estimate, the same
    interval for the same random_state and another for another; ``extra`` keywords pass to the alpha = 0.1 call."""
    value = estimator.estimate_policy_value(**data)
    interval = estimator.estimate_interval(**data, n_bootstrap_samples=1000, random_state=0)
    assert list(interval) == ["mean", "95.0% CI (lower)", "95.0% CI (upper)"]
    assert interval["95.0% CI (lower)"] < value < interval["95.0% CI (upper)"]
    assert interval == estimator.estimate_interval(**data, n_bootstrap_samples=1000, random_state=0)
    assert interval != estimator.estimate_interval(**data, n_bootstrap_samples=1000, random_state=1)
    assert list(estimator.estimate_interval(**data, alpha=0.1, n_bootstrap_samples=200, **extra)) == [
        "mean", "90.0% CI (lower)", "90.0% CI (upper)"]

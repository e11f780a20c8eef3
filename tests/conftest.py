import numpy as np
import pytest

from fusionsim.envs.scenario import Scenario, load_scenario
from fusionsim.envs.shop import make_shop

SMALL = {"world.n_items": 1200, "world.n_users": 3000, "world.n_top_categories": 2, "world.n_leaf_per_top": 3,
         "world.n_brands": 40, "candidates.trending_size": 300, "traffic.requests_per_day": 20000}
"""A shop small enough for fast tests: 6 leaves, 1,200 items, 3,000 shoppers."""


def small_scenario(name: str = "default", **overrides: object) -> Scenario:
    return load_scenario(name, **{**SMALL, **overrides})


@pytest.fixture(scope="session")
def small() -> Scenario:
    return small_scenario()


@pytest.fixture(scope="session")
def small_shop(small):
    return make_shop(small)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)

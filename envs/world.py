"""The world: a seeded catalog and shopper population, plus the purchase history they bring along.

Everything here is generated once from ``scenario.seed`` with vectorised numpy (no loop per item or
shopper), so a 1,000,000-item x 10,000,000-shopper world builds in seconds within a few GiB
(``benchmarks/world_scale.py``). Sizes are bounded when the scenario loads (``envs/scenario.py``:
``MAX_N_ITEMS``, ``MAX_N_USERS``, ``MAX_WORLD_GIB``), against :meth:`WorldParams.build_bytes`, the rough
peak memory of :func:`build_world`; change that estimate with the arrays built here.

Hidden vs public: the catalog's ``quality`` and ``latent`` and every field of the population except
``segment`` are the simulator's hidden truth. Recommenders see only :meth:`Catalog.public` and logged
interactions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fusionsim.envs.scenario import SEGMENTS, Scenario
from fusionsim.recommenders.base import ItemTable
from fusionsim.recommenders.data import RECENT_ITEMS  # how many recent items the shop remembers per shopper

HISTORY_DAYS = 30.0
"""The pre-simulation purchase history spans days [-HISTORY_DAYS, 0)."""


@dataclass(frozen=True)
class Vocabulary:
    """Token id ranges: top-category words, leaf words, brand words, attribute words."""

    n_top: int
    n_leaves: int
    n_brands: int
    n_attributes: int

    @property
    def leaf_offset(self) -> int:
        return self.n_top

    @property
    def brand_offset(self) -> int:
        return self.n_top + self.n_leaves

    @property
    def attribute_offset(self) -> int:
        return self.n_top + self.n_leaves + self.n_brands

    @property
    def size(self) -> int:
        return self.attribute_offset + self.n_attributes


@dataclass
class Catalog:
    """Items, sorted by leaf category and, within a leaf, by launch day.

    Arrays (n = n_items): ``leaf`` (n,) int32 in [0, n_leaves); ``top`` (n,) int32; ``brand`` (n,) int32;
    ``price`` (n,) float32 in currency units; ``quality`` (n,) float32, hidden, about N(0, 1);
    ``latent`` (n, d) float32, hidden; ``tokens`` (n, 4) int32 = [top word, leaf word, brand word,
    attribute word]; ``launch_day`` (n,) float32 (<= 0: on sale from the start).
    Per leaf (L = n_leaves): ``leaf_start`` (L,) int64, ``leaf_size`` (L,) int64, ``leaf_median_price``
    (L,) float32, ``leaf_centroid`` (L, d) float32 (hidden).
    """

    leaf: np.ndarray
    top: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    quality: np.ndarray
    latent: np.ndarray
    tokens: np.ndarray
    launch_day: np.ndarray
    leaf_start: np.ndarray
    leaf_size: np.ndarray
    leaf_median_price: np.ndarray
    leaf_centroid: np.ndarray
    vocab: Vocabulary

    @property
    def n_items(self) -> int:
        return len(self.leaf)

    @property
    def n_leaves(self) -> int:
        return len(self.leaf_start)

    @property
    def log_relative_price(self) -> np.ndarray:
        """log(price / median price of the item's leaf), (n_items,) float32."""
        return np.log(self.price / self.leaf_median_price[self.leaf]).astype(np.float32)

    def public(self) -> ItemTable:
        """What a recommender may know about the items (no quality, no latent vector)."""
        return ItemTable(item_id=np.arange(self.n_items, dtype=np.int32), top=self.top, leaf=self.leaf,
                         brand=self.brand, price=self.price, tokens=self.tokens, launch_day=self.launch_day,
                         vocab_size=self.vocab.size)


@dataclass
class Population:
    """Shoppers (n = n_users). ``segment`` (n,) int8 indexes :data:`SEGMENTS` and is public; the rest is hidden:
    ``taste`` (n, d) float32; ``price_sensitivity`` (n,) float32 >= 0; ``activity`` (n,) float32 > 0
    (relative arrival rate); ``n_purchases`` (n,) int32; ``recent_items`` (n, RECENT_ITEMS) int32, most
    recent first, -1 where there is none (the shop knows these: they are the shopper's logged history).
    """

    segment: np.ndarray
    taste: np.ndarray
    price_sensitivity: np.ndarray
    activity: np.ndarray
    n_purchases: np.ndarray
    recent_items: np.ndarray

    @property
    def n_users(self) -> int:
        return len(self.segment)


@dataclass
class World:
    """A catalog, a population and the purchase history logged before the simulation starts.

    ``history`` is an interaction table (see :data:`recommenders.base.INTERACTION_COLUMNS`):
    one row per purchase, days in [-HISTORY_DAYS, 0), sorted by time.
    """

    scenario: Scenario
    catalog: Catalog
    population: Population
    history: pd.DataFrame


def build_world(scenario: Scenario) -> World:
    """Generate the catalog, population and history of ``scenario`` from ``scenario.seed``."""
    rng = np.random.default_rng([scenario.seed, 0x5EED])
    catalog = _build_catalog(scenario, rng)
    population, fav_leaves = _build_population(scenario, catalog, rng)
    history = _build_history(scenario, catalog, population, fav_leaves, rng)
    return World(scenario=scenario, catalog=catalog, population=population, history=history)


def _build_catalog(scenario: Scenario, rng: np.random.Generator) -> Catalog:
    w = scenario.world
    n, d = w.n_items, w.latent_dim
    n_leaves = w.n_top_categories * w.n_leaf_per_top
    vocab = Vocabulary(w.n_top_categories, n_leaves, w.n_brands, w.n_attribute_words)

    # Launch days: the initial catalog, a steady trickle of new items, and event waves.
    n_initial = scenario.n_initial_items
    launch = np.zeros(n, dtype=np.float32)
    launch[:n_initial] = -rng.uniform(0.0, 365.0, n_initial)
    cursor = n_initial
    for event in scenario.events:
        if event.kind == "new_items":
            count = int(w.n_items * event.fraction)
            launch[cursor:cursor + count] = event.day
            cursor += count
    launch[cursor:] = rng.uniform(0.0, w.launch_horizon_days, n - cursor)

    # Leaves: every leaf gets the minimum the candidate stage needs at the start, the rest by popularity.
    leaf_weight = rng.dirichlet(np.full(n_leaves, 4.0))
    per_leaf_min = max(scenario.context_block, scenario.shopper_block)
    leaf = np.empty(n, dtype=np.int32)
    initial_leaf = np.repeat(np.arange(n_leaves, dtype=np.int32), per_leaf_min)
    extra = rng.choice(n_leaves, size=n_initial - len(initial_leaf), p=leaf_weight).astype(np.int32)
    leaf[:n_initial] = np.concatenate([initial_leaf, extra])
    leaf[n_initial:] = rng.choice(n_leaves, size=n - n_initial, p=leaf_weight)

    order = np.lexsort((launch, leaf))
    leaf, launch = leaf[order], launch[order]
    leaf_size = np.bincount(leaf, minlength=n_leaves).astype(np.int64)
    leaf_start = np.concatenate([[0], np.cumsum(leaf_size)[:-1]]).astype(np.int64)
    top = (leaf // w.n_leaf_per_top).astype(np.int32)

    top_centroid = rng.standard_normal((w.n_top_categories, d), dtype=np.float32)
    leaf_centroid = (0.8 * top_centroid[np.arange(n_leaves) // w.n_leaf_per_top]
                     + 0.6 * rng.standard_normal((n_leaves, d), dtype=np.float32))
    latent = leaf_centroid[leaf] + 0.6 * rng.standard_normal((n, d), dtype=np.float32)

    brand = rng.integers(0, w.n_brands, n, dtype=np.int32)
    brand_price = rng.normal(0.0, 0.2, w.n_brands).astype(np.float32)
    brand_quality = rng.normal(0.0, 0.5, w.n_brands).astype(np.float32)
    leaf_median_price = np.exp(rng.normal(np.log(30.0), 0.8, n_leaves)).astype(np.float32)
    log_rel = brand_price[brand] + w.price_sigma * rng.standard_normal(n, dtype=np.float32)
    price = (leaf_median_price[leaf] * np.exp(log_rel)).astype(np.float32)
    quality = (brand_quality[brand] + 0.3 * log_rel
               + 0.8 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    # Each leaf has 4 typical attribute words; 70% of items carry one of them, the rest a random word.
    typical = rng.integers(0, w.n_attribute_words, (n_leaves, 4))
    attribute = np.where(rng.random(n) < 0.7, typical[leaf, rng.integers(0, 4, n)],
                         rng.integers(0, w.n_attribute_words, n))
    tokens = np.stack([top, vocab.leaf_offset + leaf, vocab.brand_offset + brand,
                       vocab.attribute_offset + attribute], axis=1).astype(np.int32)
    return Catalog(leaf=leaf, top=top, brand=brand, price=price, quality=quality, latent=latent.astype(np.float32),
                   tokens=tokens, launch_day=launch.astype(np.float32), leaf_start=leaf_start, leaf_size=leaf_size,
                   leaf_median_price=leaf_median_price, leaf_centroid=leaf_centroid.astype(np.float32), vocab=vocab)


def _build_population(scenario: Scenario, catalog: Catalog,
                      rng: np.random.Generator) -> tuple[Population, np.ndarray]:
    w = scenario.world
    n, d = w.n_users, w.latent_dim
    seg_params = [w.segments[name] for name in SEGMENTS]
    segment = rng.choice(len(SEGMENTS), size=n, p=[s.share for s in seg_params]).astype(np.int8)

    # Each shopper likes three leaves (repeats allowed: a repeated leaf is liked more), drawn from a
    # global leaf popularity; taste is a random mixture of those leaves' centroids plus personal noise.
    leaf_popularity = rng.dirichlet(np.full(catalog.n_leaves, 2.0))
    fav_leaves = rng.choice(catalog.n_leaves, size=(n, 3), p=leaf_popularity).astype(np.int32)
    mix = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
    taste = np.einsum("uk,ukd->ud", mix, catalog.leaf_centroid[fav_leaves], dtype=np.float32)
    taste += 0.5 * rng.standard_normal((n, d), dtype=np.float32)

    sens_mean = np.array([s.price_sensitivity for s in seg_params], dtype=np.float32)
    act_mean = np.array([s.activity for s in seg_params], dtype=np.float32)
    price_sensitivity = sens_mean[segment] * np.exp(rng.normal(0.0, 0.3, n)).astype(np.float32)
    activity = act_mean[segment] * np.exp(rng.normal(0.0, 0.5, n)).astype(np.float32)
    population = Population(segment=segment, taste=taste, price_sensitivity=price_sensitivity.astype(np.float32),
                            activity=activity.astype(np.float32), n_purchases=np.zeros(n, dtype=np.int32),
                            recent_items=np.full((n, RECENT_ITEMS), -1, dtype=np.int32))
    return population, fav_leaves


def _build_history(scenario: Scenario, catalog: Catalog, population: Population, fav_leaves: np.ndarray,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Purchases before day 0: per shopper Poisson(segment mean) purchases in liked leaves, better items
    more likely (best of two by quality). Fills ``population.n_purchases`` and ``recent_items``."""
    hist_mean = np.array([scenario.world.segments[s].history_purchases for s in SEGMENTS])
    counts = rng.poisson(hist_mean[population.segment])
    user = np.repeat(np.arange(population.n_users, dtype=np.int32), counts)
    m = len(user)
    leaf = fav_leaves[user, rng.integers(0, 3, m)]
    # Items on sale before day 0 are the first `on_sale` of each leaf (leaves are sorted by launch day).
    n_on_sale = on_sale_counts(catalog, 0.0)
    first = catalog.leaf_start[leaf] + (rng.random(m) * n_on_sale[leaf]).astype(np.int64)
    second = catalog.leaf_start[leaf] + (rng.random(m) * n_on_sale[leaf]).astype(np.int64)
    item = np.where(catalog.quality[first] >= catalog.quality[second], first, second).astype(np.int32)
    t = (-HISTORY_DAYS * rng.random(m)).astype(np.float32)

    order = np.lexsort((-t, user))  # by user, most recent first
    user_s, item_s = user[order], item[order]
    rank = np.arange(m) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = rank < RECENT_ITEMS
    population.recent_items[user_s[keep], rank[keep]] = item_s[keep]
    population.n_purchases[:] = counts

    by_time = np.argsort(t, kind="stable")
    return pd.DataFrame({"user_id": user[by_time], "item_id": item[by_time], "t": t[by_time],
                         "purchase": np.ones(m, dtype=bool)})


def on_sale_counts(catalog: Catalog, day: float) -> np.ndarray:
    """(n_leaves,) int64: items of each leaf with launch_day <= day (they lead each leaf's range)."""
    launched = (catalog.launch_day <= day).astype(np.int64)
    return np.add.reduceat(launched, catalog.leaf_start)

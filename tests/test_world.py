import numpy as np

from fusionsim.envs.candidates import CandidateStage
from fusionsim.envs.world import RECENT_ITEMS, build_world, on_sale_counts
from tests.conftest import small_scenario


def test_world_shapes_and_order(small):
    world = build_world(small)
    c, p = world.catalog, world.population
    n, d = small.world.n_items, small.world.latent_dim
    assert c.latent.shape == (n, d) and c.tokens.shape == (n, 4) and c.price.shape == (n,)
    assert np.all(np.diff(c.leaf) >= 0), "items are sorted by leaf"
    for leaf in range(c.n_leaves):
        launch = c.launch_day[c.leaf_start[leaf]:c.leaf_start[leaf] + c.leaf_size[leaf]]
        assert np.all(np.diff(launch) >= 0), "and by launch day within a leaf"
    assert on_sale_counts(c, 0.0).min() >= max(small.context_block, small.shopper_block)
    assert np.all(c.price > 0)
    np.testing.assert_array_equal(c.top, c.leaf // small.world.n_leaf_per_top)
    assert p.taste.shape == (small.world.n_users, d) and p.recent_items.shape[1] == RECENT_ITEMS
    late = (c.launch_day > 0).mean()
    assert abs(late - small.world.new_item_fraction) < 0.01


def test_history_matches_population(small):
    world = build_world(small)
    h, p = world.history, world.population
    assert set(h.columns) == {"user_id", "item_id", "t", "purchase"}
    assert (h["t"] < 0).all() and h["t"].is_monotonic_increasing
    np.testing.assert_array_equal(np.bincount(h["user_id"], minlength=p.n_users), p.n_purchases)
    assert (p.n_purchases[p.segment == 0] == 0).all(), "new shoppers have no history"
    last = h.groupby("user_id")["item_id"].last()
    np.testing.assert_array_equal(p.recent_items[last.index.to_numpy(), 0], last.to_numpy())
    assert (world.catalog.launch_day[h["item_id"]] <= 0).all(), "history holds only items on sale before day 0"


def test_world_is_deterministic_per_seed(small):
    a, b = build_world(small), build_world(small)
    np.testing.assert_array_equal(a.catalog.price, b.catalog.price)
    np.testing.assert_array_equal(a.population.taste, b.population.taste)
    other = build_world(small_scenario(seed=1))
    assert not np.array_equal(a.catalog.price, other.catalog.price)


def test_candidates_blocks(small, rng):
    world = build_world(small)
    stage = CandidateStage(small, world.catalog)
    stage.reset(rng, np.arange(world.catalog.n_items, dtype=np.float64), day=0.0)
    b = 500
    context_leaf = rng.integers(0, world.catalog.n_leaves, b)
    shopper_leaf = rng.integers(-1, world.catalog.n_leaves, b)
    cand, excluded = stage.generate(rng, context_leaf, shopper_leaf)
    assert cand.shape == (b, small.candidates.n_candidates) and cand.dtype == np.int32
    leaf = world.catalog.leaf[cand]
    m1, m2, m3 = small.context_block, small.shopper_block, small.trending_block
    assert (leaf[:, :m1] == context_leaf[:, None]).all()
    assert (leaf[:, m1:m1 + m2] != context_leaf[:, None]).all()
    assert (leaf[:, m1:m1 + m2] == leaf[:, m1:m1 + 1]).all(), "the shopper block is one leaf"
    assert (world.catalog.launch_day[cand] <= 0).all(), "only items on sale"
    trending = set(stage.trending_list.tolist())
    assert all(i in trending for i in cand[:, m1 + m2:m1 + m2 + m3].ravel())
    assert not any(i in trending for i in cand[:, m1 + m2 + m3:].ravel())
    head = m1 + m2
    shopper = leaf[:, m1]
    np.testing.assert_array_equal(excluded[:, :head], False)
    np.testing.assert_array_equal(excluded[:, head:], (leaf[:, head:] == context_leaf[:, None])
                                  | (leaf[:, head:] == shopper[:, None]))
    for row, out in zip(cand, excluded):
        valid = row[~out]
        assert len(np.unique(valid)) == len(valid), "valid candidates are distinct"
    # the trending list holds the most clicked items (counts were the item ids: the largest ids on sale)
    on_sale = np.flatnonzero(world.catalog.launch_day <= 0)
    assert trending == set(on_sale[np.argsort(on_sale)][-small.candidates.trending_size:].tolist())


def test_new_items_enter_the_pools_after_launch(small, rng):
    world = build_world(small)
    stage = CandidateStage(small, world.catalog)
    stage.reset(rng, np.zeros(world.catalog.n_items), day=0.0)
    assert (world.catalog.launch_day[stage.pool] <= 0).all()
    assert stage.maybe_rebuild(rng, day=small.world.launch_horizon_days)
    launched_late = np.flatnonzero(world.catalog.launch_day > 0)
    assert np.isin(launched_late, stage.pool).all()

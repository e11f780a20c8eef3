"""ArmScorer scores a list of arms as each arm's own score() would, looking the item-only arms up together."""

import numpy as np
import pytest

from fusionsim.recommenders import ContentBased, NewArrivals, Popularity
from fusionsim.recommenders.base import ArmScorer, ItemScores, NotFittedError, RequestBatch


def _requests(world, b):
    return RequestBatch.feed(np.arange(b), world.population.recent_items[:b])


@pytest.fixture(scope="module")
def arms(small_shop):
    world, _ = small_shop
    items = world.catalog.public()
    return world, [Popularity().fit(world.history, items), ContentBased().fit(world.history, items),
                   NewArrivals().fit(None, items)]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_scores_equal_each_arms_own_scores_unseen_ids_included(arms, dtype):
    world, models = arms
    n = world.catalog.n_items
    candidates = np.array([[0, 5, n - 1, n, n + 7, -1, -(2**31)]] * 4, dtype=dtype)
    got = ArmScorer(models).score(_requests(world, 4), candidates)
    for arm, scores in zip(models, got):
        expected = arm.score(_requests(world, 4), candidates)
        assert scores.dtype == np.float32 and scores.shape == candidates.shape
        np.testing.assert_array_equal(scores, expected)


def test_a_refit_arm_is_scored_with_its_new_table(arms):
    world, models = arms
    scorer = ArmScorer(list(models))  # the scorer reads this list at every call
    candidates = np.tile(np.arange(20, dtype=np.int32), (2, 1))
    scorer.score(_requests(world, 2), candidates)
    shorter = Popularity().fit(world.history[world.history["item_id"] < 10], world.catalog.public())
    shorter.load_state({"item_score": shorter.item_score[:10]})  # a model that knows items 0-9 only
    scorer.arms[0] = shorter
    got = scorer.score(_requests(world, 2), candidates)
    np.testing.assert_array_equal(got[0], shorter.score(_requests(world, 2), candidates))
    assert np.all(got[0][:, 10:] == 0.0)  # popularity's fallback for unseen items
    np.testing.assert_array_equal(got[2], models[2].score(_requests(world, 2), candidates))


def test_an_unfitted_arm_still_refuses_to_score(arms):
    world, models = arms
    with pytest.raises(NotFittedError):
        ArmScorer([models[0], NewArrivals()]).score(_requests(world, 2), np.zeros((2, 3), dtype=np.int32))


def test_item_scores_lookup_clips_every_outside_id_to_the_fallback():
    table = ItemScores(np.arange(4, dtype=np.float32), fallback=-1.0)
    ids = np.array([[0, 3, 4, -1, 2**31 - 1, -(2**31)]], dtype=np.int32)
    np.testing.assert_array_equal(table.lookup(ids), [[0, 3, -1, -1, -1, -1]])
    np.testing.assert_array_equal(table.lookup(ids.astype(np.int64) * 2**20), [[0, -1, -1, -1, -1, -1]])
    with pytest.raises(TypeError):
        table.lookup(np.array([1.5]))

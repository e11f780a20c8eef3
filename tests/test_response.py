"""Behaviour tests of the shopper response model: each would fail on a wrong model."""

import dataclasses

import numpy as np
import pytest

from fusionsim.envs.response import ShopperModel, sigmoid
from fusionsim.envs.scenario import DEVICES
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.world import build_world

DESKTOP = DEVICES.index("desktop")


def _model(scenario, **behaviour):
    world = build_world(scenario)
    params = scenario.behaviour.model_copy(update=behaviour)
    return world, ShopperModel(params, world.catalog)


def _random_slates(world, rng, b, k, leaf=None):
    c = world.catalog
    if leaf is None:
        return rng.integers(0, c.n_items, (b, k)).astype(np.int32)
    return (c.leaf_start[leaf] + rng.integers(0, c.leaf_size[leaf], (b, k))).astype(np.int32)


def _utility(world, model, slate, is_search=False, query=None, intent=-1, satiation=None):
    b = len(slate)
    taste = world.population.taste[np.arange(b) % world.population.n_users]
    coefficients = model.shopper_coefficients(taste, np.ones(b, np.float32))
    return model.utility(slate, coefficients, np.full(b, intent),
                         np.full(b, is_search), np.full((b, 3), -1) if query is None else query,
                         np.zeros((b, world.catalog.n_leaves), np.float32) if satiation is None else satiation,
                         np.zeros(world.catalog.n_leaves, np.float32))


@pytest.mark.parametrize("click_model", ["pbm", "cascade"])
def test_click_rate_falls_with_position(small, rng, click_model):
    world, model = _model(small, click_model=click_model)
    b, k = 200_000, 10
    attraction = np.full((b, k), 0.2, dtype=np.float32)
    ctr = model.clicks(rng, attraction, np.full(b, DESKTOP)).mean(axis=0)
    assert np.all(np.diff(ctr[[0, 1, 3, 6, 9]]) < 0), ctr
    if click_model == "pbm":
        theta = small.behaviour.examination_first / np.log2(np.arange(2, k + 2)) ** small.behaviour.examination_decay
        np.testing.assert_allclose(ctr, 0.2 * theta, atol=0.003)
    else:  # at most one click, geometric decay
        assert model.clicks(rng, attraction, np.full(b, DESKTOP)).sum(axis=1).max() == 1
        p = small.behaviour.examination_first * 0.2 * (0.8 * (1 - small.behaviour.cascade_abandon)) ** np.arange(k)
        np.testing.assert_allclose(ctr, p, atol=0.003)


def test_click_rate_falls_with_position_in_the_simulator(small_shop):
    world, arms = small_shop
    sim = BatchedSimulator(world, arms, n_slots=4096)
    sim.reset(seed=3)
    weights = np.tile([0.5, 0.5], (4096, 1)).astype(np.float32)
    clicks = sum(sim.step(weights).clicks.sum(axis=0) for _ in range(15))
    assert clicks[0] > clicks[2] > clicks[5] > clicks[9]


def test_raising_price_lowers_purchase_probability(small, rng):
    world, model = _model(small)
    slate = _random_slates(world, rng, 5000, 10)
    before = _utility(world, model, slate)
    pricier = dataclasses.replace(world.catalog, price=world.catalog.price * 2.0)
    after = _utility(world, ShopperModel(small.behaviour, pricier), slate)
    assert np.all(sigmoid(after.purchase_logit) < sigmoid(before.purchase_logit))
    assert np.all(after.attraction < before.attraction)
    # and in sampled purchases of the same clicks
    clicks = np.ones(slate.shape, dtype=bool)
    bought_before = model.purchases(np.random.default_rng(1), clicks, before.purchase_logit).mean()
    bought_after = model.purchases(np.random.default_rng(1), clicks, after.purchase_logit).mean()
    assert bought_after < 0.8 * bought_before


def test_search_clicks_more_on_the_query_category(small, rng):
    world, model = _model(small)
    c = world.catalog
    b, k, leaf, other = 20_000, 10, 1, 4
    query = np.tile([c.top[c.leaf_start[leaf]], c.vocab.leaf_offset + leaf, -1], (b, 1)).astype(np.int32)
    on_topic = _utility(world, model, _random_slates(world, rng, b, k, leaf), True, query, intent=leaf)
    off_topic = _utility(world, model, _random_slates(world, rng, b, k, other), True, query, intent=leaf)
    device = np.full(b, DESKTOP)
    ctr_on = model.clicks(rng, on_topic.attraction, device).mean()
    ctr_off = model.clicks(rng, off_topic.attraction, device).mean()
    assert ctr_on > 3 * ctr_off, (ctr_on, ctr_off)
    # and the query alone (no session intent) still moves clicks toward its category
    on_topic = _utility(world, model, _random_slates(world, rng, b, k, leaf), True, query)
    off_topic = _utility(world, model, _random_slates(world, rng, b, k, other), True, query)
    assert model.clicks(rng, on_topic.attraction, device).mean() > 2 * model.clicks(
        rng, off_topic.attraction, device).mean()


def _run_sessions(world, model, rng, repeat_one_leaf, b=20_000, steps=12):
    """Show b shoppers either one leaf over and over or a different leaf every request; returns the
    click rate per step of those still present and the number of requests each stayed."""
    n_leaves = world.catalog.n_leaves
    satiation = np.zeros((b, n_leaves), np.float32)
    fatigue = np.zeros(b, np.float32)
    present = np.ones(b, bool)
    length = np.zeros(b)
    ctr = []
    for step in range(steps):
        leaf = 0 if repeat_one_leaf else step % n_leaves
        slate = _random_slates(world, rng, b, 10, leaf)
        u = _utility(world, model, slate, satiation=satiation)
        clicks = model.clicks(rng, u.attraction, np.full(b, DESKTOP))
        ctr.append(clicks[present].mean() if present.any() else np.nan)
        length += present
        left = model.update_session(rng, u, satiation, fatigue, np.full(b, -2.6, np.float32),
                                    clicks.any(axis=1), np.zeros(b, bool))
        present &= ~left
    return np.array(ctr), length


def test_repeated_category_satiates_and_tires(small, rng):
    world, model = _model(small)
    ctr_same, length_same = _run_sessions(world, model, rng, repeat_one_leaf=True)
    ctr_mixed, length_mixed = _run_sessions(world, model, rng, repeat_one_leaf=False)
    assert ctr_same[0] == pytest.approx(ctr_mixed[0], abs=0.01)  # the same first slate
    assert np.all(np.diff(ctr_same[:4]) < 0) and ctr_same[3] < 0.5 * ctr_same[0], ctr_same  # satiation
    assert ctr_same[1:4].mean() < 0.5 * ctr_mixed[1:4].mean()
    assert length_same.mean() < 0.8 * length_mixed.mean()  # fatigue: they leave sooner

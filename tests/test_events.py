"""Scheduled events: a trend shift moves what shoppers want; a wave of new items reaches the slates."""

import numpy as np

from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from tests.conftest import small_scenario


def _run(scenario, days, slots=1000, weights=(0.5, 0.5)):
    world, arms = make_shop(scenario)
    sim = BatchedSimulator(world, arms, n_slots=slots)
    sim.reset(seed=0)
    weights = np.tile(weights, (slots, 1)).astype(np.float32)
    results = []
    while sim.day < days:
        results.append((sim.day, sim.intent.copy(), sim.step(weights)))
    return sim, results


def test_trend_shift_moves_intents_and_clicks_toward_the_fashionable_leaves():
    scenario = small_scenario(events=[{"day": 1.0, "kind": "trend_shift", "strength": 2.0, "n_leaves": 2}])
    sim, results = _run(scenario, 2.0)
    (_, leaves, _), = sim._trend_shifts
    leaf = sim.catalog.leaf

    def shares(before):
        rows = [(i, r) for day, i, r in results if (day < 1.0) == before]
        intent = np.mean([np.isin(i, leaves).mean() for i, _ in rows])
        clicked = np.concatenate([r.slate[r.clicks] for _, r in rows])
        return intent, np.isin(leaf[clicked], leaves).mean()

    intent_before, clicks_before = shares(True)
    intent_after, clicks_after = shares(False)
    assert intent_after > intent_before + 0.15, (intent_before, intent_after)
    assert clicks_after > clicks_before + 0.1, (clicks_before, clicks_after)


def test_new_items_reach_slates_only_after_launch():
    scenario = small_scenario(events=[{"day": 1.0, "kind": "new_items", "fraction": 0.1}],
                              **{"world.new_item_fraction": 0.0})
    sim, results = _run(scenario, 2.0, weights=(0.0, 1.0))  # the new-arrivals arm alone
    launch = sim.catalog.launch_day
    wave = np.flatnonzero(launch == 1.0)
    assert len(wave) == int(0.1 * scenario.world.n_items)
    for day, _, result in results:
        shown_launch = launch[result.slate]
        assert (shown_launch <= day).all(), "nothing is shown before it launches"
    late = np.concatenate([r.slate.ravel() for day, _, r in results if day >= 1.25])
    assert np.isin(late, wave).mean() > 0.5, "once the recall index is rebuilt, the wave leads new arrivals"

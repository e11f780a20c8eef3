"""Fusion strategies on hand-made scores: the blend, cascades (filter, then re-rank) and stacking."""

import numpy as np
import pytest

from fusionsim.envs.context import CONTEXT_DIM, CONTEXT_NAMES
from fusionsim.envs.fusion import ActionError, ActionMapper, blend, select_slate
from fusionsim.envs.stacking.stacker import Stacker, StackerSpec
from fusionsim.envs.strategies import Cascade, CascadeConfig, FusionError, ShuffledSlate, Stacking, WeightedBlend

B, C, K, A = 40, 30, 5, 3


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(8)
    candidates = np.stack([rng.permutation(1000)[:C] for _ in range(B)]).astype(np.int32)
    scores = [rng.standard_normal((B, C)).astype(np.float32) for _ in range(A)]
    excluded = rng.random((B, C)) < 0.2
    contexts = np.zeros((B, CONTEXT_DIM), dtype=np.float32)
    contexts[:, 0] = 1.0
    return candidates, excluded, scores, contexts


def _blend_slate(batch, weights):
    candidates, excluded, scores, _ = batch
    w = np.broadcast_to(np.asarray(weights, dtype=np.float32), (B, A))
    return select_slate(candidates, blend(scores, w), K, excluded)


def test_weighted_blend_is_todays_blend(batch):
    candidates, excluded, scores, contexts = batch
    fusion = WeightedBlend()
    weights = ActionMapper("grid", A, 2).decide(np.full(B, 4))  # grid point 4 at resolution 2 over 3 arms
    slate, used = fusion.rank(candidates, excluded, scores, contexts, weights, K)
    np.testing.assert_array_equal(slate, _blend_slate(batch, weights[0]))
    np.testing.assert_array_equal(used, weights)


def test_cascade_that_keeps_everything_is_its_second_blend(batch):
    candidates, excluded, scores, contexts = batch
    cascade = Cascade([CascadeConfig((1, 0, 0), C, (0, 0.5, 0.5))], A, C, K)
    slate, weights = cascade.rank(candidates, excluded, scores, contexts, cascade.decide(np.zeros(B, dtype=int)), K)
    np.testing.assert_array_equal(slate, _blend_slate(batch, (0, 0.5, 0.5)))
    np.testing.assert_array_equal(weights, np.tile(np.float32([0, 0.5, 0.5]), (B, 1)))


def test_cascade_filters_by_the_first_stage_and_orders_by_the_second(batch):
    candidates, excluded, scores, contexts = batch
    cascade = Cascade([CascadeConfig((1, 0, 0), K, (0, 1, 0))], A, C, K)
    slate, _ = cascade.rank(candidates, excluded, scores, contexts, np.zeros(B, dtype=np.int64), K)
    first = _blend_slate(batch, (1, 0, 0))
    for row in range(B):  # the slate is arm 0's top K, ordered by arm 1
        assert sorted(slate[row]) == sorted(first[row])
        arm1 = dict(zip(candidates[row], scores[1][row]))
        assert [arm1[i] for i in slate[row]] == sorted((arm1[i] for i in slate[row]), reverse=True)
        assert not set(slate[row]) & set(candidates[row][excluded[row]])


def test_cascade_serves_each_request_with_its_own_configuration(batch):
    candidates, excluded, scores, contexts = batch
    configs = [CascadeConfig((1, 0, 0), 10, (0, 1, 0)), CascadeConfig((0, 0, 1), 20, (1, 1, 0))]
    cascade = Cascade(configs, A, C, K)
    decisions = np.arange(B) % 2
    mixed, weights = cascade.rank(candidates, excluded, scores, contexts, decisions, K)
    for index in (0, 1):
        alone, _ = cascade.rank(candidates, excluded, scores, contexts, np.full(B, index), K)
        np.testing.assert_array_equal(mixed[decisions == index], alone[decisions == index])
    np.testing.assert_array_equal(weights[1], [0.5, 0.5, 0.0])
    assert configs[1].label(["pop", "mf", "content"]) == "content>20>0.5 pop + 0.5 mf"
    assert configs[0].label(["pop", "mf", "content"]) == "pop>10>mf"


def _stacker():
    spec = StackerSpec(kind="logistic", arm_names=["a", "b", "c"], context_names=list(CONTEXT_NAMES), slate_size=K,
                       target="clicks", world={"scenario": "x"})
    stacker = Stacker(spec)
    with np.errstate(all="ignore"):
        weights = stacker.network.model.signal_weights
        weights.bias.data[:] = 0.0
        weights.bias.data[4] = 1.0  # the stacker ranks by arm c's z-score
    return stacker


def test_stacking_and_a_stacker_second_stage(batch):
    candidates, excluded, scores, contexts = batch
    stacking = Stacking(_stacker())
    slate, weights = stacking.rank(candidates, excluded, scores, contexts, stacking.decide(np.zeros(B, int)), K)
    np.testing.assert_array_equal(slate, _blend_slate(batch, (0, 0, 1)))
    assert np.isnan(weights).all()
    cascade = Cascade([CascadeConfig((1, 0, 0), C, "stacker")], A, C, K, stacker=_stacker())
    slate, weights = cascade.rank(candidates, excluded, scores, contexts, np.zeros(B, dtype=np.int64), K)
    np.testing.assert_array_equal(slate, _blend_slate(batch, (0, 0, 1)))
    assert np.isnan(weights).all()


@pytest.mark.parametrize("config, message", [
    (CascadeConfig((1, 0, 0), 4, (0, 1, 0)), r"cascade N \(keep\) = 4 is not allowed in configuration 0: must be an "
                                             "integer from the slate size 5 to the number of candidates 30"),
    (CascadeConfig((1, 0, 0), 31, (0, 1, 0)), r"cascade N \(keep\) = 31 is not allowed in configuration 0: must be an "
                                              "integer from the slate size 5 to the number of candidates 30"),
    (CascadeConfig((1, 0), 10, (0, 1, 0)), r"cascade configuration 0: stage one weights \[1, 0\] are not allowed: "
                                           "must be 3 finite numbers >= 0 with a positive sum"),
    (CascadeConfig((1, 0, 0), 10, (0, -1, 2)), r"cascade configuration 0: stage two weights \[0, -1, 2\] are not "
                                               "allowed: must be 3 finite numbers >= 0 with a positive sum"),
    (CascadeConfig((1, 0, 0), 10, "stacker"), "cascade configuration 0 orders stage two by the stacker, but no "
                                              "stacker was given"),
    (CascadeConfig("stacker", 10, (0, 1, 0)), "cascade configuration 0: stage one = 'stacker' is not allowed: must "
                                              "be 3 arm weights"),
])
def test_bad_cascades(config, message):
    with pytest.raises(FusionError, match=f"^{message}$"):
        Cascade([config], A, C, K)


def test_bad_actions():
    cascade = Cascade([CascadeConfig((1, 0, 0), 10, (0, 1, 0))], A, C, K)
    with pytest.raises(ActionError, match=r"^cascade actions must be integers in \[0, 1\); got 1 at row 2$"):
        cascade.decide(np.array([0, 0, 1]))
    with pytest.raises(ActionError, match=r"^stacking actions must be integers in \[0, 1\), one per request in an "
                                          r"array of shape \(B,\); got dtype float64 and shape \(2,\)$"):
        Stacking(_stacker()).decide(np.zeros(2))


def test_shuffled_slate_shows_the_same_items_in_random_orders(batch):
    candidates, excluded, scores, contexts = batch
    weights = np.full((B, A), 1.0 / A, dtype=np.float32)
    inner, _ = WeightedBlend().rank(candidates, excluded, scores, contexts, weights, K)
    first, _ = ShuffledSlate(WeightedBlend(), seed=3).rank(candidates, excluded, scores, contexts, weights, K)
    again, _ = ShuffledSlate(WeightedBlend(), seed=3).rank(candidates, excluded, scores, contexts, weights, K)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(np.sort(first, axis=1), np.sort(inner, axis=1))
    assert (first != inner).any(axis=1).mean() > 0.9  # 5! orders: nearly every row is reordered
    # every position sees the blend's best item about equally often (uniform orders)
    top_at = (first == inner[:, :1]).argmax(axis=1)
    assert set(top_at) == set(range(K))

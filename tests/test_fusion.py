import numpy as np
import pytest

from fusionsim.envs.fusion import ActionMapper, blend, select_slate, simplex_grid, weights_from_continuous


def test_simplex_grid_exact():
    grid = simplex_grid(3, 2)
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], dtype=np.float32)
    np.testing.assert_array_equal(grid, expected)
    assert len(simplex_grid(4, 4)) == 35  # C(4 + 3, 3)
    np.testing.assert_allclose(simplex_grid(4, 4).sum(axis=1), 1.0)


def test_weights_from_continuous_is_a_softmax():
    w = weights_from_continuous(np.array([[0.0, 0.0], [1.0, -1.0]]), temperature=3.0)
    np.testing.assert_allclose(w[0], [0.5, 0.5])
    np.testing.assert_allclose(w[1], [np.exp(3) / (np.exp(3) + np.exp(-3)), np.exp(-3) / (np.exp(3) + np.exp(-3))],
                               rtol=1e-6)


def test_blend_hand_computed():
    a = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)  # mean 2, std sqrt(2/3)
    b = np.array([[30.0, 10.0, 20.0]], dtype=np.float32)  # mean 20, std sqrt(200/3)
    weights = np.array([[0.25, 0.75]], dtype=np.float32)
    z_a = (a - 2) / np.sqrt(2 / 3)
    z_b = (b - 20) / np.sqrt(200 / 3)
    expected = 0.25 * z_a + 0.75 * z_b
    got = blend([a, b], weights)
    # blend drops the per-request constant; differences between candidates are exact
    np.testing.assert_allclose(got - got[:, :1], expected - expected[:, :1], rtol=1e-4)
    # all weight on one arm: that arm's raw scores (same ranking)
    np.testing.assert_array_equal(blend([a, b], np.array([[0.0, 1.0]], dtype=np.float32)), b)


def test_select_slate_orders_and_skips_excluded():
    candidates = np.array([[5, 7, 8, 9, 11, 12]], dtype=np.int32)
    scores = np.array([[0.9, 0.5, 0.95, -1.0, 0.2, 0.6]], dtype=np.float32)
    np.testing.assert_array_equal(select_slate(candidates, scores, 3), [[8, 5, 12]])
    excluded = np.array([[False, False, True, False, False, True]])
    np.testing.assert_array_equal(select_slate(candidates, scores, 3, excluded), [[5, 7, 11]])


def test_select_slate_ties_go_to_the_earlier_candidate_and_negative_scores_order():
    candidates = np.array([[1, 2, 3, 4]], dtype=np.int32)
    scores = np.array([[-0.5, 0.0, 0.0, -2.0]], dtype=np.float32)
    np.testing.assert_array_equal(select_slate(candidates, scores, 2), [[2, 3]])
    np.testing.assert_array_equal(select_slate(candidates, scores, 4)[:, 2:], [[1, 4]])
    # scores within the key's resolution (4 ulps for C = 4) tie; farther apart they order
    close = np.array([[1.0, np.nextafter(np.nextafter(np.float32(1), 2), 2), 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(select_slate(candidates, close, 1), [[1]])
    apart = np.array([[1.0, 1.001, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(select_slate(candidates, apart, 1), [[2]])


def test_select_slate_matches_sorting_on_random_batches(rng):
    b, c, k = 300, 50, 5
    candidates = np.stack([rng.permutation(1000)[:c] for _ in range(b)]).astype(np.int32)
    scores = rng.permutation(b * c).reshape(b, c).astype(np.float32)  # distinct beyond the key resolution
    slate = select_slate(candidates, scores, k)
    expected = np.take_along_axis(candidates, np.argsort(-scores, axis=1)[:, :k], axis=1)
    np.testing.assert_array_equal(slate, expected)


def test_action_mapper_modes():
    arm = ActionMapper("arm", 3)
    np.testing.assert_array_equal(arm.to_weights(np.array([2, 0])), [[0, 0, 1], [1, 0, 0]])
    grid = ActionMapper("grid", 2, grid_resolution=2)
    np.testing.assert_array_equal(grid.to_weights(np.array([2])), [[0.5, 0.5]])
    simplex = ActionMapper("simplex", 2)
    np.testing.assert_allclose(simplex.to_weights(np.array([[3.0, 1.0], [0.0, 0.0]])), [[0.75, 0.25], [0.5, 0.5]])
    assert ActionMapper("weights", 4).space().shape == (4,)


@pytest.mark.parametrize("mode, actions, message", [
    ("arm", np.array([3]), "action 3 is out of range: must be in [0, 3)"),
    ("arm", np.array([-1]), "action -1 is out of range: must be in [0, 3)"),
])
def test_action_mapper_bad_actions(mode, actions, message):
    with pytest.raises(ValueError) as err:
        ActionMapper(mode, 3).to_weights(actions)
    assert str(err.value) == message


def test_action_mapper_bad_mode():
    with pytest.raises(ValueError) as err:
        ActionMapper("mixture", 3)
    assert str(err.value) == "action_mode = 'mixture' is not allowed: must be one of ['arm', 'grid', 'weights', 'simplex']"

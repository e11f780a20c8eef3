import itertools

import numpy as np
import pytest

from fusionsim.envs.fusion import (MAX_GRID_POINTS, ActionError, ActionMapper, blend, grid_size, select_slate,
                                   simplex_grid, weights_from_continuous)


def test_simplex_grid_exact():
    grid = simplex_grid(3, 2)
    expected = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]], dtype=np.float32)
    np.testing.assert_array_equal(grid, expected)
    assert len(simplex_grid(4, 4)) == 35  # C(4 + 3, 3)
    np.testing.assert_allclose(simplex_grid(4, 4).sum(axis=1), 1.0)


@pytest.mark.parametrize("n_arms", [1, 2, 3, 4])
def test_simplex_grid_matches_the_definition(n_arms):
    """Every vector of multiples of 1/r summing to 1, one-hots first in arm order, then lexicographic order of
    the negated entries (the order policies and saved tables index by)."""
    for r in range(1, 6):
        points = [p for p in itertools.product(range(r + 1), repeat=n_arms) if sum(p) == r]
        points.sort(key=lambda p: (max(p) != r, [-x for x in p]))
        np.testing.assert_array_equal(simplex_grid(n_arms, r), np.asarray(points, dtype=np.float32) / r)


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
    np.testing.assert_array_equal(arm.decide(np.array([2, 0])), [[0, 0, 1], [1, 0, 0]])
    grid = ActionMapper("grid", 2, grid_resolution=2)
    np.testing.assert_array_equal(grid.decide(np.array([2])), [[0.5, 0.5]])
    simplex = ActionMapper("simplex", 2)
    np.testing.assert_allclose(simplex.decide(np.array([[3.0, 1.0], [0.0, 2.0]])), [[0.75, 0.25], [0.0, 1.0]])
    assert ActionMapper("weights", 4).space().shape == (4,)


def test_action_mapper_accepts_every_integer_dtype_and_wide_floats():
    arm = ActionMapper("arm", 3)
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64):
        np.testing.assert_array_equal(arm.decide(np.array([2, 0], dtype=dtype)), [[0, 0, 1], [1, 0, 0]])
    assert arm.decide(np.zeros(0, dtype=np.int64)).shape == (0, 3)
    weights = ActionMapper("weights", 2)
    # finite values beyond [-1, 1] are clipped, also beyond the float32 range (1e39 is inf as float32)
    np.testing.assert_array_equal(weights.decide(np.array([[1e39, -5.0]])),
                                  weights.decide(np.array([[1.0, -1.0]], dtype=np.float32)))
    np.testing.assert_array_equal(weights.decide(np.array([[1, 0]])), weights.decide(np.array([[1.0, 0.0]])))


BAD_ACTIONS = [
    # discrete: integers in range, nothing truncated or wrapped
    ("arm", np.array([3]), "arm actions must be integers in [0, 3); got 3 at row 0"),
    ("arm", np.array([-1]), "arm actions must be integers in [0, 3); got -1 at row 0"),
    ("arm", np.array([0, 1, 7]), "arm actions must be integers in [0, 3); got 7 at row 2"),
    ("arm", np.array([-128], dtype=np.int8), "arm actions must be integers in [0, 3); got -128 at row 0"),
    ("arm", np.array([255], dtype=np.uint8), "arm actions must be integers in [0, 3); got 255 at row 0"),
    ("arm", np.array([1.7]), "arm actions must be integers in [0, 3); got dtype float64 (1.7 at row 0)"),
    ("arm", np.array([2.0], dtype=np.float32),
     "arm actions must be integers in [0, 3); got dtype float32 (2.0 at row 0)"),
    ("arm", np.array([np.nan]), "arm actions must be integers in [0, 3); got dtype float64 (nan at row 0)"),
    ("arm", np.array(["0"]), "arm actions must be integers in [0, 3); got dtype <U1 ('0' at row 0)"),
    ("arm", np.array([True]), "arm actions must be integers in [0, 3); got dtype bool (True at row 0)"),
    ("arm", np.array([None]), "arm actions must be integers in [0, 3); got dtype object (None at row 0)"),
    ("arm", np.array([], dtype=np.float64), "arm actions must be integers in [0, 3); got dtype float64"),
    ("arm", np.array(1), "arm actions must be integers in [0, 3), one per request in an array of shape (B,); "
                         "got shape ()"),
    ("arm", np.array([[1], [2]]), "arm actions must be integers in [0, 3), one per request in an array of shape "
                                  "(B,); got shape (2, 1)"),
    ("grid", np.array([10]), "grid actions must be integers in [0, 10); got 10 at row 0"),
    ("grid", np.array([0.5]), "grid actions must be integers in [0, 10); got dtype float64 (0.5 at row 0)"),
    # weights: finite numbers (clipped to [-1, 1]), shape (B, A)
    ("weights", np.array([[np.nan, 0.0, 0.0]]),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got nan at row 0, arm 0"),
    ("weights", np.array([[0.0, 0.5, 0.0], [0.0, np.inf, 0.0]], dtype=np.float32),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got inf at row 1, arm 1"),
    ("weights", np.array([[0.0, 0.0, -np.inf]]),
     "weights actions must be finite numbers (values outside [-1, 1] are clipped); got -inf at row 0, arm 2"),
    ("weights", np.array([0.0, 0.5, 1.0]), "weights actions must be numbers in an array of shape (B, 3), one row of "
                                           "3 per request; got shape (3,)"),
    ("weights", np.zeros((1, 2)), "weights actions must be numbers in an array of shape (B, 3), one row of 3 per "
                                  "request; got shape (1, 2)"),
    ("weights", np.zeros((1, 1, 3)), "weights actions must be numbers in an array of shape (B, 3), one row of 3 per "
                                     "request; got shape (1, 1, 3)"),
    ("weights", np.array([["0", "1", "0"]]), "weights actions must be numbers in an array of shape (B, 3); got dtype "
                                             "<U1 ('0' at row 0)"),
    ("weights", np.array([[True, False, False]]), "weights actions must be numbers in an array of shape (B, 3); got "
                                                  "dtype bool (True at row 0)"),
    # simplex: finite, >= 0, a positive sum per row
    ("simplex", np.array([[0.5, -0.1, 0.0]]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got -0.1 at row 0, arm 1"),
    ("simplex", np.array([[0.2, 0.3, 0.5], [0.0, 0.0, 0.0]]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got a row summing to 0.0 "
     "at row 1"),
    ("simplex", np.array([[np.nan, 1.0, 0.0]]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got nan at row 0, arm 0"),
    ("simplex", np.array([[1.0, np.inf, 0.0]]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got inf at row 0, arm 1"),
    ("simplex", np.array([[1e39, 1.0, 0.0]]),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got 1e+39 at row 0, arm 0"),
    ("simplex", np.array([[3e38, 3e38, 0.0]], dtype=np.float32),
     "simplex actions must be finite float32 numbers >= 0 with a positive sum in each row; got a row summing to inf "
     "at row 0"),
    ("simplex", np.array([[1, 0]]), "simplex actions must be numbers in an array of shape (B, 3), one row of 3 per "
                                    "request; got shape (1, 2)"),
]


@pytest.mark.parametrize("mode, actions, message", BAD_ACTIONS,
                         ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_ACTIONS)])
def test_action_mapper_bad_actions(mode, actions, message):
    mapper = ActionMapper(mode, 3, grid_resolution=3)  # 3 arms at resolution 3: 10 grid points
    with pytest.raises(ActionError) as err, np.errstate(over="ignore"):
        mapper.decide(actions)
    assert str(err.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": 0.0}, "temperature = 0.0 is not allowed: must be a finite float32 number > 0"),
    ({"temperature": -1.0}, "temperature = -1.0 is not allowed: must be a finite float32 number > 0"),
    ({"temperature": float("nan")}, "temperature = nan is not allowed: must be a finite float32 number > 0"),
    ({"temperature": np.float64("inf")}, "temperature = inf is not allowed: must be a finite float32 number > 0"),
    ({"temperature": 1e39}, "temperature = 1e+39 is not allowed: must be a finite float32 number > 0"),
    ({"temperature": "3"}, "temperature = '3' is not allowed: must be a finite float32 number > 0"),
    ({"temperature": True}, "temperature = True is not allowed: must be a finite float32 number > 0"),
    ({"grid_resolution": 100_000_000},
     "grid_resolution = 100000000 is not allowed with 2 arms: the grid would have 100,000,001 points "
     "(C(resolution + arms - 1, arms - 1)); must have at most 100,000"),
    ({"grid_resolution": 0}, "grid_resolution = 0 is not allowed: must be an integer >= 1"),
    ({"grid_resolution": 2.0}, "grid_resolution = 2.0 is not allowed: must be an integer >= 1"),
    ({"n_arms": 0}, "n_arms = 0 is not allowed: must be an integer >= 1"),
])
def test_action_mapper_bad_settings(kwargs, message):
    with pytest.raises(ActionError) as err:
        ActionMapper("grid", **{"n_arms": 2, **kwargs})
    assert str(err.value) == message


def test_grid_size_bound_is_checked_before_building():
    assert grid_size(4, 4) == len(simplex_grid(4, 4)) == 35
    assert grid_size(2, MAX_GRID_POINTS - 1) == MAX_GRID_POINTS
    assert len(simplex_grid(2, MAX_GRID_POINTS - 1)) == MAX_GRID_POINTS  # the largest grid builds
    with pytest.raises(ValueError) as err:
        simplex_grid(4, 100)
    assert str(err.value) == ("grid_resolution = 100 is not allowed with 4 arms: the grid would have 176,851 points "
                              "(C(resolution + arms - 1, arms - 1)); must have at most 100,000")
    with pytest.raises(ValueError) as err:
        simplex_grid(1000, 1000)
    assert str(err.value).startswith("grid_resolution = 1000 is not allowed with 1000 arms: the grid would have "
                                     "10^600 points")


def test_action_mapper_bad_mode():
    with pytest.raises(ValueError) as err:
        ActionMapper("mixture", 3)
    assert str(err.value) == "action_mode = 'mixture' is not allowed: must be one of ['arm', 'grid', 'weights', 'simplex']"

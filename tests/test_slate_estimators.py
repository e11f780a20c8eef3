"""Slate estimators: hand-computed slates, unbiasedness against a truth found by enumerating every slate,
self-normalisation, Cascade-DR's control variate, the pseudoinverse weight, bootstrap intervals and bad input.

The hand-computed values were also checked against obp 0.5.7 (which agrees to the last digit)."""

import itertools
import re

import numpy as np
import pytest

from fusionsim.experiments.evaluation import slate
from fusionsim.experiments.evaluation.estimators import OPEInputError, OPEInputTypeError
from fusionsim.experiments.evaluation.slate import (SLATE_ESTIMATORS, SelfNormalizedSlateIndependentIPS,
                                                    SelfNormalizedSlateRewardInteractionIPS,
                                                    SelfNormalizedSlateStandardIPS, SlateCascadeDoublyRobust,
                                                    SlateIndependentIPS, SlatePseudoInverse,
                                                    SlateRewardInteractionIPS, SlateStandardIPS)
from tests.conftest import check_bootstrap_interval

# ---------------------------------------------------------------------------------------------------------------
# Two slates of two positions, every estimator's value by hand.
HAND = {
    "slate_id": np.array([0, 0, 1, 1]),
    "position": np.array([0, 1, 0, 1]),
    "reward": np.array([1.0, 0.0, 1.0, 1.0]),
    "action": np.array([0, 1, 1, 0]),
    "pscore": np.array([0.5, 0.5, 0.2, 0.2]),  # whole-slate weights w = [0.5, 2]
    "evaluation_policy_pscore": np.array([0.25, 0.25, 0.4, 0.4]),
    "pscore_item_position": np.array([0.5, 0.25, 0.5, 0.8]),  # w(l) = [0.5, 2 | 2, 0.5]
    "evaluation_policy_pscore_item_position": np.array([0.25, 0.5, 1.0, 0.4]),
    "pscore_cascade": np.array([0.5, 0.25, 0.5, 0.25]),  # w(1:l) = [1, 1.6 | 1.5, 1.8]
    "evaluation_policy_pscore_cascade": np.array([0.5, 0.4, 0.75, 0.45]),  # = products of the logged dist entries
    "q_hat": np.array([0.6, 0.2, 0.1, 0.3, 0.5, 0.7, 0.4, 0.2]),  # flat (rows * 2 actions), as obp
    "evaluation_policy_action_dist": np.array([0.5, 0.5, 0.2, 0.8, 0.25, 0.75, 0.6, 0.4]),
}
HAND_EXPECTED = {
    "sips": (0.5 * (1 + 0) + 2 * (1 + 1)) / 2,
    "snsips": (0.5 * (1 + 0) + 2 * (1 + 1)) / 2 / ((0.5 + 2) / 2),
    "iips": (0.5 * 1 + 2 * 0 + 2 * 1 + 0.5 * 1) / 2,
    # per position: sum w r / sum w
    "sniips": (0.5 * 1 + 2 * 1) / (0.5 + 2) + (2 * 0 + 0.5 * 1) / (2 + 0.5),
    "rips": (1 * 1 + 1.6 * 0 + 1.5 * 1 + 1.8 * 1) / 2,
    "snrips": (1 * 1 + 1.5 * 1) / (1 + 1.5) + (1.6 * 0 + 1.8 * 1) / (1.6 + 1.8),
    # per row: w(1:l) (r - q_hat(a)) + w(1:l-1) sum_a pi_e(a) q_hat(a)
    "cascade-dr": ((1 * (1 - 0.6) + 1 * (0.5 * 0.6 + 0.5 * 0.2))
                   + (1.6 * (0 - 0.3) + 1 * (0.2 * 0.1 + 0.8 * 0.3))
                   + (1.5 * (1 - 0.7) + 1 * (0.25 * 0.5 + 0.75 * 0.7))
                   + (1.8 * (1 - 0.4) + 1.5 * (0.6 * 0.4 + 0.4 * 0.2))) / 2,
    # slate weight sum_l w(l) - (L - 1), times the slate's total reward
    "pi": ((0.5 + 2 - 1) * (1 + 0) + (2 + 0.5 - 1) * (1 + 1)) / 2,
}


def make(name: str, len_list: int = 2, n_unique_action: int = 2):
    if name == "cascade-dr":
        return SlateCascadeDoublyRobust(len_list=len_list, n_unique_action=n_unique_action)
    return SLATE_ESTIMATORS[name](len_list=len_list)


@pytest.mark.parametrize("name", list(HAND_EXPECTED))
def test_hand_computed_values(name):
    assert make(name).estimate_policy_value(**HAND) == pytest.approx(HAND_EXPECTED[name], rel=1e-12)


def test_cascade_dr_takes_per_item_arrays_flat_or_2d():
    two_d = {**HAND, "q_hat": HAND["q_hat"].reshape(4, 2),
             "evaluation_policy_action_dist": HAND["evaluation_policy_action_dist"].reshape(4, 2)}
    assert make("cascade-dr").estimate_policy_value(**two_d) == make("cascade-dr").estimate_policy_value(**HAND)


def test_estimator_names_and_fields_are_obps():
    assert list(SLATE_ESTIMATORS) == ["sips", "iips", "rips", "snsips", "sniips", "snrips", "cascade-dr", "pi"]
    assert SlateCascadeDoublyRobust(3, 5) == SlateCascadeDoublyRobust(len_list=3, n_unique_action=5)
    assert isinstance(SelfNormalizedSlateRewardInteractionIPS(2), SlateRewardInteractionIPS)


def test_self_normalised_equal_plain_when_weights_average_one():
    # whole-slate w = [0.5, 1.5]; item-position w = [0.5, 2 | 1.5, 0]; cascade w = [0.5, 1.5 | 1.5, 0.5]:
    # every position's weights average exactly 1 over the two slates
    arrays = {**HAND,
              "pscore": np.array([0.4, 0.4, 0.2, 0.2]), "evaluation_policy_pscore": np.array([0.2, 0.2, 0.3, 0.3]),
              "pscore_item_position": np.array([0.4, 0.5, 0.2, 0.25]),
              "evaluation_policy_pscore_item_position": np.array([0.2, 1.0, 0.3, 0.0]),
              "pscore_cascade": np.array([0.4, 0.1, 0.2, 0.2]),
              "evaluation_policy_pscore_cascade": np.array([0.2, 0.15, 0.3, 0.1])}
    for plain, normalised, by_hand in [
            (SlateStandardIPS, SelfNormalizedSlateStandardIPS, (0.5 * 1 + 1.5 * 2) / 2),
            (SlateIndependentIPS, SelfNormalizedSlateIndependentIPS, (0.5 * 1 + 2 * 0 + 1.5 * 1 + 0 * 1) / 2),
            (SlateRewardInteractionIPS, SelfNormalizedSlateRewardInteractionIPS,
             (0.5 * 1 + 1.5 * 0 + 1.5 * 1 + 0.5 * 1) / 2)]:
        value = plain(len_list=2).estimate_policy_value(**arrays)
        assert value == pytest.approx(by_hand, rel=1e-12)
        assert normalised(len_list=2).estimate_policy_value(**arrays) == pytest.approx(value, rel=1e-12)
    # and they differ when the weights do not average 1 (the hand case above)
    assert HAND_EXPECTED["snsips"] != pytest.approx(HAND_EXPECTED["sips"])


# ---------------------------------------------------------------------------------------------------------------
# A small world with a known truth: 3 positions, 4 items, logging and evaluation policies that pick each
# position's item independently, and three reward structures.
L, A = 3, 4
MU = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1], [0.2, 0.2, 0.3, 0.3]])  # logging, tenths
PI_E = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7], [0.6, 0.2, 0.1, 0.1]])  # evaluation
THETA = np.array([[0.9, 0.1, 0.2, 0.3], [0.4, 0.7, 0.1, 0.8], [0.2, 0.5, 0.6, 0.3]])  # attraction (position, item)
SLATES = np.array(list(itertools.product(range(A), repeat=L)))  # all 64 slates, (64, L)
ROWS = np.arange(L)


def expected_reward(structure: str, slates: np.ndarray) -> np.ndarray:
    """E[r(l) | slate], (n, L). independent: theta(l, a(l)); cascade: the first attractive item is clicked
    (theta(l, a(l)) prod_{m<l} (1 - theta(m, a(m)))); cross: r(l) depends on the item at the next position
    (the slate total is still additive over positions)."""
    theta = THETA[ROWS, slates]
    if structure == "independent":
        return theta
    if structure == "cascade":
        return theta * np.cumprod(np.concatenate([np.ones((len(slates), 1)), 1 - theta[:, :-1]], axis=1), axis=1)
    return np.roll(theta, -1, axis=1)


def truth(structure: str) -> float:
    """V(pi_e) = sum over the 64 slates of pi_e(s) sum_l E[r(l) | s]."""
    return float(PI_E[ROWS, SLATES].prod(axis=1) @ expected_reward(structure, SLATES).sum(axis=1))


def q_tables(structure: str) -> list[np.ndarray]:
    """Q_l(a(1:l)) = E[sum_{m >= l} r(m) | a(1:l)], later positions filled by pi_e: array (A,) * (l + 1)."""
    future = np.cumsum(expected_reward(structure, SLATES)[:, ::-1], axis=1)[:, ::-1]
    tables = []
    for pos in range(L):
        table = future[:, pos].reshape((A,) * L)
        for later in range(L - 1, pos, -1):
            table = table @ PI_E[later]  # average the last position out under pi_e
        tables.append(table)
    return tables


def logged(slates: np.ndarray, reward: np.ndarray, q_structure: str | None = "cascade") -> dict[str, np.ndarray]:
    """The flat arrays for logged slates (n, L) and rewards (n, L); q_hat is the true Q of ``q_structure``
    (or, when None, a wrong one: a fixed random function of the items above and at each position)."""
    n = len(slates)
    mu, pi = MU[ROWS, slates], PI_E[ROWS, slates]
    rng = np.random.default_rng(7)
    tables = q_tables(q_structure) if q_structure else [rng.random((A,) * (pos + 1)) for pos in range(L)]
    q = np.stack([np.broadcast_to(tables[pos][tuple(slates[:, :pos].T)], (n, A)) for pos in range(L)], axis=1)
    return {"slate_id": np.repeat(np.arange(n), L), "position": np.tile(ROWS, n), "action": slates.ravel(),
            "reward": reward.ravel().astype(np.float64),
            "pscore": np.repeat(mu.prod(axis=1), L), "evaluation_policy_pscore": np.repeat(pi.prod(axis=1), L),
            "pscore_item_position": mu.ravel(), "evaluation_policy_pscore_item_position": pi.ravel(),
            "pscore_cascade": mu.cumprod(axis=1).ravel(),
            "evaluation_policy_pscore_cascade": pi.cumprod(axis=1).ravel(),
            "q_hat": q.ravel(), "evaluation_policy_action_dist": np.tile(PI_E, (n, 1)).ravel()}


def population(structure: str, q_structure: str | None = "cascade") -> dict[str, np.ndarray]:
    """Every slate s repeated 1000 mu(s) times (an integer: mu's entries are tenths) with its expected rewards:
    any estimator linear in the slates then returns its exact expectation under the logging policy."""
    counts = np.rint(1000 * MU[ROWS, SLATES].prod(axis=1)).astype(int)
    assert counts.sum() == 1000
    slates = np.repeat(SLATES, counts, axis=0)
    return logged(slates, expected_reward(structure, slates), q_structure)


def sample(structure: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """n slates drawn from the logging policy, Bernoulli rewards (cascade: the first attractive item is clicked)."""
    rng = np.random.default_rng(seed)
    slates = np.stack([rng.choice(A, size=n, p=MU[pos]) for pos in range(L)], axis=1)
    attractive = rng.random((n, L)) < THETA[ROWS, slates]
    if structure == "cascade":
        first = attractive.argmax(axis=1)
        reward = np.zeros((n, L))
        reward[np.arange(n), first] = attractive.any(axis=1)
    elif structure == "independent":
        reward = attractive
    else:
        reward = np.roll(attractive, -1, axis=1)
    return logged(slates, reward, structure)


ASSUMES = {"sips": ["independent", "cascade", "cross"], "snsips": ["independent", "cascade", "cross"],
           "iips": ["independent"], "sniips": ["independent"], "rips": ["independent", "cascade"],
           "snrips": ["independent", "cascade"], "cascade-dr": ["independent", "cascade"],
           "pi": ["independent", "cross"]}
"""The reward structures under which each estimator is unbiased (consistent, for the self-normalised ones)."""
CASES = [(name, structure) for name, structures in ASSUMES.items() for structure in structures]


def test_q_tables_average_to_the_truth():
    for structure in ("independent", "cascade", "cross"):
        assert PI_E[0] @ q_tables(structure)[0] == pytest.approx(truth(structure), rel=1e-12)


@pytest.mark.parametrize("name, structure", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_exactly_unbiased_over_the_logging_distribution(name, structure):
    # Cascade-DR is unbiased for any q_hat: here the true Q of another structure
    q_structure = "independent" if structure == "cascade" else "cascade"
    value = make(name, len_list=L, n_unique_action=A).estimate_policy_value(**population(structure, q_structure))
    assert value == pytest.approx(truth(structure), rel=1e-10)


def test_cascade_dr_is_unbiased_with_an_arbitrary_q_hat():
    value = make("cascade-dr", L, A).estimate_policy_value(**population("cascade", q_structure=None))
    assert value == pytest.approx(truth("cascade"), rel=1e-10)


@pytest.mark.parametrize("name, structure, off_by_at_least",
                         [("iips", "cascade", 0.1), ("pi", "cascade", 0.01), ("iips", "cross", 0.1)])
def test_biased_outside_its_assumption(name, structure, off_by_at_least):
    """The reward structure matters: IIPS and PI are off when rewards interact, IIPS when a position's reward
    depends on another position's item (the checks above can fail)."""
    value = make(name, L, A).estimate_policy_value(**population(structure))
    assert abs(value - truth(structure)) > off_by_at_least


def per_slate(name: str, d: dict[str, np.ndarray], value: float) -> np.ndarray:
    """Per-slate contributions computed here, independently of the module (linearised for the self-normalised
    estimators), for the standard error."""
    r = d["reward"].reshape(-1, L)
    w = {"s": (d["evaluation_policy_pscore"] / d["pscore"]).reshape(-1, L),
         "i": (d["evaluation_policy_pscore_item_position"] / d["pscore_item_position"]).reshape(-1, L),
         "r": (d["evaluation_policy_pscore_cascade"] / d["pscore_cascade"]).reshape(-1, L)}
    if name in ("sips", "iips", "rips"):
        return (w[name[0]] * r).sum(axis=1)
    if name == "snsips":
        return w["s"][:, 0] * (r.sum(axis=1) - value) / w["s"][:, 0].mean()
    if name in ("sniips", "snrips"):
        weight = w[name[2]]
        by_position = (weight * r).sum(axis=0) / weight.sum(axis=0)
        return (weight * (r - by_position) / weight.mean(axis=0)).sum(axis=1)
    if name == "pi":
        return (w["i"].sum(axis=1) - (L - 1)) * r.sum(axis=1)
    q = d["q_hat"].reshape(-1, L, A)
    dist = d["evaluation_policy_action_dist"].reshape(-1, L, A)
    q_logged = np.take_along_axis(q, d["action"].reshape(-1, L, 1), axis=2)[:, :, 0]
    w_above = np.concatenate([np.ones((len(r), 1)), w["r"][:, :-1]], axis=1)
    return (w["r"] * (r - q_logged) + w_above * (dist * q).sum(axis=2)).sum(axis=1)


@pytest.mark.parametrize("name, structure", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_unbiased_within_three_standard_errors(name, structure):
    data = sample(structure, n=20_000, seed=2024)
    value = make(name, L, A).estimate_policy_value(**data)
    contributions = per_slate(name, data, value)
    if not name.startswith("sn"):
        assert contributions.mean() == pytest.approx(value, rel=1e-10)
    se = contributions.std(ddof=1) / np.sqrt(len(contributions))
    assert abs(value - truth(structure)) < 3 * se


def test_cascade_dr_with_the_true_q_is_exact_for_deterministic_rewards():
    slates = SLATES[np.random.default_rng(3).integers(0, len(SLATES), 500)]
    data = logged(slates, expected_reward("cascade", slates), "cascade")  # rewards = their expectations
    assert make("cascade-dr", L, A).estimate_policy_value(**data) == pytest.approx(truth("cascade"), rel=1e-12)
    assert make("rips", L, A).estimate_policy_value(**data) != pytest.approx(truth("cascade"), rel=1e-3)


def test_cascade_dr_with_the_true_q_has_lower_variance_than_rips():
    values = np.array([[make(name, L, A).estimate_policy_value(**sample("cascade", 2000, seed))
                        for name in ("rips", "cascade-dr")] for seed in range(30)])
    sd_rips, sd_dr = values.std(axis=0, ddof=1)
    assert sd_dr < 0.7 * sd_rips  # about 0.5 here


def test_pseudoinverse_weight_is_the_literal_pseudoinverse():
    """q^T Gamma^+ 1_s, with Gamma = E_mu[1_s 1_s^T] built by enumeration, is sum_l w(l) - (L - 1)."""
    indicators = np.zeros((len(SLATES), L * A))
    indicators[np.arange(len(SLATES))[:, None], ROWS * A + SLATES] = 1.0
    gamma = indicators.T @ (MU[ROWS, SLATES].prod(axis=1)[:, None] * indicators)
    literal = PI_E.ravel() @ np.linalg.pinv(gamma) @ indicators.T  # (64,)
    reward = np.zeros((len(SLATES), L))
    reward[:, 0] = np.random.default_rng(5).random(len(SLATES))  # a different total reward for every slate
    value = SlatePseudoInverse(len_list=L).estimate_policy_value(**logged(SLATES, reward))
    assert value == pytest.approx(np.mean(literal * reward[:, 0]), rel=1e-9)


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ASSUMES))
def test_interval_keys_contain_the_estimate_and_repeat(name):
    data = sample("cascade", n=300, seed=11)
    estimator = make(name, L, A)
    check_bootstrap_interval(estimator, data)


def test_interval_resamples_whole_slates():
    # one slate holds all the reward: every resample's value is a multiple of that slate's contribution
    data = {**HAND, "reward": np.array([0.0, 0.0, 1.0, 1.0])}
    interval = make("sips").estimate_interval(**data, n_bootstrap_samples=500, random_state=0)
    # a resample's value is the mean of two draws from the slates' contributions [0, 4]: 0, 2 or 4
    assert interval["95.0% CI (lower)"] == 0.0 and interval["95.0% CI (upper)"] == 4.0


# ---------------------------------------------------------------------------------------------------------------
def _with(**changes):
    return {**HAND, **{k: (v if v is None else np.asarray(v)) for k, v in changes.items()}}


BAD = [
    ("length", "sips", _with(reward=[1.0, 0.0, 1.0]),
     "reward must have one value per row of slate_id (4 rows); got 3"),
    ("2-d", "sips", _with(pscore=[[0.5, 0.5], [0.2, 0.2]]),
     "pscore must be 1-D (one value per row, i.e. per slate and position); got shape (2, 2)"),
    ("missing", "sips", _with(evaluation_policy_pscore=None), "sips needs evaluation_policy_pscore; got None"),
    ("empty", "iips", {k: np.array([], dtype=HAND[k].dtype) for k in HAND},
     "slate_id must have at least one row; got 0"),
    ("float slate_id", "iips", _with(slate_id=[0.0, 0.0, 1.0, 1.0]), "slate_id must be integers; got dtype float64"),
    ("non-contiguous slate_id", "iips", _with(slate_id=[1, 0, 0, 1]),
     ("slate_id must keep each slate's rows together (contiguous); slate_id 1 appears again at row 3 after other "
      "slates' rows")),
    ("slate_id shared by two slates", "rips", _with(slate_id=[0, 0, 0, 0]),
     "position must be 0, 1, 2, ... in row order within each slate; got 0 at row 2 (slate_id 0, expected 2)"),
    ("position skips", "iips", _with(position=[0, 2, 0, 1]),
     "position must be 0, 1, 2, ... in row order within each slate; got 2 at row 1 (slate_id 0, expected 1)"),
    ("position out of order", "sniips", _with(position=[0, 1, 1, 0]),
     "position must be 0, 1, 2, ... in row order within each slate; got 1 at row 2 (slate_id 1, expected 0)"),
    ("float position", "sips", _with(position=[0.0, 1.0, 0.0, 1.0]), "position must be integers; got dtype float64"),
    ("slate lengths differ", "iips", _with(slate_id=[0, 0, 0, 1], position=[0, 1, 2, 0]),
     "every slate must have as many rows as the first (3, one per position); slate_id 1 at row 3 has 1"),
    ("len_list", "sips", HAND, "len_list is 3 but the slates have 2 rows each (positions 0..1); give len_list=2"),
    ("reward nan", "sips", _with(reward=[1.0, 0.0, 1.0, np.nan]), "reward must be finite; got nan at row 3"),
    ("reward inf", "cascade-dr", _with(reward=[np.inf, 0.0, 1.0, 1.0]), "reward must be finite; got inf at row 0"),
    ("pscore zero", "sips", _with(pscore=[0.5, 0.5, 0.0, 0.0]), "pscore must be in (0, 1]; got 0.0 at row 2"),
    ("pscore negative", "iips", _with(pscore_item_position=[0.5, -0.25, 0.5, 0.8]),
     "pscore_item_position must be in (0, 1]; got -0.25 at row 1"),
    ("pscore above 1", "rips", _with(pscore_cascade=[0.5, 0.25, 1.5, 0.25]),
     "pscore_cascade must be in (0, 1]; got 1.5 at row 2"),
    ("pscore nan", "pi", _with(pscore_item_position=[0.5, 0.25, 0.5, np.nan]),
     "pscore_item_position must be in (0, 1]; got nan at row 3"),
    ("pscore inf", "snsips", _with(pscore=[np.inf, np.inf, 0.2, 0.2]), "pscore must be in (0, 1]; got inf at row 0"),
    ("evaluation pscore above 1", "iips", _with(evaluation_policy_pscore_item_position=[0.25, 0.5, 1.2, 0.4]),
     "evaluation_policy_pscore_item_position must be in [0, 1]; got 1.2 at row 2"),
    ("evaluation pscore negative", "sips", _with(evaluation_policy_pscore=[-0.25, -0.25, 0.4, 0.4]),
     "evaluation_policy_pscore must be in [0, 1]; got -0.25 at row 0"),
    ("evaluation pscore nan", "snrips", _with(evaluation_policy_pscore_cascade=[0.5, np.nan, 0.75, 0.45]),
     "evaluation_policy_pscore_cascade must be in [0, 1]; got nan at row 1"),
    ("pscore varies in a slate", "sips", _with(pscore=[0.5, 0.4, 0.2, 0.2]),
     ("pscore must be the same on every row of a slate (the whole-slate propensity); got 0.4 at row 1, 0.5 on its "
      "slate's first row 0")),
    ("evaluation pscore varies in a slate", "snsips", _with(evaluation_policy_pscore=[0.25, 0.25, 0.4, 0.3]),
     ("evaluation_policy_pscore must be the same on every row of a slate (the whole-slate propensity); got 0.3 at "
      "row 3, 0.4 on its slate's first row 2")),
    ("cascade pscore increases", "rips", _with(pscore_cascade=[0.5, 0.25, 0.5, 0.6]),
     ("pscore_cascade must not increase down a slate (it is the propensity of the slate's first l items); got 0.6 "
      "at row 3 after 0.5 at row 2")),
    ("evaluation cascade pscore increases", "cascade-dr",
     _with(evaluation_policy_pscore_cascade=[0.5, 0.6, 0.75, 0.45]),
     ("evaluation_policy_pscore_cascade must not increase down a slate (it is the propensity of the slate's first l "
      "items); got 0.6 at row 1 after 0.5 at row 0")),
    ("action out of range", "cascade-dr", _with(action=[0, 2, 1, 0]),
     "action must be integers in [0, 2) (n_unique_action = 2); got 2 at row 1"),
    ("float action", "cascade-dr", _with(action=[0.0, 1.0, 1.0, 0.0]), "action must be integers; got dtype float64"),
    ("action length", "cascade-dr", _with(action=[0, 1, 1]),
     "action must have one value per row of slate_id (4 rows); got 3"),
    ("q_hat missing", "cascade-dr", _with(q_hat=None), "cascade-dr needs q_hat; got None"),
    ("q_hat size", "cascade-dr", _with(q_hat=np.zeros(6)),
     "q_hat must have n_rows * n_unique_action = 8 values (flat, as obp takes it) or shape (4, 2); got shape (6,)"),
    ("q_hat nan", "cascade-dr", _with(q_hat=[0.6, 0.2, 0.1, 0.3, np.nan, 0.7, 0.4, 0.2]),
     "q_hat must be finite; row 2 is not"),
    ("action dist sum", "cascade-dr",
     _with(evaluation_policy_action_dist=[0.5, 0.5, 0.5, 0.25, 0.25, 0.75, 0.6, 0.4]),
     "evaluation_policy_action_dist must sum to 1 over the 2 actions of each row; row 1 sums to 0.75"),
    ("action dist negative", "cascade-dr",
     _with(evaluation_policy_action_dist=[-0.5, 1.5, 0.2, 0.8, 0.25, 0.75, 0.6, 0.4]),
     "evaluation_policy_action_dist must hold probabilities (finite, >= 0); row 0 has -0.5"),
    ("action dist shape", "cascade-dr", _with(evaluation_policy_action_dist=np.full((4, 3), 1 / 3)),
     ("evaluation_policy_action_dist must have n_rows * n_unique_action = 8 values (flat, as obp takes it) or shape "
      "(4, 2); got shape (4, 3)")),
]


@pytest.mark.parametrize("name, arrays, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_messages(name, arrays, message):
    estimator = make(name, len_list=3 if message.startswith("len_list is 3") else 2)
    with pytest.raises(OPEInputError, match=re.escape(message)) as error:
        estimator.estimate_policy_value(**arrays)
    assert str(error.value) == message
    with pytest.raises(OPEInputError, match=re.escape(message)):
        estimator.estimate_interval(**arrays, n_bootstrap_samples=10)


def test_cascade_dr_in_blocks_of_one_slate_gives_the_same_value_and_rows(monkeypatch):
    rng = np.random.default_rng(3)
    n_slates, len_list, n_actions = 7, 3, 4
    n = n_slates * len_list
    dist = rng.random((n, n_actions))
    dist /= dist.sum(axis=1, keepdims=True)
    data = {"slate_id": np.repeat(np.arange(n_slates), len_list), "position": np.tile(np.arange(len_list), n_slates),
            "action": rng.integers(0, n_actions, n), "reward": rng.random(n),
            "pscore_cascade": np.cumprod(rng.uniform(0.5, 1, (n_slates, len_list)), axis=1).ravel(),
            "evaluation_policy_pscore_cascade": np.cumprod(rng.uniform(0.5, 1, (n_slates, len_list)), axis=1).ravel(),
            "q_hat": rng.random((n, n_actions)), "evaluation_policy_action_dist": dist}
    estimator = SlateCascadeDoublyRobust(len_list=len_list, n_unique_action=n_actions)
    whole = estimator.estimate_policy_value(**data)
    monkeypatch.setattr(slate, "CASCADE_BLOCK_ROWS", len_list)  # one slate per block
    assert estimator.estimate_policy_value(**data) == pytest.approx(whole, rel=1e-14)
    q_hat = data["q_hat"].copy()
    q_hat[16, 2] = np.inf  # in the sixth block
    with pytest.raises(OPEInputError, match="^q_hat must be finite; row 16 is not$"):
        estimator.estimate_policy_value(**{**data, "q_hat": q_hat})
    dist = dist.copy()
    dist[11] = [0.25, 0.25, 0.0, 0.0]
    with pytest.raises(OPEInputError, match="^evaluation_policy_action_dist must sum to 1 over the 4 actions of "
                                            "each row; row 11 sums to 0.5$"):
        estimator.estimate_policy_value(**{**data, "evaluation_policy_action_dist": dist})


def test_unused_arguments_may_be_none_as_obps_slate_ope_passes_them():
    used = {"slate_id", "reward", "position", "pscore", "evaluation_policy_pscore"}
    arrays = {k: (v if k in used else None) for k, v in HAND.items()}
    assert make("sips").estimate_policy_value(**arrays) == pytest.approx(HAND_EXPECTED["sips"])


def test_cascade_propensity_may_grow_by_rounding_only():
    grown = 0.5 * (1 + 1e-15)  # a product computed another way
    arrays = _with(pscore_cascade=[0.5, grown, 0.5, 0.25])
    assert make("rips").estimate_policy_value(**arrays) == pytest.approx((1 + 0.4 / grown * 0 + 1.5 + 1.8) / 2)


def test_evaluation_propensity_zero_is_allowed():
    arrays = _with(evaluation_policy_pscore_item_position=[0.0, 0.5, 1.0, 0.0])
    assert make("iips").estimate_policy_value(**arrays) == pytest.approx((0 * 1 + 2 * 0 + 2 * 1 + 0 * 1) / 2)


@pytest.mark.parametrize("build, error, message", [
    (lambda: SlateStandardIPS(len_list=0), OPEInputError, "len_list must be an integer >= 1; got 0"),
    (lambda: SlateIndependentIPS(len_list=2.0), OPEInputTypeError, "len_list must be an integer >= 1; got 2.0 (float)"),
    (lambda: SlateCascadeDoublyRobust(len_list=2, n_unique_action=0), OPEInputError,
     "n_unique_action must be an integer >= 1; got 0"),
    (lambda: make("rips").estimate_interval(**HAND, alpha=1.5), OPEInputError,
     "alpha must be in (0, 1) and n_bootstrap_samples >= 1; got 1.5, 10000"),
], ids=["len_list 0", "len_list float", "n_unique_action 0", "alpha"])
def test_bad_hyperparameters(build, error, message):
    with pytest.raises(error) as raised:
        build()
    assert str(raised.value) == message

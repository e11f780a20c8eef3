"""Session (trajectory) estimators: hand-computed sessions, equalities between estimators, unbiasedness on a
small MDP whose truth is found by enumerating every session, DR's exactness with the true Q, a per-request
estimator's bias as a negative control, bootstrap intervals over sessions, bad input and the log builder."""

import itertools
import re

import numpy as np
import pandas as pd
import pytest

from fusionsim.experiments.evaluation.estimators import (InverseProbabilityWeighting, OPEInputError,
                                                         OPEInputTypeError, bootstrap_means)
from fusionsim.experiments.evaluation.session import (SESSION_ESTIMATORS, PerDecisionDoublyRobust, PerDecisionIS,
                                                      SelfNormalizedPerDecisionDoublyRobust,
                                                      SelfNormalizedPerDecisionIS, SelfNormalizedTrajectoryWiseIS,
                                                      TrajectoryWiseIS, _session_bootstrap_means,
                                                      session_arrays_from_log)
from tests.conftest import check_bootstrap_interval

NAMES = list(SESSION_ESTIMATORS)
DR_NAMES = ("dr", "sndr")

# ---------------------------------------------------------------------------------------------------------------
# Two sessions, of one step (id 7) and two steps (id 3): w = [0.5 | 2, 2], rho = [0.5 | 2, 4].
HAND = {
    "session_id": np.array([7, 3, 3]),
    "step": np.array([0, 0, 1]),
    "reward": np.array([1.0, 2.0, 1.0]),
    "pscore": np.array([0.5, 0.4, 0.5]),
    "evaluation_policy_pscore": np.array([0.25, 0.8, 1.0]),
    "q_hat": np.array([0.6, 1.5, 0.7]),
    "v_hat": np.array([0.9, 1.2, 0.8]),
}


def hand_expected(g: float) -> dict[str, float]:
    """Every estimator on HAND with discount g, by hand."""
    return {
        "tis": (0.5 * 1 + 4 * (2 + g * 1)) / 2,
        "sntis": (0.5 * 1 + 4 * (2 + g * 1)) / (0.5 + 4),
        "pdis": (0.5 * 1 + (2 * 2 + g * 4 * 1)) / 2,
        # step 0: (0.5 * 1 + 2 * 2) / (0.5 + 2); step 1: session 7 has ended (reward 0, weight frozen at 0.5)
        "snpdis": (0.5 * 1 + 2 * 2) / (0.5 + 2) + g * (0 + 4 * 1) / (0.5 + 4),
        # per step: rho_t (r - q_hat) + rho_{t-1} v_hat
        "dr": ((0.5 * (1 - 0.6) + 1 * 0.9) + (2 * (2 - 1.5) + 1 * 1.2) + g * (4 * (1 - 0.7) + 2 * 0.8)) / 2,
        # step 0: mean rho (r - q) / mean rho + mean v / 1; step 1: the same with the frozen weights
        "sndr": ((0.5 * 0.4 + 2 * 0.5) / (0.5 + 2) + (0.9 + 1.2) / 2
                 + g * ((0 + 4 * 0.3) / (0.5 + 4) + (0 + 2 * 0.8) / (0.5 + 2))),
    }


@pytest.mark.parametrize("gamma", [1.0, 0.5])
@pytest.mark.parametrize("name", NAMES)
def test_hand_computed_values(name, gamma):
    value = SESSION_ESTIMATORS[name]().estimate_policy_value(**HAND, gamma=gamma)
    assert value == pytest.approx(hand_expected(gamma)[name], rel=1e-12)


def test_names_and_classes():
    assert NAMES == ["tis", "sntis", "pdis", "snpdis", "dr", "sndr"]
    assert [c.__name__ for c in SESSION_ESTIMATORS.values()] == [
        "TrajectoryWiseIS", "SelfNormalizedTrajectoryWiseIS", "PerDecisionIS", "SelfNormalizedPerDecisionIS",
        "PerDecisionDoublyRobust", "SelfNormalizedPerDecisionDoublyRobust"]


def test_default_gamma_is_one():
    for name in NAMES:
        estimator = SESSION_ESTIMATORS[name]()
        assert estimator.estimate_policy_value(**HAND) == estimator.estimate_policy_value(**HAND, gamma=1.0)


# ---------------------------------------------------------------------------------------------------------------
def random_sessions(lengths, seed: int, same_policy: bool = False) -> dict[str, np.ndarray]:
    """Sessions of the given lengths with random rewards, propensities and reward-model values."""
    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    n = int(lengths.sum())
    pscore = rng.uniform(0.1, 1.0, n)
    q = rng.normal(size=n)
    return {"session_id": np.repeat(np.arange(len(lengths)) * 10 + 5, lengths),
            "step": np.concatenate([np.arange(k) for k in lengths]), "reward": rng.normal(1.0, 1.0, n),
            "pscore": pscore, "evaluation_policy_pscore": pscore if same_policy else rng.uniform(0.0, 1.0, n),
            "q_hat": q, "v_hat": q if same_policy else rng.normal(size=n)}


def test_per_decision_equals_trajectory_wise_for_one_step_sessions():
    data = random_sessions(np.ones(50, dtype=int), seed=1)
    assert PerDecisionIS().estimate_policy_value(**data) == pytest.approx(
        TrajectoryWiseIS().estimate_policy_value(**data), rel=1e-12)
    assert SelfNormalizedPerDecisionIS().estimate_policy_value(**data) == pytest.approx(
        SelfNormalizedTrajectoryWiseIS().estimate_policy_value(**data), rel=1e-12)
    # and they differ on longer sessions
    longer = random_sessions([1, 2, 3, 4] * 10, seed=1)
    assert PerDecisionIS().estimate_policy_value(**longer) != pytest.approx(
        TrajectoryWiseIS().estimate_policy_value(**longer), rel=1e-3)


@pytest.mark.parametrize("gamma", [1.0, 0.7])
def test_on_policy_every_estimator_gives_the_logged_mean_return(gamma):
    """pi_e = pi_b: every weight is 1; with q_hat = v_hat the control variate cancels too."""
    lengths = [1, 2, 5, 3, 1, 4]
    data = random_sessions(lengths, seed=2, same_policy=True)
    returns = [sum(gamma ** t * r for t, r in enumerate(rs))
               for rs in np.split(data["reward"], np.cumsum(lengths)[:-1])]
    for name in NAMES:
        value = SESSION_ESTIMATORS[name]().estimate_policy_value(**data, gamma=gamma)
        assert value == pytest.approx(np.mean(returns), rel=1e-12), name


def test_dr_with_a_zero_reward_model_is_pdis():
    data = {**random_sessions([1, 2, 3, 4] * 5, seed=3), "q_hat": np.zeros(50), "v_hat": np.zeros(50)}
    assert PerDecisionDoublyRobust().estimate_policy_value(**data, gamma=0.9) == pytest.approx(
        PerDecisionIS().estimate_policy_value(**data, gamma=0.9), rel=1e-12)
    assert SelfNormalizedPerDecisionDoublyRobust().estimate_policy_value(**data, gamma=0.9) == pytest.approx(
        SelfNormalizedPerDecisionIS().estimate_policy_value(**data, gamma=0.9), rel=1e-12)


def test_the_order_of_sessions_does_not_matter():
    lengths = [3, 1, 2, 4]
    data = random_sessions(lengths, seed=4)
    blocks = np.split(np.arange(10), np.cumsum(lengths)[:-1])
    shuffled = np.concatenate([blocks[i] for i in (2, 0, 3, 1)])
    moved = {k: v[shuffled] for k, v in data.items()}
    for name in NAMES:
        estimator = SESSION_ESTIMATORS[name]()
        assert estimator.estimate_policy_value(**moved) == pytest.approx(estimator.estimate_policy_value(**data),
                                                                         rel=1e-12)


def test_zero_weights_give_zero_not_nan():
    data = {**HAND, "evaluation_policy_pscore": np.zeros(3)}
    for name in ("sntis", "snpdis"):
        assert SESSION_ESTIMATORS[name]().estimate_policy_value(**data) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# A small MDP: 2 states x 2 actions, at most 3 requests per session; the action changes the next state and
# whether the shopper leaves, so the evaluation policy changes the states it meets and how long sessions last.
H = 3
P0 = np.array([0.7, 0.3])  # start state
PI_B = np.array([[0.5, 0.5], [0.4, 0.6]])  # logging policy, (state, action)
PI_E = np.array([[0.9, 0.1], [0.2, 0.8]])  # evaluation policy
R = np.array([[1.0, 0.2], [0.3, 2.0]])  # mean reward (state, action)
P1 = np.array([[0.2, 0.8], [0.3, 0.9]])  # P(next state = 1 | state, action)
LEAVE = np.array([[0.1, 0.5], [0.4, 0.05]])  # P(the shopper leaves after the request | state, action)
STOCHASTIC = {"p0": P0, "p1": P1, "leave": LEAVE, "noise": 0.5}
# deterministic: start in state 1, the action is the next state, the shopper leaves after action 0 in state 1
DETERMINISTIC = {"p0": np.array([0.0, 1.0]), "p1": np.array([[0.0, 1.0], [0.0, 1.0]]),
                 "leave": np.array([[0.0, 0.0], [1.0, 0.0]]), "noise": 0.0}


def enumerate_value(policy: np.ndarray, p0, p1, leave, **_) -> float:
    """E[sum of rewards] under ``policy``: the sum over every session (start, then per step action, leave or
    stay, next state) of its probability times its expected rewards."""
    value = 0.0
    for s0 in range(2):
        paths = [(p0[s0], s0, 0.0)]  # (probability, current state, rewards so far) of the running sessions
        for _ in range(H):
            running = []
            for (prob, s, total), a in itertools.product(paths, range(2)):
                p_a, total = prob * policy[s, a], total + R[s, a]
                value += p_a * leave[s, a] * total  # the shopper leaves here
                for s_next in range(2):
                    p_next = p1[s, a] if s_next == 1 else 1 - p1[s, a]
                    running.append((p_a * (1 - leave[s, a]) * p_next, s_next, total))
            paths = running
        value += sum(prob * total for prob, _, total in paths)  # truncated after H requests
    return value


def q_function(p1, leave, **_) -> np.ndarray:
    """Q_t(s, a) of the evaluation policy by backward induction, (H, 2, 2)."""
    q, v_next = np.zeros((H, 2, 2)), np.zeros(2)
    for t in range(H - 1, -1, -1):
        q[t] = R + (1 - leave) * ((1 - p1) * v_next[0] + p1 * v_next[1])
        v_next = (PI_E * q[t]).sum(axis=1)
    return q


def sample(n: int, seed: int, p0, p1, leave, noise: float, q: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """n sessions under the logging policy as flat arrays (plus the padded (n, H) ``alive`` mask, states,
    actions and rewards for the tests' own per-session sums); q_hat and v_hat from ``q`` (the true Q when None)."""
    rng = np.random.default_rng(seed)
    q = q_function(p1, leave) if q is None else q
    state = np.zeros((n, H), dtype=int)
    action = np.zeros((n, H), dtype=int)
    alive = np.zeros((n, H), dtype=bool)
    s, running = (rng.random(n) < p0[1]).astype(int), np.ones(n, dtype=bool)
    for t in range(H):
        a = (rng.random(n) < PI_B[s, 1]).astype(int)
        state[:, t], action[:, t], alive[:, t] = s, a, running
        running = running & ~(rng.random(n) < leave[s, a])
        s = (rng.random(n) < p1[s, a]).astype(int)
    reward = np.where(alive, R[state, action] + noise * rng.standard_normal((n, H)), 0.0)
    steps = np.broadcast_to(np.arange(H), (n, H))
    flat = {"session_id": np.broadcast_to(np.arange(n)[:, None], (n, H))[alive], "step": steps[alive],
            "reward": reward[alive], "pscore": PI_B[state, action][alive],
            "evaluation_policy_pscore": PI_E[state, action][alive], "q_hat": q[steps, state, action][alive],
            "v_hat": (PI_E[state] * q[steps, state]).sum(axis=2)[alive],
            "action": action[alive]}
    return {**flat, "_alive": alive, "_state": state, "_action": action, "_reward": reward}


def estimator_arrays(data: dict) -> dict:
    return {k: v for k, v in data.items() if not k.startswith("_") and k != "action"}


def per_session(name: str, d: dict, value: float) -> np.ndarray:
    """Each session's contribution (linearised for the self-normalised estimators), from the padded arrays,
    for the standard error."""
    alive, r = d["_alive"], d["_reward"]
    w = np.where(alive, PI_E[d["_state"], d["_action"]] / PI_B[d["_state"], d["_action"]], 1.0)
    rho = np.cumprod(w, axis=1)
    rho_prev = np.concatenate([np.ones((len(r), 1)), rho[:, :-1]], axis=1)
    pad = np.zeros(alive.shape)
    q, v = pad.copy(), pad.copy()
    q[alive], v[alive] = d["q_hat"], d["v_hat"]
    if name == "tis":
        return rho[:, -1] * r.sum(axis=1)
    if name == "sntis":
        return rho[:, -1] * (r.sum(axis=1) - value) / rho[:, -1].mean()
    if name == "pdis":
        return (rho * r).sum(axis=1)
    if name == "snpdis":
        by_step = (rho * r).sum(axis=0) / rho.sum(axis=0)
        return (rho * (r - by_step) / rho.mean(axis=0)).sum(axis=1)
    if name == "dr":
        return (rho * (r - q) + rho_prev * v).sum(axis=1)
    a, b = rho * (r - q), rho_prev * v
    return ((a - a.mean(axis=0) / rho.mean(axis=0) * rho) / rho.mean(axis=0)
            + (b - b.mean(axis=0) / rho_prev.mean(axis=0) * rho_prev) / rho_prev.mean(axis=0)).sum(axis=1)


TRUTH = enumerate_value(PI_E, **STOCHASTIC)


def test_the_enumerated_truth_agrees_with_backward_induction():
    assert TRUTH == pytest.approx(P0 @ (PI_E * q_function(**STOCHASTIC)[0]).sum(axis=1), rel=1e-12)
    assert TRUTH == pytest.approx(3.161399608, rel=1e-9)
    assert enumerate_value(PI_B, **STOCHASTIC) == pytest.approx(2.0946048, rel=1e-9)  # the logging policy's


@pytest.fixture(scope="module")
def logged():
    return sample(20_000, seed=2024, **STOCHASTIC)


WRONG_Q = np.random.default_rng(9).uniform(0.0, 3.0, (H, 2, 2))
"""A reward model that is wrong everywhere (DR stays unbiased)."""


@pytest.fixture(scope="module")
def logged_wrong_q():
    return sample(20_000, seed=2025, **STOCHASTIC, q=WRONG_Q)


@pytest.mark.parametrize("name", NAMES)
def test_unbiased_within_three_standard_errors(name, logged):
    value = SESSION_ESTIMATORS[name]().estimate_policy_value(**estimator_arrays(logged))
    contributions = per_session(name, logged, value)
    if not name.startswith("sn"):
        assert contributions.mean() == pytest.approx(value, rel=1e-10)
    se = contributions.std(ddof=1) / np.sqrt(len(contributions))
    assert abs(value - TRUTH) < 3 * se
    assert se < 0.05 * TRUTH  # a test that could fail: the interval is not vacuous


@pytest.mark.parametrize("name", DR_NAMES)
def test_doubly_robust_is_unbiased_with_a_wrong_reward_model(name, logged_wrong_q):
    value = SESSION_ESTIMATORS[name]().estimate_policy_value(**estimator_arrays(logged_wrong_q))
    se = per_session(name, logged_wrong_q, value).std(ddof=1) / np.sqrt(20_000)
    assert abs(value - TRUTH) < 3 * se
    # the direct method with that model alone is far off
    assert abs(P0 @ (PI_E * WRONG_Q[0]).sum(axis=1) - TRUTH) > 10 * se


def test_dr_with_the_true_q_has_less_variance_than_pdis(logged):
    sd = {name: per_session(name, logged, 0.0).std() for name in ("pdis", "dr", "tis")}
    assert sd["dr"] < 0.7 * sd["pdis"] < 0.7 * sd["tis"]


def test_dr_with_the_true_q_is_exact_for_deterministic_rewards_and_transitions():
    data = sample(500, seed=3, **DETERMINISTIC)
    truth = enumerate_value(PI_E, **DETERMINISTIC)
    assert len(np.unique(np.bincount(data["session_id"]))) == 3  # sessions of 1, 2 and 3 requests
    for name in DR_NAMES:
        assert SESSION_ESTIMATORS[name]().estimate_policy_value(**estimator_arrays(data)) == pytest.approx(
            truth, rel=1e-12)
    assert PerDecisionIS().estimate_policy_value(**estimator_arrays(data)) != pytest.approx(truth, rel=1e-3)


def test_a_per_request_estimator_is_biased_for_the_value_per_session(logged):
    """Negative control: IPS over requests (estimators.py), times the log's requests per session, evaluates
    the evaluation policy's choices on the logging policy's states and session lengths."""
    data = estimator_arrays(logged)
    action_dist = PI_E[logged["_state"]][logged["_alive"]][:, :, None]  # (n_requests, 2, 1)
    per_request = InverseProbabilityWeighting().estimate_policy_value(
        reward=data["reward"], action=logged["action"], action_dist=action_dist, pscore=data["pscore"])
    n_sessions = len(np.unique(data["session_id"]))
    value = per_request * len(data["reward"]) / n_sessions
    # its expectation, exactly: sum_t sum_s P_b(running at t, s_t = s) sum_a pi_e(a | s) R(s, a)
    expected, running = 0.0, P0.copy()
    for _ in range(H):
        expected += running @ (PI_E * R).sum(axis=1)
        stay = running[:, None] * PI_B * (1 - LEAVE)
        running = np.array([(stay * (1 - P1)).sum(), (stay * P1).sum()])
    assert expected == pytest.approx(2.84673455, rel=1e-9)
    assert abs(expected - TRUTH) > 0.09 * TRUTH  # 10% off
    # the sample estimate sits at that biased expectation, many standard errors from the truth
    w = np.where(logged["_alive"], PI_E[logged["_state"], logged["_action"]]
                 / PI_B[logged["_state"], logged["_action"]], 0.0)
    se = (w * logged["_reward"]).sum(axis=1).std(ddof=1) / np.sqrt(n_sessions)
    assert abs(value - expected) < 3 * se
    assert abs(value - TRUTH) > 10 * se


# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_interval_keys_contain_the_estimate_and_repeat(name):
    data = estimator_arrays(sample(300, seed=11, **STOCHASTIC))
    estimator = SESSION_ESTIMATORS[name]()
    check_bootstrap_interval(estimator, data, gamma=0.5)


def test_interval_resamples_whole_sessions():
    # contributions: TIS [0.5, 12], PDIS [0.5, 8]; a resample of the 2 sessions averages two of them
    tis = TrajectoryWiseIS().estimate_interval(**HAND, n_bootstrap_samples=500, random_state=0)
    pdis = PerDecisionIS().estimate_interval(**HAND, n_bootstrap_samples=500, random_state=0)
    assert (tis["95.0% CI (lower)"], tis["95.0% CI (upper)"]) == (0.5, 12.0)
    assert (pdis["95.0% CI (lower)"], pdis["95.0% CI (upper)"]) == (0.5, 8.0)


@pytest.mark.parametrize("n", [200, 50_001])
def test_session_bootstrap_draws_are_bootstrap_means_draws(n):
    """The matrix-product path (many columns) gives bootstrap_means's resample means for the same seed."""
    rng = np.random.default_rng(0)
    vector, matrix = rng.normal(size=n), rng.normal(size=(n, 4))
    samples = 300 if n < 1000 else 200
    ours = _session_bootstrap_means((vector, matrix), samples, np.random.default_rng(5))
    theirs = bootstrap_means((vector, *matrix.T), samples, np.random.default_rng(5))
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-10)
    np.testing.assert_allclose(ours[1], np.stack(theirs[1:], axis=1), rtol=1e-10)


def test_self_normalised_interval_recomputes_the_normaliser():
    """Each resample's SNPDIS is the estimator on the resampled sessions: a resample of session 3 twice is
    session 3's own value, (2 * 2) / 2 + (4 * 1) / 4 = 3, and one of session 7 twice is 1 + 0 / 0.5 = 1."""
    interval = SelfNormalizedPerDecisionIS().estimate_interval(**HAND, n_bootstrap_samples=500, random_state=0)
    assert (interval["95.0% CI (lower)"], interval["95.0% CI (upper)"]) == (1.0, 3.0)


# ---------------------------------------------------------------------------------------------------------------
def _with(**changes):
    return {**HAND, **{k: (v if v is None else np.asarray(v)) for k, v in changes.items()}}


BAD = [
    ("length", "tis", _with(reward=[1.0, 2.0]), "reward must have one value per row of session_id (3 rows); got 2"),
    ("2-d", "pdis", _with(pscore=[[0.5, 0.4, 0.5]]),
     "pscore must be 1-D (one value per row, i.e. per request); got shape (1, 3)"),
    ("missing pscore", "tis", _with(pscore=None), "tis needs pscore; got None"),
    ("missing q_hat", "dr", _with(q_hat=None), "dr needs q_hat; got None"),
    ("missing v_hat", "sndr", _with(v_hat=None), "sndr needs v_hat; got None"),
    ("empty", "snpdis", {k: np.array([], dtype=v.dtype) for k, v in HAND.items()},
     "session_id must have at least one row; got 0"),
    ("float session_id", "tis", _with(session_id=[7.0, 3.0, 3.0]), "session_id must be integers; got dtype float64"),
    ("float step", "pdis", _with(step=[0.0, 0.0, 1.0]), "step must be integers; got dtype float64"),
    ("non-contiguous session_id", "pdis", _with(session_id=[3, 7, 3], step=[0, 0, 0]),
     ("session_id must keep each session's rows together (contiguous); session_id 3 appears again at row 2 after "
      "other sessions' rows")),
    ("step skips", "tis", _with(step=[0, 0, 2]),
     "step must be 0, 1, 2, ... in row order within each session; got 2 at row 2 (session_id 3, expected 1)"),
    ("step does not start at 0", "sntis", _with(step=[1, 0, 1]),
     "step must be 0, 1, 2, ... in row order within each session; got 1 at row 0 (session_id 7, expected 0)"),
    ("steps out of order", "snpdis", _with(step=[0, 1, 0]),
     "step must be 0, 1, 2, ... in row order within each session; got 1 at row 1 (session_id 3, expected 0)"),
    ("two sessions share an id", "dr", _with(session_id=[3, 3, 3]),
     "step must be 0, 1, 2, ... in row order within each session; got 0 at row 1 (session_id 3, expected 1)"),
    ("reward nan", "tis", _with(reward=[1.0, np.nan, 1.0]), "reward must be finite; got nan at row 1"),
    ("reward inf", "sndr", _with(reward=[1.0, 2.0, -np.inf]), "reward must be finite; got -inf at row 2"),
    ("q_hat inf", "dr", _with(q_hat=[0.6, np.inf, 0.7]), "q_hat must be finite; got inf at row 1"),
    ("v_hat nan", "sndr", _with(v_hat=[np.nan, 1.2, 0.8]), "v_hat must be finite; got nan at row 0"),
    ("pscore zero", "tis", _with(pscore=[0.5, 0.0, 0.5]), "pscore must be in (0, 1]; got 0.0 at row 1"),
    ("pscore above 1", "pdis", _with(pscore=[0.5, 0.4, 1.5]), "pscore must be in (0, 1]; got 1.5 at row 2"),
    ("pscore nan", "snpdis", _with(pscore=[np.nan, 0.4, 0.5]), "pscore must be in (0, 1]; got nan at row 0"),
    ("evaluation pscore negative", "sntis", _with(evaluation_policy_pscore=[0.25, -0.1, 1.0]),
     "evaluation_policy_pscore must be in [0, 1]; got -0.1 at row 1"),
    ("evaluation pscore above 1", "dr", _with(evaluation_policy_pscore=[0.25, 0.8, 1.2]),
     "evaluation_policy_pscore must be in [0, 1]; got 1.2 at row 2"),
    ("weights overflow", "pdis", {**{k: np.zeros(200, dtype=np.int64) for k in ("session_id",)},
                                  "step": np.arange(200), "reward": np.ones(200), "pscore": np.full(200, 1e-3),
                                  "evaluation_policy_pscore": np.ones(200)},
     ("the cumulative importance weight of session_id 0 (rows 0..199) overflows: the product of "
      "evaluation_policy_pscore / pscore over its steps is not finite")),
]


@pytest.mark.parametrize("name, arrays, message", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_input_messages(name, arrays, message):
    estimator = SESSION_ESTIMATORS[name]()
    with pytest.raises(OPEInputError) as error:
        estimator.estimate_policy_value(**arrays)
    assert str(error.value) == message
    with pytest.raises(OPEInputError, match=re.escape(message)):
        estimator.estimate_interval(**arrays, n_bootstrap_samples=10)


@pytest.mark.parametrize("gamma, error, message", [
    (1.5, OPEInputError, "gamma must be a number in [0, 1]; got 1.5"),
    (-0.1, OPEInputError, "gamma must be a number in [0, 1]; got -0.1"),
    (float("nan"), OPEInputError, "gamma must be a number in [0, 1]; got nan"),
    ("0.9", OPEInputTypeError, "gamma must be a number in [0, 1]; got '0.9' (str)"),
    (True, OPEInputTypeError, "gamma must be a number in [0, 1]; got True (bool)"),
])
def test_bad_gamma(gamma, error, message):
    with pytest.raises(error) as caught:
        PerDecisionIS().estimate_policy_value(**HAND, gamma=gamma)
    assert str(caught.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": 0.0}, "alpha must be in (0, 1) and n_bootstrap_samples >= 1; got 0.0, 10"),
    ({"alpha": 0.05, "n_bootstrap_samples": 0}, "alpha must be in (0, 1) and n_bootstrap_samples >= 1; got 0.05, 0"),
])
def test_bad_interval_arguments(kwargs, message):
    with pytest.raises(OPEInputError) as caught:
        TrajectoryWiseIS().estimate_interval(**HAND, **{"n_bootstrap_samples": 10, **kwargs})
    assert str(caught.value) == message


def test_extra_arrays_are_ignored_so_one_dict_feeds_every_estimator():
    for name in ("tis", "snpdis"):
        assert SESSION_ESTIMATORS[name]().estimate_policy_value(**HAND, action=np.zeros(3)) == pytest.approx(
            hand_expected(1.0)[name])


# ---------------------------------------------------------------------------------------------------------------
# A log in simulate's layout: sessions 10, 11, 12 begin together; 10 ends after 2 requests, 13 takes its place;
# 11 ends after 3; 12 (begun at request 2) and 13 are still open at the end; 14 begins at request 8 and ends.
LOG = pd.DataFrame({
    "request_id": np.arange(10),
    "session_id": np.array([10, 11, 12, 10, 11, 12, 13, 11, 14, 13]),
    "session_step": np.array([0, 0, 0, 1, 1, 1, 0, 2, 0, 1], dtype=np.int32),
    "action": np.array([0, 1, 1, 0, 0, 1, 1, 0, 1, 0]),
    "propensity": np.full(10, 0.5),
    "reward": np.arange(10, dtype=np.float32),
    "terminated": np.array([0, 0, 0, 1, 0, 0, 0, 0, 1, 0], dtype=bool),
    "truncated": np.array([0, 0, 0, 0, 0, 0, 0, 1, 0, 0], dtype=bool),
})
LOG_DIST = np.column_stack([np.linspace(0.1, 0.9, 10), 1 - np.linspace(0.1, 0.9, 10)])


@pytest.mark.parametrize("mode, sessions", [("cut", [10, 11]), ("drop", [10, 11, 14]),
                                            ("keep", [10, 11, 12, 13, 14])])
def test_log_sessions_are_grouped_ordered_and_open_ones_treated(mode, sessions):
    shuffled = LOG.iloc[np.random.default_rng(0).permutation(10)].reset_index(drop=True)
    dist = LOG_DIST[shuffled["request_id"].to_numpy()]  # row i of the distribution for row i of the log
    out = session_arrays_from_log(shuffled, dist, open_sessions=mode)
    rows_by_session = {10: [0, 3], 11: [1, 4, 7], 12: [2, 5], 13: [6, 9], 14: [8]}
    request = np.concatenate([rows_by_session[s] for s in sessions])
    assert out.session_id.tolist() == LOG["session_id"].to_numpy()[request].tolist()
    assert out.step.tolist() == [t for s in sessions for t in range(len(rows_by_session[s]))]
    assert out.reward.tolist() == request.astype(float).tolist()  # reward = request_id here
    np.testing.assert_array_equal(shuffled["request_id"].to_numpy()[out.row], request)
    np.testing.assert_allclose(out.evaluation_policy_pscore, LOG_DIST[request, LOG["action"].to_numpy()[request]])
    assert out.pscore.tolist() == [0.5] * len(request) and out.action.dtype == np.int64
    assert (out.log_sessions, out.open_at_end, out.begun_before, out.n_sessions) == (5, 2, 0, len(sessions))
    assert out.dropped == 5 - len(sessions)
    assert out.requests_per_session == len(request) / len(sessions)
    ends = np.cumsum([len(rows_by_session[s]) for s in sessions]) - 1
    expected_next = np.arange(1, len(request) + 1)
    expected_next[ends] = -1
    assert out.next_row.tolist() == expected_next.tolist()
    assert TrajectoryWiseIS().estimate_policy_value(**out.arrays()) >= 0  # the arrays pass the checks


def test_log_on_policy_weights_are_one():
    out = session_arrays_from_log(LOG, None)
    np.testing.assert_array_equal(out.evaluation_policy_pscore, out.pscore)
    returns = [0 + 3, 1 + 4 + 7]  # sessions 10 and 11
    for name in ("tis", "snpdis"):
        assert SESSION_ESTIMATORS[name]().estimate_policy_value(**out.arrays()) == pytest.approx(np.mean(returns))


def test_log_that_began_inside_sessions_drops_them():
    later = LOG[LOG["request_id"] >= 3]  # sessions 10, 11, 12 were running already
    out = session_arrays_from_log(later, LOG_DIST[3:], open_sessions="keep")
    assert (out.begun_before, out.session_id.tolist()) == (3, [13, 13, 14])


LOG_BAD = [
    ({"open_sessions": "all"}, None, "open_sessions must be one of cut, drop, keep; got 'all'"),
    ({}, LOG.drop(columns="truncated"),
     "log has no column 'truncated'; expected a fusionsim interaction log (envs.logs.read_interaction_log)"),
    ({"action_dist": np.full((9, 2), 0.5)}, None,
     "action_dist must have shape (10, n_actions), one row per row of the log; got (9, 2)"),
    ({"action_dist": np.full((10, 2, 2), 0.25)}, None,
     "action_dist must have shape (10, n_actions), one row per row of the log; got (10, 2, 2)"),
    ({"action_dist": np.tile([[0.5, 0.6]], (10, 1))}, None,
     "action_dist must sum to 1 over the 2 actions of each row; row 0 sums to 1.1"),
    ({"action_dist": np.tile([[1.5, -0.5]], (10, 1))}, None,
     "action_dist must hold probabilities (finite, >= 0); row 0 has -0.5"),
    ({}, LOG.assign(action=np.where(LOG["request_id"] == 4, -1, LOG["action"])),
     ("action must be integers in [0, 2) (the action_dist's actions); got -1 at row 4 (-1: a log of continuous "
      "actions)")),
    ({}, LOG.assign(session_step=np.where(LOG["request_id"] == 7, 3, LOG["session_step"])),
     "log's session_id 11 jumps from session_step 1 to 3 (row 7): requests of the session are missing"),
    ({}, LOG.assign(session_step=np.where(LOG["request_id"] == 7, 1, LOG["session_step"])),
     ("log has session_id 11 at session_step 1 twice (rows 4 and 7); each request of a session must be logged "
      "once")),
    ({}, LOG.iloc[:0], "log must have at least one row; got 0"),
]


@pytest.mark.parametrize("kwargs, log, message", LOG_BAD, ids=[m[:30] for _, _, m in LOG_BAD])
def test_log_bad_input(kwargs, log, message):
    with pytest.raises(OPEInputError) as caught:
        session_arrays_from_log(LOG if log is None else log, **{"action_dist": LOG_DIST, **kwargs})
    assert str(caught.value) == message


# ---------------------------------------------------------------------------------------------------------------
# Continuous actions: a small MDP whose policies are clipped Gaussians (as PPO's), weights the ratios of the
# clipped laws' densities (agents.ppo.clipped_gaussian_density), the truth from a large on-policy simulation.
MU = np.array([0.3, 0.8])  # the Gaussian's mean in states 0 and 1
SIGMA_E, SIGMA_B = 0.3, 0.36  # the evaluation policy's standard deviation, and its wider logger's (x 1.2)


def clipped_sessions(n: int, sigma: float, seed: int) -> dict[str, np.ndarray]:
    """n sessions of up to H steps with actions a = clip(N(MU[s], sigma^2), -1, 1): reward 1.5 where the action
    is clipped at 1, plus 0.5 a (2s - 1), plus noise; the next state is 1 with probability 0.8 after a > 0 (0.2
    otherwise); the shopper leaves with probability 0.2, 0.5 after a < 0. Flat arrays of the living steps, with
    each step's logging density (``pscore``), the evaluation policy's (``evaluation_policy_pscore``) and the
    unclipped Gaussians' (``raw_*``, which ignore the clipping)."""
    from fusionsim.agents.ppo import clipped_gaussian_density

    rng = np.random.default_rng(seed)
    state, alive = np.zeros((n, H), dtype=int), np.zeros((n, H), dtype=bool)
    action, reward = np.zeros((n, H)), np.zeros((n, H))
    s, running = (rng.random(n) < 0.5).astype(int), np.ones(n, dtype=bool)
    for t in range(H):
        a = np.clip(MU[s] + sigma * rng.standard_normal(n), -1.0, 1.0)
        state[:, t], action[:, t], alive[:, t] = s, a, running
        reward[:, t] = np.where(running, 1.5 * (a >= 1.0) + 0.5 * a * (2 * s - 1) + 0.3 * rng.standard_normal(n), 0)
        running = running & ~(rng.random(n) < np.where(a < 0, 0.5, 0.2))
        s = (rng.random(n) < np.where(a > 0, 0.8, 0.2)).astype(int)
    a, mean = action[alive][:, None], MU[state[alive]][:, None]

    def raw(sd):
        return np.exp(-0.5 * ((a[:, 0] - mean[:, 0]) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))

    return {"session_id": np.broadcast_to(np.arange(n)[:, None], (n, H))[alive],
            "step": np.broadcast_to(np.arange(H), (n, H))[alive], "reward": reward[alive],
            "pscore": clipped_gaussian_density(a, mean, np.full_like(a, SIGMA_B)),
            "evaluation_policy_pscore": clipped_gaussian_density(a, mean, np.full_like(a, SIGMA_E)),
            "raw_pscore": raw(SIGMA_B), "raw_evaluation_policy_pscore": raw(SIGMA_E),
            "_return": reward.sum(axis=1)}


@pytest.fixture(scope="module")
def continuous_truth():
    returns = clipped_sessions(400_000, SIGMA_E, seed=11)["_return"]
    return returns.mean(), returns.std(ddof=1) / np.sqrt(len(returns))


@pytest.fixture(scope="module")
def continuous_logged():
    return clipped_sessions(40_000, SIGMA_B, seed=12)


@pytest.mark.parametrize("name", ["tis", "sntis", "pdis", "snpdis"])
def test_continuous_actions_unbiased_with_clipped_densities(name, continuous_logged, continuous_truth):
    truth, truth_se = continuous_truth
    arrays = {k: v for k, v in continuous_logged.items() if not k.startswith(("_", "raw"))}
    estimator = SESSION_ESTIMATORS[name](densities=True)
    value = estimator.estimate_policy_value(**arrays)
    interval = estimator.estimate_interval(**arrays, n_bootstrap_samples=500, random_state=0)
    half_width = (interval["95.0% CI (upper)"] - interval["95.0% CI (lower)"]) / 2
    se = np.hypot(half_width / 1.96, truth_se)
    assert abs(value - truth) < 3 * se, (value, truth, se)
    assert se < 0.03 * truth  # not vacuous
    assert (arrays["evaluation_policy_pscore"] > 1).any()  # densities, not probabilities


def test_continuous_actions_unclipped_densities_are_biased(continuous_logged, continuous_truth):
    """Negative control: the Gaussians' densities at the clipped actions (the clipping ignored) are no
    importance weights: at a clipped action the ratio of the tails' masses is not the ratio of the densities."""
    truth, truth_se = continuous_truth
    arrays = {"session_id": continuous_logged["session_id"], "step": continuous_logged["step"],
              "reward": continuous_logged["reward"], "pscore": continuous_logged["raw_pscore"],
              "evaluation_policy_pscore": continuous_logged["raw_evaluation_policy_pscore"]}
    estimator = PerDecisionIS(densities=True)
    value = estimator.estimate_policy_value(**arrays)
    interval = estimator.estimate_interval(**arrays, n_bootstrap_samples=500, random_state=0)
    se = np.hypot((interval["95.0% CI (upper)"] - interval["95.0% CI (lower)"]) / 3.92, truth_se)
    assert abs(value - truth) > 5 * se, (value, truth, se)


def test_densities_above_one_pass_only_as_densities():
    arrays = _with(pscore=[0.5, 2.0, 0.5], evaluation_policy_pscore=[0.25, 3.0, 1.5])
    # w = [0.5 | 1.5, 3], rho = [0.5 | 1.5, 4.5]
    assert TrajectoryWiseIS(densities=True).estimate_policy_value(**arrays) == pytest.approx(
        (0.5 * 1 + 4.5 * (2 + 1)) / 2, rel=1e-12)
    with pytest.raises(OPEInputError, match=re.escape("pscore must be in (0, 1]; got 2.0 at row 1")):
        TrajectoryWiseIS().estimate_policy_value(**arrays)


@pytest.mark.parametrize("changes, message", [
    ({"pscore": [0.5, 0.0, 0.5]}, "pscore must be in (0, inf) (a density); got 0.0 at row 1"),
    ({"pscore": [0.5, np.inf, 0.5]}, "pscore must be in (0, inf) (a density); got inf at row 1"),
    ({"evaluation_policy_pscore": [0.25, np.nan, 1.0]},
     "evaluation_policy_pscore must be in [0, inf) (a density); got nan at row 1"),
    ({"evaluation_policy_pscore": [-1.0, 0.8, 1.0]},
     "evaluation_policy_pscore must be in [0, inf) (a density); got -1.0 at row 0"),
])
def test_bad_densities(changes, message):
    with pytest.raises(OPEInputError) as caught:
        PerDecisionDoublyRobust(densities=True).estimate_policy_value(**_with(**changes))
    assert str(caught.value) == message


def test_log_with_the_evaluation_policys_densities():
    density = np.linspace(0.5, 2.0, 10)
    out = session_arrays_from_log(LOG, None, evaluation_pscore=density)
    np.testing.assert_array_equal(out.evaluation_policy_pscore, density[out.row])
    np.testing.assert_array_equal(out.pscore, LOG["propensity"].to_numpy()[out.row])


@pytest.mark.parametrize("kwargs, message", [
    ({"evaluation_pscore": np.ones(9)}, "evaluation_pscore must have shape (10,), one value per row of the log; "
                                        "got (9,)"),
    ({"evaluation_pscore": np.where(np.arange(10) == 3, -1.0, 1.0)},
     "evaluation_pscore must be finite and >= 0; got -1.0 at row 3"),
    ({"evaluation_pscore": np.where(np.arange(10) == 5, np.nan, 1.0)},
     "evaluation_pscore must be finite and >= 0; got nan at row 5"),
    ({"evaluation_pscore": np.ones(10), "action_dist": LOG_DIST}, "give action_dist or evaluation_pscore, not both"),
])
def test_log_bad_evaluation_densities(kwargs, message):
    with pytest.raises(OPEInputError) as caught:
        session_arrays_from_log(LOG, **{"action_dist": None, **kwargs})
    assert str(caught.value) == message


def test_linear_fitted_q_evaluation_by_hand():
    """Sessions of two steps with rewards 1 then 2, features a one-hot of the step: Q-hat is 3 at step 0 and 2 at
    step 1 (the ridge negligible), the same at the logged and the policy's actions."""
    from fusionsim.experiments.evaluation.session import linear_fitted_q_evaluation

    n_sessions = 40
    log = pd.DataFrame({"request_id": np.arange(2 * n_sessions), "session_id": np.repeat(np.arange(n_sessions), 2),
                        "session_step": np.tile([0, 1], n_sessions), "action": -1, "propensity": 0.5,
                        "reward": np.tile([1.0, 2.0], n_sessions), "terminated": np.tile([False, True], n_sessions),
                        "truncated": False})
    sessions = session_arrays_from_log(log, None)
    phi = np.eye(2)[sessions.step]
    q_hat, v_hat = linear_fitted_q_evaluation(phi, phi, sessions, ridge=1e-9)
    np.testing.assert_allclose(q_hat, np.where(sessions.step == 0, 3.0, 2.0), rtol=1e-6)
    np.testing.assert_allclose(v_hat, q_hat)
    r_hat, _ = linear_fitted_q_evaluation(phi, phi, sessions, gamma=0.0, ridge=1e-9)
    np.testing.assert_allclose(r_hat, sessions.reward, rtol=1e-6)
    with pytest.raises(OPEInputError, match=re.escape("phi_policy must have the shape of phi, (80, 2); got (80, 3)")):
        linear_fitted_q_evaluation(phi, np.ones((80, 3)), sessions)

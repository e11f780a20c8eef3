"""Bad input to every policy: each refused with its exact one-line message, and a refused call changes
nothing (statistics and Generator states stay as they were)."""

import numpy as np
import pytest

from fusionsim.agents import (UCB1, EpsilonGreedy, FixedBlend, GaussianThompson, LinTS, LinUCB, Policy, SingleArm,
                              UniformContinuous, UniformRandom)
from fusionsim.agents.base import DISCRETE_MODES

K, D = 4, 3
NAN, INF = float("nan"), float("inf")

POLICIES = {
    "linucb": lambda: LinUCB(K, D, alpha=0.5),
    "linucb_alpha0": lambda: LinUCB(K, D, alpha=0.0),
    "linucb_epsilon": lambda: LinUCB(K, D, epsilon=0.2, seed=0),
    "linucb_discounted": lambda: LinUCB(K, D, discount=0.9),
    "lints": lambda: LinTS(K, D, propensity_draws=4, seed=0),
    "eps": lambda: EpsilonGreedy(K, seed=0),
    "ucb": lambda: UCB1(K),
    "ts": lambda: GaussianThompson(K, propensity_draws=8, seed=0),
    "uniform": lambda: UniformRandom(K, seed=0),
    "single_arm": lambda: SingleArm(1, K),
    "uniform_continuous": lambda: UniformContinuous(K, seed=0),
    "fixed_blend": lambda: FixedBlend([1.0, 1.0, 2.0, 0.0]),
}
LINEAR = {"linucb", "linucb_alpha0", "linucb_epsilon", "linucb_discounted", "lints"}


def _with(value: float, at: tuple[int, int], rows: int = 2) -> np.ndarray:
    x = np.ones((rows, D))
    x[at] = value
    return x


def _actions(policy: Policy, n: int) -> np.ndarray:
    """A valid action batch of ``n`` rounds for ``policy``."""
    if policy.action_mode in DISCRETE_MODES:
        return np.arange(n) % K
    return np.full((n, K), 0.25)


GOOD = np.ones((2, D))
CONTEXT_CASES = [  # (call, message) for every policy; act and update both check contexts
    (lambda p: p.act(_with(NAN, (1, 2))), "contexts must be finite; got nan at row 1, column 2"),
    (lambda p: p.act(_with(NAN, (0, 1), rows=1)), "contexts must be finite; got nan at row 0, column 1"),
    (lambda p: p.act(_with(INF, (0, 0), rows=1)), "contexts must be finite; got inf at row 0, column 0"),
    (lambda p: p.act(_with(-INF, (0, 2), rows=1)), "contexts must be finite; got -inf at row 0, column 2"),
    (lambda p: p.act(_with(INF, (1, 0)).astype(np.float32)), "contexts must be finite; got inf at row 1, column 0"),
    (lambda p: p.act(np.ones(D)), f"contexts must be a 2-D array (requests, features); got shape ({D},)"),
    (lambda p: p.act(np.array([["a"] * D])), "contexts must be numbers; got dtype <U1"),
    (lambda p: p.update(_with(NAN, (1, 0)), _actions(p, 2), np.zeros(2)),
     "contexts must be finite; got nan at row 1, column 0"),
    (lambda p: p.update(_with(INF, (0, 2), rows=1), _actions(p, 1), np.zeros(1)),
     "contexts must be finite; got inf at row 0, column 2"),
    (lambda p: p.update(_with(NAN, (0, 0), rows=1), _actions(p, 1), np.zeros(1)),
     "contexts must be finite; got nan at row 0, column 0"),
    (lambda p: p.update(GOOD, _actions(p, 2), np.array([1.0, NAN])), "rewards must be finite; got nan at row 1"),
    (lambda p: p.update(GOOD[:1], _actions(p, 1), np.array([INF])), "rewards must be finite; got inf at row 0"),
    (lambda p: p.update(GOOD[:1], _actions(p, 1), np.array([-INF], dtype=np.float32)),
     "rewards must be finite; got -inf at row 0"),
    (lambda p: p.update(GOOD, _actions(p, 2), np.array([1.0])), "rewards must have shape (2,); got (1,)"),
    (lambda p: p.update(GOOD, _actions(p, 2), np.array(["1", "0"])), "rewards must be numbers; got dtype <U1"),
]
DISCRETE_CASES = [  # policies with discrete actions (arms or grid points)
    (lambda p: p.update(GOOD, np.array([0, 1.7]), np.zeros(2)),
     "actions must be integers (action indices); got dtype float64"),
    (lambda p: p.update(GOOD[:1], np.array([1.0]), np.zeros(1)),
     "actions must be integers (action indices); got dtype float64"),
    (lambda p: p.update(GOOD, [0, 1.7], [0.0, 1.0]), "actions must be integers (action indices); got dtype float64"),
    (lambda p: p.update(GOOD, np.array(["0", "1"]), np.zeros(2)),
     "actions must be integers (action indices); got dtype <U1"),
    (lambda p: p.update(GOOD[:1], np.array([True]), np.zeros(1)),
     "actions must be integers (action indices); got dtype bool"),
    (lambda p: p.update(GOOD, [True, False], [0.0, 1.0]), "actions must be integers (action indices); got dtype bool"),
    (lambda p: p.update(GOOD, np.array([0, K]), np.zeros(2)), f"actions must be in [0, {K}); got {K} at row 1"),
    (lambda p: p.update(GOOD[:1], np.array([K + 3]), np.zeros(1)),
     f"actions must be in [0, {K}); got {K + 3} at row 0"),
    (lambda p: p.update(GOOD[:1], np.array([-1]), np.zeros(1)), f"actions must be in [0, {K}); got -1 at row 0"),
    (lambda p: p.update(GOOD, np.array([1, -2], dtype=np.int8), np.zeros(2)),
     f"actions must be in [0, {K}); got -2 at row 1"),
    (lambda p: p.update(GOOD, np.array([2**63 + 1, 0], dtype=np.uint64), np.zeros(2)),
     f"actions must be in [0, {K}); got {2**63 + 1} at row 0"),
    (lambda p: p.update(GOOD, np.array([0]), np.zeros(2)), "actions must have shape (2,); got (1,)"),
    (lambda p: p.update(GOOD, np.zeros((2, K), dtype=np.int64), np.zeros(2)),
     f"actions must have shape (2,); got (2, {K})"),
]
CONTINUOUS_CASES = [  # policies with weight-vector actions
    (lambda p: p.update(GOOD, np.array([[0.5, NAN, 0.5, 0.0]] * 2), np.zeros(2)),
     "actions must be finite; got nan at row 0, column 1"),
    (lambda p: p.update(GOOD, np.zeros(2), np.zeros(2)), f"actions must have shape (2, {K}); got (2,)"),
    (lambda p: p.update(GOOD, np.zeros((2, K + 1)), np.zeros(2)),
     f"actions must have shape (2, {K}); got (2, {K + 1})"),
    (lambda p: p.update(GOOD, np.zeros((2, K), dtype=np.int64), np.zeros(2)),
     "actions must be floats (weight vectors); got dtype int64"),
]
WIDTH_CASES = [  # linear policies know the context width
    (lambda p: p.act(np.zeros((2, 5))), f"contexts must have {D} features per row; got 5"),
    (lambda p: p.update(np.zeros((1, 5)), np.array([0]), np.zeros(1)),
     f"contexts must have {D} features per row; got 5"),
]


def _cases():
    for name, make in POLICIES.items():
        discrete = make().action_mode in DISCRETE_MODES
        table = CONTEXT_CASES + (DISCRETE_CASES if discrete else CONTINUOUS_CASES) + \
            (WIDTH_CASES if name in LINEAR else [])
        for i, (call, message) in enumerate(table):
            yield pytest.param(make, call, message, id=f"{name}-{i}-{message[:40]}")


def _snapshot(policy: Policy) -> tuple[dict, list]:
    return {k: np.array(v, copy=True) for k, v in policy.state_arrays().items()}, \
        [g.bit_generator.state for g in policy.generators()]


@pytest.mark.parametrize("make, call, message", list(_cases()))
def test_bad_input_is_refused_by_name_and_changes_nothing(make, call, message):
    policy = make()
    rng = np.random.default_rng(0)
    for b in (1, 3, 1):  # some statistics to protect
        x = rng.normal(size=(b, D))
        actions, _ = policy.act(x)
        policy.update(x, actions, rng.random(b))
    before_arrays, before_generators = _snapshot(policy)
    with pytest.raises(ValueError) as err:
        call(policy)
    assert str(err.value) == message
    after_arrays, after_generators = _snapshot(policy)
    for key in before_arrays:
        np.testing.assert_array_equal(after_arrays[key], before_arrays[key], err_msg=key)
    assert after_generators == before_generators


def test_a_refused_nan_round_leaves_linucb_learning():
    """A NaN context used to make theta NaN, after which LinUCB played action 0 forever."""
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(K, D))
    clean, guarded = LinUCB(K, D, alpha=0.3), LinUCB(K, D, alpha=0.3)
    chosen = []
    for t in range(300):
        x = rng.normal(size=(1, D))
        if t == 50:
            with pytest.raises(ValueError, match="contexts must be finite; got nan at row 0, column 1"):
                guarded.update(_with(NAN, (0, 1), rows=1), np.array([0]), np.array([1.0]))
        a, _ = guarded.act(x)
        np.testing.assert_array_equal(a, clean.act(x)[0])
        r = np.array([float(truth[a[0]] @ x[0])])
        guarded.update(x, a, r)
        clean.update(x, a, r)
        chosen.append(a[0])
    assert np.isfinite(guarded.theta).all() and len(set(chosen[-100:])) > 1


def test_huge_finite_contexts_pass_the_fast_check():
    """A sum that overflows is not a non-finite entry: the full scan lets the batch through."""
    big = np.full((2, D), 1e308)
    for make in POLICIES.values():
        policy = make()
        with np.errstate(over="ignore", invalid="ignore"):
            actions, propensities = policy.act(big)
        assert actions.shape[0] == 2 and propensities.shape == (2,)


HYPERPARAMETERS = [
    (lambda: LinUCB(K, D, alpha=INF), "alpha must be a finite number >= 0; got inf"),
    (lambda: LinUCB(K, D, alpha=NAN), "alpha must be a finite number >= 0; got nan"),
    (lambda: LinUCB(K, D, alpha=-1), "alpha must be a finite number >= 0; got -1"),
    (lambda: LinUCB(K, D, alpha="1"), "alpha must be a finite number >= 0; got '1'"),
    (lambda: LinUCB(K, D, ridge=INF), "ridge must be a finite number > 0; got inf"),
    (lambda: LinUCB(K, D, ridge=0), "ridge must be a finite number > 0; got 0"),
    (lambda: LinUCB(K, D, discount=NAN), "discount must be a finite number in (0, 1]; got nan"),
    (lambda: LinUCB(K, D, discount=0), "discount must be a finite number in (0, 1]; got 0"),
    (lambda: LinUCB(K, D, epsilon=INF), "epsilon must be a finite number in [0, 1]; got inf"),
    (lambda: LinUCB(K, D, epsilon=2), "epsilon must be a finite number in [0, 1]; got 2"),
    (lambda: LinUCB(K, 2.5), "n_features must be an integer >= 1; got 2.5"),
    (lambda: LinUCB(True, D), "n_actions must be an integer >= 1; got True"),
    (lambda: LinUCB(0, D), "n_actions must be an integer >= 1; got 0"),
    (lambda: LinUCB(K, D, seed=-1), "seed must be a non-negative integer or None; got -1"),
    (lambda: LinUCB(K, D, seed=1.5), "seed must be a non-negative integer or None; got 1.5"),
    (lambda: LinUCB(K, D, action_mode="weights"), "action_mode = 'weights' is not allowed: must be 'arm' or 'grid'"),
    (lambda: LinTS(K, D, v=INF), "v must be a finite number > 0; got inf"),
    (lambda: LinTS(K, D, v=0), "v must be a finite number > 0; got 0"),
    (lambda: LinTS(K, D, ridge=NAN), "ridge must be a finite number > 0; got nan"),
    (lambda: LinTS(K, D, discount=INF), "discount must be a finite number in (0, 1]; got inf"),
    (lambda: LinTS(K, D, propensity_draws=0), "propensity_draws must be an integer >= 1; got 0"),
    (lambda: EpsilonGreedy(K, epsilon=NAN), "epsilon must be a finite number in [0, 1]; got nan"),
    (lambda: EpsilonGreedy(K, epsilon=-0.1), "epsilon must be a finite number in [0, 1]; got -0.1"),
    (lambda: UCB1(K, c=INF), "c must be a finite number >= 0; got inf"),
    (lambda: UCB1(K, c=-1.0), "c must be a finite number >= 0; got -1.0"),
    (lambda: GaussianThompson(K, sigma=INF), "sigma must be a finite number > 0; got inf"),
    (lambda: GaussianThompson(K, sigma=0), "sigma must be a finite number > 0; got 0"),
    (lambda: GaussianThompson(K, propensity_draws=1.5), "propensity_draws must be an integer >= 1; got 1.5"),
    (lambda: UniformRandom(0), "n_actions must be an integer >= 1; got 0"),
    (lambda: UniformRandom(K, action_mode="simplex"),
     "action_mode = 'simplex' is not allowed: must be 'arm' or 'grid'"),
    (lambda: UniformRandom(K, seed="7"), "seed must be a non-negative integer or None; got '7'"),
    (lambda: UniformContinuous(0), "n_arms must be an integer >= 1; got 0"),
    (lambda: SingleArm(K, K), f"arm must be an integer in [0, {K}); got {K}"),
    (lambda: SingleArm(1.0, K), f"arm must be an integer in [0, {K}); got 1.0"),
    (lambda: SingleArm(0, 0), "n_arms must be an integer >= 1; got 0"),
    (lambda: FixedBlend([NAN, 1.0]), "weights must be non-negative numbers, one per arm, not all zero; got [nan, 1.0]"),
    (lambda: FixedBlend([INF, 1.0]), "weights must be non-negative numbers, one per arm, not all zero; got [inf, 1.0]"),
]


@pytest.mark.parametrize("make, message", HYPERPARAMETERS, ids=[m for _, m in HYPERPARAMETERS])
def test_bad_hyperparameters_are_refused_at_construction(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint32, np.uint64])
def test_every_integer_dtype_of_actions_is_accepted(dtype):
    rng = np.random.default_rng(2)
    x, actions, rewards = rng.normal(size=(20, D)), np.arange(20) % K, rng.random(20)
    for make in POLICIES.values():
        reference, other = make(), make()
        if reference.action_mode not in DISCRETE_MODES:
            continue
        reference.update(x, actions, rewards)
        other.update(x, actions.astype(dtype), rewards)
        for t in range(3):  # the per-round path too
            reference.update(x[t:t + 1], actions[t:t + 1], rewards[t:t + 1])
            other.update(x[t:t + 1], actions[t:t + 1].astype(dtype), rewards[t:t + 1])
        for key, value in reference.state_arrays().items():
            np.testing.assert_array_equal(other.state_arrays()[key], value, err_msg=key)

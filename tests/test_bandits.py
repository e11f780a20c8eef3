import numpy as np
import pytest

from fusionsim.agents import UCB1, EpsilonGreedy, GaussianThompson, LinTS, LinUCB
from benchmarks.bandit_throughput import sherman_morrison_linucb, textbook_linucb

D, K = 16, 8


def _stream(seed, n, d=D, k=K):
    rng = np.random.default_rng(seed)
    theta = np.random.default_rng(123).normal(size=(k, d)) * 0.3
    x = rng.normal(size=(n, d))
    x[:, 0] = 1.0
    return x, 1.0 / (1.0 + np.exp(-(x @ theta.T))), rng.random(n)


def _run_per_round(policy, x, p, u):
    chosen = np.empty(len(x), dtype=np.int64)
    for t in range(len(x)):
        a, _ = policy.act(x[t:t + 1])
        policy.update(x[t:t + 1], a, np.array([float(u[t] < p[t, a[0]])]))
        chosen[t] = a[0]
    return chosen


def test_linucb_per_round_matches_the_textbook_algorithm():
    x, p, u = _stream(0, 2000)
    chosen = _run_per_round(LinUCB(K, D, alpha=0.5), x, p, u)
    np.testing.assert_array_equal(chosen[:400], textbook_linucb(x[:400], u[:400], p[:400]))
    np.testing.assert_array_equal(chosen, sherman_morrison_linucb(x, u, p))


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
def test_linucb_per_round_path_equals_the_checked_path(epsilon):
    """One float64 row per call takes the per-round path; the same rounds as lists take the checked path."""
    x, p, u = _stream(8, 300)
    fast, checked = LinUCB(K, D, alpha=0.5, epsilon=epsilon, seed=0), LinUCB(K, D, alpha=0.5, epsilon=epsilon, seed=0)
    for t in range(len(x)):
        a, prop = fast.act(x[t:t + 1])
        a_checked, prop_checked = checked.act(x[t:t + 1].tolist())
        np.testing.assert_array_equal(a, a_checked)
        np.testing.assert_array_equal(prop, prop_checked)
        assert a.dtype == np.int64 and a.shape == (1,) and prop.dtype == np.float64 and prop.shape == (1,)
        r = float(u[t] < p[t, a[0]])
        fast.update(x[t:t + 1], a, np.array([r]))
        checked.update(x[t:t + 1].tolist(), [int(a[0])], [r])
    for key, value in fast.state_arrays().items():
        np.testing.assert_array_equal(value, checked.state_arrays()[key], err_msg=key)


def test_linucb_hand_computed_scores():
    policy = LinUCB(2, 2, alpha=2.0)
    x = np.array([[1.0, 2.0]])
    policy.update(x, np.array([0]), np.array([3.0]))
    # arm 0: A = I + x x^T = [[2, 2], [2, 5]], A^-1 = [[5, -2], [-2, 2]] / 6, b = [3, 6]
    A_inv = np.array([[5.0, -2.0], [-2.0, 2.0]]) / 6.0
    theta = A_inv @ np.array([3.0, 6.0])  # = [0.5, 1.0]
    np.testing.assert_allclose(policy.theta[0], [0.5, 1.0])
    z = np.array([1.0, 1.0])
    expected = [theta @ z + 2.0 * np.sqrt(z @ A_inv @ z), 0.0 + 2.0 * np.sqrt(2.0)]
    np.testing.assert_allclose(policy.scores(z[None])[0], expected)
    np.testing.assert_allclose(policy.A[0], [[2.0, 2.0], [2.0, 5.0]])


def _updated_round_by_round_and_in_one_batch(seed: int, n: int, **kwargs) -> tuple[LinUCB, LinUCB]:
    """Two LinUCB(K, D, **kwargs) fed the same n rounds (arms in turn): one round per update, then all at once."""
    x, p, u = _stream(seed, n)
    actions = np.arange(n) % K
    rewards = (u < p[np.arange(n), actions]).astype(float)
    one, batch = LinUCB(K, D, **kwargs), LinUCB(K, D, **kwargs)
    for t in range(n):
        one.update(x[t:t + 1], actions[t:t + 1], rewards[t:t + 1])
    batch.update(x, actions, rewards)
    return one, batch


def test_batched_updates_reach_the_same_statistics():
    one, batch = _updated_round_by_round_and_in_one_batch(1, 512)
    np.testing.assert_allclose(one.A_inv, batch.A_inv, atol=1e-9)
    np.testing.assert_allclose(one.theta, batch.theta, atol=1e-9)


def test_epsilon_linucb_logs_exact_propensities():
    policy = LinUCB(4, 3, epsilon=0.2, seed=0)
    x = np.tile([[1.0, 0.5, -0.5]], (20000, 1))
    actions, propensity = policy.act(x)
    greedy = np.argmax(policy.scores(x[:1]))
    np.testing.assert_allclose(propensity[actions == greedy], 0.8 + 0.2 / 4)
    np.testing.assert_allclose(propensity[actions != greedy], 0.2 / 4)
    assert abs((actions == greedy).mean() - 0.85) < 0.01


@pytest.mark.parametrize("make", [lambda: LinUCB(K, D, alpha=0.5), lambda: LinTS(K, D, v=0.3, seed=0,
                                                                                   propensity_draws=16)],
                         ids=["linucb", "lints"])
def test_contextual_bandits_learn(make):
    x, p, u = _stream(2, 256 * 40)
    policy = make()
    got = []
    for i in range(0, len(x), 256):
        rows = np.arange(i, i + 256)
        a, prop = policy.act(x[rows])
        assert ((prop > 0) & (prop <= 1)).all()
        policy.update(x[rows], a, (u[rows] < p[rows, a]).astype(float))
        got.append(p[rows, a].mean())
    best, uniform = p.max(axis=1).mean(), p.mean()
    assert np.mean(got[-10:]) > uniform + 0.8 * (best - uniform), (np.mean(got[-10:]), uniform, best)


@pytest.mark.parametrize("make", [lambda: EpsilonGreedy(5, epsilon=0.1, seed=0), lambda: UCB1(5, c=0.5),
                                  lambda: GaussianThompson(5, sigma=0.5, seed=0)], ids=["eps", "ucb", "ts"])
def test_context_free_bandits_find_the_best_action(make):
    rng = np.random.default_rng(3)
    means = np.array([0.1, 0.3, 0.5, 0.45, 0.2])
    policy = make()
    contexts = np.ones((32, 1))
    for _ in range(300):
        a, prop = policy.act(contexts)
        assert ((prop > 0) & (prop <= 1)).all()
        policy.update(contexts, a, (rng.random(32) < means[a]).astype(float))
    assert np.argmax(policy.counts) == 2


def test_discounted_linucb_recovers_after_a_shift():
    rng = np.random.default_rng(4)
    x = np.ones((1, 1))

    def run(policy):
        late = []
        for t in range(3000):
            best = 0 if t < 1500 else 1
            a, _ = policy.act(x)
            r = float(rng.random() < (0.8 if a[0] == best else 0.2))
            policy.update(x, a, np.array([r]))
            if 1500 <= t < 1800:
                late.append(a[0] == best)
        return np.mean(late)

    assert run(LinUCB(2, 1, alpha=0.1, discount=0.98)) > run(LinUCB(2, 1, alpha=0.1)) + 0.3


def test_discounted_batch_update_equals_rounds_one_by_one():
    one, batch = _updated_round_by_round_and_in_one_batch(6, 64, discount=0.97, ridge=2.0)
    np.testing.assert_allclose(one.A, batch.A, atol=1e-9)
    np.testing.assert_allclose(one.theta, batch.theta, atol=1e-9)


def test_action_distributions_match_the_logged_propensities():
    from fusionsim.agents import SingleArm, UniformRandom
    x, p, u = _stream(7, 200)
    policy = LinUCB(K, D, epsilon=0.3, seed=2)
    _run_per_round(policy, x[:100], p, u)
    actions, propensity = policy.act(x[100:])
    dist = policy.action_distribution(x[100:])
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    np.testing.assert_allclose(dist[np.arange(100), actions], propensity)
    eps = EpsilonGreedy(K, epsilon=0.2, seed=0)
    a, prop = eps.act(x[:50])
    np.testing.assert_allclose(eps.action_distribution(x[:50])[np.arange(50), a], prop)
    np.testing.assert_allclose(UniformRandom(K).action_distribution(x[:3]), 1.0 / K)
    assert SingleArm(2, K).action_distribution(x[:1])[0, 2] == 1.0
    with pytest.raises(NotImplementedError, match="policy 'lints' has no closed-form action distribution"):
        LinTS(K, D).action_distribution(x[:1])

"""JointLinUCB and JointLinTS: one ridge model over joint context-blend features. Exact against a textbook
ridge computation on explicitly built features, exact propensities, the Thompson draws' distribution,
learning with a known answer (against the disjoint LinUCB), bad input by message, checkpoints that continue
bit for bit, and ``fusionsim train`` at a tiny budget."""

import copy
import itertools
import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.agents import JointLinTS, JointLinUCB, LinUCB
from fusionsim.agents.joint import blend_features, blend_grid
from fusionsim.envs.fusion import simplex_grid
from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario
from tests.test_policy_inputs import CONTEXT_CASES, DISCRETE_CASES, WIDTH_CASES, D, K


def _explicit_features(policy: JointLinUCB, x: np.ndarray, g: int) -> np.ndarray:
    """phi(x, w_g) = kron(x, q(w_g)) (F,), q the products of ``degree`` weights of the grid point (i1 <= i2 <= ...)."""
    w = policy.grid[g]
    q = [np.prod(w[list(factors)]) for factors in itertools.combinations_with_replacement(range(len(w)),
                                                                                        policy.degree)]
    return np.kron(x, q)


# ------------------------------------------------------------------------------------------- the grid
@pytest.mark.parametrize("n_arms, resolution", [(1, 3), (2, 1), (2, 4), (3, 3), (4, 4), (5, 2)])
def test_the_grid_is_the_environments_grid(n_arms, resolution):
    expected = simplex_grid(n_arms, resolution)
    np.testing.assert_array_equal(blend_grid(n_arms, resolution).astype(np.float32), expected)
    policy = JointLinUCB(len(expected), 2, n_arms, resolution)
    np.testing.assert_array_equal(policy.grid.astype(np.float32), expected)


@pytest.mark.parametrize("degree, n_features", [(1, 4), (2, 10), (3, 20)])
def test_the_blend_features_represent_every_polynomial_of_their_degree_on_the_simplex(degree, n_features):
    """c + l . w (+ w^T M w) (+ sum T_ijk w_i w_j w_k) of degree <= ``degree``, restricted to sum w = 1, is
    exactly a linear function of the degree-``degree`` monomials q(w): no constant or lower terms needed."""
    rng = np.random.default_rng(degree)
    grid = blend_grid(4, 6)
    values = rng.normal() + grid @ rng.normal(size=4)
    if degree >= 2:
        values += np.einsum("gi,ij,gj->g", grid, rng.normal(size=(4, 4)), grid)
    if degree >= 3:
        values += np.einsum("gi,gj,gk,ijk->g", grid, grid, grid, rng.normal(size=(4, 4, 4)))
    q = blend_features(grid, degree)
    assert q.shape == (84, n_features)
    coefficients = np.linalg.lstsq(q, values, rcond=None)[0]
    np.testing.assert_allclose(q @ coefficients, values, rtol=0, atol=1e-11)
    higher = grid[:, 0] ** (degree + 1)  # one degree more is not
    assert np.abs(q @ np.linalg.lstsq(q, higher, rcond=None)[0] - higher).max() > 1e-3


# ------------------------------------------------------------------------------------------- exact
def test_hand_made_rounds_match_a_textbook_ridge_on_explicit_features():
    """d = 1, A = 2, degree 2, grid {(1, 0), (0, 1), (1/2, 1/2)}: q = (w1^2, w1 w2, w2^2). A batch of two
    rounds, then one round alone (the Sherman-Morrison path); theta and the UCB scores against numpy on the
    phi vectors."""
    ridge, alpha = 0.5, 0.7
    policy = JointLinUCB(3, 1, 2, 2, degree=2, alpha=alpha, ridge=ridge)
    np.testing.assert_array_equal(policy.grid, [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    q = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.25, 0.25, 0.25]])
    rounds = [(1.0, 2, 1.0), (2.0, 0, 0.5), (-1.0, 1, 0.25)]
    policy.update(np.array([[1.0], [2.0]]), np.array([2, 0]), np.array([1.0, 0.5]))
    policy.update(np.array([[-1.0]]), np.array([1]), np.array([0.25]))
    phi = np.array([x * q[a] for x, a, _ in rounds])
    A = ridge * np.eye(3) + phi.T @ phi
    b = phi.T @ np.array([r for _, _, r in rounds])
    theta = np.linalg.solve(A, b)
    np.testing.assert_allclose(policy.A, A, rtol=0, atol=1e-12)
    np.testing.assert_allclose(policy.b, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(policy.theta, theta, rtol=0, atol=1e-12)
    x = 1.5
    expected = [theta @ (x * q[g]) + alpha * np.sqrt((x * q[g]) @ np.linalg.inv(A) @ (x * q[g])) for g in range(3)]
    np.testing.assert_allclose(policy.scores(np.array([[x]]))[0], expected, rtol=0, atol=1e-12)
    assert policy.rounds == 3


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_kronecker_widths_equal_the_explicit_quadratic_form(degree):
    rng = np.random.default_rng(1)
    policy = JointLinUCB(10, 3, 3, 3, degree=degree, alpha=1.0)
    for b in (1, 5, 1, 40, 1):
        x = rng.normal(size=(b, 3))
        policy.update(x, rng.integers(0, 10, b), rng.normal(size=b))
    contexts = rng.normal(size=(6, 3))
    explicit = [[np.sqrt(_explicit_features(policy, x, g) @ policy.A_inv @ _explicit_features(policy, x, g))
                 for g in range(10)] for x in contexts]
    np.testing.assert_allclose(policy.widths(contexts), explicit, rtol=0, atol=1e-12)
    means = [[policy.theta @ _explicit_features(policy, x, g) for g in range(10)] for x in contexts]
    np.testing.assert_allclose(policy.scores(contexts), np.array(means) + np.array(explicit), rtol=0, atol=1e-12)


@pytest.mark.parametrize("discount", [1.0, 0.97])
def test_rounds_one_by_one_reach_the_statistics_of_one_batch(discount):
    rng = np.random.default_rng(2)
    x, actions, rewards = rng.normal(size=(200, 4)), rng.integers(0, 15, 200), rng.normal(size=200)
    one, batch = (JointLinUCB(15, 4, 3, 4, ridge=2.0, discount=discount) for _ in range(2))
    for t in range(200):
        one.update(x[t:t + 1], actions[t:t + 1], rewards[t:t + 1])
    batch.update(x, actions, rewards)
    for key in ("A", "A_inv", "b", "theta"):
        np.testing.assert_allclose(getattr(one, key), getattr(batch, key), rtol=0, atol=1e-9, err_msg=key)


# ------------------------------------------------------------------------------------------- propensities
def test_propensities_and_the_action_distribution_follow_epsilon_greedy():
    rng = np.random.default_rng(3)
    policy = JointLinUCB(35, 3, 4, 4, alpha=0.5, epsilon=0.2, seed=0)
    x = rng.normal(size=(64, 3))
    policy.update(x, rng.integers(0, 35, 64), rng.normal(size=64))
    contexts = np.tile([[1.0, 0.5, -0.5]], (20000, 1))
    greedy = int(np.argmax(policy.scores(contexts[:1])))
    actions, propensities = policy.act(contexts)
    assert actions.dtype == np.int64 and propensities.dtype == np.float64
    np.testing.assert_array_equal(propensities[actions == greedy], 1 - 0.2 + 0.2 / 35)
    np.testing.assert_array_equal(propensities[actions != greedy], 0.2 / 35)
    assert abs((actions == greedy).mean() - (0.8 + 0.2 / 35)) < 0.01
    distribution = policy.action_distribution(x)
    np.testing.assert_allclose(distribution.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    actions, propensities = policy.act(x)
    np.testing.assert_array_equal(distribution[np.arange(64), actions], propensities)
    deterministic = JointLinUCB(35, 3, 4, 4, alpha=0.5)
    deterministic.update(x, rng.integers(0, 35, 64), rng.normal(size=64))
    actions, propensities = deterministic.act(x)
    np.testing.assert_array_equal(actions, np.argmax(deterministic.scores(x), axis=1))
    np.testing.assert_array_equal(propensities, 1.0)
    np.testing.assert_array_equal(deterministic.action_distribution(x), np.eye(35)[actions])


def _trained_thompson(propensity_draws: int = 8) -> JointLinTS:
    rng = np.random.default_rng(5)
    policy = JointLinTS(10, 3, 3, 3, v=0.7, propensity_draws=propensity_draws, seed=3)
    x = rng.normal(size=(300, 3))
    policy.update(x, rng.integers(0, 10, 300), x[:, 0] + rng.normal(size=300))
    return policy


def test_thompson_scores_are_drawn_from_the_posterior_of_the_joint_model():
    """theta~ ~ N(theta, v^2 A^-1) makes the scores N(theta . phi_g, v^2 phi_g^T A^-1 phi_g'); the draws made
    in Q dimensions per request have that mean and covariance (200,000 draws: a few per mille)."""
    policy = _trained_thompson()
    contexts = np.array([[1.0, 0.5, -2.0], [0.3, -1.0, 0.2]])
    draws = policy.sampled_scores(contexts, 200_000, np.random.default_rng(0))
    for b, x in enumerate(contexts):
        phi = np.array([_explicit_features(policy, x, g) for g in range(10)])
        covariance = policy.v ** 2 * phi @ policy.A_inv @ phi.T
        scale = np.sqrt(np.diag(covariance).max())
        np.testing.assert_allclose(draws[:, b].mean(axis=0), phi @ policy.theta, rtol=0, atol=0.01 * scale)
        np.testing.assert_allclose(np.cov(draws[:, b].T), covariance, rtol=0, atol=0.01 * scale ** 2)
    # a context of zeros has no uncertainty (N(x) = 0): only the jitter that keeps the factorisation defined
    np.testing.assert_allclose(policy.sampled_scores(np.zeros((1, 3)), 100, np.random.default_rng(1)), 0.0,
                               rtol=0, atol=1e-5)


def test_thompson_propensities_are_the_share_of_further_draws_won():
    policy = _trained_thompson(propensity_draws=8)
    contexts = np.random.default_rng(6).normal(size=(500, 3))
    replay = copy.deepcopy(policy)
    actions, propensities = policy.act(contexts)
    np.testing.assert_array_equal(actions, np.argmax(replay.sampled_scores(contexts, 1, replay.rng)[0], axis=1))
    winners = np.argmax(replay.sampled_scores(contexts, 8, replay.propensity_rng), axis=2)
    share = (winners == actions).mean(axis=0)
    np.testing.assert_array_equal(propensities, np.maximum(share, 1 / 8))
    assert share.min() == 0.0 and share.max() == 1.0 and propensities.min() == 1 / 8  # the floor is used
    with pytest.raises(NotImplementedError):
        policy.action_distribution(contexts)


def test_thompson_actions_do_not_depend_on_the_number_of_propensity_draws():
    few, many = _trained_thompson(propensity_draws=2), _trained_thompson(propensity_draws=64)
    rng = np.random.default_rng(7)
    for b in (1, 16, 3):
        x = rng.normal(size=(b, 3))
        actions, _ = few.act(x)
        np.testing.assert_array_equal(many.act(x)[0], actions)
        rewards = rng.normal(size=b)
        few.update(x, actions, rewards)
        many.update(x, actions, rewards)


# ------------------------------------------------------------------------------------------- learning
BEST_POINTS = (0, 7, 20, 34)
"""Each context cell's best point of the 35-point grid (4 arms, resolution 4): a corner, an edge midpoint,
(1/4, 0, 1/2, 1/4) and (0, 0, 1/4, 3/4)."""


def _play(policy, grid: np.ndarray, rounds: int, batch: int, seed: int) -> float:
    """Four cells (one-hot contexts), mean reward 0.5 - 0.6 ||w - w*_cell||^2, Gaussian noise (sd 0.5): the
    regret over the run."""
    rng = np.random.default_rng(seed)
    best = grid[list(BEST_POINTS)]
    regret = 0.0
    for _ in range(rounds // batch):
        cells = rng.integers(0, 4, batch)
        actions, _ = policy.act(np.eye(4)[cells])
        gap = 0.6 * ((grid[actions] - best[cells]) ** 2).sum(axis=1)
        regret += gap.sum()
        policy.update(np.eye(4)[cells], actions, 0.5 - gap + 0.5 * rng.standard_normal(batch))
    return regret


def _final_gaps(policy, grid: np.ndarray) -> np.ndarray:
    """Each cell's regret of the point with the best estimated reward (4,)."""
    chosen = np.argmax(policy.mean_rewards(np.eye(4)), axis=1)
    return 0.6 * ((grid[chosen] - grid[list(BEST_POINTS)]) ** 2).sum(axis=1)


@pytest.mark.parametrize("seed", [1, 2])
def test_joint_model_learns_each_cells_best_blend_with_far_less_regret_than_disjoint_linucb(seed):
    """Same rounds, same alpha: the joint model (degree 2: the reward is quadratic in w) learns 4 x 10
    coefficients, the disjoint one 35 models of 4;
    after 6,400 rounds the joint model's greedy point is within one grid step (gap 0.075) of each cell's
    best, and its regret over the run is less than half the disjoint model's."""
    grid = blend_grid(4, 4)
    joint = JointLinUCB(35, 4, 4, 4, degree=2, alpha=1.0)
    joint_regret = _play(joint, grid, 6400, 32, seed)
    disjoint_regret = _play(LinUCB(35, 4, alpha=1.0, action_mode="grid"), grid, 6400, 32, seed)
    assert (_final_gaps(joint, grid) <= 0.075 + 1e-9).all(), _final_gaps(joint, grid)
    assert joint_regret < 0.5 * disjoint_regret, (joint_regret, disjoint_regret)


@pytest.mark.parametrize("seed", [1, 2])
def test_joint_thompson_sampling_learns_each_cells_best_blend(seed):
    """The same cells: after 6,400 rounds the posterior mean's best point is within one grid step of each
    cell's best, and the regret over the run is below a fifth of a uniformly random policy's (2,592)."""
    grid = blend_grid(4, 4)
    uniform = 6400 * np.mean([0.6 * ((grid - grid[b]) ** 2).sum(axis=1).mean() for b in BEST_POINTS])
    policy = JointLinTS(35, 4, 4, 4, degree=2, v=0.5, propensity_draws=4, seed=seed)
    regret = _play(policy, grid, 6400, 32, seed)
    assert (_final_gaps(policy, grid) <= 0.075 + 1e-9).all(), _final_gaps(policy, grid)
    assert regret < 0.2 * uniform, (regret, uniform)


# ------------------------------------------------------------------------------------------- bad input
INPUT_POLICIES = {
    "corners": lambda: JointLinUCB(K, D, K, 1, alpha=0.5),
    "segment": lambda: JointLinUCB(K, D, 2, K - 1, alpha=0.5, epsilon=0.2, seed=0),
    "discounted": lambda: JointLinUCB(K, D, 2, K - 1, discount=0.9),
    "thompson": lambda: JointLinTS(K, D, 2, K - 1, propensity_draws=4, seed=0),
}


def _snapshot(policy) -> tuple[dict, list]:
    return {k: np.array(v, copy=True) for k, v in policy.state_arrays().items()}, \
        [g.bit_generator.state for g in policy.generators()]


@pytest.mark.parametrize("make, call, message", [
    pytest.param(make, call, message, id=f"{name}-{i}-{message[:40]}") for name, make in INPUT_POLICIES.items()
    for i, (call, message) in enumerate(CONTEXT_CASES + DISCRETE_CASES + WIDTH_CASES)])
def test_bad_input_is_refused_with_the_message_of_every_policy_and_changes_nothing(make, call, message):
    policy = make()
    rng = np.random.default_rng(0)
    for b in (1, 3, 1):
        x = rng.normal(size=(b, D))
        actions, _ = policy.act(x)
        policy.update(x, actions, rng.random(b))
    before = _snapshot(policy)
    with pytest.raises(ValueError) as err:
        call(policy)
    assert str(err.value) == message
    after = _snapshot(policy)
    for key in before[0]:
        np.testing.assert_array_equal(after[0][key], before[0][key], err_msg=key)
    assert after[1] == before[1]


@pytest.mark.parametrize("make", [lambda: JointLinUCB(K, D, 2, K - 1, alpha=0.5),
                                  lambda: JointLinTS(K, D, 2, K - 1, propensity_draws=4, seed=0)],
                         ids=["linucb", "lints"])
def test_huge_finite_contexts_are_acted_on(make):
    """A sum that overflows is not a non-finite entry: the batch is acted on, as by every policy."""
    with np.errstate(over="ignore", invalid="ignore"):
        actions, propensities = make().act(np.full((2, D), 1e308))
    assert actions.shape == (2,) and propensities.shape == (2,)


NAN, INF = float("nan"), float("inf")
HYPERPARAMETERS = [
    (lambda: JointLinUCB(36, 14, 4, 4), "n_actions must be the number of grid points, C(grid_resolution + n_arms - 1, "
                                        "n_arms - 1) = 35 for 4 arms at grid_resolution 4; got 36"),
    (lambda: JointLinUCB(4, 14, 4, 4), "n_actions must be the number of grid points, C(grid_resolution + n_arms - 1, "
                                       "n_arms - 1) = 35 for 4 arms at grid_resolution 4; got 4"),
    (lambda: JointLinUCB(0, 3, 2, 1), "n_actions must be an integer >= 1; got 0"),
    (lambda: JointLinUCB(2, 2.5, 2, 1), "n_features must be an integer >= 1; got 2.5"),
    (lambda: JointLinUCB(2, 3, True, 1), "n_arms must be an integer >= 1; got True"),
    (lambda: JointLinUCB(2, 3, 2, 0), "grid_resolution must be an integer >= 1; got 0"),
    (lambda: JointLinUCB(2, 3, 2, 1, degree=0), "degree must be an integer >= 1; got 0"),
    (lambda: JointLinUCB(35, 14, 4, 4, degree=1.5), "degree must be an integer >= 1; got 1.5"),
    (lambda: JointLinUCB(35, 14, 4, 4, degree=11), "degree 11 with 4 arms and 14 context features gives 5,096 joint "
                                                  "features; must give at most 4,096"),
    (lambda: JointLinUCB(2, 3, 2, 1, alpha=NAN), "alpha must be a finite number >= 0; got nan"),
    (lambda: JointLinUCB(2, 3, 2, 1, alpha=-1), "alpha must be a finite number >= 0; got -1"),
    (lambda: JointLinUCB(2, 3, 2, 1, alpha="1"), "alpha must be a finite number >= 0; got '1'"),
    (lambda: JointLinUCB(2, 3, 2, 1, epsilon=2), "epsilon must be a finite number in [0, 1]; got 2"),
    (lambda: JointLinUCB(2, 3, 2, 1, epsilon=INF), "epsilon must be a finite number in [0, 1]; got inf"),
    (lambda: JointLinUCB(2, 3, 2, 1, ridge=0), "ridge must be a finite number > 0; got 0"),
    (lambda: JointLinUCB(2, 3, 2, 1, discount=0), "discount must be a finite number in (0, 1]; got 0"),
    (lambda: JointLinUCB(2, 3, 2, 1, seed=-1), "seed must be a non-negative integer or None; got -1"),
    (lambda: JointLinTS(36, 14, 4, 4), "n_actions must be the number of grid points, C(grid_resolution + n_arms - 1, "
                                       "n_arms - 1) = 35 for 4 arms at grid_resolution 4; got 36"),
    (lambda: JointLinTS(2, 3, 2, 1, v=0), "v must be a finite number > 0; got 0"),
    (lambda: JointLinTS(2, 3, 2, 1, v=NAN), "v must be a finite number > 0; got nan"),
    (lambda: JointLinTS(2, 3, 2, 1, propensity_draws=0), "propensity_draws must be an integer >= 1; got 0"),
    (lambda: JointLinTS(2, 3, 2, 1, ridge=INF), "ridge must be a finite number > 0; got inf"),
]


@pytest.mark.parametrize("make, message", HYPERPARAMETERS, ids=[m[:60] for _, m in HYPERPARAMETERS])
def test_bad_hyperparameters_are_refused_at_construction(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value) == message


# ------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("make", [lambda: JointLinUCB(35, 5, 4, 4, alpha=0.4, epsilon=0.3, seed=1),
                                  lambda: JointLinUCB(10, 5, 3, 3, degree=2, alpha=0.6, ridge=2.0, discount=0.95,
                                                      seed=2),
                                  lambda: JointLinUCB(35, 5, 4, 4, degree=1, alpha=0.3, epsilon=0.5),
                                  lambda: JointLinTS(35, 5, 4, 4, v=0.3, propensity_draws=8, seed=4),
                                  lambda: JointLinTS(10, 5, 3, 3, degree=2, discount=0.9, propensity_draws=4)],
                         ids=["epsilon", "discounted", "unseeded", "thompson", "thompson_unseeded"])
def test_a_loaded_policy_continues_with_bit_identical_actions_and_propensities(make, tmp_path):
    rng = np.random.default_rng(4)
    batches = [1, 3, 1, 16, 1, 32, 2]
    policy = make()

    def step(p, x, r):
        actions, propensities = p.act(x)
        p.update(x, actions, r)
        return actions, propensities

    for i in range(20):
        b = batches[i % len(batches)]
        step(policy, rng.normal(size=(b, 5)), rng.normal(size=b))
    policy.save(tmp_path / "policy.npz")
    loaded = type(policy).load(tmp_path / "policy.npz")
    assert loaded.config() == policy.config()
    for i in range(30):
        b = batches[i % len(batches)]
        x, r = rng.normal(size=(b, 5)), rng.normal(size=b)
        actions, propensities = step(policy, x, r)
        loaded_actions, loaded_propensities = step(loaded, x, r)
        np.testing.assert_array_equal(loaded_actions, actions)
        np.testing.assert_array_equal(loaded_propensities, propensities)
    for key, value in policy.state_arrays().items():
        np.testing.assert_array_equal(loaded.state_arrays()[key], value, err_msg=key)
    assert [g.bit_generator.state for g in loaded.generators()] == [g.bit_generator.state for g in policy.generators()]


def test_a_checkpoint_of_another_grid_is_refused(tmp_path):
    JointLinUCB(35, 5, 4, 4).save(tmp_path / "policy.npz")
    with np.load(tmp_path / "policy.npz", allow_pickle=False) as data:
        contents = {k: data[k] for k in data.files}
    meta = json.loads(str(contents["__meta__"]))
    meta["config"]["grid_resolution"] = 3
    contents["__meta__"] = np.array(json.dumps(meta))
    with open(tmp_path / "other.npz", "wb") as f:
        np.savez(f, **contents)
    with pytest.raises(ValueError) as err:
        JointLinUCB.load(tmp_path / "other.npz")
    assert str(err.value) == (f"checkpoint {tmp_path / 'other.npz'} holds a config that does not build a "
                              "'joint_linucb' policy: n_actions must be the number of grid points, C(grid_resolution "
                              "+ n_arms - 1, n_arms - 1) = 20 for 4 arms at grid_resolution 3; got 35")


# ------------------------------------------------------------------------------------------- fusionsim train
@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return str(path)


def _train(scenario_file, out, *extra):
    return CliRunner().invoke(cli, ["train", "--scenario", scenario_file, "--out", str(out), "--slots", "128",
                                    "--log-every", "2560", "--checkpoint-every", "5120", "--oracle-requests", "2048",
                                    *extra])


@pytest.mark.parametrize("agent, policy_class, extra", [("joint_linucb", JointLinUCB, ("--epsilon", "0.1")),
                                                       ("joint_lints", JointLinTS, ("--discount", "0.9999"))])
def test_train_a_joint_bandit_at_a_tiny_budget(agent, policy_class, extra, scenario_file, tmp_path):
    result = _train(scenario_file, tmp_path / "run", "--agent", agent, "--requests", "10240", *extra)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["agent"] == agent and metrics["requests"] == 10240 and len(metrics["curve"]) == 4
    policy = policy_class.load(tmp_path / "run" / "policy.npz")
    assert policy.config()["n_arms"] == 2 and policy.config()["grid_resolution"] == 4 and policy.rounds == 10240
    assert getattr(policy, extra[0][2:]) == float(extra[1])


@pytest.mark.parametrize("agent", ["joint_linucb", "joint_lints"])
def test_train_refuses_a_joint_bandit_without_the_grid(agent, scenario_file, tmp_path):
    result = _train(scenario_file, tmp_path / "run", "--agent", agent, "--requests", "2560", "--actions", "arm")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        f"Error: --actions 'arm' is not allowed with --agent {agent}: use --actions grid (it models the reward "
        "as a function of the blend weights)")
    assert not (tmp_path / "run").exists()


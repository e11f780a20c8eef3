"""``fusionsim learn``: pseudo-rewards by hand, a learner that finds a known best action per context, and the
command end to end on a small shop (its run plugs into ope), with its bad input."""

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from fusionsim.experiments.learn import learn_policy, pseudo_rewards
from tests.conftest import small_scenario


def test_pseudo_rewards_by_hand():
    actions, rewards, pscores = np.array([0, 2]), np.array([1.0, 0.5]), np.array([0.5, 0.25])
    np.testing.assert_array_equal(pseudo_rewards("ipw", actions, rewards, pscores, np.zeros((2, 3))),
                                  [[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    q = np.array([[0.4, 0.1, 0.2], [0.3, 0.3, 0.9]])
    # dr: q everywhere, plus the logged action's residual over its propensity: (1 - 0.4) / 0.5, (0.5 - 0.9) / 0.25
    np.testing.assert_allclose(pseudo_rewards("dr", actions, rewards, pscores, q),
                               [[0.4 + 1.2, 0.1, 0.2], [0.3, 0.3, 0.9 - 1.6]])


@pytest.mark.parametrize("learner", ["ipw", "dr"])
def test_the_learner_finds_the_best_action_of_each_context(learner):
    """Uniform logging over 3 actions; action 0 pays on contexts with x1 = 1, action 2 where x1 = 0."""
    rng = np.random.default_rng(0)
    n = 6000
    contexts = np.column_stack([np.ones(n), rng.integers(0, 2, n)]).astype(np.float64)
    actions = rng.integers(0, 3, n)
    mean = np.where(contexts[:, 1:2] == 1, np.array([0.8, 0.3, 0.1]), np.array([0.1, 0.3, 0.7]))
    rewards = (rng.random(n) < mean[np.arange(n), actions]).astype(np.float64)
    q = np.full((n, 3), rewards.mean())
    policy = learn_policy(contexts, pseudo_rewards(learner, actions, rewards, np.full(n, 1 / 3), q), 1.0, 0.0, 0,
                          "arm")
    greedy = policy.action_distribution(np.array([[1.0, 1.0], [1.0, 0.0]])).argmax(axis=1)
    assert greedy.tolist() == [0, 2]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("learn")
    path = root / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    runner = CliRunner()
    result = runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", "uniform-grid", "--requests",
                                 "6000", "--slots", "256", "--out", str(root / "log")])
    assert result.exit_code == 0, result.output
    return root, path


def test_learn_writes_a_policy_that_ope_reads(logged, tmp_path):
    root, _ = logged
    runner = CliRunner()
    result = runner.invoke(cli, ["learn", "--logs", str(root / "log"), "--truth-requests", "2560", "--out",
                                 str(tmp_path / "learned")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "learned" / "metrics.json").read_text())
    assert metrics["train_requests"] == 4800 and metrics["held_out_requests"] == 1200 and metrics["actions"] == 5
    for r in metrics["learned_off_policy"].values():
        assert r["ci_lower"] <= r["estimate"] <= r["ci_upper"]
    truth = metrics["truth"]
    low, high = truth["difference_ci95"]
    assert low <= truth["difference"] <= high
    assert truth["difference"] == pytest.approx(truth["learned"] - truth["logging_policy"], abs=1e-12)
    assert "simulated truth" in (tmp_path / "learned" / "report.md").read_text()
    result = runner.invoke(cli, ["ope", "--logs", str(root / "log"), "--policy", str(tmp_path / "learned"),
                                 "--estimators", "ips,dr", "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    # the same seed gives the same policy, array for array
    again = runner.invoke(cli, ["learn", "--logs", str(root / "log"), "--truth-requests", "0", "--out",
                                str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    with np.load(tmp_path / "again" / "policy.npz") as a, np.load(tmp_path / "learned" / "policy.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("args, message", [
    (("--learner", "magic"), "--learner 'magic' is not allowed: use one of ipw, dr"),
    (("--epsilon", "2"), "Invalid value for '--epsilon': 2 is not in the range [0, 1]"),
    (("--holdout", "1.5"), "Invalid value for '--holdout': 1.5 is not in the range (0, 1]"),
])
def test_learn_bad_input_is_one_line(args, message, logged, tmp_path):
    root, _ = logged
    result = CliRunner().invoke(cli, ["learn", "--logs", str(root / "log"), *args, "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and result.output.strip() == f"Error: {message}"
    assert not (tmp_path / "x").exists()


def test_learn_refuses_a_log_of_continuous_weights(logged, tmp_path):
    _, path = logged
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", "uniform-weights", "--requests", "600",
                               "--slots", "100", "--out", str(tmp_path / "weights")]).exit_code == 0
    result = runner.invoke(cli, ["learn", "--logs", str(tmp_path / "weights"), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --logs {tmp_path / 'weights'}: the logging policy chose continuous "
                                     "weights (action -1); learn needs arm or grid actions (simulate --policy "
                                     "uniform or uniform-grid)")


def test_a_learned_policy_logs_its_own_traffic_with_propensities(logged, tmp_path):
    """simulate --policy run:<learn run>: the frozen epsilon-greedy policy serves, and its log says how likely each
    action was (1 - epsilon + epsilon / K for its choice, epsilon / K for the others)."""
    import pandas as pd

    root, path = logged
    runner = CliRunner()
    assert runner.invoke(cli, ["learn", "--logs", str(root / "log"), "--epsilon", "0.2", "--truth-requests", "0",
                               "--out", str(tmp_path / "learned")]).exit_code == 0
    result = runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", f"run:{tmp_path / 'learned'}",
                                 "--requests", "1000", "--slots", "100", "--out", str(tmp_path / "served")])
    assert result.exit_code == 0, result.output
    log = pd.read_parquet(tmp_path / "served" / "logs")
    assert set(np.round(log["propensity"], 6)) <= {round(1 - 0.2 + 0.2 / 5, 6), round(0.2 / 5, 6)}
    assert (np.round(log["propensity"], 6) == round(0.2 / 5, 6)).any()
    bad = runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", f"run:{tmp_path / 'learned'}",
                              "--grid-resolution", "2", "--requests", "100", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert bad.output.strip() == (f"Error: --policy run:{tmp_path / 'learned'} chooses among grid points at "
                                  "resolution 4; give --grid-resolution 4")


def test_a_learned_policy_takes_part_in_an_ab_test(logged, tmp_path):
    root, path = logged
    runner = CliRunner()
    assert runner.invoke(cli, ["learn", "--logs", str(root / "log"), "--truth-requests", "0", "--out",
                               str(tmp_path / "learned")]).exit_code == 0
    result = runner.invoke(cli, ["ab-test", "--scenario", str(path), "--policies",
                                 f"popularity,run:{tmp_path / 'learned'}", "--users", "300", "--days", "0.2",
                                 "--pre-days", "0.1", "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    assert any(f"run:{tmp_path / 'learned'}" in label for label in metrics["comparisons"])
    bad = runner.invoke(cli, ["ab-test", "--scenario", str(path), "--policies", f"popularity,run:{tmp_path / 'no'}",
                              "--users", "300", "--days", "0.2", "--out", str(tmp_path / "ab2")])
    assert bad.exit_code == 2 and f"--policies run:{tmp_path / 'no'}" in bad.output

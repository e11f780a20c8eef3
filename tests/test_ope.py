"""Off-policy estimators on a hand-computed case, their bootstrap intervals, and input validation."""

import numpy as np
import pytest

from fusionsim.experiments.evaluation.estimators import (ESTIMATORS, DirectMethod, DoublyRobust, DoublyRobustWithShrinkage,
                             InverseProbabilityWeighting, OPEInputError, SelfNormalizedDoublyRobust,
                             SelfNormalizedInverseProbabilityWeighting, SwitchDoublyRobust)

REWARD = np.array([1.0, 0.0, 1.0, 0.0])
ACTION = np.array([0, 1, 1, 0])
PSCORE = np.array([0.5, 0.5, 0.25, 0.75])
DIST = np.array([[0.8, 0.2], [0.4, 0.6], [0.1, 0.9], [1.0, 0.0]])[:, :, None]
QHAT = np.array([[0.6, 0.3], [0.2, 0.4], [0.5, 0.7], [0.1, 0.2]])[:, :, None]
# By hand: w = [1.6, 1.2, 3.6, 4/3]; DM terms [0.54, 0.32, 0.68, 0.1]; residuals r - q(a) = [0.4, -0.4, 0.3, -0.1]
W = np.array([1.6, 1.2, 3.6, 4 / 3])
EXPECTED = {
    "dm": 1.64 / 4,
    "ips": 5.2 / 4,
    "snips": 5.2 / W.sum(),
    "dr": 0.41 + (0.64 - 0.48 + 1.08 - 0.4 / 3) / 4,
    "sndr": 0.41 + (0.64 - 0.48 + 1.08 - 0.4 / 3) / W.sum(),
    "switch-dr(2)": 0.41 + (0.64 - 0.48 - 0.4 / 3) / 4,
    "dr-os(1)": 0.41 + (1.6 / 3.56 * 0.4 - 1.2 / 2.44 * 0.4 + 3.6 / 13.96 * 0.3 - (4 / 3) / (16 / 9 + 1) * 0.1) / 4,
    # clipped at 1.5: w = [1.5, 1.2, 1.5, 4/3]
    "ips(1.5)": (1.5 + 1.5) / 4,
    "dr(1.5)": 0.41 + (1.5 * 0.4 - 1.2 * 0.4 + 1.5 * 0.3 - (4 / 3) * 0.1) / 4,
}
ARRAYS = {"reward": REWARD, "action": ACTION, "pscore": PSCORE, "action_dist": DIST,
          "estimated_rewards_by_reg_model": QHAT}
CASES = [("dm", DirectMethod()), ("ips", InverseProbabilityWeighting()),
         ("snips", SelfNormalizedInverseProbabilityWeighting()), ("dr", DoublyRobust()),
         ("sndr", SelfNormalizedDoublyRobust()), ("switch-dr(2)", SwitchDoublyRobust(lambda_=2.0)),
         ("dr-os(1)", DoublyRobustWithShrinkage(lambda_=1.0)), ("ips(1.5)", InverseProbabilityWeighting(lambda_=1.5)),
         ("dr(1.5)", DoublyRobust(lambda_=1.5))]


@pytest.mark.parametrize("name, estimator", CASES, ids=[c[0] for c in CASES])
def test_hand_computed_values(name, estimator):
    value = estimator.estimate_policy_value(**ARRAYS)
    assert value == pytest.approx(EXPECTED[name], rel=1e-12)


def test_limits_of_switch_and_shrinkage():
    dr = DoublyRobust().estimate_policy_value(**ARRAYS)
    dm = DirectMethod().estimate_policy_value(**ARRAYS)
    assert SwitchDoublyRobust(lambda_=np.inf).estimate_policy_value(**ARRAYS) == dr
    assert SwitchDoublyRobust(lambda_=0.0).estimate_policy_value(**ARRAYS) == dm
    assert DoublyRobustWithShrinkage(lambda_=0.0).estimate_policy_value(**ARRAYS) == dm
    assert DoublyRobustWithShrinkage(lambda_=np.inf).estimate_policy_value(**ARRAYS) == dr


def test_positions_select_the_slot_of_each_round():
    dist = np.zeros((2, 2, 3))
    dist[:, 0, :] = 1.0
    dist[1, :, 2] = [0.25, 0.75]
    value = InverseProbabilityWeighting().estimate_policy_value(
        np.array([1.0, 1.0]), np.array([0, 1]), dist, np.array([0.5, 0.5]), position=np.array([0, 2]))
    assert value == pytest.approx((1.0 / 0.5 + 0.75 / 0.5) / 2)


@pytest.mark.parametrize("name", ["ips", "snips", "sndr"])
def test_bootstrap_interval_is_reproducible_and_brackets_the_estimate(name):
    rng = np.random.default_rng(0)
    n = 5000
    action = rng.integers(0, 2, n)
    reward = (rng.random(n) < np.where(action == 1, 0.7, 0.3)).astype(float)
    dist = np.tile([[0.2], [0.8]], (n, 1, 1))
    q = np.tile([[0.3], [0.7]], (n, 1, 1))
    estimator = ESTIMATORS[name]()
    kwargs = {"reward": reward, "action": action, "pscore": np.full(n, 0.5), "action_dist": dist,
              "estimated_rewards_by_reg_model": q}
    interval = estimator.estimate_interval(**kwargs, n_bootstrap_samples=200, random_state=1)
    assert interval == estimator.estimate_interval(**kwargs, n_bootstrap_samples=200, random_state=1)
    value = estimator.estimate_policy_value(**kwargs)
    assert interval["95.0% CI (lower)"] < value < interval["95.0% CI (upper)"]
    assert abs(value - 0.62) < 0.05  # truth: 0.2 * 0.3 + 0.8 * 0.7


BAD = [
    (dict(pscore=np.array([0.5, 0.0, 0.25, 0.75])), "pscore must be in (0, 1]; got 0.0 at row 1"),
    (dict(pscore=np.array([0.5, 1.5, 0.25, 0.75])), "pscore must be in (0, 1]; got 1.5 at row 1"),
    (dict(action=np.array([0, 1, 2, 0])), "action must be integers in [0, 2); got 2 at row 2"),
    (dict(reward=np.array([1.0, np.nan, 1.0, 0.0])), "reward must be finite; got nan at row 1"),
    (dict(reward=np.array([1.0, 0.0])), "reward must have shape (4,) like action_dist's first axis; got (2,)"),
    (dict(action_dist=DIST * 0.5), "action_dist must sum to 1 over actions; row 0 sums to [0.5]"),
    (dict(action_dist=DIST[:, :, 0]), "action_dist must be 3-D (n_rounds, n_actions, len_list); got shape (4, 2)"),
    (dict(position=np.array([0, 0, 1, 0])), "position must be integers in [0, 1); got 1 at row 2"),
]


@pytest.mark.parametrize("change, message", BAD, ids=[m[:28] for _, m in BAD])
def test_bad_inputs_name_the_array_and_row(change, message):
    args = {"reward": REWARD, "action": ACTION, "pscore": PSCORE, "action_dist": DIST, **change}
    with pytest.raises(OPEInputError) as err:
        InverseProbabilityWeighting().estimate_policy_value(**args)
    assert str(err.value) == message


def test_reward_model_estimators_need_one():
    with pytest.raises(OPEInputError, match="^dr needs estimated_rewards_by_reg_model$"):
        DoublyRobust().estimate_policy_value(REWARD, ACTION, DIST, None, PSCORE)


def test_large_logs_use_the_bag_of_little_bootstraps_with_the_right_width():
    rng = np.random.default_rng(2)
    n = 200_000  # above PLAIN_BOOTSTRAP_MAX_ROUNDS
    action = rng.integers(0, 2, n)
    reward = (rng.random(n) < np.where(action == 1, 0.7, 0.3)).astype(float)
    dist = np.tile([[0.2], [0.8]], (n, 1, 1))
    estimator = InverseProbabilityWeighting()
    interval = estimator.estimate_interval(reward, action, dist, np.full(n, 0.5), n_bootstrap_samples=1000,
                                           random_state=0)
    per_round = np.where(action == 1, 0.8, 0.2) / 0.5 * reward
    half_width = 1.96 * per_round.std() / np.sqrt(n)  # normal theory for a mean
    got = (interval["95.0% CI (upper)"] - interval["95.0% CI (lower)"]) / 2
    assert got == pytest.approx(half_width, rel=0.15)
    assert interval["95.0% CI (lower)"] < per_round.mean() < interval["95.0% CI (upper)"]


@pytest.fixture(scope="module")
def arm_log_and_policy(tmp_path_factory):
    """A folder holding the small shop's scenario file, a uniform log over its two arms (``log``) and a LinUCB
    over those arms (``policy``)."""
    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli
    from tests.conftest import write_small_scenario

    root = tmp_path_factory.mktemp("ope")
    path = write_small_scenario(root)
    runner = CliRunner()
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--requests", "8192", "--slots", "256",
                               "--out", str(root / "log")]).exit_code == 0
    assert runner.invoke(cli, ["train", "--scenario", str(path), "--agent", "linucb", "--actions", "arm",
                               "--requests", "5120", "--slots", "128", "--log-every", "2560",
                               "--checkpoint-every", "5120", "--oracle-requests", "0",
                               "--out", str(root / "policy")]).exit_code == 0
    return root


def test_ope_command_on_a_simulated_log(arm_log_and_policy, tmp_path):
    import json
    import shutil

    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli
    from fusionsim.experiments.evaluation.reward_model import cross_fitted_rewards

    for name in ("small.yaml", "log", "policy"):
        source = arm_log_and_policy / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, tmp_path / name)
    path = tmp_path / "small.yaml"
    runner = CliRunner()
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "policy"),
                                 "--estimators", "dm,ips,dr", "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    assert set(metrics["estimators"]) == {"dm", "ips", "dr"} and metrics["on_policy_truth"] > 0
    for r in metrics["estimators"].values():
        assert r["ci_lower"] <= r["estimate"] <= r["ci_upper"] and r["relative_error"] < 0.5
    assert "| dr |" in (tmp_path / "ope" / "report.md").read_text()
    assert 0 < metrics["effective_sample_size"] <= metrics["rounds"]
    # beside them, the session family: the value per session, against the simulated reward per ended session
    per_session = metrics["per_session"]
    assert set(per_session["estimators"]) == {"pdis", "snpdis", "tis", "dr", "sndr"}
    assert per_session["on_policy_truth"] > 0
    for r in per_session["estimators"].values():
        assert r["ci_lower"] <= r["estimate"] <= r["ci_upper"] and r["relative_error"] < 0.5
    assert "per session: whole sessions as the units" in (tmp_path / "ope" / "report.md").read_text()
    assert "effective sample size of the importance weights" in (tmp_path / "ope" / "report.md").read_text()
    # with estimated propensities: the uniform logger's are recovered, and the logged ones' estimates sit beside
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "policy"),
                                 "--estimators", "dm,ips,dr", "--pscore", "estimated", "--out", str(tmp_path / "est")])
    assert result.exit_code == 0, result.output
    assert "warning: the propensities are estimated" in result.output
    estimated = json.loads((tmp_path / "est" / "metrics.json").read_text())
    assert estimated["with_logged_pscore"] == metrics["estimators"] and estimated["pscore"] == "estimated"
    assert estimated["estimated_pscore"]["mean_abs_relative_error_vs_logged"] < 0.05
    assert estimated["estimators"]["dm"] == metrics["estimators"]["dm"]  # DM weighs by no propensity
    for name in ("ips", "dr"):
        assert estimated["estimators"][name]["estimate"] == pytest.approx(metrics["estimators"][name]["estimate"],
                                                                           rel=0.05)
        assert estimated["estimators"][name]["estimate"] != metrics["estimators"][name]["estimate"]
    assert "**Warning:** the propensities are estimated" in (tmp_path / "est" / "report.md").read_text()
    bad = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "policy"),
                              "--pscore", "guessed", "--out", str(tmp_path / "z")])
    assert bad.exit_code == 2 and bad.output.strip() == ("Error: --pscore 'guessed' is not allowed: use one of "
                                                         "logged, estimated")
    bad = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "policy"),
                              "--estimators", "ips,magic", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert bad.output.strip() == ("Error: --estimators 'ips,magic': unknown estimator magic; choose from dm, ips, "
                                  "snips, dr, sndr, switch-dr, dr-os")
    assert runner.invoke(cli, ["train", "--scenario", str(path), "--agent", "ucb", "--requests", "2560",
                               "--slots", "128", "--log-every", "2560", "--checkpoint-every", "2560",
                               "--oracle-requests", "0", "--out", str(tmp_path / "grid")]).exit_code == 0
    grid = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "grid"),
                               "--out", str(tmp_path / "y")])
    assert grid.exit_code == 2
    assert grid.output.strip() == (f"Error: --policy {tmp_path / 'grid'} chooses among 5 grid actions (grid "
                                   "resolution 4) but the log's actions are 2 arm actions; log with simulate --policy "
                                   "uniform-grid --grid-resolution 4 or train with --actions arm")
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", "uniform-grid", "--requests", "4096",
                               "--slots", "256", "--out", str(tmp_path / "grid_log")]).exit_code == 0
    on_grid = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "grid_log"), "--policy", str(tmp_path / "grid"),
                                  "--estimators", "ips,dr", "--out", str(tmp_path / "z")])
    assert on_grid.exit_code == 0, on_grid.output
    # the reward model never sees a round's own reward: a lone outlier does not predict itself
    contexts = np.ones((100, 1))
    rewards = np.zeros(100)
    rewards[7] = 100.0
    q = cross_fitted_rewards(contexts, np.zeros(100, dtype=np.int64), rewards, 1, n_folds=2, seed=0)
    assert q[7, 0] == pytest.approx(0.0) and q[:, 0].max() > 1.0  # only the other fold learns from it


def test_ips_is_unbiased_on_simulated_bandit_feedback():
    """Logged bandit feedback from a known reward model (uniform logging policy, 3 actions, linear-logistic
    click probabilities): over 200 logs the mean IPS estimate of a deterministic evaluation policy lies
    within the 99% CI of its exact value; DM with a misspecified reward model does not (its bias shows)."""
    rng = np.random.default_rng(11)
    theta = np.array([[0.5, -1.0], [-0.5, 1.0], [0.0, 0.2]])
    n, k = 2000, 3
    estimates, dm_estimates, truths = [], [], []
    for _ in range(200):
        x = np.column_stack([np.ones(n), rng.normal(size=n)])
        p = 1 / (1 + np.exp(-(x @ theta.T)))  # (n, k) click probability per action
        action = rng.integers(0, k, n)
        reward = (rng.random(n) < p[np.arange(n), action]).astype(float)
        chosen = (x[:, 1] > 0).astype(np.int64)  # evaluation policy: action 1 if the feature is positive
        dist = np.zeros((n, k, 1))
        dist[np.arange(n), chosen, 0] = 1.0
        truths.append(p[np.arange(n), chosen].mean())
        estimates.append(InverseProbabilityWeighting().estimate_policy_value(reward, action, dist, np.full(n, 1 / k)))
        flat = np.full((n, k, 1), reward.mean())  # a reward model that ignores context and action
        dm_estimates.append(DirectMethod().estimate_policy_value(dist, flat))
    errors = np.array(estimates) - np.array(truths)
    assert abs(errors.mean()) < 2.58 * errors.std(ddof=1) / np.sqrt(len(errors))
    dm_errors = np.array(dm_estimates) - np.array(truths)
    assert abs(dm_errors.mean()) > 2.58 * dm_errors.std(ddof=1) / np.sqrt(len(dm_errors))


def test_kernelized_estimators_recover_a_continuous_policy_value():
    from fusionsim.experiments.evaluation.estimators import KernelizedInverseProbabilityWeighting

    rng = np.random.default_rng(5)
    n = 200_000
    logged = rng.normal(0.0, 1.0, n)  # logging policy: N(0, 1) actions
    density = np.exp(-0.5 * logged ** 2) / np.sqrt(2 * np.pi)
    reward = 1.0 - (logged - 0.5) ** 2 + rng.normal(0, 0.1, n)  # best action 0.5, value 1 there
    target = np.full(n, 0.5)
    truth = 1.0
    kipw = KernelizedInverseProbabilityWeighting(bandwidth=0.1).estimate_policy_value(reward, logged, density, target)
    assert kipw == pytest.approx(truth, abs=0.05)
    q_target = np.full(n, 0.95)  # a slightly wrong reward model
    q_logged = 1.0 - (logged - 0.5) ** 2 - 0.05
    kdr = KernelizedInverseProbabilityWeighting(bandwidth=0.1).estimate_policy_value(
        reward, logged, density, target, q_target, q_logged)
    assert abs(kdr - truth) < abs(0.95 - truth)  # DR corrects the model's bias
    with pytest.raises(OPEInputError, match="bandwidth must be > 0"):
        KernelizedInverseProbabilityWeighting(bandwidth=0).estimate_policy_value(reward, logged, density, target)


def _write_obd_fixture(folder, n=600, n_items=5, seed=0):
    """A small campaign in the Open Bandit Dataset layout, logged by the uniform random policy."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    item = rng.integers(0, n_items, n)
    position = rng.integers(1, 4, n)
    ctr = np.array([0.02, 0.05, 0.08, 0.03, 0.12])[item] / position
    table = pd.DataFrame({"timestamp": pd.date_range("2019-11-24", periods=n, freq="min").astype(str),
                          "item_id": item, "position": position, "click": (rng.random(n) < ctr).astype(int),
                          "propensity_score": 1.0 / n_items,
                          **{f"user_feature_{j}": rng.choice(["a1", "b2", "c3"], n) for j in range(4)},
                          **{f"user-item_affinity_{k}": rng.random(n) for k in range(n_items)}})
    table.to_csv(folder / "random.csv", index=False)
    pd.DataFrame({"item_id": range(n_items), "item_feature_0": rng.random(n_items)}).to_csv(
        folder / "item_context.csv", index=False)
    return table


def test_ope_reads_the_open_bandit_dataset_layout(tmp_path):
    import json

    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli

    table = _write_obd_fixture(tmp_path / "obd")
    runner = CliRunner()
    result = runner.invoke(cli, ["ope", "--obd", str(tmp_path / "obd"), "--evaluation", "uniform",
                                 "--estimators", "ips,snips,dr", "--out", str(tmp_path / "u")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "u" / "metrics.json").read_text())
    assert metrics["campaign"] == "random" and metrics["rounds"] == 600
    # a uniform evaluation policy on a uniform log: IPS is exactly the logged click rate
    assert metrics["estimators"]["ips"]["estimate"] == pytest.approx(table["click"].mean())
    best = runner.invoke(cli, ["ope", "--obd", str(tmp_path / "obd"), "--evaluation", "best-item",
                               "--out", str(tmp_path / "b")])
    assert best.exit_code == 0, best.output
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["estimators"]["ips"]["estimate"] > \
        metrics["estimators"]["ips"]["estimate"]
    missing = runner.invoke(cli, ["ope", "--obd", str(tmp_path / "obd"), "--campaign", "men",
                                  "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2
    assert missing.output.strip() == (f"Error: --campaign 'men' is not in --obd {tmp_path / 'obd'}; "
                                      "found ['random']")
    neither = runner.invoke(cli, ["ope", "--out", str(tmp_path / "n")])
    assert neither.exit_code == 2
    assert neither.output.strip() == "Error: give either --logs and --policy (or --rerank), or --obd"


def test_ope_evaluates_a_ppo_run_with_kernelized_estimators(tmp_path):
    import json

    import yaml
    from click.testing import CliRunner

    from fusionsim.experiments.cli import cli
    from tests.conftest import small_scenario

    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    runner = CliRunner()
    assert runner.invoke(cli, ["train", "--scenario", str(path), "--agent", "ppo", "--requests", "2560",
                               "--slots", "64", "--log-every", "2560", "--checkpoint-every", "2560",
                               "--oracle-requests", "0", "--out", str(tmp_path / "ppo")]).exit_code == 0
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--policy", "uniform-weights",
                               "--requests", "8192", "--slots", "256", "--out", str(tmp_path / "log")]).exit_code == 0
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "log"), "--policy", str(tmp_path / "ppo"),
                                 "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    for r in metrics["estimators"].values():
        assert r["ci_lower"] <= r["estimate"] <= r["ci_upper"] and r["relative_error"] < 0.5
    assert runner.invoke(cli, ["simulate", "--scenario", str(path), "--requests", "1024", "--slots", "256",
                               "--out", str(tmp_path / "discrete")]).exit_code == 0
    wrong = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "discrete"), "--policy", str(tmp_path / "ppo"),
                                "--out", str(tmp_path / "w")])
    assert wrong.exit_code == 2
    assert "log them with simulate --policy uniform-weights to evaluate a PPO policy" in wrong.output


def test_effective_sample_size_by_hand():
    from fusionsim.experiments.ope_run import effective_sample_size

    assert effective_sample_size(np.ones(7)) == 7.0
    assert effective_sample_size(np.array([0.0, 0.0, 5.0])) == 1.0
    assert effective_sample_size(np.array([1.0, 2.0])) == pytest.approx(9 / 5)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_ope_evaluates_a_weight_policy_on_an_impression_log(arm_log_and_policy, tmp_path):
    import json

    from click.testing import CliRunner

    from fusionsim.envs.calibration.readers import impressions_of_log
    from fusionsim.envs.calibration.request_contexts import requests_of_impressions
    from fusionsim.envs.logs import read_interaction_log
    from fusionsim.experiments.cli import cli
    from fusionsim.experiments.train import read_trained_run

    runner = CliRunner()
    policy = arm_log_and_policy / "policy"
    # the simulated log as a shop would hand it over: one row per shown item, no context columns
    table = impressions_of_log(read_interaction_log(arm_log_and_policy / "log", "--logs"),
                               ["popularity", "new_arrivals"])
    table.to_parquet(tmp_path / "impressions.parquet")
    result = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "impressions.parquet"), "--policy",
                                 str(policy), "--estimators", "ips,dr", "--out", str(tmp_path / "ope")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ope" / "metrics.json").read_text())
    assert metrics["rounds"] == 8192 and "on_policy_truth" not in metrics
    # IPS by hand: the policy's probability of the logged arm at the rebuilt contexts, over the uniform 1/2
    requests, contexts = requests_of_impressions(table)
    dist = read_trained_run(policy, "--policy", deterministic=True).policy.action_distribution(
        contexts.astype(np.float32))
    action = requests["action"].to_numpy()
    ips = np.mean(dist[np.arange(len(action)), action] / 0.5 * requests["clicks"].to_numpy())
    assert metrics["estimators"]["ips"]["estimate"] == pytest.approx(ips, rel=1e-12)
    assert "no simulated truth" in (tmp_path / "ope" / "report.md").read_text()
    table.drop(columns=["action_propensity"]).to_csv(tmp_path / "imp.csv", index=False)
    bad = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "imp.csv"), "--policy", str(policy),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.strip() == (
        f"Error: --logs {tmp_path / 'imp.csv'} has no column 'action_propensity': a weight policy is evaluated on the "
        "logging policy's actions and their propensities")
    table.assign(action=table["action"] + 2).to_csv(tmp_path / "imp.csv", index=False)
    bad = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "imp.csv"), "--policy", str(policy),
                              "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "logged action 2, but --policy" in bad.output and "chooses among 2 arm" in bad.output
    bad = runner.invoke(cli, ["ope", "--logs", str(tmp_path / "impressions.parquet"), "--policy", str(policy),
                              "--pscore", "estimated", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.strip() == (
        "Error: --pscore estimated: on an impression log the weight policy is evaluated with the logged "
        "action_propensity (estimated propensities are for simulated logs)")
    assert not (tmp_path / "x").exists()


def test_contexts_rebuilt_from_an_impression_log_by_hand():
    import pandas as pd

    from fusionsim.envs.calibration.request_contexts import requests_of_impressions
    from fusionsim.envs.context import CONTEXT_NAMES

    table = pd.DataFrame({"request_id": [1, 1, 0, 0, 2, 2], "timestamp": [0.5, 0.5, 0.25, 0.25, 1.75, 1.75],
                          "user_id": [3, 3, 3, 3, -1, -1], "session_id": [9, 9, 9, 9, 4, 4],
                          "surface": ["search", "search", "feed", "feed", "feed", "feed"],
                          "position": [1, 0, 0, 1, 0, 1],
                          "item_id": [4, 3, 1, 2, 5, 6], "click": [1, 0, 1, 1, 0, 0], "purchase": [0, 0, 1, 0, 0, 0],
                          "segment": ["loyal"] * 4 + ["vip"] * 2, "device": ["app"] * 4 + ["tv"] * 2})
    requests, contexts = requests_of_impressions(table)
    assert requests["request_id"].tolist() == [0, 1, 2] and requests["clicks"].tolist() == [2, 1, 0]
    got = {name: contexts[:, i].astype(np.float64).round(4).tolist() for i, name in enumerate(CONTEXT_NAMES)}
    assert got["segment_loyal"] == [1, 1, 0] and got["segment_new"] == [0, 0, 0]  # "vip" is none of the four
    assert got["device_app"] == [1, 1, 0] and got["device_mobile"] == [0, 0, 0]  # "tv" counts as desktop
    assert got["surface_search"] == [0, 1, 0]
    assert got["hour_sin"] == [1, 0, -1] and got["hour_cos"] == [0, -1, 0]  # 6:00, 12:00, 18:00
    assert got["session_step"] == [0, 0.05, 0]  # the session's second request
    assert got["session_clicks"] == [0, 0.2, 0]  # two clicks earlier in the session
    assert got["history_length"] == [0, round(float(np.log1p(1) / np.log1p(50)), 4), 0]  # one purchase before
    assert got["query_names_leaf"] == [0, 0, 0]

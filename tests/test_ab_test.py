import json

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.experiments.ab_test import assign_buckets
from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario


def test_buckets_follow_the_split_and_the_salt():
    users = np.arange(200_000)
    buckets = assign_buckets(users, [0.5, 0.3, 0.2], salt="a")
    np.testing.assert_allclose(np.bincount(buckets) / len(users), [0.5, 0.3, 0.2], atol=0.005)
    np.testing.assert_array_equal(buckets, assign_buckets(users, [0.5, 0.3, 0.2], salt="a"))
    assert (buckets != assign_buckets(users, [0.5, 0.3, 0.2], salt="b")).mean() > 0.4


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return str(path)


def test_ab_test_writes_report_tables_plots_and_true_lift(scenario_file, tmp_path):
    out = tmp_path / "ab"
    result = CliRunner().invoke(cli, ["ab-test", "--scenario", scenario_file, "--policies", "popularity,new_arrivals",
                                      "--days", "0.5", "--pre-days", "0.25", "--out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    (label, rows), = metrics["comparisons"].items()
    assert {"revenue", "revenue (CUPED)", "ctr", "conversion"} <= set(rows)
    r = rows["clicks"]
    assert r["ci_lower"] < r["lift"] < r["ci_upper"] and 0 <= r["p_value"] <= 1 and r["mde"] > 0
    assert "new_arrivals vs popularity" in metrics["true_lift"]
    users = pd.read_parquet(out / "users.parquet")
    assert {"user_id", "bucket", "policy", "revenue", "clicks", "pre_revenue"} <= set(users.columns)
    assert (out / "lift.png").read_bytes()[:4] == b"\x89PNG" and (out / "daily.png").is_file()
    assert "| ctr |" in (out / "report.md").read_text()


def test_aa_mode_runs_identical_policies(scenario_file, tmp_path):
    result = CliRunner().invoke(cli, ["ab-test", "--scenario", scenario_file, "--policies", "popularity", "--aa",
                                      "--split", "50,50", "--days", "0.5", "--pre-days", "0.25",
                                      "--out", str(tmp_path / "aa")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "aa" / "metrics.json").read_text())
    assert list(metrics["buckets"]) == ["0:popularity", "1:popularity"] and "true_lift" not in metrics


@pytest.mark.parametrize("args, message", [
    (["--split", "50,x"], "Error: --split '50,x': must be comma-separated numbers, e.g. 50,50"),
    (["--split", "50,0"], "Error: --split '50,0': every share must be a finite number > 0"),
    (["--split", "30,30,40"], "Error: --split has 3 shares for 2 policies"),
    (["--policies", "popularity,bogus"], "Error: --policies: --policy 'bogus' is not allowed: use uniform, "
                                         "uniform-grid, uniform-weights, popularity, new_arrivals or "
                                         "blend:<w1>,<w2>"),
])
def test_bad_ab_test_arguments(args, message, scenario_file, tmp_path):
    result = CliRunner().invoke(cli, ["ab-test", "--scenario", scenario_file, "--days", "0.1", "--pre-days", "0.1",
                                      "--out", str(tmp_path / "x"), *(["--policies", "popularity,new_arrivals"]
                                                                      if "--policies" not in args else []), *args])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == message


def test_a_trained_ppo_policy_takes_part(scenario_file, tmp_path):
    runner = CliRunner()
    ppo = tmp_path / "ppo"
    assert runner.invoke(cli, ["train", "--scenario", scenario_file, "--agent", "ppo", "--requests", "2560",
                               "--slots", "64", "--log-every", "2560", "--checkpoint-every", "2560",
                               "--oracle-requests", "0", "--out", str(ppo)]).exit_code == 0
    result = runner.invoke(cli, ["ab-test", "--scenario", scenario_file, "--policies", f"popularity,ppo:{ppo}",
                                 "--days", "0.1", "--pre-days", "0.05", "--out", str(tmp_path / "ab")])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    assert f"ppo:{ppo} vs popularity" in metrics["true_lift"]
    again = runner.invoke(cli, ["ab-test", "--scenario", scenario_file, "--policies", f"popularity,ppo:{ppo}",
                                "--days", "0.1", "--pre-days", "0.05", "--out", str(tmp_path / "ab2")])
    assert again.exit_code == 0, again.output
    assert json.loads((tmp_path / "ab2" / "metrics.json").read_text()) == metrics  # PPO samples from its seed
    bare = runner.invoke(cli, ["ab-test", "--scenario", scenario_file, "--policies", "popularity,ppo",
                               "--out", str(tmp_path / "x")])
    assert bare.exit_code == 2
    assert bare.output.strip() == ("Error: --policies ppo: name a trained PPO run as ppo:runs/<run> "
                                   "(fusionsim train --agent ppo)")

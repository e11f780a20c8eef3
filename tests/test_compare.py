"""``fusionsim compare``: every method on one small shop at a tiny budget, and its bad input."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from fusionsim.experiments.compare import DEFAULT_METHODS, METHODS, cascade_configs
from tests.test_simulate_cli import scenario_file  # noqa: F401  (fixture)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def arms(scenario_file, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("compare")
    result = _run("simulate", "--scenario", scenario_file, "--requests", 3000, "--slots", 500, "--out",
                  root / "traffic")
    assert result.exit_code == 0, result.output
    result = _run("train-base", "--scenario", scenario_file, "--logs", root / "traffic", "--models",
                  "popularity,content", "--out", root / "arms")
    assert result.exit_code == 0, result.output
    return root / "arms"


def test_compare_runs_every_method(scenario_file, arms, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    result = _run("compare", "--scenario", scenario_file, "--base", arms, "--requests", 2560, "--search-requests",
                  512, "--log-requests", 3000, "--slots", 256, "--cascade-keep", "20", "--grid-resolution", 2,
                  "--out", out)
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "comparison.json").read_text())
    assert list(comparison["methods"]) == list(DEFAULT_METHODS["request"])
    kinds = {name: r["kind"] for name, r in comparison["methods"].items()}
    assert kinds["best single arm"] == kinds["oracle"] == "reference" and kinds["best static blend"] == "static"
    assert kinds["stacking"] == "stacking" and kinds["cascade"] == kinds["adaptive cascade"] == "cascade"
    for r in comparison["methods"].values():
        low, high = r["ci95"]
        assert low <= r["reward_per_request"] <= high and r["requests"] == 2560
        low, high = r["session_ci95"]
        assert low <= r["reward_per_session"] <= high
    # the stacker was fitted on a log the run wrote, and both kinds were measured before choosing
    assert set(comparison["stacker"]["held_out_loss"]) == {"logistic", "mlp"}
    searched = comparison["stacker"]["search_reward_per_request"]
    assert comparison["stacker"]["kind"] == max(searched, key=searched.get)
    assert (out / "stacker_traffic" / "complete.json").is_file()
    for name in ("report.md", "learning_curve.png", "complete.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    report = (out / "report.md").read_text()
    assert "| oracle | reference |" in report and "pays most" in report or "best method" in report
    assert "- stacking beats the oracle: " in report and "- cascade beats the best single arm: " in report
    assert "- the best adaptive method captures >= 50% of the headroom: " in report
    # explain: which arm filters and which reorders per cell, from the adaptive cascade's last 20%
    result = _run("explain", out)
    assert result.exit_code == 0, result.output
    explained = json.loads((out / "explain.json").read_text())
    assert explained["kind"] == "cascade"
    assert explained["columns"] == ["filter popularity", "filter content", "reorder popularity", "reorder content",
                                    "reorder stacker"]
    cells = explained["cells"]
    assert sum(row["tail requests"] for row in cells.values()) == 512  # the last 20% of 2560 requests
    for row in cells.values():
        assert row["filter popularity"] + row["filter content"] == pytest.approx(1.0)
        assert row["reorder popularity"] + row["reorder content"] + row["reorder stacker"] == pytest.approx(1.0)
        assert row["searched best"] in comparison["cascades"]["searched"]


def test_compare_ranks_per_session(scenario_file, arms, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    result = _run("compare", "--scenario", scenario_file, "--base", arms, "--requests", 2560, "--search-requests",
                  512, "--slots", 256, "--grid-resolution", 2, "--methods", "best-static-blend,oracle,linucb,ppo",
                  "--per", "session", "--out", out)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{'method':<20}{'reward/session':>16}")
    comparison = json.loads((out / "comparison.json").read_text())
    methods = comparison["methods"]
    static, oracle, linucb = (methods[m]["reward_per_session"] for m in ("best static blend", "oracle", "linucb"))
    assert comparison["per"] == "session"
    # PPO learned online on the same evaluation seed, recorded step by step like the others
    assert methods["ppo"]["kind"] == "adaptive" and methods["ppo"]["requests"] == 2560
    low, high = methods["ppo"]["session_ci95"]
    assert low <= methods["ppo"]["reward_per_session"] <= high
    assert methods["linucb"]["vs_best_static_blend"]["difference"] == pytest.approx(linucb - static)
    headroom = (linucb - static) / (oracle - static) if oracle > static else None
    assert methods["linucb"]["headroom_captured"] == pytest.approx(headroom)
    explained = _run("explain", out)
    assert explained.exit_code == 2 and explained.output == (
        f"Error: explain {out}: this compare run has no adaptive cascade to explain; run compare with --methods "
        "including adaptive-cascade\n")
    assert f"Methods are ranked by {comparison['reward']} per session." in (out / "report.md").read_text()


def test_ppo_runs_by_default_only_where_the_methods_are_ranked_per_session():
    from fusionsim.experiments.compare import CompareConfig

    assert "ppo" not in CompareConfig().methods and CompareConfig(per="session").methods == METHODS
    assert CompareConfig(methods=("ppo",)).methods == ("ppo",)


def test_cascade_configs():
    configs = cascade_configs(2, (20, 50), with_stacker=True)
    labels = [c.label(["a", "b"]) for c in configs]
    assert labels == ["a>20>b", "a>20>stacker", "a>50>b", "a>50>stacker", "b>20>a", "b>20>stacker", "b>50>a",
                      "b>50>stacker"]


@pytest.mark.parametrize("args, message", [
    (("--methods", "oracle,magic"), "--methods 'oracle,magic': unknown method magic; choose from best-single-arm"),
    (("--cascade-keep", "20,x"), "--cascade-keep '20,x': must be comma-separated integers, e.g. 20,50"),
    (("--requests", "100", "--slots", "256"), "--requests 100 must be at least 5 steps of --slots 256 (1280)"),
    (("--cascade-keep", "5"), "--cascade-keep 5 is not allowed: each N must be an integer from the slate size 10 to "
                              "the number of candidates 200"),
    (("--stacker", "{tmp}/none"), "--stacker {tmp}/none does not exist or is not a folder; give a fusionsim "
                                  "train-stacker run folder"),
])
def test_compare_bad_input(scenario_file, arms, tmp_path, args, message):  # noqa: F811
    args = [a.format(tmp=tmp_path) for a in args]
    result = _run("compare", "--scenario", scenario_file, "--base", arms, "--search-requests", 256, "--requests", 1280,
                  *args, "--out", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "o").exists()


def test_batch_means_interval_by_hand():
    from fusionsim.experiments.online import OnlineRun, batch_means_interval

    # ten steps, one per batch: mean 5.5, sd 3.02765, t(0.975, 9) = 2.262157
    low, high = batch_means_interval(np.arange(1.0, 11.0))
    assert abs(low - (5.5 - 2.262157 * 3.0276504 / np.sqrt(10))) < 1e-5 and abs(high + low - 11.0) < 1e-12
    # 25 steps in 10 batches of 3, 3, 3, 3, 3, 2, 2, 2, 2, 2 steps (numpy's array_split)
    values = np.arange(25.0)
    means = [b.mean() for b in np.array_split(values, 10)]
    half = 2.262157 * np.std(means, ddof=1) / np.sqrt(10)
    np.testing.assert_allclose(batch_means_interval(values), (np.mean(means) - half, np.mean(means) + half), rtol=1e-6)
    # the paired difference of two runs over their last 20% of steps
    empty = np.zeros(24)
    a = OnlineRun(np.arange(50.0), 1, empty, empty, 0.0, np.ones(50, dtype=np.int64))
    b = OnlineRun(np.arange(50.0) - np.tile([1.0, 3.0], 25), 1, empty, empty, 0.0, np.ones(50, dtype=np.int64))
    difference, (low, high) = a.tail_difference(b)
    assert difference == 2.0 and low < 2.0 < high


def test_reward_per_session_and_its_paired_difference_by_hand():
    from fusionsim.experiments.online import OnlineRun

    # 50 steps of 2 requests; the tail is the last 10 steps, one per batch. Reward 1 per request (2 per step),
    # sessions ending 1, 3, 1, 3, ...: R = 20 / 20 = 1; residuals (2 - d) / 2 = +-0.5, sd 0.527046,
    # half width t(0.975, 9) 2.262157 * 0.527046 / sqrt(10) = 0.377026
    empty, sessions = np.zeros(24), np.tile([1, 3], 25)
    a = OnlineRun(np.ones(50), 2, empty, empty, 0.0, sessions)
    value, (low, high) = a.tail_per_session()
    assert value == 1.0 and abs(low - (1 - 0.377026)) < 1e-6 and abs(high - (1 + 0.377026)) < 1e-6
    # half the reward on the same sessions: difference 0.5, residuals +-0.25, half width 0.188513
    b = OnlineRun(np.full(50, 0.5), 2, empty, empty, 0.0, sessions)
    difference, (low, high) = a.tail_difference_per_session(b)
    assert difference == 0.5 and abs(low - (0.5 - 0.188513)) < 1e-6 and abs(high - (0.5 + 0.188513)) < 1e-6
    # no session ended in the tail: no figure
    none = OnlineRun(np.ones(50), 2, empty, empty, 0.0, np.zeros(50, dtype=np.int64))
    assert all(np.isnan(v) for v in (none.tail_per_session()[0], *none.tail_per_session()[1]))


def test_a_stacker_of_another_arm_list_is_refused(scenario_file, arms, tmp_path):  # noqa: F811
    """A stacker fitted on a log served by popularity and new_arrivals cannot fuse popularity and content."""
    assert _run("simulate", "--scenario", scenario_file, "--requests", 1000, "--slots", 500, "--policy", "uniform-grid",
                "--out", tmp_path / "log").exit_code == 0
    assert _run("train-stacker", "--logs", tmp_path / "log", "--kind", "logistic", "--epochs", 1,
                "--out", tmp_path / "stacker").exit_code == 0
    result = _run("compare", "--scenario", scenario_file, "--base", arms, "--stacker", tmp_path / "stacker",
                  "--methods", "stacking", "--requests", 1280, "--search-requests", 256, "--out", tmp_path / "o")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert (f"--stacker {tmp_path / 'stacker'} was trained on the arms [popularity, new_arrivals]; this shop's arms "
            "are [popularity, content] (names and order must match)") in result.output
    assert not (tmp_path / "o").exists()


def test_compare_serves_a_learned_policy_beside_the_methods(scenario_file, arms, tmp_path):  # noqa: F811
    assert _run("simulate", "--scenario", scenario_file, "--base", arms, "--policy", "uniform-grid", "--requests",
                3000, "--slots", 250, "--out", tmp_path / "log").exit_code == 0
    assert _run("learn", "--logs", tmp_path / "log", "--truth-requests", 0, "--out", tmp_path / "learned").exit_code == 0
    result = _run("compare", "--scenario", scenario_file, "--base", arms, "--methods", "best-static-blend,oracle",
                  "--policy-run", tmp_path / "learned", "--requests", 1280, "--search-requests", 256, "--slots", 256,
                  "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    methods = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["methods"]
    learned = methods[f"run:{tmp_path / 'learned'}"]
    assert learned["kind"] == "adaptive" and "vs_best_static_blend" in learned and learned["requests"] == 1280
    bad = _run("compare", "--scenario", scenario_file, "--policy-run", tmp_path / "learned", "--requests", 1280,
               "--slots", 256, "--out", tmp_path / "x")
    assert bad.exit_code == 2
    assert bad.output.strip() == "Error: --policy-run needs --base: the arms the run's policy was trained over"

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.experiments.cli import cli
from tests.conftest import SMALL


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    raw = {"name": "small"}
    for dotted, value in SMALL.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(raw))
    return path


def _simulate(*args):
    return CliRunner().invoke(cli, ["simulate", *map(str, args)])


def test_simulate_writes_logs_metrics_and_config(scenario_file, tmp_path):
    out = tmp_path / "run"
    result = _simulate("--scenario", scenario_file, "--requests", 3000, "--slots", 256, "--chunk-rows", 1000,
                       "--out", out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}/config.yaml" in result.output
    parts = sorted((out / "logs").glob("part-*.parquet"))
    assert len(parts) == 3, "3,000 rows in parts of about 1,000 (whole steps of 256)"
    log = pd.read_parquet(out / "logs")
    assert len(log) == 3000 and log["request_id"].tolist() == list(range(3000))
    expected = ["request_id", "t", "session_id", "session_step", "user_id", "segment", "surface", "device", "query",
                *[f"context_{c}" for c in CONTEXT_NAMES], "action", "propensity", "weights_popularity",
                "weights_new_arrivals", "slate", "zscore_popularity", "rank_popularity", "zscore_new_arrivals",
                "rank_new_arrivals", "clicks", "purchased", "purchases", "revenue", "reward",
                "terminated", "truncated"]
    assert list(log.columns) == expected
    assert (log["propensity"] == 0.5).all() and set(log["action"]) == {0, 1}
    np.testing.assert_array_equal(log["weights_popularity"], (log["action"] == 0).astype(np.float32))
    assert (log["slate"].map(len) == 10).all() and (log["slate"].map(lambda s: len(set(s))) == 10).all()
    np.testing.assert_array_equal(log["reward"], log["clicks"].map(sum))
    assert ((log["surface"] == "feed") == log["query"].map(lambda q: (q == -1).all())).all()
    assert (log["query"].map(len) == 3).all()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["requests"] == 3000
    assert metrics["clicks_per_request"] == pytest.approx(log["clicks"].map(sum).mean())
    assert metrics["revenue_per_request"] == pytest.approx(log["revenue"].mean(), rel=1e-5)
    assert sum(metrics["by_segment"][s]["requests"] for s in metrics["by_segment"]) == 3000
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["command"] == "simulate" and config["args"]["requests"] == 3000
    assert config["scenario"]["world"]["n_items"] == SMALL["world.n_items"]
    assert not list(out.rglob(".*.tmp")), "no temporary files left"


def test_same_seed_same_log(scenario_file, tmp_path):
    logs = []
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        result = _simulate("--scenario", scenario_file, "--requests", 1500, "--slots", 128, "--seed", seed,
                           "--policy", "blend:0.7,0.3", "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
        logs.append(pd.read_parquet(tmp_path / name / "logs"))
    pd.testing.assert_frame_equal(logs[0], logs[1])
    assert not logs[0]["clicks"].map(tuple).equals(logs[2]["clicks"].map(tuple))
    assert (logs[0]["action"] == -1).all() and np.allclose(logs[0]["weights_popularity"], 0.7)


BAD_ARGS = [
    (["--policy", "bandit"], "Error: --policy 'bandit' is not allowed: use uniform, uniform-grid, uniform-weights, "
                             "popularity, new_arrivals or blend:<w1>,<w2>"),
    (["--policy", "blend:1,2,3"], "Error: --policy 'blend:1,2,3': needs 2 weights, one per arm (popularity, "
                                  "new_arrivals); got 3"),
    (["--policy", "blend:a,b"], "Error: --policy 'blend:a,b': blend weights must be numbers, e.g. blend:0.7,0.3"),
    (["--policy", "blend:-1,2"], "Error: --policy 'blend:-1,2': weights must be non-negative numbers, one per arm, "
                                 "not all zero; got [-1.0, 2.0]"),
    (["--requests", "0"], "Error: Invalid value for '--requests': 0 is not in the range 1<=x<=1000000000."),
    (["--requests", "1e23"], "Error: Invalid value for '--requests': '1e23' is not a valid integer range."),
    (["--requests", "100000000000000000000000"], "Error: Invalid value for '--requests': 100000000000000000000000 "
                                                 "is not in the range 1<=x<=1000000000."),
    (["--requests", "many"], "Error: Invalid value for '--requests': 'many' is not a valid integer range."),
    (["--scenario", "mars"], "Error: scenario 'mars' is unknown: use one of ['cold_start', 'default', 'drift', "
                             "'long_horizon', 'search_heavy'] or a path to a .yaml file"),
    (["--seed", "-1"], "Error: Invalid value for '--seed': -1 is not in the range x>=0."),
]


@pytest.mark.parametrize("args, message", BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_exit_2_with_one_line(args, message, tmp_path):
    result = _simulate("--out", tmp_path / "run", "--requests", 10, *args)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == message


def test_existing_run_is_not_overwritten(scenario_file, tmp_path):
    out = tmp_path / "run"
    assert _simulate("--scenario", scenario_file, "--requests", 100, "--out", out).exit_code == 0
    before = (out / "metrics.json").read_text()
    result = _simulate("--scenario", scenario_file, "--requests", 200, "--out", out)
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --out {out} already holds a run (config.yaml); choose another folder "
                                      "or pass --overwrite")
    assert (out / "metrics.json").read_text() == before
    assert _simulate("--scenario", scenario_file, "--requests", 200, "--out", out, "--overwrite").exit_code == 0


def test_console_command_is_installed(tmp_path):
    """The ``fusionsim`` console script is installed and is this CLI's entry point (run for real, as a process,
    by the kill test in test_run_folders.py)."""
    import shutil
    from importlib.metadata import entry_points

    from fusionsim.experiments.cli import main

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "fusionsim"]
    assert script.value == "fusionsim.experiments.cli:main" and script.load() is main
    assert shutil.which("fusionsim") or shutil.which("fusionsim", path=str(Path(sys.executable).parent))
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0 and "simulate" in result.output


def test_demo_runs_every_step_at_a_tiny_scale(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--scale", "0.01", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = (out / "summary.md").read_text()
    for row in ("base recommenders, NDCG@10", "LinUCB online", "fusion methods", "A/B static", "A/B linucb",
                "off-policy value"):
        assert row in summary
    # every method of compare with its interval, and one sentence on which fusion pays
    from fusionsim.experiments.compare import DEFAULT_METHODS
    assert all(f"{method} " in summary for method in DEFAULT_METHODS["request"])
    assert "pays most" in summary or "the best method that a shop can deploy is" in summary
    for folder in ("logs", "arms", "ope_logs", "linucb", "compare", "ab_test", "ope"):
        assert (out / folder / "config.yaml").is_file()
    # at this scale every session of the ope log is still open when it ends: the session family says so
    assert "Per session: no session of the log ended before" in (out / "ope" / "report.md").read_text()

"""Run folders that cannot lie: --overwrite starts empty, incomplete runs are refused by their readers,
--resume names the first changed argument, arm order is checked, failed runs leave nothing that blocks a
rerun, and strict JSON."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return str(path)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _simulate(scenario_file, out, *extra):
    return _run("simulate", "--scenario", scenario_file, "--slots", 128, "--out", out, *extra)


TRAIN = ("--slots", 128, "--log-every", 1280, "--checkpoint-every", 2560, "--oracle-requests", 0)


def test_overwrite_after_a_longer_run_reads_back_exactly_the_new_rows(scenario_file, tmp_path):
    out = tmp_path / "run"
    assert _simulate(scenario_file, out, "--requests", 3000, "--chunk-rows", 500).exit_code == 0
    again = _simulate(scenario_file, out, "--requests", 1000, "--policy", "popularity", "--overwrite")
    assert again.exit_code == 0, again.output
    log = pd.read_parquet(out / "logs")
    assert len(log) == 1000 and log["request_id"].tolist() == list(range(1000))
    assert (log["weights_popularity"] == 1.0).all(), "only the new policy's rows"


def test_overwrite_never_empties_a_folder_that_holds_no_run(scenario_file, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    result = _simulate(scenario_file, tmp_path, "--requests", 500, "--overwrite")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --out {tmp_path} holds files but no fusionsim run; choose a new or "
                                     "empty folder")
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_a_killed_simulate_is_refused_by_its_readers_and_blocks_no_rerun(scenario_file, tmp_path):
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fusionsim.experiments.cli", "simulate", "--scenario",
                             scenario_file, "--requests", "50000000", "--slots", "256", "--chunk-rows", "2000",
                             "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list((out / "logs").glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list((out / "logs").glob("part-*.parquet")), "the run wrote a part before it was killed"
    result = _run("train-base", "--scenario", scenario_file, "--logs", out, "--models", "popularity",
                  "--out", tmp_path / "arms")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --logs {out} is not a complete fusionsim simulate run (complete.json is "
                                     "missing: the run was interrupted, failed or is still running); rerun it")
    rerun = _simulate(scenario_file, out, "--requests", 500)
    assert rerun.exit_code == 2
    assert rerun.output.strip() == (f"Error: --out {out} holds an incomplete run (interrupted or failed); pass "
                                    "--overwrite to start again")
    assert _simulate(scenario_file, out, "--requests", 500, "--overwrite").exit_code == 0
    assert len(pd.read_parquet(out / "logs")) == 500


def test_a_failed_run_leaves_nothing_behind(scenario_file, tmp_path):
    out = tmp_path / "failed"
    result = _simulate(scenario_file, out, "--requests", 500, "--base", tmp_path / "no_arms")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --base {tmp_path / 'no_arms'} holds no trained arms (arms.json is "
                                     "missing); make one with fusionsim train-base")
    assert not out.exists()
    assert _simulate(scenario_file, out, "--requests", 500).exit_code == 0


@pytest.fixture(scope="module")
def trained_run(scenario_file, tmp_path_factory):
    run = tmp_path_factory.mktemp("train") / "linucb"
    result = _run("train", "--scenario", scenario_file, "--agent", "linucb", "--requests", 2560, "--out", run, *TRAIN)
    assert result.exit_code == 0, result.output
    return run


@pytest.mark.parametrize("change, message", [
    (("--agent", "lints"), "--agent lints differs from the run's linucb"),
    (("--seed", 3), "--seed 3 differs from the run's 0"),
    (("--slots", 256), "--slots 256 differs from the run's 128"),
    (("--actions", "arm"), "--actions arm differs from the run's grid"),
    (("--grid-resolution", 3), "--grid-resolution 3 differs from the run's 4"),
    (("--discount", 0.999), "--discount 0.999 differs from the run's 1.0"),
    (("--epsilon", 0.1), "--epsilon 0.1 differs from the run's 0.0"),
    (("--base", "elsewhere"), "--base elsewhere differs from the run's none"),
    (("--scenario", "default"), "--scenario default differs from the run's "),
])
def test_resume_with_a_changed_argument_is_refused_naming_it(change, message, scenario_file, trained_run):
    args = {"--scenario": scenario_file, "--agent": "linucb", **dict(zip(TRAIN[::2], TRAIN[1::2])), change[0]: change[1]}
    result = _run("train", *[x for kv in args.items() for x in kv], "--requests", 5120, "--out", trained_run,
                  "--resume")
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith(f"Error: --resume: {message}"), line
    assert line.endswith(f"({trained_run}/config.yaml); resume with the run's arguments or start a new run")
    assert json.loads((trained_run / "metrics.json").read_text())["requests"] == 2560, "the run is untouched"


def test_resume_and_overwrite_exclude_each_other(scenario_file, trained_run):
    result = _run("train", "--scenario", scenario_file, "--agent", "linucb", "--out", trained_run, "--resume",
                  "--overwrite")
    assert result.exit_code == 2
    assert result.output.strip() == ("Error: --resume and --overwrite exclude each other: continue the run or start "
                                     "it again")


def test_ope_refuses_a_policy_over_arms_in_another_order(scenario_file, tmp_path):
    assert _simulate(scenario_file, tmp_path / "logs", "--requests", 3000).exit_code == 0
    for order in ("popularity,content", "content,popularity"):
        result = _run("train-base", "--scenario", scenario_file, "--logs", tmp_path / "logs", "--models", order,
                      "--out", tmp_path / order)
        assert result.exit_code == 0, result.output
    policy = tmp_path / "policy"
    result = _run("train", "--scenario", scenario_file, "--agent", "linucb", "--actions", "arm", "--requests", 2560,
                  "--base", tmp_path / "popularity,content", "--out", policy, *TRAIN)
    assert result.exit_code == 0, result.output
    other = tmp_path / "other_logs"
    assert _simulate(scenario_file, other, "--requests", 1000, "--base", tmp_path / "content,popularity").exit_code == 0
    result = _run("ope", "--logs", other, "--policy", policy, "--out", tmp_path / "ope")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --policy {policy} blends the arms [popularity, content] but the log's "
                                     "arms are [content, popularity] (names and order must match)")
    assert not (tmp_path / "ope").exists()


def test_metrics_are_strict_json(tmp_path):
    from fusionsim.experiments.runs import write_json

    write_json(tmp_path / "m.json", {"a": math.nan, "b": [1.0, math.inf], "c": {"d": -math.inf, "e": 2}})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": None, "e": 2}}
    assert "NaN" not in text and "Infinity" not in text

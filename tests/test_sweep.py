"""``fusionsim sweep``: tasks and their spawned seeds, the local and Ray backends giving identical tables and
reports, a killed Ray worker, an interrupted and resumed sweep, failed tasks, and bad sweep files.

The Ray tests share one Ray runtime started on this machine (``ray.init`` with 2 CPUs; Ray's former
in-process ``local_mode`` is gone from Ray 2.x), and the module runs in one test process (``xdist_group``)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from fusionsim.experiments.sweeps.backends import RAY_INSTALL_HINT
from fusionsim.experiments.sweeps.spec import load_sweep, parse_sweep
from fusionsim.experiments.sweeps.tasks import AB_COLUMNS, COMPARE_COLUMNS, TASK_COLUMNS, TRUTH_COLUMNS, plan_tasks
from tests.test_compare import arms  # noqa: F401  (fixture: popularity and content trained on the small shop)
from tests.test_simulate_cli import scenario_file  # noqa: F401  (fixture)

pytestmark = pytest.mark.xdist_group("sweep")  # one test process: one Ray runtime, one local run to compare with


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _sweep(scenario, base=None, **changes) -> dict:
    sweep = {"name": "tiny", "seed": 3, "scenarios": [str(scenario)],
             "compare": {"methods": ["best static blend", "oracle", "linucb"], "seeds": 2, "requests": 2560,
                         "search_requests": 256, "log_requests": 3000, "grid_resolution": 2, "slots": 256},
             "ab": {"days": 0.2, "pre_days": 0.1,
                    "designs": [{"name": "aa", "policies": ["popularity", "popularity"], "replicates": 3},
                                {"name": "new arrivals", "policies": ["popularity", "content"], "replicates": 2,
                                 "truth_replays": 2}]}}
    if base is not None:
        sweep["base"] = {str(scenario): str(base)}
    sweep.update(changes)
    return sweep


def _write(path: Path, sweep: dict) -> Path:
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def sweep_file(scenario_file, arms, tmp_path_factory):  # noqa: F811
    return _write(tmp_path_factory.mktemp("sweep") / "tiny.yaml", _sweep(scenario_file, arms))


@pytest.fixture(scope="module")
def local_run(sweep_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "run"
    result = _run("sweep", sweep_file, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_task_seeds_are_spawned_from_the_sweep_seed(sweep_file):
    sweep = load_sweep(sweep_file)
    tasks = plan_tasks(sweep, ["small"])
    assert len(tasks) == 3 * 2 + 3 + 2 + 2 and len({t.task_id for t in tasks}) == len(tasks)
    for task in tasks:
        key = tuple(int(k) for k in task.spawn_key.split("."))
        child = np.random.SeedSequence(sweep.seed, spawn_key=key)
        assert task.seed == int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
    # scenario 0; child 1 holds the compare seeds, children 2, 3 the designs' (child 0: the shared inputs)
    compare = [t for t in tasks if t.kind == "compare"]
    assert [t.spawn_key for t in compare[:2]] == ["0.1.0", "0.1.1"]
    # every method of a seed gets the same seed: common random numbers within a seed
    by_replicate = {r: {t.seed for t in compare if t.replicate == r} for r in (0, 1)}
    assert all(len(seeds) == 1 for seeds in by_replicate.values()) and by_replicate[0] != by_replicate[1]
    truth = [t for t in tasks if t.kind == "truth"]
    assert [t.spawn_key for t in truth] == ["0.3.2", "0.3.3"]
    assert plan_tasks(sweep, ["small"]) == tasks  # the plan is a function of the sweep


def test_local_sweep_writes_one_row_per_task_and_a_report(local_run):
    table = pq.read_table(local_run / "results.parquet")
    assert table.column_names == [*TASK_COLUMNS, *COMPARE_COLUMNS, *AB_COLUMNS, *TRUTH_COLUMNS]
    rows = table.to_pylist()
    assert len(rows) == 13 and all(r["status"] == "done" and r["error"] is None for r in rows)
    compare = [r for r in rows if r["kind"] == "compare"]
    assert all(r["ci95_lower"] <= r["reward_per_request"] <= r["ci95_upper"] and r["requests"] == 2560
               for r in compare)
    ab = [r for r in rows if r["kind"] == "ab"]
    assert all(r["revenue_ci_lower"] <= r["revenue_lift"] <= r["revenue_ci_upper"] for r in ab)
    assert all(r["control_shoppers"] > 0 and r["treatment_shoppers"] > 0 for r in ab)
    assert all(r["revenue_true_lift"] is not None for r in rows if r["kind"] == "truth")
    report = (local_run / "report.md").read_text()
    for text in ("# Sweep `tiny`", "13 tasks: 13 done, 0 failed", "| linucb | adaptive | 2 |",
                 "### `aa` on `small`: popularity vs popularity", "| revenue |", "false positives", "coverage"):
        assert text in report, text
    config = yaml.safe_load((local_run / "config.yaml").read_text())
    assert config["command"] == "sweep" and config["sweep"]["name"] == "tiny" and config["scenarios"][0]["name"]
    for name in ("sweep.png", "complete.json", "summary.json"):
        assert (local_run / name).is_file(), name


def test_a_rerun_gives_the_same_table_and_report(local_run, sweep_file, tmp_path):
    result = _run("sweep", sweep_file, "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "again" / "results.parquet").equals(pq.read_table(local_run / "results.parquet"))
    assert (tmp_path / "again" / "report.md").read_text() == (local_run / "report.md").read_text()


def test_the_report_is_hand_checkable(local_run):
    """The compare table's means, across-seed intervals and paired differences from the rows."""
    from scipy import stats

    rows = [r for r in pq.read_table(local_run / "results.parquet").to_pylist() if r["kind"] == "compare"]
    linucb = np.array([r["reward_per_request"] for r in rows if r["subject"] == "linucb"])
    static = np.array([r["reward_per_request"] for r in rows if r["subject"] == "best static blend"])
    half = stats.t.ppf(0.975, 1) * linucb.std(ddof=1) / np.sqrt(2)
    paired = linucb - static
    paired_half = stats.t.ppf(0.975, 1) * paired.std(ddof=1) / np.sqrt(2)
    line = next(line for line in (local_run / "report.md").read_text().splitlines() if line.startswith("| linucb |"))
    assert f"| {linucb.mean():.4f} | [{linucb.mean() - half:.4f}, {linucb.mean() + half:.4f}] |" in line
    assert f"{paired.mean():+.4f} [{paired.mean() - paired_half:+.4f}, {paired.mean() + paired_half:+.4f}]" in line


@pytest.fixture(scope="module")
def ray_runtime():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_gives_the_same_table_and_report_as_local(ray_runtime, local_run, sweep_file, tmp_path):
    out = tmp_path / "ray"
    result = _run("sweep", sweep_file, "--out", out, "--backend", "ray", "--workers", 2)
    assert result.exit_code == 0, result.output
    assert pq.read_table(out / "results.parquet").equals(pq.read_table(local_run / "results.parquet"))
    assert (out / "report.md").read_text() == (local_run / "report.md").read_text()
    assert json.loads((out / "summary.json").read_text())["backend"] == "ray"


def _task_processes() -> list[int]:
    """Pids of the Ray workers running a sweep task now (Ray titles a busy worker ``ray::<task name>``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(b"ray::fusionsim_sweep_task"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def test_a_killed_worker_still_gives_identical_results(ray_runtime, local_run, sweep_file, tmp_path):
    killed = []

    def kill_one():
        deadline = time.monotonic() + 300  # a loaded machine can take minutes to start Ray and import
        while not killed and time.monotonic() < deadline:
            for pid in _task_processes():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    killer = threading.Thread(target=kill_one)
    killer.start()
    out = tmp_path / "killed"
    result = _run("sweep", sweep_file, "--out", out, "--backend", "ray", "--workers", 2)
    killer.join()
    assert killed, "no worker was seen running a task"
    assert result.exit_code == 0, result.output
    assert pq.read_table(out / "results.parquet").equals(pq.read_table(local_run / "results.parquet"))
    assert (out / "report.md").read_text() == (local_run / "report.md").read_text()


def test_a_task_asking_for_more_than_a_node_has_is_refused(ray_runtime, scenario_file, arms, tmp_path):  # noqa: F811
    sweep = _sweep(scenario_file, arms, compare=None, resources={"cpus": 4})
    result = _run("sweep", _write(tmp_path / "big.yaml", sweep), "--out", tmp_path / "out", "--backend", "ray",
                  "--workers", 2)
    assert result.exit_code == 2
    assert result.output.rstrip().endswith("Error: resources: each task asks for 4 CPUs and 0 GPUs, but no node of "
                                           "the Ray started here (its CPUs: --workers) has them (the largest: 2 CPUs, "
                                           "0 GPUs)")
    assert not (tmp_path / "out").exists()


def test_shared_arms_and_stacker_are_made_once_and_kept_on_resume(scenario_file, tmp_path):  # noqa: F811
    """Without a base folder the sweep trains the arms and fits the stacker once (shared/); a resume reuses them
    and reruns only the task whose outcome is missing, with the same figures."""
    sweep = _sweep(scenario_file, ab=None)
    sweep["compare"].update(methods=["stacking"], seeds=1)
    path, out = _write(tmp_path / "shared.yaml", sweep), tmp_path / "shared"
    result = _run("sweep", path, "--out", out)
    assert result.exit_code == 0, result.output
    shared = out / "shared" / "small"
    chosen = json.loads((shared / "stacker.json").read_text())["kind"]
    assert (shared / "arms" / "complete.json").is_file() and (shared / f"stacker_{chosen}" / "complete.json").is_file()
    made = {p: p.stat().st_mtime_ns for p in (shared / "arms" / "complete.json", shared / "stacker.json")}
    before = pq.read_table(out / "results.parquet")
    (out / "checkpoints" / "000000.json").unlink()
    (out / "complete.json").unlink()
    result = _run("sweep", path, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    assert {p: p.stat().st_mtime_ns for p in made} == made
    assert json.loads((out / "summary.json").read_text())["ran"] == 1
    assert pq.read_table(out / "results.parquet").equals(before)


def test_an_interrupted_sweep_resumes_with_only_the_missing_tasks(local_run, sweep_file, tmp_path):
    out = tmp_path / "interrupted"
    process = subprocess.Popen([sys.executable, "-m", "fusionsim.experiments.cli", "sweep", str(sweep_file),
                                "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list((out / "checkpoints").glob("*.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.kill()
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in (out / "checkpoints").glob("*.json")}
    assert 4 <= len(finished) < 13 and not (out / "complete.json").exists()
    result = _run("sweep", sweep_file, "--out", out)  # a plain rerun is refused, with the way out
    assert result.exit_code == 2 and "holds an incomplete run (interrupted or failed); pass --resume" in result.output
    result = _run("sweep", sweep_file, "--out", out, "--resume")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == len(finished) and summary["ran"] == 13 - len(finished)
    assert {p: (out / "checkpoints" / p).stat().st_mtime_ns for p in finished} == finished  # not rerun
    assert pq.read_table(out / "results.parquet").equals(pq.read_table(local_run / "results.parquet"))
    assert (out / "report.md").read_text() == (local_run / "report.md").read_text()


def test_a_resume_with_another_sweep_is_refused(local_run, scenario_file, arms, tmp_path):  # noqa: F811
    changed = _sweep(scenario_file, arms)
    changed["compare"]["requests"] = 5120
    result = _run("sweep", _write(tmp_path / "changed.yaml", changed), "--out", local_run, "--resume")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --resume: sweep.compare.requests differs from the sweep stored in "
                                     f"{local_run}/config.yaml; resume with the same sweep file and scenarios, or "
                                     "start a new sweep")


def test_failed_tasks_are_reported_without_stopping_the_others(scenario_file, arms, tmp_path):  # noqa: F811
    """A split that leaves the treatment bucket without a shopper fails (the simulator refuses a shop front that
    nobody can arrive at): tried three times, reported with its error; the other tasks finish; the sweep is not
    complete, and a resume reruns only the failed tasks."""
    sweep = _sweep(scenario_file, arms, compare=None)
    sweep["ab"]["designs"].append({"name": "too short", "policies": ["popularity", "content"],
                                   "split": [99.99, 0.01], "replicates": 2})
    out = tmp_path / "failing"
    result = _run("sweep", _write(tmp_path / "failing.yaml", sweep), "--out", out)
    assert result.exit_code == 1
    assert "Error: 2 of 9 tasks failed (first: ab/small/too-short/0000; errors in" in result.output
    rows = pq.read_table(out / "results.parquet").to_pylist()
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["subject"] for r in failed] == ["too short"] * 2
    assert failed[0]["error"] == "ValueError: shoppers selects nobody: at least one shopper must be able to arrive"
    assert failed[0]["revenue_lift"] is None and sum(r["status"] == "done" for r in rows) == 7
    report = (out / "report.md").read_text()
    assert "## Failed tasks" in report and "`ab/small/too-short/0000` | ValueError: shoppers selects nobody" in report
    assert not (out / "complete.json").exists()
    result = _run("sweep", tmp_path / "failing.yaml", "--out", out, "--resume")  # only the failed ones rerun
    assert result.exit_code == 1
    assert json.loads((out / "summary.json").read_text())["ran"] == 2


@pytest.mark.parametrize("change, message", [
    ({"scenarios": []}, "sweep 'bad.yaml': scenarios = [] is not allowed: List should have at least 1 item after "
                        "validation, not 0"),
    ({"compare": None, "ab": None}, "sweep 'bad.yaml': the sweep runs nothing: give a compare block, an ab block "
                                    "or both"),
    ({"seed": -1}, "sweep 'bad.yaml': seed = -1 is not allowed: must be >= 0"),
    ({"workers": 2}, "sweep 'bad.yaml': unknown key 'workers'; allowed keys here: name, seed, scenarios, base, "
                     "resources, compare, ab"),
    ({"compare": {"methods": ["best static blend", "bandit"]}},
     "sweep 'bad.yaml': compare.methods: unknown method 'bandit'; choose from best single arm, best static blend, "
     "oracle, linucb, joint_linucb, lints, joint_lints, eps, ucb, ts, ppo, stacking, cascade, adaptive cascade"),
    ({"compare": {"methods": ["oracle"], "seeds": 0}}, "sweep 'bad.yaml': compare.seeds = 0 is not allowed: "
                                                       "must be >= 1"),
    ({"compare": {"methods": ["oracle"], "seeds": 200000}},
     "sweep 'bad.yaml': compare.seeds = 200000 is not allowed: must be <= 100,000"),
    ({"compare": {"methods": ["oracle"], "requests": 100}},
     "sweep 'bad.yaml': compare.requests = 100 must be at least 5 steps of compare.slots 256 (1280), so the last "
     "20% holds a whole step"),
    ({"ab": {"days": float("nan"), "designs": [{"name": "x", "policies": ["a", "b"]}]}},
     "sweep 'bad.yaml': ab.days = nan is not allowed: must be a finite number"),
    ({"ab": {"designs": [{"name": "x", "policies": ["a"]}]}},
     "sweep 'bad.yaml': ab.designs.0.policies = ['a'] is not allowed: List should have at least 2 items after "
     "validation, not 1"),
    ({"ab": {"designs": [{"name": "aa", "policies": ["a", "a"], "truth_replays": 3}]}},
     "sweep 'bad.yaml': ab.designs: design 'aa' is an A/A design (its true lift is 0 by construction); its "
     "truth_replays must be 0"),
    ({"ab": {"designs": [{"name": "x", "policies": ["a", "b"]}, {"name": "X", "policies": ["a", "b"]}]}},
     "sweep 'bad.yaml': ab.designs: the name 'X' is used twice (names must differ beyond case and punctuation)"),
    ({"ab": {"designs": [{"name": "x", "policies": ["popularity", "mf"]}]}},
     "sweep 'bad.yaml': ab.designs[0].policies on scenario 'small': --policy 'mf' is not allowed: use uniform, "
     "uniform-grid, uniform-weights, popularity, new_arrivals or blend:<w1>,<w2>"),
    ({"name": "../escaped"}, "sweep 'bad.yaml': name '../escaped' is not allowed: 1 to 100 letters, digits, '_', "
                             "'.' or '-', starting with a letter or digit (it names the run folder runs/<name>)"),
    ({"compare": {"methods": ["oracle"], "cascade_keep": [0]}},
     "sweep 'bad.yaml': compare.cascade_keep on scenario 'small': 0 is not allowed: each N must be an integer from "
     "the slate size"),
    ({"scenarios": ["nowhere.yaml"]}, "sweep 'bad.yaml': scenarios[0]: scenario 'nowhere.yaml': no such file"),
    ({"base": {"other": "runs/x"}}, "sweep 'bad.yaml': base: 'other' is not one of the sweep's scenarios"),
])
def test_a_bad_sweep_file_is_one_line(change, message, scenario_file, tmp_path):  # noqa: F811
    sweep = {**_sweep(scenario_file), "compare": None, **change}
    if "ab" not in change:
        sweep["ab"] = {"days": 0.1, "designs": [{"name": "x", "policies": ["popularity", "new_arrivals"]}]}
    path = _write(tmp_path / "bad.yaml", {k: v for k, v in sweep.items() if v is not None})
    result = _run("sweep", path, "--out", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(f"Error: {message}"), result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (("--workers", 2), "Error: --workers 2 needs --backend ray: local runs one task at a time in this process"),
    (("--address", "auto"), "Error: --address needs --backend ray"),
    (("--resume", "--overwrite"), "Error: --resume and --overwrite exclude each other"),
])
def test_bad_options_are_one_line(args, message, sweep_file, tmp_path):
    result = _run("sweep", sweep_file, "--out", tmp_path / "out", *args)
    assert result.exit_code == 2 and result.output.startswith(message), result.output
    assert not (tmp_path / "out").exists()


def test_without_ray_the_ray_backend_says_how_to_install_it(sweep_file, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as where it is not installed
    result = _run("sweep", sweep_file, "--out", tmp_path / "out", "--backend", "ray")
    assert result.exit_code == 2 and result.output.strip() == f"Error: {RAY_INSTALL_HINT}"
    assert not (tmp_path / "out").exists()


def test_the_shipped_sweeps_load_and_plan():
    assert len(plan_tasks(load_sweep("ab_calibration"), ["default"])) == 500 + 200 + 10
    assert len(plan_tasks(load_sweep("fusion_quality"), ["default"])) == 10 * 5
    with pytest.raises(ValueError, match="sweep 'nope' is unknown: use one of"):
        load_sweep("nope")
    assert parse_sweep({"name": "x", "ab": {"designs": [{"name": "a", "policies": ["u", "v"]}]}}).scenarios == [
        "default"]

"""Every expected failure of a command is one line naming the file or option, exit 2, with nothing left
behind that blocks a rerun: corrupt and foreign files, non-finite float options, full disks, paths that are
not folders."""

import json
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("scen") / "small.yaml"
    path.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    return path


@pytest.fixture(scope="module")
def log_run(scenario_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "run"
    result = _run("simulate", "--scenario", scenario_file, "--requests", 1000, "--slots", 128, "--out", out)
    assert result.exit_code == 0, result.output
    return out


def _damage_log(run, tmp_path, how):
    """A copy of the simulate run ``run`` whose first part is damaged ``how`` (the completion record is
    updated, so only the reader's own checks stand in the way)."""
    import shutil

    copy = tmp_path / "damaged"
    shutil.copytree(run, copy)
    part = copy / "logs" / "part-00000.parquet"
    if how == "garbage":
        part.write_bytes(b"PAR1 this is not parquet")
    elif how == "empty-file":
        part.write_bytes(b"")
    elif how == "no-propensity":
        pq.write_table(pq.read_table(part).drop(["propensity"]), part)
    elif how == "foreign":
        pq.write_table(pa.table({"a": [1, 2]}), part)
    elif how == "zero-propensity":
        table = pq.read_table(part)
        p = table.column("propensity").to_numpy().copy()
        p[7] = 0.0
        pq.write_table(table.set_column(table.schema.get_field_index("propensity"), "propensity", pa.array(p)), part)
    record = json.loads((copy / "complete.json").read_text())
    record["files"]["logs/part-00000.parquet"] = part.stat().st_size
    (copy / "complete.json").write_text(json.dumps(record))
    return copy


@pytest.mark.parametrize("how, problem", [
    ("garbage", "part-00000.parquet is corrupt or not a Parquet file (ArrowInvalid)"),
    ("empty-file", "part-00000.parquet is corrupt or not a Parquet file (ArrowInvalid)"),
    ("no-propensity", "part-00000.parquet has no column 'propensity'; not a fusionsim log"),
    ("foreign", "part-00000.parquet has no column 'request_id'; not a fusionsim log"),
    ("zero-propensity", "propensity must be finite and > 0; got 0.0 at row 7"),
])
def test_train_base_refuses_a_damaged_log_with_one_line(how, problem, log_run, scenario_file, tmp_path):
    damaged = _damage_log(log_run, tmp_path, how)
    out = tmp_path / "arms"
    result = _run("train-base", "--scenario", scenario_file, "--logs", damaged, "--models", "popularity", "--out", out)
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: --logs {damaged}: {problem}"
    assert not out.exists(), "nothing left that blocks a rerun"


def test_a_changed_part_after_completion_is_refused(log_run, scenario_file, tmp_path):
    import shutil

    copy = tmp_path / "changed"
    shutil.copytree(log_run, copy)
    (copy / "logs" / "part-00000.parquet").write_bytes(b"x")
    result = _run("train-base", "--scenario", scenario_file, "--logs", copy, "--models", "popularity",
                  "--out", tmp_path / "arms")
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"Error: --logs {copy}: logs/part-00000.parquet changed or vanished after "
                                            "the run completed (")


@pytest.mark.parametrize("payload, problem", [
    ("not json", "arms.json is corrupt"),
    ('{"arms": []}', "arms.json is corrupt"),
    ('{"arms": [{"name": "popularity", "path": "../../etc/passwd"}], "world": {}}',
     "arm path '../../etc/passwd' in arms.json must stay inside the folder"),
    ('{"arms": [{"name": "magic", "path": "m.pt"}], "world": {}}', "unknown arm 'magic' in arms.json"),
])
def test_a_bad_arms_json_is_one_line(payload, problem, scenario_file, tmp_path):
    base = tmp_path / "arms"
    base.mkdir()
    (base / "arms.json").write_text(payload)
    (base / "complete.json").write_text(json.dumps({"command": "train-base", "files": {}}))
    result = _run("simulate", "--scenario", scenario_file, "--requests", 100, "--base", base, "--out", tmp_path / "s")
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"Error: --base {base}: {problem}"), result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty (expected a header row and data)"),
    (b"\xff\xfe\x00garbage\x00\xff", "is not a well-formed CSV file (UnicodeDecodeError)"),
    (b"timestamp,item_id,position,click,propensity_score\n", "holds no rounds"),
    (b"timestamp,item_id,position,click,propensity_score\n0,1,4,0,0.5\n",
     "column 'position' must be 1, 2 or 3; got 4 at row 0"),
    (b"timestamp,item_id,position,click,propensity_score\n0,1,1,0,nan\n",
     "column 'propensity_score' must be in (0, 1]; got nan at row 0"),
])
def test_a_bad_obd_campaign_is_one_line(content, problem, tmp_path):
    folder = tmp_path / "obd"
    folder.mkdir()
    (folder / "random.csv").write_bytes(content)
    result = _run("ope", "--obd", folder, "--out", tmp_path / "ope")
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {folder / 'random.csv'} {problem}".replace("csv column", "csv: column")
    assert not (tmp_path / "ope").exists()


@pytest.mark.parametrize("args, message", [
    (("train-base", "--logs", "x", "--test-fraction", "nan"),
     "Invalid value for '--test-fraction': 'nan' is not a finite number; allowed: a number in [0.01, 0.9]"),
    (("ab-test", "--days", "nan"),
     "Invalid value for '--days': 'nan' is not a finite number; allowed: a number in [0.01, 365]"),
    (("ab-test", "--days", "inf"),
     "Invalid value for '--days': 'inf' is not a finite number; allowed: a number in [0.01, 365]"),
    (("ab-test", "--split", "50,nan"), "--split '50,nan': every share must be a finite number > 0"),
    (("demo", "--scale", "nan"),
     "Invalid value for '--scale': 'nan' is not a finite number; allowed: a number in [0.001, 10]"),
    (("train", "--agent", "linucb", "--discount", "nan"),
     "Invalid value for '--discount': 'nan' is not a finite number; allowed: a number in (0, 1]"),
    (("simulate", "--ppo-std-scale", "nan"),
     "Invalid value for '--ppo-std-scale': 'nan' is not a finite number; allowed: a number in [0.01, 100]"),
    (("simulate", "--ppo-std-scale", "abc"),
     "Invalid value for '--ppo-std-scale': 'abc' is not a number; allowed: a number in [0.01, 100]"),
    (("simulate", "--ppo-std-scale", "1e-300"),
     "Invalid value for '--ppo-std-scale': 1e-300 is not in the range [0.01, 100]"),
    (("train", "--agent", "linucb", "--epsilon", "-0.1"), "Invalid value for '--epsilon': -0.1 is not in the range "
                                                          "[0, 1]"),
    (("train", "--agent", "linucb", "--requests", "1e23"), "Invalid value for '--requests': '1e23' is not a valid "
                                                            "integer range."),
])
def test_non_finite_and_out_of_range_options(args, message, tmp_path):
    result = _run(*args, "--out", tmp_path / "out")
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"Error: {message}"
    assert not (tmp_path / "out").exists()


def test_out_under_a_file(scenario_file, tmp_path):
    (tmp_path / "file").write_text("")
    result = _run("simulate", "--scenario", scenario_file, "--requests", 100, "--out", tmp_path / "file" / "run")
    assert result.exit_code == 2
    assert result.output.strip() == (f"Error: --out {tmp_path / 'file' / 'run'}: {tmp_path / 'file'} is a file, "
                                     "not a folder")


def test_a_full_disk_is_one_line_and_leaves_nothing(scenario_file, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        result = _run("simulate", "--scenario", scenario_file, "--requests", 40000, "--slots", 256, "--out",
                      disk / "run")
        assert result.exit_code == 2
        assert result.output.strip().splitlines()[-1] == ("Error: no space left on the device; free some space and "
                                                          "rerun (nothing complete was written)")
        assert not (disk / "run").exists(), "the partial run is removed, so a rerun is not blocked"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_bug_is_not_hidden_as_a_one_line_error():
    """Only failures of fusionsim's own checks, the disk and memory are one-liners; anything else keeps its
    traceback, so a bug is reported, not disguised."""
    from fusionsim.experiments.cli import _expected_failure

    try:
        np.zeros(3).reshape(4)
    except ValueError as exc:
        assert _expected_failure(exc) is None
    from fusionsim.envs.scenario import ScenarioError

    assert _expected_failure(ScenarioError("scenario: bad")) == "scenario: bad"

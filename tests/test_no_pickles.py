"""No command unpickles anything from a run folder: a pickle payload planted in any file a command opens
is refused with one line (exit 2), and the payload never runs."""

import json
import pickle
import shutil

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from fusionsim.experiments.cli import cli
from tests.conftest import small_scenario


class Payload:
    """Unpickling this runs code: it writes the file ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('payload ran')",)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    scenario = root / "small.yaml"
    scenario.write_text(yaml.safe_dump(small_scenario().model_dump(mode="json")))
    train = ("--scenario", scenario, "--slots", 128, "--log-every", 1280, "--checkpoint-every", 2560,
             "--oracle-requests", 0, "--requests", 2560)
    steps = [("simulate", "--scenario", scenario, "--requests", 2000, "--slots", 128, "--out", root / "logs"),
             ("train-base", "--scenario", scenario, "--logs", root / "logs", "--models", "popularity,content",
              "--out", root / "arms"),
             ("train", "--agent", "linucb", "--actions", "arm", *train, "--out", root / "linucb"),
             ("train", "--agent", "ppo", *train, "--ppo-n-steps", 8, "--out", root / "ppo"),
             ("simulate", "--scenario", scenario, "--requests", 1000, "--slots", 128, "--out", root / "uniform"),
             ("simulate", "--scenario", scenario, "--requests", 1000, "--slots", 128, "--base", root / "arms",
              "--policy", "uniform-grid", "--shuffle-slates", "--out", root / "blends"),
             ("train-stacker", "--logs", root / "blends", "--kind", "mlp", "--epochs", 1, "--out", root / "stacker")]
    for step in steps:
        result = _run(*step)
        assert result.exit_code == 0, (step, result.output)
    return root


def _plant(path, marker, kind):
    if kind == "npz-object":  # an npz whose arrays need pickle to load
        with open(path, "wb") as f:
            np.savez(f, __meta__=np.array([Payload(marker)], dtype=object))
    elif kind == "torch":
        torch.save({"payload": Payload(marker)}, path)
    else:  # a raw pickle under the file's name
        path.write_bytes(pickle.dumps(Payload(marker)))


def _checkpoint(run):
    (folder,) = [p for p in (run / "checkpoints").iterdir() if p.is_dir()]
    return folder.relative_to(run)


CASES = [
    # (run, file inside it (None: the last checkpoint folder), payload kind, command)
    ("linucb", "{ckpt}/simulator.npz", "npz-object", "resume"),
    ("linucb", "{ckpt}/simulator.npz", "raw", "resume"),
    ("linucb", "{ckpt}/policy.npz", "npz-object", "resume"),
    ("linucb", "{ckpt}/progress.json", "raw", "resume"),
    ("linucb", "checkpoints/latest.json", "raw", "resume"),
    ("linucb", "policy.npz", "npz-object", "explain"),
    ("linucb", "policy.npz", "raw", "explain"),
    ("linucb", "{ckpt}/simulator.npz", "npz-object", "explain"),
    ("linucb", "policy.npz", "npz-object", "ope"),
    ("linucb", "config.yaml", "raw", "ope"),
    ("ppo", "ppo_policy.pt", "torch", "ab-test"),
    ("ppo", "ppo_policy.pt", "raw", "ab-test"),
    ("ppo", "ppo.json", "raw", "ab-test"),
    ("ppo", "{ckpt}/ppo_optimizer.pt", "torch", "resume"),
    ("ppo", "{ckpt}/ppo_policy.pt", "torch", "resume"),
    ("ppo", "ppo_policy.pt", "torch", "explain"),
    ("arms", "models/popularity.pt", "torch", "simulate"),
    ("arms", "models/content.pt", "raw", "simulate"),
    ("arms", "arms.json", "raw", "simulate"),
    ("logs", "logs/part-00000.parquet", "raw", "train-base"),
    ("stacker", "stacker.pt", "torch", "compare"),
    ("stacker", "stacker.pt", "raw", "compare"),
    ("stacker", "stacker.json", "raw", "compare"),
]


@pytest.mark.parametrize("run_name, relative, kind, command", CASES)
def test_a_planted_pickle_never_runs(run_name, relative, kind, command, runs, tmp_path):
    copy = tmp_path / run_name
    shutil.copytree(runs / run_name, copy)
    path = copy / relative.format(ckpt=_checkpoint(copy) if "{ckpt}" in relative else "")
    assert path.is_file(), path
    marker = tmp_path / "marker"
    _plant(path, str(marker), kind)
    record = copy / "complete.json"
    if record.is_file():  # the planter also fixes the completion record, so only the loaders stand in the way
        files = json.loads(record.read_text())
        files["files"][path.relative_to(copy).as_posix()] = path.stat().st_size
        record.write_text(json.dumps(files))
    scenario = runs / "small.yaml"
    args = {
        "resume": ("train", "--agent", run_name, "--scenario", scenario, "--slots", 128, "--log-every", 1280,
                   "--checkpoint-every", 2560, "--oracle-requests", 0, "--requests", 5120,
                   *(("--actions", "arm") if run_name == "linucb" else ("--ppo-n-steps", 8)), "--out", copy,
                   "--resume"),
        "explain": ("explain", copy, "--requests", 256),
        "ope": ("ope", "--logs", runs / "uniform", "--policy", copy, "--out", tmp_path / "ope"),
        "ab-test": ("ab-test", "--scenario", scenario, "--policies", f"static,ppo:{copy}", "--days", 0.02,
                    "--pre-days", 0.01, "--out", tmp_path / "ab"),
        "simulate": ("simulate", "--scenario", scenario, "--requests", 500, "--base", copy, "--out", tmp_path / "sim"),
        "train-base": ("train-base", "--scenario", scenario, "--logs", copy, "--models", "popularity",
                       "--out", tmp_path / "arms"),
        "compare": ("compare", "--scenario", scenario, "--base", runs / "arms", "--stacker", copy, "--methods",
                    "stacking", "--requests", 640, "--slots", 128, "--search-requests", 128, "--out", tmp_path / "c"),
    }[command]
    result = _run(*args)
    assert not marker.exists(), "the payload ran"
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output

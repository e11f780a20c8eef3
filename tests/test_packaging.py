"""The installed distribution claims one top-level import name, ``fusionsim``."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_fusionsim_namespace(tmp_path):
    source = tmp_path / "source"  # a copy, so the build leaves nothing in the repository
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__",
                                                                ".pytest_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("fusionsim-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["fusionsim"]
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"fusionsim"}
    for part in ("common", "envs", "agents", "recommenders", "experiments"):
        assert f"fusionsim/{part}/__init__.py" in names
    assert "fusionsim/envs/scenarios/default.yaml" in names


def test_installed_names_resolve_under_fusionsim_only(tmp_path):
    code = ("import importlib.util, fusionsim.envs, fusionsim.agents, fusionsim.recommenders, "
            "fusionsim.experiments.cli\n"
            "print(all(importlib.util.find_spec(n) is None for n in ('envs', 'agents', 'recommenders', "
            "'experiments', 'common')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"

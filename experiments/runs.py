"""Run folders: ``runs/<name>/`` with the resolved config, metrics and outputs of one command."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import yaml

from fusionsim.recommenders.io import atomic_target, atomic_write_text


class RunFolderError(ValueError):
    """The output folder cannot be used (it holds another run)."""


def prepare_run_folder(out: str | Path, overwrite: bool = False) -> Path:
    """Create ``out``; refuse a folder that already holds a run unless ``overwrite`` (nothing is deleted
    up front: files are replaced one by one as the new run writes them)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out {folder} is a file, not a folder")
    if (folder / "config.yaml").exists() and not overwrite:
        raise RunFolderError(f"--out {folder} already holds a run (config.yaml); choose another folder "
                             "or pass --overwrite")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_config(folder: Path, command: str, args: dict, scenario: dict | None = None, **extra: object) -> None:
    """Write ``config.yaml``: the command, its arguments, the resolved scenario and the environment."""
    config = {"command": command, "args": args, **extra, "python": platform.python_version(),
              "numpy": np.__version__}
    if scenario is not None:
        config["scenario"] = scenario
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def parse_choices(spec: str, allowed, option: str, kind: str, error: type[ValueError]) -> list[str]:
    """Split a comma-separated ``option`` value; every name must be in ``allowed`` (else ``error`` saying
    which ``kind`` is unknown and what is allowed)."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise error(f"{option} {spec!r}: unknown {kind} {unknown[0] if unknown else '(none)'}; "
                    f"choose from {', '.join(allowed)}")
    return names


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

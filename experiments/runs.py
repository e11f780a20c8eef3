"""Run folders: ``runs/<name>/`` with the resolved config, metrics and outputs of one command."""

from __future__ import annotations

import contextlib
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import yaml

from fusionsim.common.io import (COMPLETE_FILE, IncompleteRunError, atomic_target, atomic_write_json,
                                       atomic_write_text, clean_json)


class RunFolderError(ValueError):
    """The output folder cannot be used (it holds another run, or is not a folder)."""


CHECKPOINTS = "checkpoints"
"""Subfolder of a run that may be resumed; a failed run keeps it (and everything else)."""


def prepare_run_folder(out: str | Path, overwrite: bool = False, resumable: bool = False) -> Path:
    """Create ``out`` for a new run and return it.

    A folder that already holds a run is refused unless ``overwrite``, which empties it first, so the new
    run never mixes with the old one's files. A folder with files but no fusionsim run is never emptied.
    ``resumable`` only changes the advice for an interrupted run (``--resume``)."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"--out {folder} is a file, not a folder")
    for parent in folder.parents:
        if parent.exists() and not parent.is_dir():
            raise RunFolderError(f"--out {folder}: {parent} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()):
        is_run = (folder / "config.yaml").is_file() or (folder / COMPLETE_FILE).is_file()
        if not is_run:
            raise RunFolderError(f"--out {folder} holds files but no fusionsim run; choose a new or empty folder")
        if not overwrite:
            if (folder / COMPLETE_FILE).is_file():
                raise RunFolderError(f"--out {folder} already holds a run (config.yaml); choose another folder "
                                     "or pass --overwrite")
            advice = "pass --resume to continue it or --overwrite" if resumable else "pass --overwrite"
            raise RunFolderError(f"--out {folder} holds an incomplete run (interrupted or failed); {advice} to "
                                 "start again")
        _empty(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _empty(folder: Path) -> None:
    """Delete everything inside ``folder`` (links themselves, never what they point to)."""
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


@contextlib.contextmanager
def new_run(out: str | Path, overwrite: bool = False, resumable: bool = False) -> Iterator[Path]:
    """:func:`prepare_run_folder`, and when the run then fails with an error, remove what it wrote (so a
    rerun is not blocked) unless it holds a checkpoint to resume from. An interrupt (Ctrl-C, a kill)
    leaves the folder as it is: incomplete, which readers refuse."""
    folder = Path(out)
    existed = folder.is_dir()
    folder = prepare_run_folder(folder, overwrite, resumable)
    try:
        yield folder
    except Exception:
        if not (folder / CHECKPOINTS).is_dir() and not (folder / COMPLETE_FILE).is_file():
            if existed:
                _empty(folder)
            else:
                shutil.rmtree(folder, ignore_errors=True)
        raise


def write_config(folder: Path, command: str, args: dict, scenario: dict | None = None, **extra: object) -> None:
    """Write ``config.yaml``: the command, its arguments, the resolved scenario and the environment."""
    config = {"command": command, "args": args, **extra, "python": platform.python_version(),
              "numpy": np.__version__}
    if scenario is not None:
        config["scenario"] = scenario
    atomic_write_text(folder / "config.yaml", yaml.safe_dump(clean_json(config), sort_keys=False))


def read_config(folder: Path, option: str) -> dict:
    """The ``config.yaml`` of a run folder; an IncompleteRunError naming ``option`` if it is missing or
    unreadable."""
    path = Path(folder) / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise IncompleteRunError(f"{option} {folder} holds no config.yaml; give a fusionsim run folder") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise IncompleteRunError(f"{option} {path} cannot be read ({type(exc).__name__}); rerun the run") from None
    if not isinstance(config, dict) or not isinstance(config.get("args"), dict):
        raise IncompleteRunError(f"{option} {path} is not a fusionsim run config; rerun the run")
    return config


def write_json(path: Path, data: dict) -> None:
    """Strict JSON (NaN as null), atomically."""
    atomic_write_json(path, data)


def parse_choices(spec: str, allowed, option: str, kind: str, error: type[ValueError]) -> list[str]:
    """Split a comma-separated ``option`` value; every name must be in ``allowed`` (else ``error`` saying
    which ``kind`` is unknown and what is allowed)."""
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if not names or unknown:
        raise error(f"{option} {spec!r}: unknown {kind} {unknown[0] if unknown else '(none)'}; "
                    f"choose from {', '.join(allowed)}")
    return names


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, imported on first use: it costs about half a second,
    which a command that draws nothing (or a sweep's worker) need not pay."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    with atomic_target(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

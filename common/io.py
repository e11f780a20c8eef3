"""File I/O shared by every part that writes files: atomic writes (write beside the target, then rename),
strict JSON, and the completion record of a run folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: str | Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    Readers never see a half-written file, and an interrupted write leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_target(path) as tmp:
        tmp.write_text(text)


def clean_json(value: object) -> object:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN or Infinity) and numpy
    scalars turned into Python numbers."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def atomic_write_json(path: str | Path, data: object) -> None:
    """Write ``data`` as strict JSON (NaN and infinity as null), atomically."""
    atomic_write_text(path, json.dumps(clean_json(data), indent=2, allow_nan=False) + "\n")


COMPLETE_FILE = "complete.json"
"""Written last into a run folder: the command that made it and the size of every file it wrote."""


class IncompleteRunError(ValueError):
    """A run folder that is not a complete run of the expected command."""


def mark_complete(folder: str | Path, command: str) -> None:
    """Declare the run in ``folder`` complete: list every file in it (relative path -> bytes) in
    :data:`COMPLETE_FILE`, written last and atomically. Readers check it with :func:`check_complete`."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
             if p.is_file() and p.name != COMPLETE_FILE and not p.name.startswith(".")}
    atomic_write_json(folder / COMPLETE_FILE, {"command": command, "files": files})


def check_complete(folder: str | Path, option: str, commands: tuple[str, ...], subfolder: str | None = None) -> dict:
    """The completion record of the run in ``folder``; an :class:`IncompleteRunError` naming ``option``
    when the folder holds no complete run, a run of another command than ``commands``, or files that
    changed or vanished since the run completed (only those under ``subfolder`` when given)."""
    folder = Path(folder)
    what = " or ".join(f"fusionsim {c}" for c in commands)
    record_path = folder / COMPLETE_FILE
    if not folder.is_dir():
        raise IncompleteRunError(f"{option} {folder} does not exist or is not a folder; give a {what} run folder")
    if not record_path.is_file():
        raise IncompleteRunError(f"{option} {folder} is not a complete {what} run ({COMPLETE_FILE} is missing: "
                                 "the run was interrupted, failed or is still running); rerun it")
    try:
        record = json.loads(record_path.read_text())
        command, files = record["command"], dict(record["files"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise IncompleteRunError(f"{option} {folder}: {COMPLETE_FILE} is corrupt; rerun the run") from None
    if command not in commands:
        raise IncompleteRunError(f"{option} {folder} is a fusionsim {command} run; give a {what} run folder")
    for name, size in files.items():
        if subfolder is not None and not name.startswith(f"{subfolder}/"):
            continue
        path = folder / name
        if not path.is_file() or path.stat().st_size != size:
            raise IncompleteRunError(f"{option} {folder}: {name} changed or vanished after the run completed "
                                     f"({size} bytes recorded); rerun it")
    return record


def remove_orphans(folder: str | Path) -> None:
    """Delete the hidden temporary files an interrupted atomic write left under ``folder``."""
    for tmp in Path(folder).rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)

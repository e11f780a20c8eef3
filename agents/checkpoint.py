"""Policy checkpoints: arrays and the config that built the policy, in one ``.npz`` written atomically."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from fusionsim.recommenders.io import atomic_target


def save_arrays(path: str | Path, name: str, config: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` plus ``{"name", "config"}`` (as JSON) to ``path`` atomically."""
    meta = np.array(json.dumps({"name": name, "config": config}))
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, __meta__=meta, **arrays)


def load_arrays(path: str | Path, name: str, keys: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """The config and arrays saved by :func:`save_arrays`; a ValueError naming the file for a missing,
    corrupt or foreign checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["__meta__"]))
            arrays = {k: data[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise ValueError(f"checkpoint {path} is corrupt or not a policy checkpoint") from None
    if meta.get("name") != name:
        raise ValueError(f"checkpoint {path} holds a '{meta.get('name')}' policy, not '{name}'")
    return meta["config"], arrays

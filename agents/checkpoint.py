"""Policy checkpoints: one ``.npz`` written atomically, never a pickle.

Layout: one plain numeric array per statistic (``np.savez`` members, e.g. ``A_inv`` (K, d, d)) and a 0-d
unicode array ``__meta__`` holding JSON::

    {"format": "fusionsim.policy", "version": 1, "name": <policy name>, "config": <constructor arguments>,
     "generators": [<bit_generator.state of each Generator, in the policy's order>]}

It reads with ``np.load(path, allow_pickle=False)``; an object array planted in the file is refused, not
unpickled.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionsim.common.io import atomic_target

FORMAT = "fusionsim.policy"
VERSION = 1
META = "__meta__"

_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, AttributeError,
                zipfile.BadZipFile, UnicodeDecodeError)


@dataclass(frozen=True)
class PolicyCheckpoint:
    """What :func:`read_checkpoint` found: the config, the arrays by name, one Generator state per Generator."""

    config: dict
    arrays: dict[str, np.ndarray]
    generators: list[dict]


def save_arrays(path: str | Path, name: str, config: dict, arrays: dict[str, np.ndarray],
                generators: list[np.random.Generator] | tuple = ()) -> None:
    """Write ``arrays`` plus the JSON meta entry (``name``, ``config``, the generators' states) to ``path``
    atomically."""
    meta = {"format": FORMAT, "version": VERSION, "name": name, "config": config,
            "generators": [g.bit_generator.state for g in generators]}
    if META in arrays:
        raise ValueError(f"an array may not be called {META!r}")
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **{META: np.array(json.dumps(meta, allow_nan=False))}, **arrays)


def read_checkpoint(path: str | Path, name: str) -> PolicyCheckpoint:
    """The contents of a checkpoint of a ``name`` policy; a one-line ValueError naming the file when it is
    missing, not an npz, truncated, holds pickled data, or is another program's or another policy's."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta_array = data[META]
            if meta_array.dtype.kind != "U" or meta_array.shape != ():
                raise ValueError("the meta entry is not one JSON string")
            meta = json.loads(str(meta_array))
            arrays = {k: data[k] for k in data.files if k != META}
    except _READ_ERRORS:
        raise ValueError(f"checkpoint {path} is corrupt or not a policy checkpoint") from None
    if not isinstance(meta, dict) or meta.get("format", FORMAT) != FORMAT or "name" not in meta:
        raise ValueError(f"checkpoint {path} is corrupt or not a policy checkpoint")
    if meta.get("version") != VERSION:  # no version: written before checkpoints held Generator states
        version = "no format version" if meta.get("version") is None else f"format version {meta['version']}"
        raise ValueError(f"checkpoint {path} has {version}; this fusionsim reads version {VERSION}")
    if meta.get("name") != name:
        raise ValueError(f"checkpoint {path} holds a '{meta.get('name')}' policy, not '{name}'")
    config, generators = meta.get("config"), meta.get("generators")
    if not isinstance(config, dict) or not isinstance(generators, list) or \
            not all(isinstance(g, dict) for g in generators):
        raise ValueError(f"checkpoint {path} is corrupt: its meta entry lacks the config or the generator states")
    return PolicyCheckpoint(config, arrays, generators)


def check_state(path: str | Path, expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``got`` when it has exactly the names, shapes and dtypes of ``expected`` (a freshly built policy's
    arrays) and its floats are finite; a ValueError naming the file and the first array that differs."""
    missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
    if missing:
        raise ValueError(f"checkpoint {path} is corrupt: it lacks the arrays {missing}")
    if extra:
        raise ValueError(f"checkpoint {path} is corrupt: it holds arrays {extra} this policy does not have")
    for key, want in expected.items():
        have = got[key]
        if have.shape != want.shape:
            raise ValueError(f"checkpoint {path} is corrupt: '{key}' has shape {have.shape}; the policy its "
                             f"config builds needs {want.shape}")
        if have.dtype != want.dtype:
            raise ValueError(f"checkpoint {path} is corrupt: '{key}' has dtype {have.dtype}; the policy its "
                             f"config builds needs {want.dtype}")
        if have.dtype.kind == "f" and not np.isfinite(have).all():
            raise ValueError(f"checkpoint {path} is corrupt: '{key}' holds non-finite values")
    return got


def restore_generators(path: str | Path, generators: list[np.random.Generator], states: list[dict]) -> None:
    """Set each Generator's ``bit_generator.state`` to the saved one; a ValueError naming the file when the
    count or a state does not fit."""
    if len(states) != len(generators):
        raise ValueError(f"checkpoint {path} is corrupt: it holds {len(states)} generator states; the policy "
                         f"its config builds has {len(generators)} generators")
    for i, (generator, state) in enumerate(zip(generators, states)):
        kind = type(generator.bit_generator).__name__
        try:
            generator.bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError):
            raise ValueError(f"checkpoint {path} is corrupt: generator state {i} is not a {kind} state") from None


def load_arrays(path: str | Path, name: str, keys: tuple[str, ...]) -> tuple[dict, dict[str, np.ndarray]]:
    """The config and the arrays ``keys`` of a checkpoint written by :func:`save_arrays`; a ValueError naming
    the file for a missing, corrupt or foreign checkpoint, or one that lacks a key."""
    checkpoint = read_checkpoint(path, name)
    missing = [k for k in keys if k not in checkpoint.arrays]
    if missing:
        raise ValueError(f"checkpoint {path} is corrupt: it lacks the arrays {missing}")
    return checkpoint.config, {k: checkpoint.arrays[k] for k in keys}

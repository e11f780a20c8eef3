"""Base recommenders, the arms of fusion. Imports nothing from envs, agents or experiments."""

from __future__ import annotations

import json
import pickle  # only for the error that torch.load(weights_only=True) raises
from pathlib import Path

from fusionsim.recommenders.base import (INTERACTION_COLUMNS, InteractionTableError, ItemTable, Recommender,
                                         RequestBatch, check_interactions)
from fusionsim.recommenders.content import ContentBased
from fusionsim.common.io import IncompleteRunError, check_complete
from fusionsim.recommenders.mf import MatrixFactorization
from fusionsim.recommenders.new_arrivals import NewArrivals
from fusionsim.recommenders.popularity import Popularity
from fusionsim.recommenders.sequence import SequenceModel

REGISTRY: dict[str, type[Recommender]] = {cls.name: cls for cls in (Popularity, NewArrivals, MatrixFactorization,
                                                                    ContentBased, SequenceModel)}
"""Arm classes by name."""

ARMS_FILE = "arms.json"
"""In a folder of trained arms: which checkpoints to load, in order, and the world they were trained for."""


class ArmsFolderError(ValueError):
    """A folder that does not hold trained arms, or holds arms of another world."""


def load_arms(folder: str | Path) -> tuple[list[Recommender], dict]:
    """The arms saved by ``fusionsim train-base`` in ``folder``, and the description of the world they
    were trained for (``{"scenario": ..., "seed": ..., "world": {...}}``)."""
    folder = Path(folder)
    index = folder / ARMS_FILE
    if not index.is_file():
        raise ArmsFolderError(f"--base {folder} holds no trained arms ({ARMS_FILE} is missing); "
                              "make one with fusionsim train-base")
    try:
        check_complete(folder, "--base", ("train-base",))
    except IncompleteRunError as exc:
        raise ArmsFolderError(str(exc)) from None
    try:
        payload = json.loads(index.read_text())
        entries = [(str(e["name"]), str(e["path"])) for e in payload["arms"]]
        world = payload["world"]
        if not entries or not isinstance(world, dict):
            raise ValueError("no arms")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise ArmsFolderError(f"--base {folder}: {ARMS_FILE} is corrupt (expected {{\"arms\": [{{\"name\", "
                              f"\"path\"}}, ...], \"world\": {{...}}}}); rerun fusionsim train-base") from None
    arms = []
    for name, path in entries:
        cls = REGISTRY.get(name)
        if cls is None:
            raise ArmsFolderError(f"--base {folder}: unknown arm '{name}' in {ARMS_FILE}; known arms: "
                                  f"{', '.join(REGISTRY)}")
        if Path(path).is_absolute() or ".." in Path(path).parts:
            raise ArmsFolderError(f"--base {folder}: arm path '{path}' in {ARMS_FILE} must stay inside the folder")
        try:
            arms.append(cls.load(folder / path))
        except (OSError, RuntimeError, KeyError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
            problem = ("it holds objects other than weights, which are never unpickled"
                       if isinstance(exc, pickle.UnpicklingError) else first_line)
            raise ArmsFolderError(f"--base {folder}: cannot load {path}: {problem}") from None
    return arms, world


__all__ = ["ARMS_FILE", "ArmsFolderError", "ContentBased", "INTERACTION_COLUMNS", "InteractionTableError",
           "ItemTable", "MatrixFactorization", "NewArrivals", "Popularity", "REGISTRY", "Recommender",
           "RequestBatch", "SequenceModel", "check_interactions", "load_arms"]

"""Base recommenders, the arms of fusion. Imports nothing from envs, agents or experiments."""

from __future__ import annotations

import json
from pathlib import Path

from fusionsim.recommenders.base import (INTERACTION_COLUMNS, InteractionTableError, ItemTable, Recommender, RequestBatch,
                               check_interactions)
from fusionsim.recommenders.content import ContentBased
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
    payload = json.loads(index.read_text())
    arms = []
    for entry in payload["arms"]:
        cls = REGISTRY.get(entry["name"])
        if cls is None:
            raise ArmsFolderError(f"--base {folder}: unknown arm '{entry['name']}' in {ARMS_FILE}")
        try:
            arms.append(cls.load(folder / entry["path"]))
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise ArmsFolderError(f"--base {folder}: cannot load {entry['path']}: {exc}") from None
    return arms, payload["world"]


__all__ = ["ARMS_FILE", "ArmsFolderError", "ContentBased", "INTERACTION_COLUMNS", "InteractionTableError",
           "ItemTable", "MatrixFactorization", "NewArrivals", "Popularity", "REGISTRY", "Recommender",
           "RequestBatch", "SequenceModel", "check_interactions", "load_arms"]

"""The recommender protocol: what every arm implements, and the tables it reads.

An arm is fitted on an *interaction table* and the public *item table*, then scores batches of
requests x candidates. It never sees the simulator's hidden state (item quality, shopper taste).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from fusionsim.common.io import atomic_target

INTERACTION_COLUMNS: dict[str, str] = {
    "user_id": "integer shopper id >= 0",
    "item_id": "integer item id >= 0",
    "t": "time in simulated days (float)",
    "purchase": "bool: the click ended in a purchase",
}
"""Columns of an interaction table: one row per click (a purchase is a click with ``purchase`` true)."""


class InteractionTableError(ValueError):
    """A malformed interaction table; the message names the column."""


def check_interactions(table: pd.DataFrame) -> pd.DataFrame:
    """Validate an interaction table and return it with canonical dtypes.

    Raises :class:`InteractionTableError` naming the first missing or malformed column.
    """
    if not isinstance(table, pd.DataFrame):
        raise InteractionTableError(f"interactions must be a pandas DataFrame; got {type(table).__name__}")
    if len(table) == 0:
        raise InteractionTableError("interactions table is empty: nothing to fit on")
    for column, meaning in INTERACTION_COLUMNS.items():
        if column not in table.columns:
            raise InteractionTableError(f"interactions table has no column '{column}' ({meaning}); "
                                        f"columns are {list(table.columns)}")
    out = {}
    for column in ("user_id", "item_id"):
        values = table[column].to_numpy()
        if not np.issubdtype(values.dtype, np.integer):
            raise InteractionTableError(f"interactions column '{column}' has dtype {values.dtype}: must be integer")
        bad = np.flatnonzero(values < 0)
        if len(bad):
            raise InteractionTableError(f"interactions column '{column}' has negative id {values[bad[0]]} "
                                        f"at row {bad[0]}")
        out[column] = values.astype(np.int64)
    t = table["t"].to_numpy()
    if not np.issubdtype(t.dtype, np.number) or not np.all(np.isfinite(t)):
        raise InteractionTableError("interactions column 't' must hold finite numbers (days)")
    out["t"] = t.astype(np.float64)
    purchase = table["purchase"].to_numpy()
    if purchase.dtype != bool:
        raise InteractionTableError(f"interactions column 'purchase' has dtype {purchase.dtype}: must be bool")
    out["purchase"] = purchase
    return pd.DataFrame(out)


@dataclass(frozen=True)
class ItemTable:
    """Public item attributes (n = n_items): ``item_id`` (n,) int32; ``top``, ``leaf``, ``brand`` (n,) int32;
    ``price`` (n,) float32; ``tokens`` (n, 4) int32 word ids in [0, vocab_size); ``launch_day`` (n,) float32."""

    item_id: np.ndarray
    top: np.ndarray
    leaf: np.ndarray
    brand: np.ndarray
    price: np.ndarray
    tokens: np.ndarray
    launch_day: np.ndarray
    vocab_size: int

    @property
    def n_items(self) -> int:
        return len(self.item_id)


RECENT_ITEMS = 8
"""Recent items rebuilt per request (most recent first, -1 = none)."""

QUERY_WORDS = 3
"""Query layout: [top-category word, leaf word, attribute word], -1 where absent."""


@dataclass
class RequestBatch:
    """What the shop knows about B requests when it ranks (all arrays have first axis B).

    ``user_id`` int32; ``segment`` int8 (index into ``envs.scenario.SEGMENTS``); ``surface`` int8
    (0 = home feed, 1 = search); ``device`` int8; ``query`` (B, Q) int32 word ids, -1 = padding (all -1
    on the feed); ``recent_items`` (B, R) int32, the shopper's recent clicks and purchases, most recent
    first, -1 = none; ``t`` float32 simulated day; ``session_step`` int32 (0 for the first request).
    """

    user_id: np.ndarray
    segment: np.ndarray
    surface: np.ndarray
    device: np.ndarray
    query: np.ndarray
    recent_items: np.ndarray
    t: np.ndarray
    session_step: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)

    @classmethod
    def feed(cls, user_id: np.ndarray, recent_items: np.ndarray, t: float = 0.0) -> "RequestBatch":
        """First-step home-feed requests (segment 0, device 0, no query) at day ``t`` for shoppers
        ``user_id`` (B,) with ``recent_items`` (B, R), for scoring outside the simulator."""
        b = len(user_id)
        return cls(user_id=np.asarray(user_id, np.int32), segment=np.zeros(b, np.int8), surface=np.zeros(b, np.int8),
                   device=np.zeros(b, np.int8), query=np.full((b, QUERY_WORDS), -1, np.int32),
                   recent_items=np.asarray(recent_items, np.int32), t=np.full(b, t, np.float32),
                   session_step=np.zeros(b, np.int32))


class NotFittedError(RuntimeError):
    """An arm asked to score before it was fitted or loaded."""


class Recommender(abc.ABC):
    """A base recommender (an arm). Subclasses set ``name`` and implement the four methods."""

    name: ClassVar[str]

    @abc.abstractmethod
    def fit(self, interactions: pd.DataFrame, items: ItemTable) -> "Recommender":
        """Fit on an interaction table (see :data:`INTERACTION_COLUMNS`) and the public item table."""

    def score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        """Scores of ``candidates`` (B, C) int32 item ids for ``requests`` (len B): (B, C) float32,
        higher = better. Item ids the model has never seen get a defined fallback score, never an error.
        A model that was neither fitted nor loaded raises :class:`NotFittedError`."""
        if not self.fitted:
            raise NotFittedError(f"arm '{self.name}' is not fitted: call fit() or load() before score()")
        return self._score(requests, candidates)

    @abc.abstractmethod
    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        """:meth:`score` of a fitted model."""

    def item_scores(self) -> ItemScores | None:
        """The table :meth:`score` looks candidates up in, for a fitted arm whose score depends on the item
        alone (the same for every request); None otherwise (the default). :class:`ArmScorer` scores such
        arms together, in one lookup. A subclass that changes :meth:`_score` must change this too."""
        return None

    @property
    @abc.abstractmethod
    def fitted(self) -> bool:
        """True once :meth:`fit` or :meth:`load_state` has run."""

    @abc.abstractmethod
    def config(self) -> dict:
        """The constructor arguments that rebuild this model (stored in its checkpoint)."""

    @abc.abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The fitted arrays."""

    @abc.abstractmethod
    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore the fitted arrays of :meth:`state`."""

    def reset_state(self) -> None:
        """Forget serving state kept between requests (none by default; the sequence model caches states)."""

    def serving_state(self) -> dict[str, np.ndarray]:
        """The serving state kept between requests, as arrays (empty by default), for simulator checkpoints."""
        return {}

    def load_serving_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`serving_state`; an arm without serving state accepts only an empty dict."""
        if state:
            raise ValueError(f"arm '{self.name}' keeps no serving state; got arrays {sorted(state)}")

    def save(self, path: str | Path) -> None:
        """Write weights + config atomically; readable with ``torch.load(path, weights_only=True)``."""
        payload = {"name": self.name, "config": self.config(),
                   "state": {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.state().items()}}
        atomic_torch_save(payload, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> "Recommender":
        """The model saved by :meth:`save`. ``device`` ("auto", "cpu", "cuda") overrides the saved training
        device; with None the saved one is kept, except that a model saved on CUDA loads on a machine
        without CUDA on the CPU."""
        payload = torch.load(Path(path), weights_only=True, map_location="cpu")
        if not isinstance(payload, dict) or payload.get("name") != cls.name:
            got = payload.get("name") if isinstance(payload, dict) else type(payload).__name__
            raise ValueError(f"checkpoint {path} holds a '{got}' model, not '{cls.name}'")
        config = dict(payload["config"])
        if isinstance(config.get("train"), dict):
            saved = config["train"].get("device", "auto")
            if device is None and saved == "cuda" and not torch.cuda.is_available():
                device = "auto"
            if device is not None:
                config["train"] = {**config["train"], "device": device}
        elif device not in (None, "auto", "cpu"):
            raise ValueError(f"arm '{cls.name}' runs in numpy on the CPU; device = {device!r} is not allowed")
        model = cls(**config)
        model.load_state({k: v.numpy() for k, v in payload["state"].items()})
        return model


def atomic_torch_save(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename over ``path``."""
    with atomic_target(path) as tmp:
        torch.save(obj, tmp)


def outside(ids: np.ndarray, n: int) -> np.ndarray | None:
    """Mask of ids not in [0, n) (items a model has never seen), or None when every id is inside. One pass
    over the ids finds negative and too-large ids alike: negatives are huge as unsigned integers."""
    ids = np.asarray(ids)
    unsigned = ids.view(np.uint32) if ids.dtype == np.int32 else ids.astype(np.int64, copy=False).view(np.uint64)
    if ids.size == 0 or unsigned.max() < n:
        return None
    return (ids < 0) | (ids >= n)


class ItemScores:
    """Per-item scores (n,) for the items a model has seen, and one ``fallback`` score for every other id
    (unseen items, negative ids), in one float32 table with the fallback in slot n: :meth:`lookup` clips
    every id outside [0, n) to slot n (a negative id is huge as an unsigned integer)."""

    def __init__(self, values: np.ndarray, fallback: float) -> None:
        self.table = np.append(np.asarray(values, dtype=np.float32), np.float32(fallback))
        self._fallback_slot = np.array(len(values), dtype=np.uint64)

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Scores (shaped as ``ids``) float32 of the integer item ``ids``; ``fallback`` where an id is outside."""
        ids = np.asarray(ids)
        if ids.dtype == np.int32:  # the candidates' dtype: one call (take casts uint32 indices to int64 safely)
            return self.table.take(ids.view(np.uint32), mode="clip")
        unsigned = ids.astype(np.int64, copy=False, casting="same_kind").view(np.uint64)  # integers only
        return self.table.take(np.minimum(unsigned, self._fallback_slot))


class ArmScorer:
    """Scores of several arms, ``[arm.score(requests, candidates) for arm in arms]``, with the arms whose
    scores depend on the item alone (:meth:`Recommender.item_scores`) looked up together: one gather
    from their tables stacked into one (S, n + 1) float32 array, every arm's fallback in the last column.
    The stack is rebuilt when an arm's table changes (a refit or a load makes a new one); ``arms`` is
    read at every call."""

    def __init__(self, arms: list[Recommender]) -> None:
        self.arms = arms
        self._tables: list[ItemScores | None] | None = None
        self._stack = np.zeros((0, 1), dtype=np.float32)

    def score(self, requests: RequestBatch, candidates: np.ndarray) -> list[np.ndarray]:
        """Each arm's (B, C) float32 scores of ``candidates`` (B, C) int32 item ids for ``requests``."""
        tables = [arm.item_scores() for arm in self.arms]
        if tables != self._tables:  # ItemScores compare by identity
            self._tables = tables
            self._stack = self._stacked([t for t in tables if t is not None])
        candidates = np.asarray(candidates)
        if len(self._stack) == 0 or candidates.dtype != np.int32:
            return [arm.score(requests, candidates) for arm in self.arms]
        # ids outside [0, n) (negatives are huge as unsigned) clip to the fallback column
        stacked = self._stack.take(candidates.view(np.uint32), axis=1, mode="clip")
        rows = iter(stacked)
        return [next(rows) if table is not None else arm.score(requests, candidates)
                for arm, table in zip(self.arms, tables)]

    @staticmethod
    def _stacked(tables: list[ItemScores]) -> np.ndarray:
        """(S, n + 1) float32: each table's scores, padded with its fallback to the longest, then the fallback."""
        n = max((len(t.table) - 1 for t in tables), default=0)
        stack = np.empty((len(tables), n + 1), dtype=np.float32)
        for row, table in zip(stack, tables):
            row[:] = table.table[-1]
            row[:len(table.table) - 1] = table.table[:-1]
        return stack

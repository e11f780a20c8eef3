"""Popularity with recency decay: the shop's best sellers, following trends."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusionsim.recommenders.base import ItemScores, ItemTable, Recommender, RequestBatch, check_interactions


class Popularity(Recommender):
    """Score = log(1 + decayed interaction count) of the item, the same for every shopper.

    Each click counts 1 and each purchase ``purchase_weight``, multiplied by
    ``0.5 ** ((t_last - t) / half_life_days)`` where ``t_last`` is the newest interaction, so the ranking
    follows what is selling now. Items never interacted with (new launches, ids beyond the fitted catalog)
    score 0.

    Args:
        half_life_days: age at which an interaction counts half (> 0).
        purchase_weight: weight of a purchase relative to a click (>= 0).
    """

    name = "popularity"

    def __init__(self, half_life_days: float = 7.0, purchase_weight: float = 3.0) -> None:
        if not half_life_days > 0:
            raise ValueError(f"half_life_days must be > 0; got {half_life_days}")
        if not purchase_weight >= 0:
            raise ValueError(f"purchase_weight must be >= 0; got {purchase_weight}")
        self.half_life_days = float(half_life_days)
        self.purchase_weight = float(purchase_weight)
        self.load_state({"item_score": np.zeros(0, dtype=np.float32)})

    def fit(self, interactions: pd.DataFrame, items: ItemTable) -> "Popularity":
        table = check_interactions(interactions)
        t = table["t"].to_numpy()
        weight = np.where(table["purchase"].to_numpy(), self.purchase_weight, 1.0)
        weight = weight * np.exp2(-(t.max() - t) / self.half_life_days)
        item_id = table["item_id"].to_numpy()
        counts = np.bincount(item_id, weights=weight, minlength=items.n_items)
        self.load_state({"item_score": np.log1p(counts)})
        return self

    @property
    def fitted(self) -> bool:
        return len(self.item_score) > 0

    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        return self._scores.lookup(candidates)

    def item_scores(self) -> ItemScores | None:
        return self._scores if self.fitted else None

    def config(self) -> dict:
        return {"half_life_days": self.half_life_days, "purchase_weight": self.purchase_weight}

    def state(self) -> dict[str, np.ndarray]:
        return {"item_score": self.item_score}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_score = state["item_score"].astype(np.float32)
        self._scores = ItemScores(self.item_score, fallback=0.0)

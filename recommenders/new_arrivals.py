"""New arrivals: the newest items first, the shop's "just in" shelf."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusionsim.recommenders.base import ItemScores, ItemTable, Recommender, RequestBatch


class NewArrivals(Recommender):
    """Score = the item's launch day (newer = higher), from the public item table; no interactions needed.

    Ids beyond the fitted catalog are treated as launched on the newest known day (they are newer than
    anything the model has seen).
    """

    name = "new_arrivals"

    def __init__(self) -> None:
        self.load_state({"launch_day": np.zeros(0, dtype=np.float32)})

    def fit(self, interactions: pd.DataFrame | None, items: ItemTable) -> "NewArrivals":
        self.load_state({"launch_day": items.launch_day})
        return self

    @property
    def fitted(self) -> bool:
        return len(self.launch_day) > 0

    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        return self._scores.lookup(candidates)

    def item_scores(self) -> ItemScores | None:
        return self._scores if self.fitted else None

    def config(self) -> dict:
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {"launch_day": self.launch_day}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.launch_day = state["launch_day"].astype(np.float32)
        self.newest = float(self.launch_day.max()) if len(self.launch_day) else 0.0
        self._scores = ItemScores(self.launch_day, fallback=self.newest)

"""Offline ranking quality: Recall@k and NDCG@k of an arm over the full catalog on sale, per request.

For each request the arm scores every item on sale at the request's time; the top k are compared with
the items the shopper clicked (binary relevance). NDCG@k = DCG / IDCG with DCG = sum over the top k of
rel / log2(rank + 1) and IDCG the DCG of a perfect ranking of min(|targets|, k) clicked items;
Recall@k = clicked items in the top k / clicked items.
"""

from __future__ import annotations

import numpy as np
import torch

from fusionsim.recommenders.base import ItemTable, Recommender
from fusionsim.recommenders.data import EvalRequests


def ranking_metrics(model: Recommender, data: EvalRequests, items: ItemTable, k: int = 10,
                    chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Per-request (recall, ndcg) arrays (B,) float64 of ``model`` ranking the catalog for ``data``."""
    n_items = items.n_items
    all_items = np.arange(n_items, dtype=np.int32)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discounts)
    recall = np.zeros(len(data))
    ndcg = np.zeros(len(data))
    launch = torch.from_numpy(items.launch_day.astype(np.float32))
    for start in range(0, len(data), chunk):
        rows = np.arange(start, min(start + chunk, len(data)))
        part = data.subset(rows)
        candidates = np.broadcast_to(all_items, (len(rows), n_items))
        scores = torch.from_numpy(np.ascontiguousarray(model.score(part.requests, candidates), dtype=np.float32))
        not_on_sale = launch[None, :] > torch.from_numpy(part.requests.t)[:, None]
        scores = scores.masked_fill(not_on_sale, -torch.inf)
        top = torch.topk(scores, k, dim=1).indices.numpy()
        targets = part.targets
        n_targets = (targets >= 0).sum(axis=1)
        hit = (top[:, :, None] == targets[:, None, :]).any(axis=2)
        recall[rows] = hit.sum(axis=1) / np.maximum(n_targets, 1)
        ndcg[rows] = (hit * discounts).sum(axis=1) / ideal[np.minimum(n_targets, k) - 1]
    return recall, ndcg


def grouped(values: np.ndarray, codes: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Mean of ``values`` per group code (groups with no rows are left out)."""
    out = {}
    for i, name in enumerate(names):
        mask = codes == i
        if mask.any():
            out[name] = float(values[mask].mean())
    return out


def ndcg_validator(model: Recommender, validation: EvalRequests | None, items: ItemTable, k: int = 10):
    """The early-stopping score of a trained arm: mean NDCG@k on ``validation`` after forgetting serving
    state; None (train without early stopping) when there is nothing to validate on."""
    if validation is None or len(validation) == 0:
        return None

    def validate() -> float:
        model.reset_state()
        return float(ranking_metrics(model, validation, items, k)[1].mean())
    return validate

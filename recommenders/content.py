"""Content-based recommendation from item words: TF-IDF profiles, query relevance and price level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusionsim.recommenders.base import ItemTable, Recommender, RequestBatch, check_interactions, outside

class ContentBased(Recommender):
    """Scores items by their words and price, so it works for items nobody has interacted with yet.

    Each item is an L2-normalised TF-IDF vector over its 4 words (top category, leaf, brand, attribute;
    idf = log(n_items / (1 + document frequency)) + 1). For a request:

    * profile similarity: cosine between the item and the recency-weighted (``recency_decay`` ** rank)
      sum of the vectors of the shopper's recent items;
    * query similarity (search): cosine between the item and the query's TF-IDF vector, times
      ``query_weight``;
    * price fit: ``- price_weight * |log price - the shopper's usual log price|``, the usual price being
      the mean log price of the recent items, else of the shopper's fitted interactions, else of all.

    Args:
        query_weight, price_weight, recency_decay: the weights above (>= 0; decay in (0, 1]).
    """

    name = "content"

    def __init__(self, query_weight: float = 2.0, price_weight: float = 0.3, recency_decay: float = 0.8) -> None:
        if query_weight < 0 or price_weight < 0 or not 0 < recency_decay <= 1:
            raise ValueError("query_weight and price_weight must be >= 0 and recency_decay in (0, 1]; got "
                             f"{query_weight}, {price_weight}, {recency_decay}")
        self.query_weight, self.price_weight, self.recency_decay = query_weight, price_weight, recency_decay
        self.tokens = np.zeros((0, 4), dtype=np.int32)
        self.token_weight = np.zeros((0, 4), dtype=np.float32)
        self.inv_norm = np.zeros(0, dtype=np.float32)
        self.idf = np.zeros(0, dtype=np.float32)
        self.log_price = np.zeros(0, dtype=np.float32)
        self.user_log_price = np.zeros(0, dtype=np.float32)
        self.mean_log_price = 0.0

    def fit(self, interactions: pd.DataFrame | None, items: ItemTable) -> "ContentBased":
        df = np.bincount(items.tokens.ravel(), minlength=items.vocab_size)
        idf = (np.log(items.n_items / (1.0 + df)) + 1.0).astype(np.float32)
        log_price = np.log(items.price).astype(np.float32)
        user_log_price = np.zeros(0, dtype=np.float32)
        if interactions is not None and len(interactions):
            table = check_interactions(interactions)
            users, item_ids = table["user_id"].to_numpy(), table["item_id"].to_numpy()
            inside = item_ids < items.n_items
            users, item_ids = users[inside], item_ids[inside]
            n_users = int(users.max()) + 1 if len(users) else 0
            counts = np.bincount(users, minlength=n_users)
            sums = np.bincount(users, weights=log_price[item_ids], minlength=n_users)
            user_log_price = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)
        self.load_state({"tokens": items.tokens, "idf": idf, "log_price": log_price,
                         "user_log_price": user_log_price})
        return self

    @property
    def fitted(self) -> bool:
        return len(self.tokens) > 0

    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        n_items, vocab = len(self.tokens), len(self.idf)
        b = len(requests)
        ids = np.asarray(candidates)
        unknown = outside(ids, n_items)
        if unknown is not None:
            ids = np.where(unknown, 0, ids)
        row_offset = (np.arange(b, dtype=np.int32) * np.int32(vocab))[:, None]

        # One vector per request over the vocabulary: the normalised profile of the recent items plus
        # query_weight times the normalised query (zero on the feed).
        recent = requests.recent_items
        valid = (recent >= 0) & (recent < n_items)
        rec = np.where(valid, recent, 0)
        decay = (self.recency_decay ** np.arange(recent.shape[1], dtype=np.float32)) * valid
        profile = np.bincount((self.tokens[rec] + row_offset[:, :, None]).ravel(),
                              (self.token_weight[rec] * decay[:, :, None]).ravel(),
                              minlength=b * vocab).astype(np.float32).reshape(b, vocab)
        profile /= np.maximum(np.sqrt(np.einsum("bv,bv->b", profile, profile)), 1e-12)[:, None]
        query = requests.query
        if (query >= 0).any():
            # the query's distinct words, each with weight idf, normalised, added in place
            use = query >= 0
            for j in range(1, query.shape[1]):
                use[:, j] &= (query[:, :j] != query[:, j:j + 1]).all(axis=1)
            weight = np.where(use, self.idf[np.where(use, query, 0)], np.float32(0.0))
            weight *= self.query_weight / np.maximum(np.sqrt(np.einsum("bq,bq->b", weight, weight)), 1e-12)[:, None]
            rows, cols = np.nonzero(use)
            profile.reshape(-1)[rows * vocab + query[rows, cols]] += weight[rows, cols]

        # An item's weight for word t is idf[t] / norm(item), so its score is
        # (sum over its words of profile * idf) / norm(item): one gather per word, then one scale.
        profile *= self.idf
        words = np.take(self.tokens, ids, axis=0)  # (B, C, 4)
        words += row_offset[:, :, None]
        terms = np.take(profile.reshape(-1), words)
        scores = terms[:, :, 0] + terms[:, :, 1]
        for t in range(2, terms.shape[2]):  # explicit sums: numpy reduces a short last axis slowly
            scores += terms[:, :, t]
        scores *= np.take(self.inv_norm, ids)
        usual = self._usual_log_price(requests.user_id, rec, valid)
        scores -= self.price_weight * np.abs(np.take(self.log_price, ids) - usual[:, None])
        if unknown is not None:
            scores[unknown] = scores.min(initial=0.0) - 1.0
        return scores

    def _usual_log_price(self, user_id: np.ndarray, recent: np.ndarray, valid: np.ndarray) -> np.ndarray:
        n_valid = valid.sum(axis=1)
        from_recent = (self.log_price[recent] * valid).sum(axis=1) / np.maximum(n_valid, 1)
        fitted = np.full(len(user_id), self.mean_log_price, dtype=np.float32)
        seen = user_id < len(self.user_log_price)
        fitted[seen] = self.user_log_price[user_id[seen]]
        fitted = np.where(np.isnan(fitted), self.mean_log_price, fitted)
        return np.where(n_valid > 0, from_recent, fitted).astype(np.float32)

    def config(self) -> dict:
        return {"query_weight": self.query_weight, "price_weight": self.price_weight,
                "recency_decay": self.recency_decay}

    def state(self) -> dict[str, np.ndarray]:
        return {"tokens": self.tokens, "idf": self.idf, "log_price": self.log_price,
                "user_log_price": self.user_log_price}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        self.tokens = state["tokens"].astype(np.int32)
        self.idf = state["idf"].astype(np.float32)
        self.log_price = state["log_price"].astype(np.float32)
        self.user_log_price = state["user_log_price"].astype(np.float32)
        weight = self.idf[self.tokens]
        norm = np.linalg.norm(weight, axis=1, keepdims=True)
        self.token_weight = (weight / norm).astype(np.float32)
        self.inv_norm = (1.0 / norm[:, 0]).astype(np.float32)
        self.mean_log_price = float(self.log_price.mean()) if len(self.log_price) else 0.0

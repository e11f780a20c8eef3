"""A GRU next-item model over the shopper's recent clicks (GRU4Rec, Hidasi et al. 2016), in PyTorch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusionsim.recommenders.base import ItemTable, Recommender, RequestBatch, check_interactions
from fusionsim.recommenders.data import EvalRequests
from fusionsim.recommenders.evaluation import ndcg_validator
from fusionsim.recommenders.training import TrainConfig, TrainReport, dot_scores, pick_device, train


class GRUModule(nn.Module):
    """Item embeddings (row n_items = padding), a one-layer GRU, and an item bias; the score of item i
    after a sequence is ``<h, e_i> + b_i`` (output tied to the input embeddings)."""

    def __init__(self, n_items: int, dim: int) -> None:
        super().__init__()
        self.n_items = n_items
        self.item = nn.Embedding(n_items + 1, dim, padding_idx=n_items)
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.bias = nn.Embedding(n_items + 1, 1)
        nn.init.normal_(self.item.weight, std=0.05)
        with torch.no_grad():
            self.item.weight[n_items].zero_()
        nn.init.zeros_(self.bias.weight)

    def step(self, items: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step for B sequences: items (B,) ids, h (B, d) -> (B, d); the same numbers as ``self.gru``
        over one item, without the sequence wrapper's per-call overhead."""
        gru = self.gru
        return torch.gru_cell(self.item(items), h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)


class SequenceModel(Recommender):
    """Next-item GRU trained with sampled softmax on the chronological clicks of each shopper.

    Training: each shopper's items are cut into windows of ``window`` items; at every position the GRU
    state predicts the next item against ``n_negatives`` items drawn uniformly per batch (shared), with
    cross-entropy. Serving: the state after the request's recent items (oldest first) scores the
    candidates. With ``incremental`` (the default) the state of every shopper is cached with the recent
    items it summarises; a later request whose recent items are the cached ones plus new clicks only
    runs the GRU over the new clicks (batched across requests), so the state keeps the whole session.

    Cold start: a shopper with no recent items gets the item bias alone; item ids beyond the fitted
    catalog get the lowest bias.

    Args:
        dim: embedding and state size. window: training window length (>= 2). n_negatives: sampled
        negatives per batch. incremental: cache states between requests. train: :class:`TrainConfig`.
    """

    name = "sequence"

    def __init__(self, dim: int = 64, window: int = 9, n_negatives: int = 256, incremental: bool = True,
                 train: TrainConfig | dict | None = None) -> None:
        train = train if isinstance(train, TrainConfig) else TrainConfig(**{"lr": 1e-2, **(train or {})})
        if dim < 1 or window < 2 or n_negatives < 1:
            raise ValueError(f"dim >= 1, window >= 2 and n_negatives >= 1 are required; got {dim}, {window}, "
                             f"{n_negatives}")
        self.dim, self.window, self.n_negatives, self.incremental = dim, window, n_negatives, incremental
        self.train_config = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
        self.device = pick_device(self.train_config.device)
        self.module: GRUModule | None = None
        self.report: TrainReport | None = None
        self.reset_state()

    # ----------------------------------------------------------------------------------------- training
    def windows(self, interactions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each shopper's items in time order cut into windows: (n_windows, window) int64 item ids padded
        with -1 on the right, and their lengths (n_windows,); windows shorter than 2 are dropped."""
        table = check_interactions(interactions)
        users, times, items = (table[c].to_numpy() for c in ("user_id", "t", "item_id"))
        order = np.lexsort((times, users))
        users, items = users[order], items[order]
        first = np.r_[0, np.flatnonzero(np.diff(users)) + 1]
        rank = np.arange(len(users)) - np.repeat(first, np.diff(np.r_[first, len(users)]))
        window_key = users * (rank.max() // self.window + 1) + rank // self.window
        starts = np.r_[0, np.flatnonzero(np.diff(window_key)) + 1]
        lengths = np.diff(np.r_[starts, len(users)])
        out = np.full((len(starts), self.window), -1, dtype=np.int64)
        out[np.repeat(np.arange(len(starts)), lengths), rank % self.window] = items
        keep = lengths >= 2
        return out[keep], lengths[keep]

    def fit(self, interactions: pd.DataFrame, items: ItemTable, validation: EvalRequests | None = None,
            ) -> "SequenceModel":
        windows, lengths = self.windows(interactions)
        n_items = max(items.n_items, int(windows.max()) + 1)
        torch.manual_seed(self.train_config.seed)
        self.module = GRUModule(n_items, self.dim).to(self.device)
        self.reset_state()
        padded = torch.from_numpy(np.where(windows >= 0, windows, n_items)).to(self.device)
        lengths_t = torch.from_numpy(lengths)
        batch = max(1, self.train_config.batch_size // self.window)

        def batches(rng: np.random.Generator):
            generator = torch.Generator(self.device).manual_seed(int(rng.integers(2**62)))
            order = torch.randperm(len(padded), device=self.device, generator=generator)
            for start in range(0, len(order), batch):
                rows = order[start:start + batch]
                negatives = torch.randint(0, n_items, (self.n_negatives,), device=self.device, generator=generator)
                yield padded[rows], lengths_t[rows.cpu()], negatives

        def loss(seq: torch.Tensor, length: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
            m = self.module
            inputs, targets = seq[:, :-1], seq[:, 1:]
            packed = nn.utils.rnn.pack_padded_sequence(m.item(inputs), (length - 1).clamp(min=1),
                                                       batch_first=True, enforce_sorted=False)
            out, _ = m.gru(packed)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=inputs.shape[1])
            positive = (out * m.item(targets)).sum(-1, keepdim=True) + m.bias(targets)
            negative = out @ m.item(negatives).T + m.bias(negatives)[:, 0]
            negative = negative.masked_fill(negatives[None, None, :] == targets[:, :, None], -1e4)
            logits = torch.cat([positive, negative], dim=-1).float()
            mask = targets != m.n_items
            ce = nn.functional.cross_entropy(logits[mask], torch.zeros(int(mask.sum()), dtype=torch.long,
                                                                        device=logits.device))
            return ce

        self.report = train(self.module, batches, loss, ndcg_validator(self, validation, items), self.train_config,
                            name=self.name)
        self.reset_state()
        return self

    # ----------------------------------------------------------------------------------------- serving
    def reset_state(self) -> None:
        """Forget the cached shopper states."""
        self._cache_h = torch.zeros((0, self.dim), device=self.device)
        self._cache_recent = np.zeros((0, 0), dtype=np.int32)

    def serving_state(self) -> dict[str, np.ndarray]:
        """The cached states: ``h`` (n_cached, dim) float32 and ``recent`` (n_cached, window) int32."""
        return {"h": self._cache_h.detach().cpu().numpy(), "recent": self._cache_recent.copy()}

    def load_serving_state(self, state: dict[str, np.ndarray]) -> None:
        h, recent = np.asarray(state["h"], dtype=np.float32), np.asarray(state["recent"], dtype=np.int32)
        if h.ndim != 2 or recent.ndim != 2 or len(h) != len(recent) or (len(h) and h.shape[1] != self.dim):
            raise ValueError(f"sequence serving state does not fit dim {self.dim}: h {h.shape}, recent {recent.shape}")
        self._cache_h = torch.from_numpy(h.copy()).to(self.device)
        self._cache_recent = recent.copy()

    def _fitted(self) -> GRUModule:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit() or load()")
        return self.module

    def states(self, requests: RequestBatch) -> torch.Tensor:
        """GRU states (B, d) after each request's recent items (oldest first)."""
        m = self._fitted()
        recent = requests.recent_items.astype(np.int64)
        recent = np.where((recent >= 0) & (recent < m.n_items), recent, -1)
        b, width = recent.shape
        n_valid = (recent >= 0).sum(axis=1)
        h = torch.zeros((b, self.dim), device=self.device)
        new = n_valid.copy()  # items to run the GRU over, the oldest new one first
        if self.incremental:
            h, new = self._from_cache(requests.user_id, recent, n_valid, h, new)
        for j in range(int(new.max(initial=0))):
            rows = np.flatnonzero(new > j)
            items = recent[rows, new[rows] - 1 - j]
            index = torch.from_numpy(rows).to(self.device)
            h[index] = m.step(torch.from_numpy(items).to(self.device), h[index])
        if self.incremental:
            self._store(requests.user_id, recent, h)
        return h

    def _from_cache(self, user_id: np.ndarray, recent: np.ndarray, n_valid: np.ndarray, h: torch.Tensor,
                    new: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Reuse cached states whose recent items are a suffix of the request's; ``new`` becomes the
        number of clicks since."""
        b, width = recent.shape
        if len(self._cache_recent) == 0 or self._cache_recent.shape[1] != width:
            return h, new
        seen = user_id < len(self._cache_recent)
        cached = np.full((b, width), -1, dtype=np.int64)
        cached[seen] = self._cache_recent[user_id[seen]]
        has_cache = seen & (cached[:, 0] >= 0)
        found = np.full(b, -1)
        for shift in range(width - 1, -1, -1):  # the smallest shift that lines the cached items up wins
            match = (recent[:, shift:] == cached[:, :width - shift]).all(axis=1) & (shift <= n_valid)
            found = np.where(match & has_cache, shift, found)
        reuse = np.flatnonzero(found >= 0)
        if len(reuse):
            h[torch.from_numpy(reuse).to(self.device)] = self._cache_h[
                torch.from_numpy(user_id[reuse].astype(np.int64)).to(self.device)]
            new = np.where(found >= 0, found, new)
        return h, new

    def _store(self, user_id: np.ndarray, recent: np.ndarray, h: torch.Tensor) -> None:
        needed = int(user_id.max(initial=-1)) + 1
        if needed > len(self._cache_recent) or self._cache_recent.shape[1] != recent.shape[1]:
            size = max(needed, 2 * len(self._cache_recent))
            grown = np.full((size, recent.shape[1]), -1, dtype=np.int32)
            grown_h = torch.zeros((size, self.dim), device=self.device)
            if self._cache_recent.shape[1:] == (recent.shape[1],):
                grown[:len(self._cache_recent)] = self._cache_recent
                grown_h[:len(self._cache_h)] = self._cache_h
            self._cache_recent, self._cache_h = grown, grown_h
        # A shopper may appear in several rows (concurrent sessions, several test requests): store the
        # last row's items and state together (a tensor write to repeated indices keeps an arbitrary one).
        last = len(user_id) - 1 - np.unique(user_id[::-1], return_index=True)[1]
        self._cache_recent[user_id[last]] = recent[last]
        self._cache_h[torch.from_numpy(user_id[last].astype(np.int64)).to(self.device)] = h[
            torch.from_numpy(last).to(self.device)]

    @property
    def fitted(self) -> bool:
        return self.module is not None

    @torch.no_grad()
    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        m = self._fitted()
        h = self.states(requests)
        bias = m.bias.weight[:m.n_items, 0]
        return dot_scores(h, m.item.weight[:m.n_items], candidates, bias, fallback=float(bias.min()))

    def config(self) -> dict:
        return {"dim": self.dim, "window": self.window, "n_negatives": self.n_negatives,
                "incremental": self.incremental, "train": self.train_config.to_dict()}

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self._fitted().state_dict().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        n_items = state["item.weight"].shape[0] - 1
        self.module = GRUModule(n_items, state["item.weight"].shape[1]).to(self.device)
        self.module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        self.module.eval()
        self.reset_state()

"""Matrix factorisation trained with BPR (Rendle et al. 2009) on implicit feedback, in PyTorch."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusionsim.recommenders.base import ItemTable, Recommender, RequestBatch, check_interactions
from fusionsim.recommenders.data import EvalRequests
from fusionsim.recommenders.evaluation import ndcg_validator
from fusionsim.recommenders.training import TrainConfig, TrainReport, dot_scores, pick_device, train


class BPRModule(nn.Module):
    """User and item embeddings (dim d) and an item bias; score(u, i) = <p_u, q_i> + b_i."""

    def __init__(self, n_users: int, n_items: int, dim: int) -> None:
        super().__init__()
        self.user = nn.Embedding(n_users, dim)
        self.item = nn.Embedding(n_items, dim)
        self.bias = nn.Embedding(n_items, 1)
        nn.init.normal_(self.user.weight, std=0.05)
        nn.init.normal_(self.item.weight, std=0.05)
        nn.init.zeros_(self.bias.weight)

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return (self.user(users) * self.item(items)).sum(-1) + self.bias(items)[..., 0]


class MatrixFactorization(Recommender):
    """BPR matrix factorisation: for each logged click (u, i) and a uniformly drawn item j, minimise
    ``-w * log sigmoid(s(u, i) - s(u, j)) + reg * (|p_u|^2 + |q_i|^2 + |q_j|^2)``, with w = 1 for a click
    and ``purchase_weight`` for a purchase.

    Cold start: a shopper the model has not seen scores items by their bias alone (a learned popularity);
    an item id beyond the fitted catalog gets the lowest item bias.

    Args:
        dim: embedding size. reg: L2 weight. purchase_weight: weight of purchases vs clicks.
        train: :class:`TrainConfig` (or its dict).
    """

    name = "mf"

    def __init__(self, dim: int = 32, reg: float = 1e-4, purchase_weight: float = 3.0,
                 train: TrainConfig | dict | None = None) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1; got {dim}")
        self.dim, self.reg, self.purchase_weight = dim, float(reg), float(purchase_weight)
        self.train_config = train if isinstance(train, TrainConfig) else TrainConfig(**(train or {}))
        self.device = pick_device(self.train_config.device)
        self.module: BPRModule | None = None
        self.report: TrainReport | None = None

    def fit(self, interactions: pd.DataFrame, items: ItemTable, validation: EvalRequests | None = None,
            ) -> "MatrixFactorization":
        table = check_interactions(interactions)
        users = torch.from_numpy(table["user_id"].to_numpy(copy=True)).to(self.device)
        positives = torch.from_numpy(table["item_id"].to_numpy(copy=True)).to(self.device)
        weights = torch.from_numpy(np.where(table["purchase"].to_numpy(), self.purchase_weight, 1.0)
                                   .astype(np.float32)).to(self.device)
        torch.manual_seed(self.train_config.seed)
        self.module = BPRModule(int(users.max()) + 1, max(items.n_items, int(positives.max()) + 1),
                                self.dim).to(self.device)
        n, n_items, batch = len(users), self.module.item.num_embeddings, self.train_config.batch_size

        def batches(rng: np.random.Generator):
            generator = torch.Generator(self.device).manual_seed(int(rng.integers(2**62)))
            order = torch.randperm(n, device=self.device, generator=generator)
            negatives = torch.randint(0, n_items, (n,), device=self.device, generator=generator)
            for start in range(0, n, batch):
                rows = order[start:start + batch]
                yield users[rows], positives[rows], negatives[rows], weights[rows]

        def loss(u: torch.Tensor, i: torch.Tensor, j: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            m = self.module
            diff = m.pair_scores(u, i) - m.pair_scores(u, j)
            l2 = m.user(u).pow(2).sum(-1) + m.item(i).pow(2).sum(-1) + m.item(j).pow(2).sum(-1)
            return (-w * nn.functional.logsigmoid(diff)).mean() + self.reg * l2.mean()

        self.report = train(self.module, batches, loss, ndcg_validator(self, validation, items), self.train_config,
                            name=self.name)
        return self

    def _fitted(self) -> BPRModule:
        if self.module is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit() or load()")
        return self.module

    @property
    def fitted(self) -> bool:
        return self.module is not None

    @torch.no_grad()
    def _score(self, requests: RequestBatch, candidates: np.ndarray) -> np.ndarray:
        m = self._fitted()
        user = torch.from_numpy(requests.user_id.astype(np.int64)).to(self.device)
        known = user < m.user.num_embeddings
        vectors = m.user(torch.where(known, user, 0)) * known[:, None]
        bias = m.bias.weight[:, 0]
        return dot_scores(vectors, m.item.weight, candidates, bias, fallback=float(bias.min()))

    def config(self) -> dict:
        return {"dim": self.dim, "reg": self.reg, "purchase_weight": self.purchase_weight,
                "train": self.train_config.to_dict()}

    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self._fitted().state_dict().items()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        n_users, dim = state["user.weight"].shape
        self.module = BPRModule(n_users, state["item.weight"].shape[0], dim).to(self.device)
        self.module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        self.module.eval()

"""The logistic stacker: a linear model over each candidate's arm signals, the context and their crosses."""

from __future__ import annotations

import torch
from torch import nn


class LogisticStacker(nn.Module):
    """``logit(c) = g_c . (v + W x) + u . x + b`` for a candidate's signals ``g_c`` (S,) (see
    ``envs.stacking.signals``) in a request with context ``x`` (D,).

    The crosses ``g_c (outer) x`` are what make it adapt to the context: ``v + W x`` is the request's own
    weight on each arm's z-score and rank, which ranks its candidates like a blend with per-request weights.
    ``u . x + b`` only moves the request's level (the same for all its candidates).

    Args:
        n_signals: S = 2 x arms. n_context: D.
    """

    kind = "logistic"

    def __init__(self, n_signals: int, n_context: int) -> None:
        super().__init__()
        self.signal_weights = nn.Linear(n_context, n_signals)  # weight W (S, D), bias v (S,)
        self.level = nn.Linear(n_context, 1)  # u (1, D), b (1,)

    def forward(self, signals: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Click (or purchase) logits (B, C) of candidates with ``signals`` (B, C, S) in requests with
        ``contexts`` (B, D), before the position term."""
        per_request = self.signal_weights(contexts)  # (B, S)
        return torch.einsum("bcs,bs->bc", signals, per_request) + self.level(contexts)

    def request_weights(self, contexts: torch.Tensor) -> torch.Tensor:
        """``v + W x`` (B, S): the weight each request puts on each signal (for ``explain``)."""
        return self.signal_weights(contexts)

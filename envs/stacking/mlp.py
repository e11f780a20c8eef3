"""The MLP stacker: a small neural network over each candidate's arm signals and the context."""

from __future__ import annotations

import torch
from torch import nn


class MLPStacker(nn.Module):
    """``logit(c) = w3 . relu(W2 relu(A g_c + B x + b1) + b2) + b3`` for a candidate's signals ``g_c`` (S,)
    in a request with context ``x`` (D,): two hidden layers of ``hidden`` units. The context's first-layer
    term ``B x + b1`` is computed once per request and shared by its candidates, so scoring C candidates
    costs C small matrix products, not C copies of the context.

    Args:
        n_signals: S = 2 x arms. n_context: D. hidden: units per hidden layer.
    """

    kind = "mlp"

    def __init__(self, n_signals: int, n_context: int, hidden: int = 32) -> None:
        super().__init__()
        self.signal_in = nn.Linear(n_signals, hidden, bias=False)
        self.context_in = nn.Linear(n_context, hidden)
        self.hidden = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, 1)

    def forward(self, signals: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Click (or purchase) logits (B, C) of candidates with ``signals`` (B, C, S) in requests with
        ``contexts`` (B, D), before the position term."""
        # in place on the (B, C, hidden) activations: each new temporary of that size costs as much as a layer
        h = self.signal_in(signals)
        h += self.context_in(contexts).unsqueeze(1)
        h = self.hidden(h.relu_()).relu_()
        return self.out(h).squeeze(-1)

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
        self._activations: tuple[torch.Tensor, torch.Tensor] | None = None  # reused when no gradient is taken

    def forward(self, signals: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Click (or purchase) logits (B, C) of candidates with ``signals`` (B, C, S) in requests with
        ``contexts`` (B, D), before the position term."""
        # The layers are matrix products over (B C, .) matrices: on (B, C, .) tensors torch takes a path about
        # twice as slow, with the same bytes. Without a gradient the two (B C, hidden) activations are written
        # into buffers kept from the last call of that size (a fresh one costs its page faults, about as much
        # as a layer); everything else is in place.
        b, c, n_signals = signals.shape
        first, second = self._workspace(b * c) if not torch.is_grad_enabled() else (None, None)
        h = torch.mm(signals.reshape(b * c, n_signals), self.signal_in.weight.t(), out=first)
        h.view(b, c, -1).add_(self.context_in(contexts).unsqueeze(1))
        h = torch.addmm(self.hidden.bias, h.relu_(), self.hidden.weight.t(), out=second).relu_()
        return torch.addmm(self.out.bias, h, self.out.weight.t()).view(b, c)

    def _workspace(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._activations is None or self._activations[0].shape[0] != rows:
            width = self.hidden.in_features
            self._activations = (torch.empty(rows, width), torch.empty(rows, width))
        return self._activations

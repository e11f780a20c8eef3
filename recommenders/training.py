"""Training machinery shared by every PyTorch arm: device, seeding, the epoch loop with early stopping,
mixed precision on GPU, a progress bar, and scoring helpers."""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from fusionsim.recommenders.base import outside

DEVICES = ("auto", "cpu", "cuda")


def pick_device(device: str = "auto") -> torch.device:
    """``cuda`` if available for "auto", else ``cpu``; "cuda" when there is none is an error."""
    if device not in DEVICES:
        raise ValueError(f"device = {device!r} is not allowed: must be one of {list(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device = 'cuda' is not available on this machine: use 'cpu' or 'auto'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TrainConfig:
    """How an arm is trained (every PyTorch arm takes one)."""

    epochs: int = 20
    """upper bound on passes over the training data"""
    batch_size: int = 4096
    lr: float = 5e-3
    weight_decay: float = 0.0
    patience: int = 2
    """epochs without a better validation score before stopping (the best weights are kept)"""
    device: str = "auto"
    """"auto" (cuda if present), "cpu" or "cuda"; the device used is recorded in the report"""
    seed: int = 0
    amp: bool = True
    """bfloat16 autocast on GPU (ignored on CPU)"""
    progress: bool = True
    max_seconds: float | None = None
    """stop after the epoch that passes this wall-clock budget"""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < (0 if name == "patience" else 1):
                raise ValueError(f"{name} must be >= {0 if name == 'patience' else 1}; got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}")
        pick_device(self.device)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainReport:
    """What a training run did: per-epoch mean loss and validation score, the best epoch, samples/s."""

    device: str
    losses: list[float] = field(default_factory=list)
    validation: list[float] = field(default_factory=list)
    best_epoch: int = -1
    samples: int = 0
    seconds: float = 0.0

    @property
    def samples_per_second(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def train(module: torch.nn.Module, batches: Callable[[np.random.Generator], Iterable[tuple[torch.Tensor, ...]]],
          loss_fn: Callable[..., torch.Tensor], validate: Callable[[], float] | None, config: TrainConfig,
          name: str = "model") -> TrainReport:
    """Epoch loop: Adam on ``loss_fn(*batch)``, then ``validate()`` (higher is better) after every epoch;
    stops after ``patience`` epochs without improvement and restores the best weights. Without
    ``validate`` it runs all ``epochs`` and keeps the last weights.

    ``batches(rng)`` yields one epoch of tensor tuples already on the module's device; the first tensor's
    length counts as the batch's samples.
    """
    device = next(module.parameters()).device
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda"
    report = TrainReport(device=str(device))
    best, best_state, waited = -np.inf, None, 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        module.train()
        total, count = 0.0, 0
        bar = tqdm(batches(rng), desc=f"{name} epoch {epoch + 1}", disable=not config.progress, leave=False)
        train_start = time.perf_counter()
        for batch in bar:
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss = loss_fn(*batch)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(batch[0])
            count += len(batch[0])
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        report.seconds += time.perf_counter() - train_start
        report.samples += count
        report.losses.append(total / max(count, 1))
        module.eval()
        if validate is None:
            report.best_epoch = epoch
        else:
            with torch.no_grad():
                score = float(validate())
            report.validation.append(score)
            if score > best:
                best, best_state, waited, report.best_epoch = score, copy.deepcopy(module.state_dict()), 0, epoch
            else:
                waited += 1
                if waited > config.patience:
                    break
        if config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return report


def dot_scores(queries: torch.Tensor, table: torch.Tensor, candidates: np.ndarray,
               bias: torch.Tensor | None = None, fallback: float = 0.0) -> np.ndarray:
    """``queries[b] . table[candidates[b, c]] (+ bias[candidates[b, c]])`` as (B, C) float32 numpy;
    ``fallback`` for candidate ids outside ``table`` (items the model has never seen).

    On CPU only the B x C needed dot products are computed (``torch.sparse.sampled_addmm`` over a CSR
    pattern with C entries per row), whatever the catalog size. On GPU, small catalogs take one (B, d) x
    (d, n) matmul then a gather, large ones a gather of the candidates' rows.
    """
    ids = np.ascontiguousarray(candidates)
    b, c = ids.shape
    n = table.shape[0]
    unknown = outside(ids, n)
    if unknown is not None:
        ids = np.where(unknown, 0, ids)
    index = torch.from_numpy(ids.astype(np.int64, copy=False)).to(table.device)
    if table.device.type == "cpu":
        values = bias.take(index.reshape(-1)) if bias is not None else torch.zeros(b * c, dtype=table.dtype)
        with warnings.catch_warnings():  # the CSR layout is flagged as beta at its first use
            warnings.simplefilter("ignore", UserWarning)
            pattern = torch.sparse_csr_tensor(torch.arange(0, b * c + 1, c), index.reshape(-1), values,
                                              size=(b, n), check_invariants=False)
        scores = torch.sparse.sampled_addmm(pattern, queries, table.T).values().view(b, c)
    else:
        if n <= 64 * c:
            scores = torch.gather(queries @ table.T, 1, index)
        else:
            scores = torch.bmm(table[index], queries[:, :, None])[:, :, 0]
        if bias is not None:
            scores = scores + bias[index]
    out = scores.float().cpu().numpy()
    if unknown is not None:
        out[unknown] = fallback
    return out

"""A trained stacker: the meta-ranker, what it was trained for, fitting, and its files.

Training data are impressions as a shop logs them: for each request its context (n, D), and for each of
its k shown items the arms' signals (n, k, S) and whether it was clicked or bought (n, k). Position bias is
handled by a position term: ``P(click at position p) = sigmoid(model(g, x) + position_logit[p])``, learned
with the model. At serving the position term is left out (it is the same for every candidate of a
request, so it cannot change the ranking); the learned ``position_logit`` is the log-odds effect of each
position, reported with the model.

Files (a folder): ``stacker.json`` (format, spec, training report) and ``stacker.pt`` (the torch state
dict, read with ``torch.load(..., weights_only=True)``). No pickles.
"""

from __future__ import annotations

import json
import pickle  # only for the error that torch.load(weights_only=True) raises
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fusionsim.common.io import atomic_target, atomic_write_json
from fusionsim.envs.shop import comparable
from fusionsim.envs.stacking import KINDS, TARGETS
from fusionsim.envs.stacking.logistic import LogisticStacker
from fusionsim.envs.stacking.mlp import MLPStacker
from fusionsim.envs.stacking.signals import SIGNALS_PER_ARM, candidate_signals

MODELS: dict[str, type[nn.Module]] = {"logistic": LogisticStacker, "mlp": MLPStacker}
"""The model of each stacker kind (``envs.stacking.KINDS``)."""
assert tuple(MODELS) == KINDS

FORMAT = "fusionsim.Stacker/1"
SPEC_FILE, WEIGHTS_FILE = "stacker.json", "stacker.pt"
SCORE_BLOCK = 128
"""Requests per block of :meth:`Stacker.score` (128 x 200 candidates x 32 hidden units: 3 MB of activations)."""


class StackerError(ValueError):
    """A stacker that cannot be built, read or used here; the message is one line naming what is wrong."""


@dataclass(frozen=True)
class StackerSpec:
    """What a stacker is and what it was trained for.

    ``kind``: a key of :data:`MODELS`; ``hidden``: hidden units (mlp only); ``arm_names``: the arms whose
    signals it reads, in order; ``context_names``: the context features, in order; ``slate_size``: k, the
    positions of the position term; ``target``: one of :data:`TARGETS`; ``world``: the world signature
    (``envs.shop.world_signature``) of the shop whose log it was trained on.
    """

    kind: str
    arm_names: list[str]
    context_names: list[str]
    slate_size: int
    target: str
    world: dict
    hidden: int = 32

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise StackerError(f"stacker kind {self.kind!r} is not allowed: use one of {', '.join(KINDS)}")
        if self.target not in TARGETS:
            raise StackerError(f"stacker target {self.target!r} is not allowed: use one of {', '.join(TARGETS)}")
        if not self.arm_names:
            raise StackerError("a stacker needs at least one arm")
        for name, value in (("slate_size", self.slate_size), ("hidden", self.hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise StackerError(f"stacker {name} must be an integer >= 1; got {value!r}")

    @property
    def n_signals(self) -> int:
        return SIGNALS_PER_ARM * len(self.arm_names)

    def build(self) -> nn.Module:
        if self.kind == "mlp":
            return MLPStacker(self.n_signals, len(self.context_names), self.hidden)
        return MODELS[self.kind](self.n_signals, len(self.context_names))


class _Network(nn.Module):
    """The model plus its position term (the state dict of ``stacker.pt``)."""

    def __init__(self, spec: StackerSpec) -> None:
        super().__init__()
        self.model = spec.build()
        self.position_logit = nn.Parameter(torch.zeros(spec.slate_size))
        output = self.model.out if isinstance(self.model, MLPStacker) else self.model
        for parameter in output.parameters():  # the untrained network adds nothing to the position term
            nn.init.zeros_(parameter)


class Stacker:
    """A meta-ranker over the arms' signals (see the module docstring); :meth:`score` ranks candidates.

    Args:
        spec: what it is and what it was trained for. report: how it was trained (kept in ``stacker.json``).
    """

    def __init__(self, spec: StackerSpec, report: dict | None = None) -> None:
        self.spec = spec
        self.report = dict(report or {})
        self.network = _Network(spec)
        self.network.eval()

    @property
    def position_logit(self) -> np.ndarray:
        """(k,) learned log-odds effect of each position (position 0 first)."""
        return self.network.position_logit.detach().numpy().copy()

    def score(self, arm_scores: list[np.ndarray], contexts: np.ndarray, positions: np.ndarray | None = None,
              ) -> np.ndarray:
        """Scores (B, C) float32 of every candidate, higher = better, from the arms' scores [(B, C)] * A (in
        :attr:`StackerSpec.arm_names` order) and the requests' contexts (B, D); with ``positions`` (B, n),
        the scores (B, n) of those candidates only (their signals still rank them among all C).

        Requests are scored in blocks of :data:`SCORE_BLOCK`, so a block's signals and hidden activations stay
        in cache (a block's result does not depend on the block size)."""
        b, c = arm_scores[0].shape
        contexts = np.asarray(contexts, dtype=np.float32)
        out = np.empty((b, c if positions is None else positions.shape[1]), dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, b, SCORE_BLOCK):
                rows = slice(lo, min(lo + SCORE_BLOCK, b))
                signals = candidate_signals([scores[rows] for scores in arm_scores])
                if positions is not None:
                    signals = np.take_along_axis(signals, positions[rows, :, None], axis=1)
                out[rows] = self._logits(signals, contexts[rows])
        return out

    def score_signals(self, signals: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """Scores (B, n) float32 of candidates whose signals (B, n, 2A) are given (``envs.stacking.signals``;
        e.g. the shown items' signals read from a log), with the requests' contexts (B, D); the numbers
        :meth:`score` gives for the same candidates."""
        signals = np.require(signals, np.float32, ["C", "W"])  # torch takes writable arrays only
        contexts = np.require(contexts, np.float32, ["C", "W"])
        out = np.empty(signals.shape[:2], dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, len(signals), SCORE_BLOCK):
                rows = slice(lo, lo + SCORE_BLOCK)
                out[rows] = self._logits(signals[rows], contexts[rows])
        return out

    def _logits(self, signals: np.ndarray, contexts: np.ndarray) -> np.ndarray:
        """The model's logits (B, n) of signals (B, n, 2A) float32 and contexts (B, D) float32 (no position term)."""
        return self.network.model(torch.from_numpy(signals), torch.from_numpy(contexts)).numpy()

    def check_shop(self, arm_names: list[str], world: dict, source: str) -> None:
        """Refuse to serve a shop other than the one the stacker was trained for: ``arm_names`` must equal its
        arms (names and order), ``world`` its world signature. ``source`` names the stacker in the message."""
        if list(arm_names) != self.spec.arm_names:
            raise StackerError(f"{source} was trained on the arms [{', '.join(self.spec.arm_names)}]; this shop's "
                               f"arms are [{', '.join(arm_names)}] (names and order must match)")
        if comparable(world) != comparable(self.spec.world):
            raise StackerError(f"{source} was trained for scenario '{self.spec.world.get('scenario')}' (seed "
                               f"{self.spec.world.get('seed')}), whose world differs from this shop's scenario "
                               f"'{world.get('scenario')}' (seed {world.get('seed')})")

    # ----------------------------------------------------------------------------------------- files
    def save(self, folder: str | Path) -> None:
        """Write ``stacker.pt`` and ``stacker.json`` into ``folder``, each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_target(folder / WEIGHTS_FILE) as tmp:
            torch.save(self.network.state_dict(), tmp)
        atomic_write_json(folder / SPEC_FILE, {"format": FORMAT, "spec": asdict(self.spec), "report": self.report})

    @classmethod
    def load(cls, folder: str | Path, option: str = "stacker") -> "Stacker":
        """The stacker saved by :meth:`save` in ``folder``; a :class:`StackerError` naming ``option`` and the
        file for a missing, corrupt or foreign file, or weights that do not fit the spec."""
        folder = Path(folder)
        spec_path, weights_path = folder / SPEC_FILE, folder / WEIGHTS_FILE
        if not spec_path.is_file() or not weights_path.is_file():
            raise StackerError(f"{option} {folder} holds no stacker (expected {SPEC_FILE} and {WEIGHTS_FILE} from "
                               "fusionsim train-stacker)")
        try:
            saved = json.loads(spec_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StackerError(f"{option} {spec_path} cannot be read ({type(exc).__name__})") from None
        if not isinstance(saved, dict) or saved.get("format") != FORMAT or not isinstance(saved.get("spec"), dict):
            raise StackerError(f"{option} {spec_path} is not a {FORMAT} file")
        try:
            spec = StackerSpec(**saved["spec"])
        except TypeError as exc:
            raise StackerError(f"{option} {spec_path} holds a spec that builds no stacker: {exc}") from None
        stacker = cls(spec, saved.get("report"))
        try:
            state = torch.load(weights_path, weights_only=True, map_location="cpu")
            stacker.network.load_state_dict(state)
        except (OSError, RuntimeError, EOFError, KeyError, TypeError, AttributeError, zipfile.BadZipFile,
                pickle.UnpicklingError) as exc:
            raise StackerError(f"{option} {weights_path} is corrupt or does not fit {SPEC_FILE} "
                               f"({type(exc).__name__})") from None
        stacker.network.eval()
        return stacker


# --------------------------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class FitConfig:
    """How a stacker is fitted: Adam on the binary cross-entropy of every impression, in minibatches of
    ``batch_requests`` requests, for at most ``epochs`` passes; the last ``validation_share`` of the requests
    (the latest, as the log is in time order) is held out, and the epoch with the lowest held-out loss is
    kept (training stops after the first epoch that does not improve it). The network starts as the
    position-only model (per-position click rates, nothing from the signals), so the kept one is never worse
    on the held-out requests. ``lr`` None: 0.01 for the
    logistic stacker, 0.003 for the MLP."""

    epochs: int = 6
    batch_requests: int = 256
    lr: float | None = None
    weight_decay: float = 1e-6
    validation_share: float = 0.1
    seed: int = 0


@dataclass
class FitReport:
    """Held-out binary cross-entropy per impression: ``validation_loss`` of the kept epoch, ``baseline_loss``
    of the per-position rate of the training part (what a position-only model gets), the loss per epoch, and
    the number of training and held-out requests and impressions."""

    validation_loss: float
    baseline_loss: float
    epoch_losses: list[float] = field(default_factory=list)
    train_requests: int = 0
    validation_requests: int = 0
    impressions: int = 0


def fit_stacker(spec: StackerSpec, contexts: np.ndarray, signals: np.ndarray, labels: np.ndarray,
                config: FitConfig = FitConfig()) -> tuple[Stacker, FitReport]:
    """Fit a stacker on logged impressions: ``contexts`` (n, D), ``signals`` (n, k, S) and 0/1 ``labels``
    (n, k) of n requests (in time order) with k shown items each."""
    n, k, s = signals.shape
    if contexts.shape != (n, len(spec.context_names)) or labels.shape != (n, k) or s != spec.n_signals \
            or k != spec.slate_size:
        raise StackerError(f"stacker training data do not fit the spec: contexts {contexts.shape}, signals "
                           f"{signals.shape}, labels {labels.shape}; expected (n, {len(spec.context_names)}), "
                           f"(n, {spec.slate_size}, {spec.n_signals}), (n, {spec.slate_size})")
    n_valid = int(round(n * config.validation_share))
    if n - n_valid < 1 or n_valid < 1:
        raise StackerError(f"a stacker needs requests to train and to validate on; the log has {n}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # minibatches of a few thousand impressions x 32 units: threads cost more than they give
    try:
        return _fit(spec, contexts, signals, labels, config, n_valid)
    finally:
        torch.set_num_threads(threads)


def _fit(spec: StackerSpec, contexts: np.ndarray, signals: np.ndarray, labels: np.ndarray, config: FitConfig,
         n_valid: int) -> tuple[Stacker, FitReport]:
    n, k, _ = signals.shape
    torch.manual_seed(config.seed)
    stacker = Stacker(spec)
    network = stacker.network
    x = torch.from_numpy(np.ascontiguousarray(contexts, dtype=np.float32))
    g = torch.from_numpy(np.ascontiguousarray(signals, dtype=np.float32))
    y = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))
    train, valid = slice(0, n - n_valid), slice(n - n_valid, n)
    rate = y[train].mean(dim=0).clamp(1e-6, 1 - 1e-6)
    with torch.no_grad():
        network.position_logit.copy_(torch.log(rate / (1 - rate)))
    baseline = float(nn.functional.binary_cross_entropy(rate.expand(n_valid, k), y[valid]))
    lr = config.lr if config.lr is not None else (0.01 if spec.kind == "logistic" else 0.003)
    optimiser = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)

    def loss_of(rows: slice | torch.Tensor) -> torch.Tensor:
        logits = network.model(g[rows], x[rows]) + network.position_logit
        return nn.functional.binary_cross_entropy_with_logits(logits, y[rows])

    def copy_state() -> dict[str, torch.Tensor]:
        return {key: value.clone() for key, value in network.state_dict().items()}

    def validation_loss() -> float:
        network.eval()
        with torch.no_grad():
            total = sum(float(loss_of(slice(lo, min(lo + 8192, n)))) * (min(lo + 8192, n) - lo)
                        for lo in range(n - n_valid, n, 8192))
        return total / n_valid

    best, best_state, losses = validation_loss(), copy_state(), []
    for _ in range(config.epochs):
        network.train()
        order = torch.randperm(n - n_valid, generator=generator)
        for lo in range(0, n - n_valid, config.batch_requests):
            optimiser.zero_grad()
            loss_of(order[lo:lo + config.batch_requests]).backward()
            optimiser.step()
        losses.append(validation_loss())
        if losses[-1] >= best:
            break
        best, best_state = losses[-1], copy_state()
    network.load_state_dict(best_state)
    network.eval()
    report = FitReport(validation_loss=best, baseline_loss=baseline, epoch_losses=losses,
                       train_requests=n - n_valid, validation_requests=n_valid, impressions=n * k)
    stacker.report = asdict(report)
    return stacker, report

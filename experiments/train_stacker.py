"""``fusionsim train-stacker``: fit a stacking meta-ranker on a simulated log, from what the log holds.

The stacker sees what a shop logs and nothing of the simulator's hidden state: the request contexts, the
arms' signals of the shown items (``zscore_<arm>``, ``rank_<arm>``), their positions, and the clicks or
purchases (see ``envs.stacking``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.logs import LogReadError, list_column, read_interaction_log
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import world_signature
from fusionsim.envs.stacking import KINDS, TARGETS
from fusionsim.envs.stacking.signals import signals
from fusionsim.envs.stacking.stacker import FitConfig, StackerSpec, fit_stacker
from fusionsim.experiments.runs import read_config, write_config, write_json
from fusionsim.common.io import IncompleteRunError, atomic_write_text, mark_complete

TARGET_OF_REWARD = {"clicks": "clicks", "purchases": "purchases", "revenue": "purchases"}
"""The impression label a scenario's reward asks for (a revenue shop ranks by purchase)."""


class TrainStackerError(ValueError):
    """Bad ``train-stacker`` input: an unknown kind or target, a log without arm signals."""


@dataclass(frozen=True)
class TrainStackerConfig:
    """What one ``fusionsim train-stacker`` run does; written whole as ``config.yaml``'s ``args``."""

    logs: str
    """a complete fusionsim simulate run folder, served by the arms the stacker will fuse"""
    kind: str = "mlp"
    """logistic | mlp"""
    hidden: int = 32
    """units per hidden layer (mlp)"""
    target: str = "auto"
    """clicks | purchases | auto (from the scenario's reward: clicks -> clicks, purchases and revenue -> purchases)"""
    epochs: int = 6
    """at most this many passes over the training requests (the held-out loss stops it earlier)"""
    seed: int = 0
    """seed of the initialisation and the minibatch order"""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise TrainStackerError(f"--kind {self.kind!r} is not allowed: use one of {', '.join(KINDS)}")
        if self.target not in (*TARGETS, "auto"):
            raise TrainStackerError(f"--target {self.target!r} is not allowed: use one of {', '.join(TARGETS)} or auto")
        for name, value in (("--hidden", self.hidden), ("--epochs", self.epochs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainStackerError(f"{name} must be an integer >= 1; got {value!r}")


@dataclass
class LoggedImpressions:
    """The training data of a stacker, read from a log: ``contexts`` (n, D) float32, ``signals`` (n, k, 2A)
    float32, ``clicks`` and ``purchases`` (n, k) float32 0/1, of n requests in time order."""

    contexts: np.ndarray
    signals: np.ndarray
    clicks: np.ndarray
    purchases: np.ndarray


def read_impressions(log: pd.DataFrame, arm_names: list[str], folder: Path) -> LoggedImpressions:
    """The impressions of a log read by ``envs.logs.read_interaction_log``."""
    missing = [f"zscore_{a}" for a in arm_names if f"zscore_{a}" not in log.columns]
    if missing:
        raise TrainStackerError(f"--logs {folder} has no column '{missing[0]}': it was written before logs kept the "
                                "arms' signals of the shown items; simulate it again")
    log = log.sort_values("request_id", kind="stable")
    ranks = np.stack([list_column(log, f"rank_{a}", np.int32) for a in arm_names])
    zscores = np.stack([list_column(log, f"zscore_{a}", np.float32) for a in arm_names])
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float32)
    return LoggedImpressions(contexts, signals(ranks, zscores), list_column(log, "clicks", np.float32),
                             list_column(log, "purchased", np.float32))


def train_stacker(config: TrainStackerConfig, out: Path) -> dict:
    """Fit a stacker on the log in ``config.logs``; write ``stacker.pt``, ``stacker.json``, ``metrics.json``,
    ``report.md``, ``config.yaml`` and ``complete.json`` to ``out``; return the metrics."""
    logs = Path(config.logs)
    try:
        log = read_interaction_log(logs, "--logs")
        log_config = read_config(logs, "--logs")
    except (LogReadError, IncompleteRunError) as exc:
        raise TrainStackerError(str(exc)) from None
    scenario = parse_scenario(log_config.get("scenario"), f"'{logs / 'config.yaml'}'")
    arm_names = [str(a) for a in log_config.get("arms", [])]
    target = TARGET_OF_REWARD[scenario.reward] if config.target == "auto" else config.target
    data = read_impressions(log, arm_names, logs)
    spec = StackerSpec(kind=config.kind, hidden=config.hidden, arm_names=arm_names, context_names=list(CONTEXT_NAMES),
                       slate_size=data.signals.shape[1], target=target, world=world_signature(scenario))
    write_config(out, "train-stacker", dataclasses.asdict(config), scenario=log_config["scenario"], arms=arm_names)
    labels = data.clicks if target == "clicks" else data.purchases
    stacker, report = fit_stacker(spec, data.contexts, data.signals, labels,
                                  FitConfig(epochs=config.epochs, seed=config.seed))
    stacker.report["trained_on"] = str(logs)
    stacker.save(out)
    metrics = {"kind": config.kind, "target": target, "arms": arm_names, **dataclasses.asdict(report),
               "loss_reduction_vs_position_only": 1.0 - report.validation_loss / report.baseline_loss,
               "position_logit": stacker.position_logit.tolist()}
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, logs))
    mark_complete(out, "train-stacker")
    return metrics


def render_report(metrics: dict, logs: Path) -> str:
    """What was fitted and how well it predicts held-out impressions."""
    lines = [f"# Stacker ({metrics['kind']}) predicting {metrics['target']}", "",
             f"Fitted on `{logs}`: {metrics['train_requests']:,} requests, the latest "
             f"{metrics['validation_requests']:,} held out ({metrics['impressions']:,} impressions in all), "
             f"over the signals of the arms {', '.join(metrics['arms'])}.", "",
             "| held-out loss per impression | value |", "|---|---|",
             f"| stacker | {metrics['validation_loss']:.5f} |",
             f"| position only (per-position rate) | {metrics['baseline_loss']:.5f} |",
             f"| reduction | {100 * metrics['loss_reduction_vs_position_only']:.2f}% |", "",
             "Learned position effect (log-odds, position 1 first): "
             + ", ".join(f"{v:+.3f}" for v in metrics["position_logit"]) + "."]
    return "\n".join(lines) + "\n"

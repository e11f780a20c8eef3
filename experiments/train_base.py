"""``fusionsim train-base``: train the arms on a simulated log and measure them on a later time window."""

from __future__ import annotations

import json
import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionsim.envs.logs import SURFACES, LogReadError, read_interaction_log
from fusionsim.envs.scenario import DEVICES, SEGMENTS, Scenario, scenario_to_dict
from fusionsim.envs.shop import world_fields, world_signature
from fusionsim.envs.world import build_world
from fusionsim.experiments.runs import parse_choices, read_config, write_config, write_json
from fusionsim.recommenders import ARMS_FILE, ContentBased, MatrixFactorization, Popularity, Recommender, SequenceModel
from fusionsim.recommenders.data import EvalRequests, clicks_from_log, eval_requests_from_log
from fusionsim.recommenders.evaluation import grouped, ranking_metrics
from fusionsim.common.io import IncompleteRunError, atomic_write_text, check_complete, mark_complete

MODELS = ("popularity", "mf", "content", "sequence")
K = 10
VALIDATION_REQUESTS = 2000


class TrainBaseError(ValueError):
    """Bad ``train-base`` input: unknown model, a folder without logs, logs of another scenario."""


def parse_models(spec: str) -> list[str]:
    return parse_choices(spec, MODELS, "--models", "model", TrainBaseError)


def read_log(folder: Path, scenario: Scenario) -> pd.DataFrame:
    """The request log of a complete ``fusionsim simulate`` run folder, checked against ``scenario``."""
    try:
        check_complete(folder, "--logs", ("simulate",))
        logged = read_config(folder, "--logs").get("scenario") or {}
        if logged.get("seed") != scenario.seed or \
                world_fields(logged.get("world") or {}) != world_fields(scenario_to_dict(scenario)["world"]):
            raise TrainBaseError(f"--logs {folder} was simulated on scenario '{logged.get('name')}', whose world "
                                 f"differs from scenario '{scenario.name}'")
        return read_interaction_log(folder, "--logs")
    except (LogReadError, IncompleteRunError) as exc:
        raise TrainBaseError(str(exc)) from None


def make_model(name: str, device: str, seed: int, epochs: int | None, progress: bool) -> Recommender:
    train = {"device": device, "seed": seed, "progress": progress, **({"epochs": epochs} if epochs else {})}
    if name == "popularity":
        return Popularity()
    if name == "mf":
        return MatrixFactorization(train=train)
    if name == "content":
        return ContentBased()
    return SequenceModel(train=train)


@dataclass
class Split:
    train: pd.DataFrame
    validation: EvalRequests
    test: EvalRequests
    t_split: float


def split_by_time(log: pd.DataFrame, history: pd.DataFrame, test_fraction: float) -> Split:
    """Interactions before the split time train; requests after it (with a click) test; the last tenth
    of the training window validates early stopping."""
    t_split = float(log["t"].quantile(1.0 - test_fraction))
    clicks = clicks_from_log(log)
    known = pd.concat([history, clicks], ignore_index=True)
    train = pd.concat([history, clicks[clicks["t"] < t_split]], ignore_index=True)
    before = log[log["t"] < t_split]
    t_val = float(before["t"].quantile(0.9)) if len(before) else t_split
    validation = eval_requests_from_log(before[before["t"] >= t_val], known, SEGMENTS, SURFACES, DEVICES)
    validation = validation.subset(np.arange(min(VALIDATION_REQUESTS, len(validation))))
    test = eval_requests_from_log(log[log["t"] >= t_split], known, SEGMENTS, SURFACES, DEVICES)
    if len(test) == 0:
        raise TrainBaseError("the test window holds no request with a click: simulate more requests")
    return Split(train, validation, test, t_split)


@dataclass(frozen=True)
class TrainBaseConfig:
    """What one ``fusionsim train-base`` run does; written whole as ``config.yaml``'s ``args``."""

    logs: str
    """a complete fusionsim simulate run folder whose log trains and tests the arms"""
    models: tuple[str, ...] = MODELS
    """the arms to train, in order (their order is the order of the blend weights)"""
    scenario: str = "default"
    """the scenario the log was simulated on (name or YAML path)"""
    device: str = "auto"
    """training device of the PyTorch arms: auto (cuda when present), cpu or cuda"""
    seed: int = 0
    """seed of the training streams"""
    epochs: int | None = None
    """cap on training epochs (None: early stopping decides)"""
    test_fraction: float = 0.2
    """share of the log, by time, held out for testing"""


def train_base(config: TrainBaseConfig, scenario: Scenario, out: Path, progress: bool = True) -> dict:
    """Train ``config.models`` on the log in ``config.logs``; write checkpoints, ``arms.json``,
    ``metrics.json``, ``report.md``, ``config.yaml`` and ``complete.json`` to ``out``; return the metrics."""
    logs, models = Path(config.logs), list(config.models)
    device, seed, epochs = config.device, config.seed, config.epochs
    log = read_log(logs, scenario)
    world = build_world(scenario)
    items = world.catalog.public()
    split = split_by_time(log, world.history, config.test_fraction)
    write_config(out, "train-base", {**dataclasses.asdict(config), "models": models},
                 scenario=scenario_to_dict(scenario))
    metrics: dict = {"k": K, "t_split": split.t_split, "train_interactions": len(split.train),
                     "test_requests": len(split.test), "models": {}}
    entries = []
    for name in models:
        model = make_model(name, device, seed, epochs, progress)
        if isinstance(model, (MatrixFactorization, SequenceModel)):
            model.fit(split.train, items, validation=split.validation)
        else:
            model.fit(split.train, items)
        path = out / "models" / f"{name}.pt"
        model.save(path)
        entries.append({"name": model.name, "path": f"models/{name}.pt"})
        model.reset_state()
        recall, ndcg = ranking_metrics(model, split.test, items, K)
        req = split.test.requests
        result = {"recall@10": float(recall.mean()), "ndcg@10": float(ndcg.mean()),
                  "ndcg@10_by_segment": grouped(ndcg, req.segment, SEGMENTS),
                  "ndcg@10_by_surface": grouped(ndcg, req.surface, SURFACES),
                  "recall@10_by_segment": grouped(recall, req.segment, SEGMENTS),
                  "recall@10_by_surface": grouped(recall, req.surface, SURFACES)}
        report = getattr(model, "report", None)
        if report is not None:
            result["training"] = {"device": report.device, "epochs": len(report.losses),
                                  "best_epoch": report.best_epoch + 1, "samples_per_second": report.samples_per_second,
                                  "validation_ndcg@10": report.validation, "loss": report.losses}
        metrics["models"][name] = result
    atomic_write_text(out / ARMS_FILE, json.dumps({"arms": entries, "world": world_signature(scenario)}, indent=2))
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, scenario.name, logs))
    mark_complete(out, "train-base")
    return metrics


def render_report(metrics: dict, scenario: str, logs: Path) -> str:
    """A Markdown table of NDCG@10 and Recall@10, overall, per segment and per surface; best in bold."""
    models = list(metrics["models"])
    columns = [("overall", "ndcg@10", None)] + [(s, "ndcg@10_by_segment", s) for s in SEGMENTS] + \
              [(s, "ndcg@10_by_surface", s) for s in SURFACES]
    lines = [f"# Base recommenders on scenario `{scenario}`", "",
             f"Trained on `{logs}` before day {metrics['t_split']:.2f} ({metrics['train_interactions']:,} "
             f"interactions); tested on the {metrics['test_requests']:,} later requests with a click, ranking "
             "the whole catalog on sale. Best per column in bold.", "",
             "## NDCG@10", "", "| model | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    values = {m: [metrics["models"][m][key] if group is None else metrics["models"][m][key].get(group, float("nan"))
                  for _, key, group in columns] for m in models}
    best = [max(values[m][j] for m in models) for j in range(len(columns))]
    for m in models:
        cells = [f"**{v:.4f}**" if v == best[j] else f"{v:.4f}" for j, v in enumerate(values[m])]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "## Recall@10", "", "| model | overall | " + " | ".join(SURFACES) + " |", "|---|---|---|---|"]
    for m in models:
        r = metrics["models"][m]
        lines.append(f"| {m} | {r['recall@10']:.4f} | " + " | ".join(
            f"{r['recall@10_by_surface'].get(s, float('nan')):.4f}" for s in SURFACES) + " |")
    return "\n".join(lines) + "\n"

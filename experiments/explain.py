"""``fusionsim explain``: what a fusion method does per context cell, as a table and a heat map.

- a ``train`` run (a weight policy): the mean weight it gives each arm per cell, replayed greedily;
- a ``train-stacker`` run: which arm's signals the stacker relies on per cell, as permutation importance
  on the held-out (latest) requests of its own log: the rise of the held-out loss per impression when one
  arm's z-scores and ranks are shuffled among the cell's requests;
- a ``compare`` run with cascades: per cell, which arm filters and which reorders, in the cascade searched
  best for the cell and in the adaptive cascade's choices over its last 20%.

Each writes ``explain.md``, ``explain.json`` and ``explain.png`` into the run folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fusionsim.common.io import atomic_write_text, check_complete
from fusionsim.envs.context import CELL_NAMES, N_CELLS, context_cell
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.experiments.runs import read_config, save_figure, write_json, pyplot
from fusionsim.experiments.train import read_trained_run
from fusionsim.experiments.train_stacker import read_impressions

COMMANDS = ("train", "train-stacker", "compare")
"""The runs ``explain`` reads."""


class ExplainError(ValueError):
    """A run that ``explain`` cannot read; the message is one line naming the run."""


@dataclass
class Explanation:
    """One table of context cells: ``columns`` (names), ``values`` (cells, columns), ``counts`` (cells,) of
    what each cell's row is computed from (``count_name``), ``labels`` extra text columns per cell (may be
    empty); ``cells`` are CELL_NAMES rows with a count. Rendered by :func:`write_explanation`."""

    kind: str
    title: str
    intro: str
    columns: list[str]
    cells: list[str]
    values: np.ndarray
    counts: np.ndarray
    count_name: str
    value_format: str
    colour_label: str
    labels: dict[str, list[str]]

    def table(self) -> dict:
        """{cell: {count_name: n, column: value, label column: text}} (explain.json's ``cells``)."""
        rows = {}
        for i, cell in enumerate(self.cells):
            rows[cell] = {self.count_name: int(self.counts[i]),
                          **{c: float(self.values[i, j]) for j, c in enumerate(self.columns)},
                          **{name: texts[i] for name, texts in self.labels.items()}}
        return rows


def explain(run: Path, requests: int = 50_000) -> Explanation:
    """Explain the complete run in ``run`` (a ``train``, ``train-stacker`` or ``compare`` run; see the module
    docstring) over at most ``requests`` requests, and write the outputs."""
    run = Path(run)
    command = check_complete(run, "explain", COMMANDS)["command"]
    if command == "train":
        explanation = _policy_weights(run, requests)
    elif command == "train-stacker":
        explanation = _stacker_importance(run, requests)
    else:
        explanation = _cascade_choices(run)
    write_explanation(explanation, run)
    return explanation


def _policy_weights(run: Path, requests: int) -> Explanation:
    """Replay the trained policy (greedy for PPO, no learning) on the run's simulator as it was at the end
    of training, for ``requests`` requests, and average the arm weights it chose per context cell."""
    trained = read_trained_run(run, "explain", deterministic=True)
    sim, policy, mapper = trained.simulator(), trained.policy, trained.mapper
    arm_names = [a.name for a in sim.arms]
    weight_sum = np.zeros((N_CELLS, len(arm_names)))
    counts = np.zeros(N_CELLS)
    for _ in range(max(1, requests // sim.n_slots)):
        result = sim.serve(policy, mapper)
        cells = context_cell(result.contexts)
        counts += np.bincount(cells, minlength=N_CELLS)
        for a in range(len(arm_names)):
            weight_sum[:, a] += np.bincount(cells, weights=result.weights[:, a], minlength=N_CELLS)
    seen = counts > 0
    mean = weight_sum / np.maximum(counts, 1)[:, None]
    return Explanation("weights", "Learned arm weights per context cell",
                       f"Mean weight the policy gives each arm, over {int(counts.sum()):,} replayed requests "
                       "(cell = segment / surface / past purchases).", arm_names,
                       [CELL_NAMES[c] for c in np.flatnonzero(seen)], mean[seen], counts[seen], "requests", ".2f",
                       "mean arm weight", {})


def _stacker_importance(run: Path, requests: int, seed: int = 0) -> Explanation:
    """Permutation importance of each arm per cell on the latest ``requests`` held-out requests of the
    stacker's log (see the module docstring); ``seed`` seeds the shuffles."""
    stacker = Stacker.load(run, "explain")
    logs = Path(stacker.report.get("trained_on", read_config(run, "explain")["args"]["logs"]))
    data = read_impressions(read_interaction_log(logs, f"explain {run}: the stacker's log"), stacker.spec.arm_names,
                            logs)
    held_out = min(requests, int(stacker.report.get("validation_requests", len(data.contexts))))
    rows = slice(len(data.contexts) - held_out, len(data.contexts))
    contexts, signals = data.contexts[rows], data.signals[rows]
    labels = (data.clicks if stacker.spec.target == "clicks" else data.purchases)[rows]
    seen, counts, increase = permutation_importance(stacker, contexts, signals, labels, np.random.default_rng(seed))
    arms = stacker.spec.arm_names
    return Explanation("stacker", f"Which arm the {stacker.spec.kind} stacker relies on per context cell",
                       f"Rise of the held-out loss per impression (in % of the cell's loss) when one arm's z-scores "
                       f"and ranks are shuffled among the cell's requests: {held_out:,} held-out requests of "
                       f"`{logs}`. Higher = the stacker relies more on that arm in that cell.",
                       arms, [CELL_NAMES[c] for c in seen], increase, counts, "requests", ".2f",
                       "loss rise when shuffled (%)", {})


def permutation_importance(stacker: Stacker, contexts: np.ndarray, signals: np.ndarray, labels: np.ndarray,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per context cell and arm, the rise (in %) of the stacker's loss per impression on logged slates
    (``contexts`` (n, D), ``signals`` (n, k, S), ``labels`` (n, k)) when that arm's z-score and rank channels
    are permuted among the cell's requests (one ``rng`` permutation per cell and arm). Returns the cells
    seen (m,), their request counts (m,) and the rises (m, A); an arm the model ignores rises by exactly 0."""
    cells = context_cell(contexts)
    seen = np.flatnonzero(np.bincount(cells, minlength=N_CELLS) > 0)
    n_arms = len(stacker.spec.arm_names)
    increase = np.zeros((len(seen), n_arms))
    for i, cell in enumerate(seen):
        mine = np.flatnonzero(cells == cell)
        base = _impression_loss(stacker, signals[mine], contexts[mine], labels[mine])
        for a in range(n_arms):
            shuffled = signals[mine].copy()
            shuffled[:, :, 2 * a:2 * a + 2] = shuffled[rng.permutation(len(mine)), :, 2 * a:2 * a + 2]
            increase[i, a] = 100.0 * (_impression_loss(stacker, shuffled, contexts[mine], labels[mine]) / base - 1.0)
    return seen, np.bincount(cells, minlength=N_CELLS)[seen], increase


def _impression_loss(stacker: Stacker, signals: np.ndarray, contexts: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy per impression of the stacker (with its position term) on logged slates:
    ``signals`` (n, k, S), ``contexts`` (n, D), ``labels`` (n, k)."""
    network = stacker.network
    with torch.inference_mode():
        logits = network.model(torch.from_numpy(np.ascontiguousarray(signals)),
                               torch.from_numpy(np.ascontiguousarray(contexts))) + network.position_logit
        return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(labels)))


def _cascade_choices(run: Path) -> Explanation:
    """Per cell, the share of the adaptive cascade's tail requests in which each arm filters (stage one)
    and reorders (stage two), and the best searched cascade of the cell."""
    comparison = json.loads((run / "comparison.json").read_text())
    cascades = comparison.get("cascades")
    adaptive = comparison["methods"].get("adaptive cascade", {}).get("choices_by_cell")
    if cascades is None or adaptive is None:
        raise ExplainError(f"explain {run}: this compare run has no adaptive cascade to explain; run compare with "
                           "--methods including adaptive-cascade")
    seconds = [*comparison["arms"], "stacker"]
    columns = [f"filter {a}" for a in comparison["arms"]] + [f"reorder {a}" for a in seconds]
    cells = [cell for cell in CELL_NAMES if cell in adaptive]
    values = np.zeros((len(cells), len(columns)))
    for i, cell in enumerate(cells):
        for label, share in adaptive[cell].items():
            first, _, second = label.split(">")
            values[i, columns.index(f"filter {first}")] += share
            values[i, columns.index(f"reorder {second}")] += share
    best = cascades["best_by_cell"]
    labels = {"searched best": [best.get(cell, "-") for cell in cells],
              "adaptive's most taken": [next(iter(adaptive[cell])) for cell in cells]}
    counts = np.array([comparison["methods"]["adaptive cascade"]["tail_requests_by_cell"][cell] for cell in cells])
    return Explanation("cascade", "Which arm filters and which reorders, per context cell",
                       "Share of the adaptive cascade's requests over its last 20% in which each arm filters "
                       "(stage one) and reorders (stage two); the cascade searched best for each cell, and the one "
                       "the adaptive cascade took most (`filter>N>reorder`).", columns, cells, values, counts,
                       "tail requests", ".2f", "share of the cell's requests", labels)


def write_explanation(explanation: Explanation, run: Path) -> None:
    """``explain.json``, ``explain.md`` and the heat map ``explain.png`` of ``explanation`` into ``run``."""
    plt = pyplot()
    e = explanation
    write_json(run / "explain.json", {"kind": e.kind, "columns": e.columns, "cells": e.table()})
    label_names = list(e.labels)
    lines = [f"# {e.title}", "", e.intro, "",
             "| cell | " + " | ".join([e.count_name, *e.columns, *label_names]) + " |",
             "|---|" + "---|" * (1 + len(e.columns) + len(label_names))]
    for i, cell in enumerate(e.cells):
        values = [format(v, e.value_format) for v in e.values[i]]
        lines.append(f"| {cell} | {int(e.counts[i]):,} | " + " | ".join(
            values + [f"`{e.labels[name][i]}`" for name in label_names]) + " |")
    atomic_write_text(run / "explain.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(1.2 * len(e.columns) + 3, 0.3 * len(e.cells) + 1.5))
    image = ax.imshow(e.values, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(e.columns)), e.columns, rotation=30 if len(e.columns) > 5 else 0, ha="right")
    ax.set_yticks(range(len(e.cells)), e.cells)
    ax.set_title(e.title, fontsize=9)
    fig.colorbar(image, ax=ax, label=e.colour_label)
    fig.tight_layout()
    save_figure(fig, run / "explain.png")

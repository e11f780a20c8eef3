"""``fusionsim explain``: what a trained policy does per context cell, as a table and a heat map."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fusionsim.envs.context import CELL_NAMES, N_CELLS, context_cell  # noqa: E402
from fusionsim.experiments.runs import save_figure, write_json  # noqa: E402
from fusionsim.experiments.train import read_trained_run  # noqa: E402
from fusionsim.common.io import atomic_write_text  # noqa: E402


def explain(run: Path, requests: int = 50_000) -> dict:
    """Replay the trained policy (greedy for PPO, no learning) on the run's simulator as it was at the end
    of training, for ``requests`` requests, and average the arm weights it chose per context cell. Writes
    ``explain.md``, ``explain.json`` and ``explain.png`` into ``run``."""
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
    table = {CELL_NAMES[c]: {"requests": int(counts[c]), **{a: float(mean[c, i]) for i, a in enumerate(arm_names)}}
             for c in range(N_CELLS) if seen[c]}
    write_json(run / "explain.json", {"arms": arm_names, "cells": table})
    lines = ["# Learned arm weights per context cell", "",
             f"Mean weight the policy gives each arm, over {int(counts.sum()):,} replayed requests "
             "(cell = segment / surface / past purchases).", "",
             "| cell | requests | " + " | ".join(arm_names) + " |", "|---|---|" + "---|" * len(arm_names)]
    for name, row in table.items():
        lines.append(f"| {name} | {row['requests']:,} | " + " | ".join(f"{row[a]:.2f}" for a in arm_names) + " |")
    atomic_write_text(run / "explain.md", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(1.2 * len(arm_names) + 3, 0.3 * seen.sum() + 1.5))
    image = ax.imshow(mean[seen], vmin=0, vmax=1, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(arm_names)), arm_names)
    ax.set_yticks(range(int(seen.sum())), [CELL_NAMES[c] for c in np.flatnonzero(seen)])
    ax.set_title("mean arm weight per context cell")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    save_figure(fig, run / "explain.png")
    return table

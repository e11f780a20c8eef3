"""``fusionsim fidelity``: does a scenario reproduce a log's statistics?

The log is a complete ``fusionsim simulate`` run. Its policy (with its grid, arms and slate shuffling) is
simulated again on ``--scenario`` for as many requests, on another seed (``simulated/``, a simulate run
folder of its own); both logs, read in the impression schema (``envs.calibration``), give the statistics of
``envs.calibration.statistics`` — click rate by position and surface, clicks per request, purchases per
click, session lengths — each with its 95% interval, and each difference simulated - real with its
interval and a verdict. Writes ``fidelity.md``, ``fidelity.json``, ``ctr_by_position.png``, ``config.yaml``
and ``complete.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.calibration.readers import impressions_of_log
from fusionsim.envs.calibration.statistics import Comparison, compare_statistics, log_statistics
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.world import build_world
from fusionsim.envs.scenario import Scenario, scenario_to_dict
from fusionsim.experiments.runs import save_figure, write_config, write_json, pyplot
from fusionsim.experiments.simulate import read_simulate_run, run_policy


@dataclass(frozen=True)
class FidelityConfig:
    """What one ``fusionsim fidelity`` run does; written whole as ``config.yaml``'s ``args``."""

    logs: str
    """a complete fusionsim simulate run folder: the log to reproduce"""
    scenario: str = "default"
    """shipped scenario name or YAML path: the shop whose fidelity is checked"""
    seed: int = 1
    """seed of the simulation (use another than the log's)"""


def fidelity(config: FidelityConfig, scenario: Scenario, out: Path, progress: bool = True) -> dict:
    """Simulate the log's policy on ``scenario`` and compare the two logs' statistics; write the outputs
    listed in the module docstring to ``out`` and return the comparison."""
    logs = Path(config.logs)
    logged, arm_names = read_simulate_run(logs)
    simulated_config = dataclasses.replace(logged, scenario=config.scenario, seed=config.seed)
    write_config(out, "fidelity", dataclasses.asdict(config), scenario=scenario_to_dict(scenario))
    run_policy(simulated_config, scenario, out / "simulated", progress=progress)
    relative_prices = build_world(scenario).catalog.log_relative_price  # both logs' items are the world's
    statistics = {}
    for side, folder in (("real", logs), ("simulated", out / "simulated")):
        statistics[side] = log_statistics(impressions_of_log(read_interaction_log(folder, "--logs"), arm_names,
                                                             log_relative_prices=relative_prices))
    rows = compare_statistics(statistics["real"], statistics["simulated"])
    differing = [r.statistic for r in rows if r.verdict == "differs"]
    result = {"scenario": scenario.name, "logs": str(logs), "statistics": [r.to_dict() for r in rows],
              "differing": differing, "verdict": verdict(rows)}
    write_json(out / "fidelity.json", result)
    atomic_write_text(out / "fidelity.md", render_report(rows, scenario.name, logs))
    plot_positions(rows, out / "ctr_by_position.png")
    mark_complete(out, "fidelity")
    return result


def verdict(rows: list[Comparison]) -> str:
    """One sentence: how many statistics differ at 95%, against how many would by chance alone."""
    differing = [r.statistic for r in rows if r.verdict == "differs"]
    chance = 0.05 * len(rows)
    if not differing:
        return f"All {len(rows)} statistics are consistent with the log at 95%."
    return (f"{len(differing)} of {len(rows)} statistics differ at 95% (about {chance:.1f} would by chance alone): "
            + ", ".join(differing) + ".")


def render_report(rows: list[Comparison], scenario: str, logs: Path, held_out: bool = False) -> str:
    """The table of every statistic and the verdict; ``held_out``: the log side is the held-out part."""
    part = "the log's held-out (latest) requests" if held_out else "the log"
    lines = [f"# Fidelity of scenario `{scenario}` to `{logs}`", "",
             f"The log's policy simulated again on the scenario for as many requests as {part}, on another seed; "
             "each statistic with its 95% interval (delta method, shoppers or sessions as the units), and the "
             "difference simulated - log with its 95% interval.", "",
             "| statistic | log | simulated | difference | verdict |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.statistic} | {r.real.value:.4f} [{r.real.low:.4f}, {r.real.high:.4f}] | "
                     f"{r.simulated.value:.4f} [{r.simulated.low:.4f}, {r.simulated.high:.4f}] | "
                     f"{r.difference:+.4f} [{r.low:+.4f}, {r.high:+.4f}] | {r.verdict} |")
    lines += ["", verdict(rows)]
    return "\n".join(lines) + "\n"


def plot_positions(rows: list[Comparison], path: Path) -> None:
    """CTR by position of the log and the simulation, with their 95% intervals, as a PNG."""
    plt = pyplot()
    positions = [r for r in rows if r.statistic.startswith("CTR at position ")]
    x = np.arange(1, len(positions) + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    for side, offset, label in (("real", -0.1, "log"), ("simulated", 0.1, "simulated")):
        values = np.array([getattr(r, side).value for r in positions])
        errors = np.array([1.96 * getattr(r, side).se for r in positions])
        ax.errorbar(x + offset, values, yerr=errors, fmt="o", capsize=3, label=label)
    ax.set_xlabel("position")
    ax.set_ylabel("click-through rate (95% CI)")
    ax.set_title("CTR by position: log and simulated")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)

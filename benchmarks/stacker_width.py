"""How wide the MLP stacker must be: quality and speed of each hidden width, on the log a compare run fitted its
stackers on.

For each ``--runs`` folder (a complete ``fusionsim compare`` run) it fits an MLP stacker of each ``--widths``
on the run's own ``stacker_traffic/`` with the run's fit seed (as compare does), then serves each one for
``--requests`` requests on one fresh seed (common random numbers, the run's slots) and prints its held-out
loss, its reward per request and per ended session over the whole run with 95% batch-means intervals, each
one's paired difference from the widest, and the stacker's scoring time for 1,024 requests x C candidates
(median of alternating timings). Prints figures; asserts nothing.

    python benchmarks/stacker_width.py --runs runs/<compare run> [...] [--widths 8 16 32] [--requests 500000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from fusionsim.agents import ConstantAction
from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.envs.strategies import Stacking
from fusionsim.experiments.compare import compare_seeds
from fusionsim.experiments.online import (OnlineRun, batch_means_interval, ratio_difference, ratio_interval,
                                          run_online)
from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker


def _score_ms(stackers: dict[int, Stacker], n_arms: int, n_candidates: int, repeats: int = 7) -> dict[int, float]:
    rng = np.random.default_rng(0)
    scores = [rng.standard_normal((1024, n_candidates)).astype(np.float32) for _ in range(n_arms)]
    contexts = rng.random((1024, len(CONTEXT_NAMES))).astype(np.float32)
    times: dict[int, list[float]] = {w: [] for w in stackers}
    for _ in range(repeats):
        for width, stacker in stackers.items():
            start = time.perf_counter()
            stacker.score(scores, contexts)
            times[width].append(1e3 * (time.perf_counter() - start))
    return {w: float(np.median(t[1:])) for w, t in times.items()}


def _per_session(run: OnlineRun) -> tuple[np.ndarray, np.ndarray]:
    return run.step_rewards * run.slots, run.step_sessions.astype(np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="complete fusionsim compare run folders")
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=7, help="the evaluation seed (fresh: not the run's own)")
    args = parser.parse_args()
    widths = sorted(set(args.widths))
    for run_folder in args.runs:
        config = yaml.safe_load((run_folder / "config.yaml").read_text())
        scenario = parse_scenario(config["scenario"], str(run_folder / "config.yaml"))
        world, arms = make_shop(scenario, base=config["args"]["base"] or str(run_folder / "arms"))
        fit_seed, slots = compare_seeds(config["args"]["seed"]).fit, config["args"]["slots"]
        stackers, losses, runs = {}, {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for width in widths:
                metrics = train_stacker(TrainStackerConfig(logs=str(run_folder / "stacker_traffic"), kind="mlp",
                                                           hidden=width, seed=fit_seed), Path(tmp) / str(width))
                losses[width] = metrics["validation_loss"]
                stackers[width] = Stacker.load(Path(tmp) / str(width))
        for width, stacker in stackers.items():
            stacking = Stacking(stacker)
            runs[width] = run_online(world, arms, ConstantAction(0), stacking, args.requests, args.seed, slots,
                                     fusion=stacking)
        speed = _score_ms(stackers, len(arms), scenario.candidates.n_candidates)
        widest = runs[widths[-1]]
        print(f"{scenario.name}: MLP stacker by hidden width, {args.requests:,} requests on seed {args.seed} "
              f"({scenario.reward}; 95% batch-means CIs; differences paired against width {widths[-1]})")
        print(f"  {'width':>5} {'held-out loss':>13} {'per request':>26} {'vs widest':>26} {'per session':>26} "
              f"{'vs widest':>26} {'score ms':>9}")
        for width, run in runs.items():
            lo, hi = batch_means_interval(run.step_rewards)
            difference = run.step_rewards - widest.step_rewards
            dlo, dhi = batch_means_interval(difference)
            session, (slo, shi) = ratio_interval(*_per_session(run))
            dsession, (dslo, dshi) = ratio_difference(_per_session(run), _per_session(widest))
            print(f"  {width:>5} {losses[width]:>13.5f} {run.step_rewards.mean():>8.4f} [{lo:.4f},{hi:.4f}]"
                  f" {difference.mean():>+8.4f} [{dlo:+.4f},{dhi:+.4f}] {session:>8.3f} [{slo:.3f},{shi:.3f}]"
                  f" {dsession:>+8.3f} [{dslo:+.3f},{dshi:+.3f}] {speed[width]:>9.1f}")


if __name__ == "__main__":
    main()

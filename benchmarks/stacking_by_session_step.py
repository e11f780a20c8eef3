"""Where stacking gains and loses against the best static blend: reward per request by session step.

Reads a complete ``fusionsim compare`` run (its arms, its chosen stacker, its best static blend), serves
both for ``--requests`` requests on one fresh seed (common random numbers) and prints, for session steps
0, 1, ..., 5+, each one's reward per request with a 95% interval (the delta method's ratio interval over
10 batches of consecutive simulator steps) and the share of requests at that step. A stacker ranks by the
click it predicts for this request alone; what it shows also feeds the shopper's satiation and fatigue, which
cost clicks later in the session. Prints figures; asserts nothing.

    python benchmarks/stacking_by_session_step.py --run runs/<compare run> [--requests 300000] [--slots 256]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import yaml

from fusionsim.agents import ConstantAction, FixedBlend
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.envs.strategies import Stacking
from fusionsim.experiments.online import ratio_interval

STEPS = 6
"""Session steps reported: 0 .. STEPS - 2, and STEPS - 1 or later."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a complete fusionsim compare run folder")
    parser.add_argument("--requests", type=int, default=300_000)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args()
    config = yaml.safe_load((args.run / "config.yaml").read_text())
    comparison = json.loads((args.run / "comparison.json").read_text())
    scenario = parse_scenario(config["scenario"], str(args.run / "config.yaml"))
    base = config["args"]["base"] or str(args.run / "arms")
    stacker_folder = config["args"]["stacker"] or str(args.run / f"stacker_{comparison['stacker']['kind']}")
    world, arms = make_shop(scenario, base=base)
    names = [a.name for a in arms]
    weights = comparison["blends"]["best_static_blend"]["weights"]
    stacking = Stacking(Stacker.load(stacker_folder))
    served = {"best static blend": (None, FixedBlend([weights[n] for n in names]), ActionMapper("simplex", len(names))),
              f"stacking ({comparison['stacker']['kind']})": (stacking, ConstantAction(0), stacking)}
    print(f"{comparison['scenario']}: {comparison['reward']} per request by session step, {args.requests:,} requests "
          f"on seed {args.seed} (95% batch-means CI); share of requests at the step")
    labels = [f"step {s}{'+' if s == STEPS - 1 else ''}" for s in range(STEPS)]
    print(f"{'method':<24}" + "".join(f"{label:>28}" for label in labels))
    for name, (fusion, policy, decoder) in served.items():
        sim = BatchedSimulator(world, arms, n_slots=args.slots, fusion=fusion)
        sim.reset(seed=args.seed)
        steps = args.requests // args.slots
        sums, counts = np.zeros((steps, STEPS)), np.zeros((steps, STEPS))
        for i in range(steps):
            result = sim.serve(policy, decoder)
            step = np.minimum(result.requests.session_step, STEPS - 1)
            sums[i] = np.bincount(step, weights=result.reward, minlength=STEPS)
            counts[i] = np.bincount(step, minlength=STEPS)
        cells = []
        for s in range(STEPS):
            value, (low, high) = ratio_interval(sums[:, s], counts[:, s])
            cells.append(f"{value:.3f} [{low:.3f}, {high:.3f}] {counts[:, s].sum() / counts.sum():.2f}")
        print(f"{name:<24}" + "".join(f"{c:>28}" for c in cells), flush=True)


if __name__ == "__main__":
    main()

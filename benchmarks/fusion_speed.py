"""Requests per second of each fusion strategy inside the batched simulator, with the same four trained arms,
measured in one process in alternating runs (the machine is shared: each figure is a median). Prints
figures; asserts nothing.

    python benchmarks/fusion_speed.py [--base runs/arms] [--slots 1024] [--steps 20] [--runs 5]

Without ``--base`` it logs 100,000 requests of the default scenario and trains popularity, mf, content and
sequence for one epoch each (their speed does not depend on how well they are trained). The stackers are
fitted on 20,000 further requests of uniformly random blends. Target: stacking and cascade at >= 50% of the
weighted blend's requests/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fusionsim.agents import ConstantAction, FixedBlend
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.envs.strategies import Cascade, CascadeConfig, Stacking
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train_base import TrainBaseConfig, train_base
from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker


def _rate(sim: BatchedSimulator, policy, decoder, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        sim.serve(policy, decoder)
    return steps * sim.n_slots / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=None, help="a fusionsim train-base run of the arms")
    parser.add_argument("--slots", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed run")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per strategy, alternating")
    args = parser.parse_args()
    scenario = load_scenario("default")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = args.base
        if base is None:
            base = tmp / "arms"
            run_policy(SimulateConfig(requests=100_000, seed=0), scenario, tmp / "traffic", progress=False)
            train_base(TrainBaseConfig(logs=str(tmp / "traffic"), epochs=1), scenario, base, progress=False)
        run_policy(SimulateConfig(requests=20_000, seed=1, policy="uniform-grid", base=str(base)), scenario,
                   tmp / "stacker_traffic", progress=False)
        stackers = {}
        for kind in ("logistic", "mlp"):
            train_stacker(TrainStackerConfig(logs=str(tmp / "stacker_traffic"), kind=kind, epochs=1), tmp / kind)
            stackers[kind] = Stacker.load(tmp / kind)
        world, arms = make_shop(scenario, base=base)
        n, k, c = len(arms), scenario.candidates.slate_size, scenario.candidates.n_candidates
        first, second = tuple(np.eye(n)[0]), tuple(np.eye(n)[2])
        fused = {"stacking (logistic)": Stacking(stackers["logistic"]), "stacking (mlp)": Stacking(stackers["mlp"]),
                 "cascade (arm > 50 > arm)": Cascade([CascadeConfig(first, 50, second)], n, c, k),
                 "cascade (arm > 50 > mlp stacker)": Cascade([CascadeConfig(first, 50, "stacker")], n, c, k,
                                                             stacker=stackers["mlp"])}
        # (simulator, policy, decoder) per strategy: a fusion strategy decodes its own actions
        runs = {"weighted blend (equal weights)": (BatchedSimulator(world, arms, n_slots=args.slots),
                                                   FixedBlend([1.0 / n] * n), ActionMapper("simplex", n))}
        for name, fusion in fused.items():
            runs[name] = (BatchedSimulator(world, arms, n_slots=args.slots, fusion=fusion), ConstantAction(0), fusion)
        for sim, policy, decoder in runs.values():
            sim.reset(seed=0)
            _rate(sim, policy, decoder, 2)  # warm-up
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.runs):
            for name, (sim, policy, decoder) in runs.items():
                rates[name].append(_rate(sim, policy, decoder, args.steps))
    blend = float(np.median(rates["weighted blend (equal weights)"]))
    print(f"requests/s, {n} arms ({', '.join(a.name for a in arms)}), {args.slots} slots, median of {args.runs} "
          f"runs of {args.steps} steps:")
    for name, r in rates.items():
        median = float(np.median(r))
        print(f"  {name:<34} {median:>9,.0f}  ({100 * median / blend:5.1f}% of the blend; range "
              f"{min(r):,.0f}-{max(r):,.0f})")


if __name__ == "__main__":
    main()

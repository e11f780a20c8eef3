"""Training samples/s of each arm and scoring throughput, and the batched simulator with all four arms.
Prints figures; asserts nothing.

    python benchmarks/train_throughput.py [--requests 400000] [--device auto]

Steps: simulate a uniform-policy log on the default scenario, train popularity, mf, content and
sequence on it (``fusionsim train-base`` machinery), then time scoring (1,024 requests x 200
candidates per call) and the batched simulator serving with all four arms blended.
Target on a 2-core machine: batched env with all four arms >= 50,000 requests/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train_base import TrainBaseConfig, train_base
from fusionsim.recommenders import load_arms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400_000, help="logged requests to train on")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args()
    scenario = load_scenario("default")
    with tempfile.TemporaryDirectory() as tmp:
        logs, arms_dir = Path(tmp) / "logs", Path(tmp) / "arms"
        run_policy(SimulateConfig(requests=args.requests, seed=0), scenario, logs, progress=False)
        start = time.perf_counter()
        metrics = train_base(TrainBaseConfig(logs=str(logs), device=args.device), scenario, arms_dir, progress=False)
        print(f"train-base on {args.requests:,} logged requests: {time.perf_counter() - start:.1f} s in all")
        for name, result in metrics["models"].items():
            training = result.get("training")
            speed = (f"{training['samples_per_second']:,.0f} samples/s on {training['device']}, "
                     f"{training['epochs']} epochs" if training else "closed-form fit")
            print(f"  {name:<11} NDCG@10 {result['ndcg@10']:.4f}  Recall@10 {result['recall@10']:.4f}  ({speed})")
        arms, _ = load_arms(arms_dir)
        world, _ = make_shop(scenario, arms=arms)
        sim = BatchedSimulator(world, arms, n_slots=args.slots)
        sim.reset(seed=0)
        weights = np.full((args.slots, len(arms)), 1.0 / len(arms), dtype=np.float32)
        for _ in range(3):
            sim.step(weights)  # warm-up (and the sequence model's state cache)
        result = sim.step(weights)
        candidates = result.candidates
        for arm in arms:
            arm.score(result.requests, candidates)
            start = time.perf_counter()
            for _ in range(10):
                arm.score(result.requests, candidates)
            rate = 10 * args.slots / (time.perf_counter() - start)
            print(f"  scoring {arm.name:<11} {rate:,.0f} requests/s ({candidates.shape[1]} candidates each)")
        steps, rates = 50, []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(steps):
                sim.step(weights)
            rates.append(steps * args.slots / (time.perf_counter() - start))
        print(f"batched simulator, all four arms blended equally, {args.slots} slots: {np.median(rates):,.0f} "
              f"requests/s, median of 5 runs (range {min(rates):,.0f} to {max(rates):,.0f}; target >= 50,000)")


if __name__ == "__main__":
    main()

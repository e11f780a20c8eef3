"""Build a large world (default 1,000,000 items x 10,000,000 shoppers) and print time and peak memory;
then serve a few batched steps on it to show the simulator runs at that size.

    python benchmarks/world_scale.py [--items 1000000] [--users 10000000]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000_000)
    parser.add_argument("--slots", type=int, default=8192)
    args = parser.parse_args()
    scenario = load_scenario("default", **{"world.n_items": args.items, "world.n_users": args.users,
                                           "world.n_top_categories": 20, "world.n_leaf_per_top": 10,
                                           "world.n_brands": 5000, "candidates.trending_size": 5000,
                                           "traffic.requests_per_day": 10_000_000})
    start = time.perf_counter()
    world, arms = make_shop(scenario)
    built = time.perf_counter() - start
    print(f"world: {args.items:,} items x {args.users:,} shoppers, {len(world.history):,} history purchases")
    print(f"build + fit default arms: {built:.1f} s, peak RSS {peak_rss_gib():.2f} GiB")
    sim = BatchedSimulator(world, arms, n_slots=args.slots)
    start = time.perf_counter()
    sim.reset(seed=0)
    reset = time.perf_counter() - start
    weights = np.tile(np.array([[0.5, 0.5]], dtype=np.float32), (args.slots, 1))
    sim.step(weights)
    start = time.perf_counter()
    steps = 20
    for _ in range(steps):
        sim.step(weights)
    rate = steps * args.slots / (time.perf_counter() - start)
    print(f"simulator reset: {reset:.1f} s; blended steps: {rate:,.0f} requests/s with {args.slots} slots")
    print(f"peak RSS {peak_rss_gib():.2f} GiB (limit of this machine class: 24 GiB)")


if __name__ == "__main__":
    main()

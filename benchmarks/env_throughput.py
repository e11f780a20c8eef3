"""Requests per second of the single Gymnasium env and of the batched simulator (default scenario:
200 candidates, slate of 10). Prints figures; asserts nothing.

    python benchmarks/env_throughput.py [--requests 2000000] [--single-steps 20000]

Targets (2-core machine): batched >= 200,000 requests/s with the popularity arm; single env >= 5,000 steps/s.
The single env beside another simulator's, in one process: ``benchmarks/env_vs_sardine.py``.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import fusionsim.envs  # noqa: F401  (registers the environments)
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator


REPEATS = 5
"""Each figure is the median of this many timed runs (the machine is shared; single runs vary ~10%)."""


def single_env_rate(steps: int) -> float:
    env = gym.make("fusionsim/Fusion-v0", scenario="default", action_mode="arm")
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(0, env.action_space.n, steps)
    for a in actions[:500]:  # warm-up
        env.step(int(a))
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for a in actions:
            env.step(int(a))
        rates.append(steps / (time.perf_counter() - start))
    return float(np.median(rates))


def batched_rate(world, arms, weights_row: list[float], slots: int, requests: int) -> float:
    sim = BatchedSimulator(world, arms, n_slots=slots)
    sim.reset(seed=0)
    weights = np.tile(np.asarray([weights_row], dtype=np.float32), (slots, 1))
    sim.step(weights)  # warm-up
    steps = max(1, requests // slots // REPEATS)
    rates = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for _ in range(steps):
            sim.step(weights)
        rates.append(steps * slots / (time.perf_counter() - start))
    return float(np.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2_000_000, help="requests per batched measurement")
    parser.add_argument("--single-steps", type=int, default=5_000, help="steps per timed single-env run")
    args = parser.parse_args()
    scenario = load_scenario("default")
    world, arms = make_shop(scenario)
    print(f"default scenario: {scenario.world.n_items:,} items, {scenario.world.n_users:,} shoppers, "
          f"{scenario.candidates.n_candidates} candidates, slate {scenario.candidates.slate_size}")
    print(f"single env (gym.make('fusionsim/Fusion-v0')): {single_env_rate(args.single_steps):,.0f} steps/s "
          f"(median of {REPEATS} runs)")
    for slots in (1024, 4096, 16384):
        pop = batched_rate(world, arms, [1.0, 0.0], slots, args.requests)
        mix = batched_rate(world, arms, [0.5, 0.5], slots, args.requests)
        print(f"batched simulator, {slots:>6} slots: {pop:,.0f} requests/s (popularity arm), "
              f"{mix:,.0f} requests/s (50/50 blend of popularity and new arrivals)")


if __name__ == "__main__":
    main()

"""Sequential fusion on `long_horizon` (strong satiation and fatigue, reward = revenue): PPO trained on
whole sessions against the best static blend and LinUCB. Prints figures; asserts nothing.

    python benchmarks/long_horizon.py [--requests 1000000] [--eval-requests 200000]

PPO (stable-baselines3, continuous weights over popularity and new arrivals) and LinUCB (5-point grid)
learn online for --requests requests; the best static blend comes from a grid search with common random
numbers. Then all three, frozen, serve the same fresh seed for --eval-requests requests.
Target: PPO's revenue per session beats the best static blend's; LinUCB's is reported beside it.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fusionsim.agents.linear import LinUCB
from fusionsim.agents.ppo import PPOPolicy
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.agents import ConstantAction
from fusionsim.experiments.oracle import grid_search
from fusionsim.experiments.online import run_online
from fusionsim.experiments.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--eval-requests", type=int, default=200_000)
    args = parser.parse_args()
    scenario = load_scenario("long_horizon")
    world, arms = make_shop(scenario)
    search = grid_search(world, arms, 4, 50_000, seed=5, slots=256)
    grid = ActionMapper("grid", len(arms), 4)
    results = {"best static blend": run_online(world, arms, ConstantAction(search.best_global), grid,
                                               args.eval_requests, seed=99, slots=256)}
    with tempfile.TemporaryDirectory() as tmp:
        log_every = args.requests // 20 // 256 * 256
        for agent in ("ppo", "linucb"):
            config = TrainConfig(agent=agent, requests=args.requests, seed=1, slots=256 if agent == "linucb" else 64,
                                 log_every=log_every, checkpoint_every=log_every * 20, oracle_requests=0)
            train(config, scenario, Path(tmp) / agent, progress=False)
        ppo = PPOPolicy.load(Path(tmp) / "ppo")
        linucb = LinUCB.load(Path(tmp) / "linucb" / "policy.npz")
        results["PPO"] = run_online(world, arms, ppo, ActionMapper("weights", len(arms)),
                                    args.eval_requests, seed=99, slots=256)
        results["LinUCB"] = run_online(world, arms, linucb, grid, args.eval_requests, seed=99, slots=256)
    print(f"long_horizon, frozen policies on one fresh seed, {args.eval_requests:,} requests "
          f"(after {args.requests:,} requests of learning):")
    print(f"{'policy':<20}{'revenue/session':>16}{'revenue/request':>16}")
    for label, r in results.items():
        print(f"{label:<20}{r.revenue_per_session:>16.3f}{r.mean:>16.4f}")
    best = search.describe([a.name for a in arms])["best_static_blend"]["weights"]
    print(f"best static blend: {best}")


if __name__ == "__main__":
    main()

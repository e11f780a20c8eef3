"""Does adaptive fusion pay? LinUCB learning online against the best single arm, the best global static
blend and the oracle (best static blend per context cell), on the default scenario with the four
trained arms. Prints figures; asserts nothing.

    python benchmarks/fusion_quality.py [--requests 500000] [--grid-requests 100000]

Steps: log 400,000 uniform-policy requests, train popularity, mf, content and sequence on them, grid-search
every blend of the 4 arms at resolution 4 (35 blends, common random numbers), then simulate the oracle,
the best single arm and the best static blend, and train LinUCB online over the same grid, each for
--requests requests on one fresh seed. Targets: LinUCB's reward over the last 20% of requests >= 95% of
the oracle's and >= 5% above the best single arm.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.agents import ConstantAction
from fusionsim.experiments.oracle import CellTablePolicy, grid_search, run_policy_rewards
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, train
from fusionsim.experiments.train_base import TrainBaseConfig, train_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--grid-requests", type=int, default=100_000)
    parser.add_argument("--resolution", type=int, default=4)
    args = parser.parse_args()
    scenario = load_scenario("default")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        logs, arms_dir, run = Path(tmp) / "logs", Path(tmp) / "arms", Path(tmp) / "linucb"
        run_policy(SimulateConfig(requests=400_000, seed=0), scenario, logs, progress=False)
        train_base(TrainBaseConfig(logs=str(logs)), scenario, arms_dir, progress=False)
        world, arms = make_shop(scenario, base=arms_dir)
        names = [a.name for a in arms]
        search = grid_search(world, arms, args.resolution, args.grid_requests, seed=11, slots=256)
        described = search.describe(names)
        print(f"grid search: {len(search.grid)} blends x {args.grid_requests:,} requests")
        print(f"  best single arm {described['best_single_arm']}")
        print(f"  best static blend {described['best_static_blend']}")
        mapper = ActionMapper("grid", len(arms), args.resolution)
        seed = 23
        results = {}
        for label, policy in (("oracle", CellTablePolicy(search.oracle_table().tolist())),
                              ("best static blend", ConstantAction(search.best_global)),
                              ("best single arm", ConstantAction(search.best_single_arm))):
            results[label] = run_policy_rewards(world, arms, policy, mapper, args.requests, seed, slots=256).last_20pct
        config = TrainConfig(agent="linucb", requests=args.requests, base=str(arms_dir), seed=seed, slots=256,
                             grid_resolution=args.resolution, log_every=args.requests // 20,
                             checkpoint_every=args.requests // 20 * 20)
        metrics = train(config, scenario, run, progress=False)
        linucb = metrics["reward_per_request_last_20pct"]
    print(f"reward (clicks) per request over the last 20% of {args.requests:,} requests:")
    for label, value in results.items():
        print(f"  {label:<18} {value:.4f}")
    print(f"  LinUCB (learning)  {linucb:.4f}  ({100 * linucb / results['oracle']:.1f}% of the oracle, "
          f"{100 * (linucb / results['best single arm'] - 1):+.1f}% vs the best single arm, "
          f"{100 * (linucb / results['best static blend'] - 1):+.1f}% vs the best static blend)")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

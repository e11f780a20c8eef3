"""How much of the per-cell oracle's headroom a weight policy fitted to request totals can reach at all.

Logs ``--log-requests`` requests of uniformly random blends of the weight grid (no slate shuffling), fits
every learner's reward model to all of them at once (LinUCB's per-blend ridge and JointLinUCB's joint
ridge of degree 2, 3 and 4, each acting greedily, alpha = 0, no further learning; and the per-cell table
of logged means), then serves each for ``--requests`` requests on a fresh seed beside the best static
blend and the oracle of a common-random-numbers grid search (``--search-requests`` per blend), as
``fusionsim compare`` does. A learner that starts from nothing and sees ``--log-requests`` request totals
online cannot do better than its model fitted to the same number of uniformly spread totals. Prints
figures; asserts nothing.

    python benchmarks/adaptive_ceiling.py --base runs/<arms> [--scenario default] [--log-requests 1000000]
        [--requests 500000] [--search-requests 100000]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fusionsim.agents import ConstantAction, JointLinUCB, LinUCB, UniformRandom
from fusionsim.envs.context import CONTEXT_DIM, N_CELLS, context_cell
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments.online import run_online
from fusionsim.experiments.oracle import CellTablePolicy, grid_search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="a fusionsim train-base run of the arms")
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--log-requests", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--search-requests", type=int, default=100_000)
    parser.add_argument("--slots", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    log_seed, policy_seed, search_seed, evaluation_seed = (int(s) for s in
                                                           np.random.SeedSequence(args.seed).generate_state(4))
    scenario = load_scenario(args.scenario)
    world, arms = make_shop(scenario, base=args.base)
    mapper = ActionMapper("grid", len(arms), 4)
    g = mapper.n_actions
    learners = {"linucb (greedy)": LinUCB(g, CONTEXT_DIM, alpha=0.0, seed=policy_seed),
                **{f"joint_linucb degree {d} (greedy)": JointLinUCB(g, CONTEXT_DIM, len(arms), 4, degree=d, alpha=0.0,
                                                                    seed=policy_seed) for d in (2, 3, 4)}}
    sim = BatchedSimulator(world, arms, n_slots=1024)
    sim.reset(seed=log_seed)
    uniform = UniformRandom(g, action_mode="grid", seed=policy_seed)
    cell_sum, cell_count = np.zeros((g, N_CELLS)), np.zeros((g, N_CELLS))
    for _ in range(max(1, args.log_requests // 1024)):
        result = sim.serve(uniform, mapper)
        for learner in learners.values():
            learner.update(result.contexts, result.actions, result.reward)
        cells = context_cell(result.contexts)
        np.add.at(cell_sum, (result.actions, cells), result.reward)
        np.add.at(cell_count, (result.actions, cells), 1)
    table = np.argmax(np.where(cell_count > 0, cell_sum / np.maximum(cell_count, 1), -np.inf), axis=0)
    search = grid_search(world, arms, 4, args.search_requests, search_seed, args.slots)
    policies = {"best static blend": ConstantAction(search.best_global),
                "oracle (grid search)": CellTablePolicy(search.oracle_table().tolist()),
                "per-cell table of logged means": CellTablePolicy(table.tolist()), **learners}
    runs = {name: run_online(world, arms, policy, mapper, args.requests, evaluation_seed, args.slots)
            for name, policy in policies.items()}
    static, oracle = runs["best static blend"].last_20pct, runs["oracle (grid search)"].last_20pct
    print(f"{args.scenario}: fitted to {args.log_requests:,} uniformly logged requests, served {args.requests:,} "
          f"on a fresh seed; reward per request over the last 20% (95% CI), paired difference from the best "
          f"static blend (95% CI), share of the oracle's headroom:")
    for name, run in runs.items():
        low, high = run.tail_interval()
        difference, (d_low, d_high) = run.tail_difference(runs["best static blend"])
        share = (run.last_20pct - static) / (oracle - static) if oracle > static else float("nan")
        print(f"  {name:<34} {run.last_20pct:.4f} [{low:.4f}, {high:.4f}]  {difference:+.4f} [{d_low:+.4f}, "
              f"{d_high:+.4f}]  {100 * share:+.0f}%")


if __name__ == "__main__":
    main()

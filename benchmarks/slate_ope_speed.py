"""Speed of every slate estimator's point estimate (input checks included) on 1,000,000 slates of 10
positions (10,000,000 rows; Cascade-DR also reads q_hat and evaluation_policy_action_dist, 10 items per row):
the median of 3 runs each. Prints figures; asserts nothing.

    python benchmarks/slate_ope_speed.py [--slates 1000000] [--len-list 10] [--actions 10] [--repeats 3]

Target on a 2-core machine: < 1 s per estimator.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS, SlateCascadeDoublyRobust

TARGET_S = 1.0


def synthetic(n_slates: int, len_list: int, n_actions: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Flat slate arrays of the conventions in ``slate``'s docstring, with random but valid propensities."""
    rng = np.random.default_rng(seed)
    n = n_slates * len_list
    pscore_cascade = np.cumprod(rng.uniform(0.5, 1.0, (n_slates, len_list)), axis=1)
    evaluation_cascade = np.cumprod(rng.uniform(0.3, 1.0, (n_slates, len_list)), axis=1)
    dist = rng.random((n, n_actions))
    dist /= dist.sum(axis=1, keepdims=True)
    return {"slate_id": np.repeat(np.arange(n_slates), len_list), "position": np.tile(np.arange(len_list), n_slates),
            "action": rng.integers(0, n_actions, n), "reward": (rng.random(n) < 0.1).astype(np.float64),
            "pscore": np.repeat(pscore_cascade[:, -1], len_list),
            "evaluation_policy_pscore": np.repeat(evaluation_cascade[:, -1], len_list),
            "pscore_item_position": rng.uniform(0.05, 1.0, n),
            "evaluation_policy_pscore_item_position": rng.uniform(0.0, 1.0, n),
            "pscore_cascade": pscore_cascade.ravel(), "evaluation_policy_pscore_cascade": evaluation_cascade.ravel(),
            "q_hat": rng.random(n * n_actions), "evaluation_policy_action_dist": dist.ravel()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slates", type=int, default=1_000_000)
    parser.add_argument("--len-list", type=int, default=10)
    parser.add_argument("--actions", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    arrays = synthetic(args.slates, args.len_list, args.actions)
    print(f"{args.slates:,} slates x {args.len_list} positions = {args.slates * args.len_list:,} rows, "
          f"{args.actions} items (arrays made in {time.perf_counter() - start:.1f} s); median of {args.repeats} runs, "
          f"target < {TARGET_S:g} s each")
    for name, cls in SLATE_ESTIMATORS.items():
        estimator = (SlateCascadeDoublyRobust(len_list=args.len_list, n_unique_action=args.actions)
                     if cls is SlateCascadeDoublyRobust else cls(len_list=args.len_list))
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            value = estimator.estimate_policy_value(**arrays)
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        verdict = "ok" if seconds < TARGET_S else "over target"
        print(f"{name:<11} value {value:9.4f}  point estimate {seconds:.3f} s  ({verdict})")


if __name__ == "__main__":
    main()

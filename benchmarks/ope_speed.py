"""Speed of every off-policy estimator on 1,000,000 rounds: the point estimate and a 1,000-resample
bootstrap interval. Switch-DR and DRos run with a finite lambda_ (HYPERPARAMETERS), so their switching and
shrinking are timed (obp's defaults make them DR and DM). Prints figures; asserts nothing.

    python benchmarks/ope_speed.py [--rounds 1000000] [--resamples 1000]

Targets on a 2-core machine: point estimate < 0.2 s, bootstrap interval < 2 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fusionsim.experiments.evaluation.estimators import ESTIMATORS

HYPERPARAMETERS = {"switch-dr": {"lambda_": 10.0}, "dr-os": {"lambda_": 10.0}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=1_000_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--actions", type=int, default=8)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n, k = args.rounds, args.actions
    action = rng.integers(0, k, n)
    reward = rng.random(n)
    dist = rng.dirichlet(np.ones(k), n)[:, :, None]
    q = rng.random((n, k, 1))
    pscore = np.full(n, 1.0 / k)
    arrays = {"reward": reward, "action": action, "pscore": pscore, "action_dist": dist,
              "estimated_rewards_by_reg_model": q}
    for name, cls in ESTIMATORS.items():
        hyperparameters = HYPERPARAMETERS.get(name, {})
        estimator = cls(**hyperparameters)
        start = time.perf_counter()
        value = estimator.estimate_policy_value(**arrays)
        point = time.perf_counter() - start
        start = time.perf_counter()
        estimator.estimate_interval(**arrays, n_bootstrap_samples=args.resamples, random_state=0)
        interval = time.perf_counter() - start
        label = name + "".join(f" {k}={v:g}" for k, v in hyperparameters.items())
        print(f"{label:<22} value {value:.4f}  point estimate {point:.3f} s  {args.resamples}-resample interval "
              f"{interval:.2f} s")


if __name__ == "__main__":
    main()

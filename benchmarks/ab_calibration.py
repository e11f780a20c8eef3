"""Are the A/B statistics honest? False-positive rate of A/A tests and coverage of the true lift by the
95% CIs of A/B tests, on the default scenario. Prints figures; asserts nothing.

    python benchmarks/ab_calibration.py [--aa 500] [--ab 200] [--days 1.0]

A/A: one simulation of the population under one policy, re-randomised into two buckets with 500 salts
(under A/A the outcome does not depend on the assignment); false positives at alpha = 0.05 per metric.
A/B: popularity against new arrivals, 200 tests, each with its own salt and simulation seed; the true
lift comes from replaying everyone under each policy (10 replays each, averaged). Targets: A/A false-positive
rate in [0.03, 0.07] per metric; A/B CIs cover the true lift in >= 93% of tests.

The same measurement across seeds and on Ray: ``fusionsim sweep ab_calibration [--backend ray]`` (the sweep file
``experiments/configs/ab_calibration.yaml``).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.ab_test import METRICS, analyse, assign_buckets, run_buckets, true_means
from fusionsim.experiments.simulate import make_static_policy


def _table(run, pre, buckets) -> pd.DataFrame:
    return pd.DataFrame({"bucket": buckets, **{m: run.totals[:, i] for i, m in enumerate(METRICS)},
                         "impressions": run.impressions,
                         **{f"pre_{m}": pre.totals[:, i] for i, m in enumerate(METRICS)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aa", type=int, default=500)
    parser.add_argument("--ab", type=int, default=200)
    parser.add_argument("--days", type=float, default=1.0)
    parser.add_argument("--replays", type=int, default=10, help="whole-population replays per policy for the truth")
    args = parser.parse_args()
    scenario = load_scenario("default")
    world, arms = make_shop(scenario)
    names = [a.name for a in arms]
    users = np.arange(world.population.n_users)

    def policy(name: str, seed: int):
        return make_static_policy(name, names, seed)

    pre = run_buckets(world, arms, [policy("uniform", 0)], np.zeros(len(users), dtype=np.int64), 0.5, seed=99)
    one = run_buckets(world, arms, [policy("popularity", 0)], np.zeros(len(users), dtype=np.int64), args.days, seed=5)
    active = one.totals[:, METRICS.index("requests")] > 0
    rejections: dict[str, list[bool]] = {}
    for salt in range(args.aa):
        buckets = assign_buckets(users, [0.5, 0.5], salt=f"aa-{salt}")
        rows = next(iter(analyse(_table(one, pre, buckets)[active], ["a", "a"], [0.5, 0.5])["comparisons"].values()))
        for metric, r in rows.items():
            rejections.setdefault(metric, []).append(r["p_value"] < 0.05)
    print(f"A/A: {args.aa} re-randomisations of {int(active.sum()):,} shoppers over {args.days:g} day(s); "
          "false-positive rate at alpha = 0.05:")
    for metric, hits in rejections.items():
        print(f"  {metric:<20} {np.mean(hits):.3f}")

    control, treatment = (true_means(world, arms, policy(name, 0), args.days, seed=1000, replays=args.replays)
                          for name in ("popularity", "new_arrivals"))
    truth = {metric: treatment[i] - control[i] for i, metric in enumerate(METRICS)}
    covered: dict[str, list[bool]] = {}
    for salt in range(args.ab):
        buckets = assign_buckets(users, [0.5, 0.5], salt=f"ab-{salt}")
        test = run_buckets(world, arms, [policy("popularity", 0), policy("new_arrivals", 1)], buckets, args.days,
                    seed=7 + salt)
        active = test.totals[:, METRICS.index("requests")] > 0
        rows = next(iter(analyse(_table(test, pre, buckets)[active], ["popularity", "new_arrivals"],
                                 [0.5, 0.5])["comparisons"].values()))
        for metric in ("revenue", "clicks", "purchases", "sessions"):
            for name in (metric, f"{metric} (CUPED)"):
                r = rows[name]
                covered.setdefault(name, []).append(r["ci_lower"] <= truth[metric] <= r["ci_upper"])
    print(f"A/B: new arrivals vs popularity, {args.ab} tests; true lift per shopper "
          + ", ".join(f"{m} {truth[m]:+.4f}" for m in ("revenue", "clicks", "purchases", "sessions")))
    print("  share of 95% CIs covering the true lift:")
    for metric, hits in covered.items():
        print(f"  {metric:<20} {np.mean(hits):.3f}")


if __name__ == "__main__":
    main()

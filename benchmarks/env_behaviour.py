"""Plausibility of the default shop: CTR per slot on feed and search, purchase rates, per segment.
Prints figures and whether they fall in typical e-commerce ranges; asserts nothing.

    python benchmarks/env_behaviour.py [--scenario default] [--requests 1000000] [--policy uniform]

Typical ranges used here (public e-commerce figures: home-feed recommendation CTR of a few percent at the
top slot, search CTR higher, conversion of 1-4% of sessions and a few percent of clicks):
feed CTR at slot 1 in [2%, 15%], search CTR at slot 1 above the feed's, CTR falling with the slot,
purchases per click in [2%, 20%], purchases per request in [0.2%, 5%].
"""

from __future__ import annotations

import argparse

import numpy as np

from fusionsim.envs.logs import SURFACES
from fusionsim.envs.scenario import SEGMENTS, load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments.metrics import TrafficMetrics
from fusionsim.experiments.simulate import make_static_policy
from fusionsim.envs.fusion import ActionMapper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--policy", default="uniform")
    parser.add_argument("--slots", type=int, default=1024)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    world, arms = make_shop(scenario)
    policy = make_static_policy(args.policy, [a.name for a in arms], seed=1)
    mapper = ActionMapper(policy.action_mode, len(arms))
    sim = BatchedSimulator(world, arms, n_slots=args.slots)
    contexts = sim.reset(seed=0)
    k = scenario.candidates.slate_size
    clicks_by_surface = np.zeros((len(SURFACES), k))
    requests_by_surface = np.zeros(len(SURFACES))
    metrics = TrafficMetrics(k)
    for _ in range(args.requests // args.slots):
        actions, _ = policy.act(contexts)
        result = sim.step(mapper.decide(actions))
        metrics.update(result)
        surface = result.requests.surface
        for s in range(len(SURFACES)):
            clicks_by_surface[s] += result.clicks[surface == s].sum(axis=0)
            requests_by_surface[s] += (surface == s).sum()
        contexts = sim.contexts
    summary = metrics.summary()
    ctr = clicks_by_surface / requests_by_surface[:, None]
    print(f"scenario {scenario.name}, policy {args.policy}, {summary['requests']:,} requests")
    print("CTR by slot:   " + " ".join(f"{i + 1:>6}" for i in range(k)))
    for s, name in enumerate(SURFACES):
        print(f"  {name:<12}" + " ".join(f"{100 * x:5.2f}%" for x in ctr[s]))
    print(f"purchases per request {100 * summary['purchases_per_request']:.2f}%, per click "
          f"{100 * summary['purchases_per_click']:.2f}%, revenue per request {summary['revenue_per_request']:.3f}, "
          f"mean session length {summary['mean_session_length']:.2f} requests")
    print(f"{'segment':<10}{'requests':>10}{'CTR':>8}{'clicks/req':>12}{'buys/req':>10}{'buys/click':>12}{'revenue/req':>13}")
    for name in SEGMENTS:
        m = summary["by_segment"][name]
        print(f"{name:<10}{m['requests']:>10,}{100 * m['ctr']:>7.2f}%{m['clicks_per_request']:>12.3f}"
              f"{100 * m['purchases_per_request']:>9.2f}%{100 * m['purchases_per_click']:>11.2f}%"
              f"{m['revenue_per_request']:>13.3f}")
    checks = {
        "feed CTR at slot 1 in [2%, 15%]": 0.02 <= ctr[0, 0] <= 0.15,
        "search CTR at slot 1 above the feed's": ctr[1, 0] > ctr[0, 0],
        "CTR falls with the slot (1 > 3 > 6 > 10)": all(ctr[s, 0] > ctr[s, 2] > ctr[s, 5] > ctr[s, k - 1]
                                                        for s in range(len(SURFACES))),
        "purchases per click in [2%, 20%]": 0.02 <= summary["purchases_per_click"] <= 0.20,
        "purchases per request in [0.2%, 5%]": 0.002 <= summary["purchases_per_request"] <= 0.05,
    }
    for text, ok in checks.items():
        print(f"{'ok ' if ok else 'OUT'} {text}")


if __name__ == "__main__":
    main()

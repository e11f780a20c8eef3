"""Does fusion pay? ``fusionsim compare`` on one scenario, with the issue's targets checked. Prints figures;
asserts nothing.

    python benchmarks/fusion_quality.py [--scenario default] [--requests 500000] [--search-requests 100000]
                                        [--log-requests 400000] [--out runs/fusion_quality_<scenario>]

The scenario is a shipped name or a YAML file. Targets: the best adaptive weight policy captures >= 50% of the
headroom between the best static blend and the per-cell oracle over the last 20% of its requests; stacking
beats the oracle; the best cascade beats the best single arm.

The same measurement across seeds and on Ray: ``fusionsim sweep fusion_quality [--backend ray]`` (the sweep file
``experiments/configs/fusion_quality.yaml``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.compare import CompareConfig, compare
from fusionsim.experiments.runs import new_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--search-requests", type=int, default=100_000)
    parser.add_argument("--log-requests", type=int, default=400_000)
    parser.add_argument("--base", default=None, help="a train-base run folder of the arms (default: train them)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    out = args.out or Path("runs") / f"fusion_quality_{scenario.name}"
    config = CompareConfig(scenario=args.scenario, base=args.base, requests=args.requests,
                           search_requests=args.search_requests, log_requests=args.log_requests)
    start = time.perf_counter()
    with new_run(out, overwrite=True) as folder:
        comparison = compare(config, scenario, folder, progress=False)
    methods = comparison["methods"]
    print(f"{scenario.reward} per request over the last 20% of {args.requests:,} requests, scenario {scenario.name}:")
    for name, r in methods.items():
        headroom = r.get("headroom_captured")
        print(f"  {name:<18} {r['reward_per_request']:.4f}  [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
              + ("" if headroom is None or r["kind"] != "adaptive" else f"  headroom captured {100 * headroom:.0f}%"))
    adaptive = max((m for m in methods if methods[m]["kind"] == "adaptive"),
                   key=lambda m: methods[m]["reward_per_request"])
    cascades = max((m for m in methods if methods[m]["kind"] == "cascade"),
                   key=lambda m: methods[m]["reward_per_request"])
    checks = [(f"{adaptive} captures >= 50% of the headroom", (methods[adaptive]["headroom_captured"] or 0) >= 0.5),
              ("stacking beats the oracle",
               methods["stacking"]["reward_per_request"] > methods["oracle"]["reward_per_request"]),
              (f"{cascades} beats the best single arm",
               methods[cascades]["reward_per_request"] > methods["best single arm"]["reward_per_request"])]
    for text, met in checks:
        print(f"  target: {text}: {'met' if met else 'MISSED'}")
    print(f"wrote {out}; total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

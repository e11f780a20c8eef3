"""Parameter recovery of ``fusionsim calibrate``: logs simulated from a shop with known behaviour are
calibrated back, on top of the same shop with the default behaviour, at growing sizes; the errors should
shrink with the data, and calibrate's wall time at 1M impressions is the speed target (< 60 s).

    python benchmarks/calibration_recovery.py [--scenario default] [--requests 10000,30000,100000] [--seeds 3]

Truth: attraction_bias -4.2, purchase_bias -5.0, examination_decay 1.3, mobile_extra_decay 0.8 (the
defaults: -4.8, -5.5, 1.0, 0.5), and every segment's leave_bias 0.4 above the default (fitted as one
shift). Each size is logged under the uniform-grid policy over the default arms
(10 impressions per request) on ``--seeds`` seeds, once with every slate shown in a random order (a
randomisation bucket: position bias from CTR ratios) and once in the policy's order (position bias from
the position-based model by EM); the figure is the mean absolute error over the seeds and the median
calibrate time. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from fusionsim.envs.scenario import load_scenario, parse_scenario, scenario_to_dict
from fusionsim.experiments.calibrate import FITTED, CalibrateConfig, calibrate
from fusionsim.experiments.simulate import SimulateConfig, run_policy

TRUTH = {"attraction_bias": -4.2, "purchase_bias": -5.0, "examination_decay": 1.3, "mobile_extra_decay": 0.8}
LEAVE_SHIFT = 0.4
"""The truth's leave_bias of every segment, above the start's."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--requests", default="10000,30000,100000")
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    start = load_scenario(args.scenario)
    raw = scenario_to_dict(load_scenario(args.scenario, **{f"behaviour.{k}": v for k, v in TRUTH.items()}))
    for params in raw["world"]["segments"].values():
        params["leave_bias"] += LEAVE_SHIFT
    truth = parse_scenario(raw, "<truth>")
    reported = (*FITTED, "leave_bias_shift")
    print(f"scenario {args.scenario}: truth {TRUTH}; start " + str({k: getattr(start.behaviour, k) for k in FITTED}))
    print(f"{'order':>10} {'impressions':>12} " + " ".join(f"{k:>20}" for k in reported) + f" {'calibrate s':>12}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start_file = tmp / "start.yaml"
        start_file.write_text(yaml.safe_dump(scenario_to_dict(start)))
        for shuffled in (True, False):
            for requests in (int(r) for r in args.requests.split(",")):
                errors, seconds = {k: [] for k in reported}, []
                for seed in range(args.seeds):
                    name = f"{requests}_{seed}_{'random' if shuffled else 'policy'}"
                    run_policy(SimulateConfig(policy="uniform-grid", requests=requests, seed=100 + seed, slots=500,
                                              shuffle_slates=shuffled), truth, tmp / f"log_{name}", progress=False)
                    began = time.perf_counter()
                    result = calibrate(CalibrateConfig(logs=str(tmp / f"log_{name}"), scenario=str(start_file)),
                                       start, tmp / f"fit_{name}", progress=False)
                    seconds.append(time.perf_counter() - began)
                    for k in FITTED:
                        errors[k].append(abs(result["fitted"][k] - TRUTH[k]))
                    errors["leave_bias_shift"].append(abs(result["leave_bias_shift"] - LEAVE_SHIFT))
                impressions = requests * truth.candidates.slate_size
                print(f"{'random' if shuffled else 'policy':>10} {impressions:>12,} "
                      + " ".join(f"{np.mean(errors[k]):>20.4f}" for k in reported) + f" {np.median(seconds):>12.1f}",
                      flush=True)

if __name__ == "__main__":
    main()

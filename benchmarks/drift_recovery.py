"""After a trend shift, does forgetting help? Plain LinUCB against discounted LinUCB on the `drift`
scenario (three leaf categories become fashionable on day 2). Prints figures; asserts nothing.

    python benchmarks/drift_recovery.py [--requests 500000] [--discount 0.99999] [--trained-arms]

Both learn online from day 0 on the same seed; the table shows clicks per request per half day. With
--trained-arms the four arms are first trained (train-base) on 400,000 uniform-policy requests of the
drift scenario's first two days; otherwise the default arms (popularity, new arrivals) serve.
Target: the windowed (discounted) variant recovers after the shift faster than the plain one.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, train
from fusionsim.experiments.train_base import TrainBaseConfig, train_base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500_000)
    parser.add_argument("--discount", type=float, default=0.99999)
    parser.add_argument("--trained-arms", action="store_true")
    args = parser.parse_args()
    scenario = load_scenario("drift")
    per_day = scenario.traffic.requests_per_day
    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = None
        if args.trained_arms:
            base = Path(tmp) / "arms"
            run_policy(SimulateConfig(requests=2 * per_day, seed=0), scenario, Path(tmp) / "logs", progress=False)
            train_base(TrainBaseConfig(logs=str(Path(tmp) / "logs")), scenario, base, progress=False)
        for label, discount in (("plain", 1.0), (f"discount {args.discount}", args.discount)):
            config = TrainConfig(agent="linucb", requests=args.requests, base=None if base is None else str(base),
                                 seed=3, slots=256, log_every=per_day // 2, checkpoint_every=per_day // 2 * 100,
                                 oracle_requests=0, discount=discount)
            metrics = train(config, scenario, Path(tmp) / label.replace(" ", "_"), progress=False)
            curves[label] = np.array(metrics["curve"])
    print("clicks per request per half day (the trend shifts at day 2):")
    labels = list(curves)
    print(f"{'day':>6}" + "".join(f"{label:>22}" for label in labels))
    for i, (requests, _) in enumerate(curves[labels[0]]):
        print(f"{requests / per_day:>6.1f}" + "".join(f"{curves[label][i, 1]:>22.4f}" for label in labels))
    for event, day in (("trend shift", 2.0), ("new-item wave", 3.0)):
        window = [(curves[label][:, 0] > day * per_day) & (curves[label][:, 0] <= (day + 1) * per_day)
                  for label in labels]
        means = [curves[label][mask, 1].mean() for label, mask in zip(labels, window, strict=True)]
        print(f"first day after the {event} (day {day:g}): plain {means[0]:.4f}, {labels[1]} {means[1]:.4f} "
              f"({100 * (means[1] / means[0] - 1):+.1f}%)")


if __name__ == "__main__":
    main()

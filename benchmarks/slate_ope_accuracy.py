"""How close is each slate estimator to the truth for ranking policies, on fusionsim's own logs? The logger
shows the top k of a fixed blend of the default scenario's two default arms in a uniformly random order
(``simulate --policy blend:0.5,0.5 --shuffle-slates``: a position-randomisation bucket); each evaluation
policy re-ranks the logged slates by one arm, or by an MLP stacker trained on another log of the same shop
(``fusionsim ope --rerank``, ``experiments/slate_ope.py``), and every slate estimator is run on it. The truth
is what the estimators estimate: one request re-ranked on the logged states (the log replayed, the simulator
put back after each counterfactual step); beside it the value deployed for whole sessions. Prints figures;
asserts nothing.

    python benchmarks/slate_ope_accuracy.py [--requests 100000] [--seed 3]

IIPS assumes the click at a position depends only on the item there, RIPS and Cascade-DR only on the items
down to it, SIPS nothing. But SIPS and RIPS need the logged slate, or its first l items, to be the evaluation
policy's: a shuffle of k = 10 items matches a given order's first l with probability (k - l)! / k!, so
beyond l of about 3 they see no weight at 100,000 requests (SNRIPS and SNSIPS are then 0 / 0, undefined).
PI assumes a logger that fills positions independently, which a shuffle (no repeats) is not.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS
from fusionsim.experiments.ope_run import OPEConfig, run_ope
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker

LOGGER = "blend:0.5,0.5"
"""The logger's blend of the default scenario's two default arms; its slates are shown in a random order."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    scenario = load_scenario("default")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, seed in (("log", args.seed), ("stacker_log", args.seed + 1)):
            run_policy(SimulateConfig(policy=LOGGER, requests=args.requests, seed=seed, shuffle_slates=True,
                                      slots=256), scenario, tmp / name, progress=False)
        train_stacker(TrainStackerConfig(logs=str(tmp / "stacker_log"), kind="mlp"), tmp / "stacker")
        print(f"default scenario: logger = the top 10 of {LOGGER} in a uniformly random order, {args.requests:,} "
              "requests; truth = one request re-ranked on the logged states; estimate [95% CI] relative error")
        for orderer in ("popularity", "new_arrivals", "stacker"):
            metrics = run_ope(OPEConfig(logs=str(tmp / "log"), rerank=orderer, estimators=tuple(SLATE_ESTIMATORS),
                                        policy=str(tmp / "stacker") if orderer == "stacker" else None),
                              tmp / f"ope_{orderer}")
            truth = metrics["on_policy_truth"]
            print(f"\nre-ranked by {orderer}: truth {truth:.4f}, deployed for whole sessions "
                  f"{metrics['deployed_value']:.4f} ({100 * (metrics['deployed_value'] / truth - 1):+.2f}%)")
            for name, r in metrics["estimators"].items():
                if r["estimate"] is None:
                    print(f"  {name:<11} undefined (0 / 0: no slate carries weight at some position)")
                    continue
                flag = "  (flagged: too little weight)" if name in metrics["thin_weight"] else ""
                print(f"  {name:<11} {r['estimate']:8.4f} [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] "
                      f"{100 * (r['estimate'] / truth - 1):+7.2f}%{flag}")


if __name__ == "__main__":
    main()

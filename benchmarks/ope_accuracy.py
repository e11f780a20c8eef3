"""How close is each off-policy estimator to the truth? A trained epsilon-greedy LinUCB is evaluated on
100,000 uniform-policy requests of the default scenario and compared with its simulated on-policy value.
Each estimator runs as ``fusionsim ope`` runs it (experiments/ope_run.py: obp's hyperparameter defaults
unless the command sets one). Prints figures; asserts nothing.

    python benchmarks/ope_accuracy.py [--requests 100000] [--epsilon 0.1]

Target: DR's relative error <= 5%.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.evaluation.estimators import ESTIMATORS
from fusionsim.experiments.ope_run import OPEConfig, run_ope
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--epsilon", type=float, default=0.1)
    args = parser.parse_args()
    scenario = load_scenario("default")
    with tempfile.TemporaryDirectory() as tmp:
        logs, policy = Path(tmp) / "logs", Path(tmp) / "policy"
        run_policy(SimulateConfig(requests=args.requests, seed=4), scenario, logs, progress=False)
        train(TrainConfig(agent="linucb", requests=200_000, seed=5, actions="arm", log_every=20_000,
                          checkpoint_every=200_000, oracle_requests=0, epsilon=args.epsilon), scenario, policy,
              progress=False)
        metrics = run_ope(OPEConfig(logs=str(logs), policy=str(policy), estimators=tuple(ESTIMATORS)),
                          Path(tmp) / "ope")
    print(f"LinUCB (epsilon {args.epsilon}, trained on 200,000 requests) on {args.requests:,} uniform-logged "
          f"requests; simulated on-policy value {metrics['on_policy_truth']:.4f}")
    print(f"{'estimator':<10}{'estimate':>10}{'95% CI':>22}{'rel. error':>12}")
    for name, r in metrics["estimators"].items():
        print(f"{name:<10}{r['estimate']:>10.4f}   [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]"
              f"{100 * r['relative_error']:>11.2f}%")


if __name__ == "__main__":
    main()

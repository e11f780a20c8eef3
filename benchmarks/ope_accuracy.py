"""How close is each off-policy estimator to the truth? A trained epsilon-greedy LinUCB is evaluated on
100,000 uniform-policy requests of the default scenario and compared with its simulated on-policy value.
Each estimator runs as ``fusionsim ope`` runs it (experiments/ope_run.py: obp's hyperparameter defaults
unless the command sets one). Prints figures; asserts nothing.

    python benchmarks/ope_accuracy.py [--requests 100000] [--epsilon 0.1] [--pscore logged|estimated]
                                      [--logger uniform|linucb]

With ``--pscore estimated`` the estimators weight by the cross-fitted behaviour model's propensities
(``experiments/evaluation/propensity.py``), printed beside the ones with the log's own. ``--logger linucb``
logs with another epsilon-greedy LinUCB (epsilon 0.3, trained on 100,000 requests of its own), a logger whose
propensities depend on the context.

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
    parser.add_argument("--pscore", choices=("logged", "estimated"), default="logged")
    parser.add_argument("--logger", choices=("uniform", "linucb"), default="uniform")
    args = parser.parse_args()
    scenario = load_scenario("default")
    with tempfile.TemporaryDirectory() as tmp:
        logs, policy, logger = Path(tmp) / "logs", Path(tmp) / "policy", Path(tmp) / "logger"
        if args.logger == "linucb":
            train(TrainConfig(agent="linucb", requests=100_000, seed=9, actions="arm", log_every=20_000,
                              checkpoint_every=100_000, oracle_requests=0, epsilon=0.3), scenario, logger,
                  progress=False)
        run_policy(SimulateConfig(requests=args.requests, seed=4,
                                  policy="uniform" if args.logger == "uniform" else f"run:{logger}"),
                   scenario, logs, progress=False)
        train(TrainConfig(agent="linucb", requests=200_000, seed=5, actions="arm", log_every=20_000,
                          checkpoint_every=200_000, oracle_requests=0, epsilon=args.epsilon), scenario, policy,
              progress=False)
        metrics = run_ope(OPEConfig(logs=str(logs), policy=str(policy), estimators=tuple(ESTIMATORS),
                                    pscore=args.pscore), Path(tmp) / "ope")
    logged_by = "uniform" if args.logger == "uniform" else "epsilon-greedy (0.3) LinUCB"
    print(f"LinUCB (epsilon {args.epsilon}, trained on 200,000 requests) on {args.requests:,} {logged_by}-logged "
          f"requests; simulated on-policy value {metrics['on_policy_truth']:.4f}")
    tables = {"with the logged propensities": metrics.get("with_logged_pscore", metrics["estimators"])}
    if args.pscore == "estimated":
        e = metrics["estimated_pscore"]
        tables["with estimated propensities"] = metrics["estimators"]
        print(f"behaviour model: held-out log loss {e['held_out_log_loss']:.4f} (uniform {e['uniform_log_loss']:.4f}), "
              f"{100 * e['clipped_share']:.2f}% clipped, mean |estimated / logged - 1| "
              f"{e['mean_abs_relative_error_vs_logged']:.4f}")
    for title, results in tables.items():
        print(title)
        print(f"{'estimator':<10}{'estimate':>10}{'95% CI':>22}{'rel. error':>12}")
        for name, r in results.items():
            print(f"{name:<10}{r['estimate']:>10.4f}   [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]"
                  f"{100 * r['relative_error']:>11.2f}%")


if __name__ == "__main__":
    main()

"""``fusionsim ope``: what a trained policy would have earned on logged traffic, by every estimator, and
on simulated logs how far each estimate is from the policy's simulated on-policy value."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from envs.context import CONTEXT_NAMES
from envs.scenario import parse_scenario
from envs.shop import make_shop
from experiments.ope import ESTIMATORS, OPEInputError
from experiments.oracle import run_policy_rewards
from experiments.reward_model import cross_fitted_rewards
from experiments.runs import write_config, write_json
from experiments.train import CHECKPOINT, TrainError, load_checkpoint
from recommenders.io import atomic_write_text


def parse_estimators(spec: str) -> list[str]:
    names = [e.strip() for e in spec.split(",") if e.strip()]
    unknown = [e for e in names if e not in ESTIMATORS]
    if not names or unknown:
        raise OPEInputError(f"--estimators {spec!r}: unknown estimator {unknown[0] if unknown else '(none)'}; "
                            f"choose from {', '.join(ESTIMATORS)}")
    return names


def run_ope(logs: Path, policy_run: Path, estimators: list[str], out: Path, folds: int = 2, seed: int = 0,
            truth_requests: int | None = None) -> dict:
    """Estimate the value of the policy trained in ``policy_run`` on the log in ``logs``; write
    ``metrics.json``, ``report.md`` and ``config.yaml`` to ``out``."""
    if not (policy_run / CHECKPOINT).is_file():
        raise TrainError(f"--policy {policy_run} holds no trained bandit policy ({CHECKPOINT} is missing)")
    state = load_checkpoint(policy_run / CHECKPOINT)
    policy, mapper = state.policy, state.mapper
    log = pd.read_parquet(logs / "logs") if (logs / "logs").is_dir() else None
    if log is None or len(log) == 0:
        raise OPEInputError(f"--logs {logs} holds no interaction log (expected {logs}/logs/part-*.parquet)")
    arm_columns = [c for c in log.columns if c.startswith("weights_")]
    if (log["action"] < 0).any():
        raise OPEInputError(f"--logs {logs}: the logging policy chose continuous weights (action -1); "
                            "discrete-action estimators need arm or grid actions")
    n_log_actions = len(arm_columns)
    if mapper.mode != "arm" or mapper.n_actions != n_log_actions:
        raise OPEInputError(f"--policy {policy_run} chooses among {mapper.n_actions} {mapper.mode} actions but the "
                            f"log's actions are its {n_log_actions} arms; train the policy with --actions arm")
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64)
    action = log["action"].to_numpy()
    reward = log["reward"].to_numpy(dtype=np.float64)
    pscore = log["propensity"].to_numpy(dtype=np.float64)
    action_dist = policy.action_distribution(contexts.astype(np.float32))[:, :, None]
    q = cross_fitted_rewards(contexts, action, reward, n_log_actions, folds, seed=seed)[:, :, None]
    results = {}
    for name in estimators:
        estimator = ESTIMATORS[name]()
        value = estimator.estimate_policy_value(reward, action, pscore, action_dist,
                                                estimated_rewards_by_reg_model=q)
        interval = estimator.estimate_interval(reward, action, pscore, action_dist,
                                               estimated_rewards_by_reg_model=q, random_state=seed)
        results[name] = {"estimate": value, "ci_lower": interval["95.0% CI (lower)"],
                         "ci_upper": interval["95.0% CI (upper)"]}
    metrics: dict = {"rounds": len(log), "logged_reward_per_request": float(reward.mean()), "estimators": results}
    log_config = yaml.safe_load((logs / "config.yaml").read_text()) if (logs / "config.yaml").is_file() else None
    if log_config is not None and "scenario" in log_config:
        scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
        world, arms = make_shop(scenario, base=log_config["args"].get("base"))
        truth = run_policy_rewards(world, arms, policy, mapper, truth_requests or len(log),
                                   seed=int(log_config["args"]["seed"]), slots=256).mean
        metrics["on_policy_truth"] = truth
        for result in results.values():
            result["relative_error"] = abs(result["estimate"] - truth) / abs(truth)
    write_config(out, "ope", {"logs": str(logs), "policy": str(policy_run), "estimators": estimators,
                              "folds": folds, "seed": seed, "truth_requests": truth_requests})
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", _report(metrics, logs, policy_run))
    return metrics


def _report(metrics: dict, logs: Path, policy_run: Path) -> str:
    truth = metrics.get("on_policy_truth")
    lines = [f"# Off-policy evaluation of `{policy_run}` on `{logs}`", "",
             f"{metrics['rounds']:,} logged rounds; logged reward per request "
             f"{metrics['logged_reward_per_request']:.4f}"
             + (f"; simulated on-policy value {truth:.4f}" if truth is not None else "") + ".", "",
             "| estimator | estimate | 95% CI | relative error |", "|---|---|---|---|"]
    for name, r in metrics["estimators"].items():
        error = f"{100 * r['relative_error']:.2f}%" if "relative_error" in r else "-"
        lines.append(f"| {name} | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] | {error} |")
    return "\n".join(lines) + "\n"

"""The value per session of a policy that changes the shopper's state: session-level (trajectory) off-policy
estimators beside per-request ones, against the simulated truth. Prints figures; asserts nothing.

An epsilon-greedy LinUCB over the arms (trained on 200,000 requests of the default scenario) is evaluated on
uniform-policy traffic with sessions (``fusionsim simulate --policy uniform``). The session estimators
(``experiments/evaluation/session.py``: TIS, PDIS, per-decision DR and their self-normalised forms) weight a
session by products of its steps' ratios and bootstrap whole sessions; DR's Q-hat is a fitted Q evaluation
(ridge per action on the context and one-hot session step, cross-fitted over sessions). The per-request
estimators (IPS and DR of ``experiments/evaluation/estimators.py``, DR with the cross-fitted per-request
reward model) give a value per request, here times the log's requests per session, their intervals (a
bootstrap over requests) scaled the same way; beside each, the same estimate's interval from a bootstrap over
sessions, which shows how much the bootstrap over requests understates its uncertainty.

The truth is the policy's mean return per session on-policy: ``--truth-runs`` simulations of the trained
policy on the same shop, the same window of traffic (requests and concurrent sessions as the log) and other
seeds, with the log's treatment of sessions still open at the end (``open_sessions="cut"``), and beside it
``run_online``'s reward per ended session over one such run.

    python benchmarks/session_ope.py [--scenario default] [--requests 100000] [--slots 256] [--epsilon 0.1]
                                     [--truth-runs 8] [--bootstrap 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments.evaluation.estimators import DoublyRobust, InverseProbabilityWeighting, bootstrap_means
from fusionsim.experiments.evaluation.reward_model import cross_fitted_rewards
from fusionsim.experiments.evaluation.session import (SESSION_ESTIMATORS, fitted_q_evaluation, q_features,
                                                      session_arrays_from_log)
from fusionsim.experiments.online import run_online
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, read_trained_run, train

def on_policy_returns(world, arms, trained, requests: int, slots: int, seed: int) -> tuple[np.ndarray, int]:
    """The returns of the sessions of one on-policy run (``requests`` in whole steps of ``slots``), kept as
    the log's (open_sessions="cut"), and the number of requests of those sessions."""
    sim = BatchedSimulator(world, arms, n_slots=slots)
    sim.reset(seed=seed)
    columns = {c: [] for c in ("request_id", "session_id", "session_step", "action", "propensity", "reward",
                               "terminated", "truncated")}
    for _ in range(max(1, requests // slots)):
        result = sim.serve(trained.policy, trained.mapper)
        for name, value in (("request_id", result.request_id), ("session_id", result.session_id),
                            ("session_step", result.requests.session_step), ("action", result.actions),
                            ("propensity", result.propensities), ("reward", result.reward),
                            ("terminated", result.terminated), ("truncated", result.truncated)):
            columns[name].append(np.asarray(value))
    log = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
    sessions = session_arrays_from_log(log, None)
    session = np.cumsum(sessions.step == 0) - 1
    return np.bincount(session, weights=sessions.reward, minlength=sessions.n_sessions), len(sessions.step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="default", help="shipped scenario name or YAML path")
    parser.add_argument("--requests", type=int, default=100_000, help="logged requests (and requests per truth run)")
    parser.add_argument("--slots", type=int, default=256, help="concurrent sessions of the log and the truth runs")
    parser.add_argument("--epsilon", type=float, default=0.1)
    parser.add_argument("--truth-runs", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of each interval")
    args = parser.parse_args()
    started = time.perf_counter()
    scenario = load_scenario(args.scenario)
    with tempfile.TemporaryDirectory() as tmp:
        logs, policy = Path(tmp) / "logs", Path(tmp) / "policy"
        run_policy(SimulateConfig(policy="uniform", requests=args.requests, seed=4, slots=args.slots), scenario, logs,
                   progress=False)
        train(TrainConfig(agent="linucb", actions="arm", epsilon=args.epsilon, requests=200_000, seed=5,
                          log_every=20_000, checkpoint_every=200_000, oracle_requests=0), scenario, policy,
              progress=False)
        trained = read_trained_run(policy, "--policy", deterministic=True)
        log = read_interaction_log(logs, "--logs")
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64)
    action_dist = trained.policy.action_distribution(contexts.astype(np.float32))
    sessions = session_arrays_from_log(log, action_dist)
    rows = sessions.row
    dist, x = action_dist[rows], contexts[rows]
    n_actions = dist.shape[1]

    # truth: the same window of traffic on-policy, other seeds
    world, arms = make_shop(scenario)
    returns = [on_policy_returns(world, arms, trained, args.requests, args.slots, seed=100 + k)
               for k in range(args.truth_runs)]
    all_returns = np.concatenate([r for r, _ in returns])
    truth, truth_se = float(all_returns.mean()), float(all_returns.std(ddof=1) / np.sqrt(len(all_returns)))
    truth_length = sum(n for _, n in returns) / len(all_returns)
    online = run_online(world, arms, trained.policy, trained.mapper, args.requests, seed=100, slots=args.slots)
    online_per_session = float(online.step_rewards.sum() * online.slots / online.step_sessions.sum())
    tail, (tail_lo, tail_hi) = online.tail_per_session()

    q_all = fitted_q_evaluation(q_features(x, sessions.step), sessions, dist)
    q_hat = q_all[np.arange(len(rows)), sessions.action]
    v_hat = np.einsum("na,na->n", dist, q_all)
    data = {**sessions.arrays(), "q_hat": q_hat, "v_hat": v_hat}
    results = {}
    for name, cls in SESSION_ESTIMATORS.items():
        estimator = cls()
        value = estimator.estimate_policy_value(**data)
        interval = estimator.estimate_interval(**data, n_bootstrap_samples=args.bootstrap, random_state=0)
        results[f"session {name}"] = (value, interval["95.0% CI (lower)"], interval["95.0% CI (upper)"])
    results["session dm (fqe)"] = (float(v_hat[sessions.step == 0].mean()), np.nan, np.nan)
    per_session = sessions.requests_per_session
    session_of_row = np.cumsum(sessions.step == 0) - 1
    request_data = {"reward": sessions.reward, "action": sessions.action, "pscore": sessions.pscore,
                    "action_dist": dist[:, :, None],
                    "estimated_rewards_by_reg_model": cross_fitted_rewards(x, sessions.action, sessions.reward,
                                                                           n_actions, 2, seed=0)[:, :, None]}
    for name, estimator in (("ips", InverseProbabilityWeighting()), ("dr", DoublyRobust())):
        value = estimator.estimate_policy_value(**request_data)
        interval = estimator.estimate_interval(**request_data, n_bootstrap_samples=args.bootstrap, random_state=0)
        results[f"per-request {name} x {per_session:.2f}"] = (
            value * per_session, interval["95.0% CI (lower)"] * per_session,
            interval["95.0% CI (upper)"] * per_session)
        # the same estimate with a bootstrap over sessions: each session's sum of its requests' terms
        w = dist[np.arange(len(rows)), sessions.action] / sessions.pscore
        q = request_data["estimated_rewards_by_reg_model"][:, :, 0]
        term = w * sessions.reward if name == "ips" else (
            np.einsum("na,na->n", dist, q) + w * (sessions.reward - q[np.arange(len(rows)), sessions.action]))
        sums = np.bincount(session_of_row, weights=term)
        means = bootstrap_means((sums,), args.bootstrap, np.random.default_rng(0))[0]
        results[f"  {name}, session bootstrap"] = (sums.mean(), *np.percentile(means, [2.5, 97.5]))

    logged_return = float(np.bincount(session_of_row, weights=sessions.reward).mean())
    print(f"LinUCB (epsilon {args.epsilon}, trained on 200,000 requests) on {args.requests:,} uniform-logged requests "
          f"of the {scenario.name} scenario, {args.slots} concurrent sessions")
    print(f"log: {sessions.log_sessions:,} sessions, {sessions.open_at_end} still open at the end; kept "
          f"{sessions.n_sessions:,} (open_sessions='cut'), {len(rows):,} requests, {per_session:.3f} requests per "
          f"session; logged mean return per session {logged_return:.4f}")
    print(f"truth: on-policy mean return per session {truth:.4f} (SE {truth_se:.4f}; {len(all_returns):,} sessions "
          f"in {args.truth_runs} runs of {args.requests:,} requests, {truth_length:.3f} requests per session)")
    print(f"       run_online reward per ended session {online_per_session:.4f} (whole run), tail {tail:.4f} "
          f"[{tail_lo:.4f}, {tail_hi:.4f}]")
    print(f"{'estimator':<26}{'per session':>12}{'95% CI':>22}{'width':>9}{'error':>9}{'rel. error':>12}"
          f"{'truth in CI':>13}")
    for name, (value, lo, hi) in results.items():
        inside = "-" if np.isnan(lo) else ("yes" if lo <= truth <= hi else "no")
        ci = "" if np.isnan(lo) else f"[{lo:.4f}, {hi:.4f}]"
        width = "" if np.isnan(lo) else f"{hi - lo:.4f}"
        print(f"{name:<26}{value:>12.4f}{ci:>22}{width:>9}{value - truth:>+9.4f}"
              f"{100 * abs(value - truth) / abs(truth):>11.2f}%{inside:>13}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

"""The value per session of a policy that changes the shopper's state: session-level (trajectory) off-policy
estimators beside per-request ones, against the simulated truth. Prints figures; asserts nothing.

Two evaluation policies (``--policy``):

* ``linucb``: an epsilon-greedy LinUCB over the arms (trained on 200,000 requests), evaluated on
  uniform-policy traffic with sessions (``fusionsim simulate --policy uniform``).
* ``ppo``: PPO's stochastic Gaussian over continuous weights (``fusionsim train --agent ppo``, ``--train-requests``
  of sessions), evaluated on the traffic of the same network with its standard deviation times ``--std-scale``
  (``fusionsim simulate --policy run:<PPO run> --ppo-std-scale S``): a wider logger of the policy, as a shop
  would log a deployed policy with extra exploration. The weights are ratios of the two clipped Gaussians'
  densities at each logged action (``agents.ppo.clipped_gaussian_density``), exact and never capped.

The session estimators (``experiments/evaluation/session.py``: TIS, PDIS, per-decision DR and their
self-normalised forms) weight a session by products of its steps' ratios and bootstrap whole sessions; DR's
Q-hat is a fitted Q evaluation cross-fitted over sessions: for LinUCB a ridge per action on the context and
one-hot session step, for PPO one ridge on those crossed with the weights' basis [1, w, w^2], its expectation
under the policy from --draws Monte Carlo draws per request (``evaluation.session.continuous_session_data``).
The per-request estimators (IPS, and DR with a cross-fitted per-request reward model: ``ope``'s for LinUCB, the
same Q evaluation with gamma 0 for PPO) give a value per request, here
times the log's requests per session, their intervals (a bootstrap over requests) scaled the same way; beside
each, the same estimate's interval from a bootstrap over sessions, which shows how much the bootstrap over
requests understates its uncertainty. Kish's effective sample size of the sessions' whole-session weights is
printed with the log.

The truth is the policy's mean return per session on-policy: ``--truth-runs`` simulations of the evaluation
policy on the same shop, the same window of traffic (requests and concurrent sessions as the log) and other
seeds, with the log's treatment of sessions still open at the end (``open_sessions="cut"``), and beside it
``run_online``'s reward per ended session over one such run.

    python benchmarks/session_ope.py [--policy linucb|ppo] [--scenario default] [--requests 100000]
                                     [--slots 256] [--epsilon 0.1] [--std-scale 1.1] [--train-requests 500000]
                                     [--logs 1]
                                     [--truth-runs 8] [--bootstrap 2000] [--draws 32]
"""

from __future__ import annotations

import argparse
import dataclasses
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
from fusionsim.experiments.evaluation.estimators import bootstrap_means
from fusionsim.experiments.evaluation.reward_model import cross_fitted_rewards
from fusionsim.experiments.evaluation.session import (SESSION_ESTIMATORS, continuous_session_data,
                                                      fitted_q_evaluation, q_features, session_arrays_from_log)
from fusionsim.experiments.online import run_online
from fusionsim.experiments.ope_run import effective_sample_size
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, read_trained_run, train


def on_policy_returns(world, arms, policy, mapper, requests: int, slots: int, seed: int) -> tuple[np.ndarray, int]:
    """The returns of the sessions of one on-policy run (``requests`` in whole steps of ``slots``), kept as
    the log's (open_sessions="cut"), and the number of requests of those sessions."""
    sim = BatchedSimulator(world, arms, n_slots=slots)
    sim.reset(seed=seed)
    columns = {c: [] for c in ("request_id", "session_id", "session_step", "action", "propensity", "reward",
                               "terminated", "truncated")}
    for _ in range(max(1, requests // slots)):
        result = sim.serve(policy, mapper)
        action = result.actions if result.actions.ndim == 1 else np.full(len(result.reward), -1)
        for name, value in (("request_id", result.request_id), ("session_id", result.session_id),
                            ("session_step", result.requests.session_step), ("action", action),
                            ("propensity", result.propensities), ("reward", result.reward),
                            ("terminated", result.terminated), ("truncated", result.truncated)):
            columns[name].append(np.asarray(value))
    log = pd.DataFrame({name: np.concatenate(parts) for name, parts in columns.items()})
    sessions = session_arrays_from_log(log, None)
    return (np.bincount(sessions.session_of_row, weights=sessions.reward, minlength=sessions.n_sessions),
            len(sessions.step))


def train_policy(args, scenario, folder: Path):
    """The evaluation policy (trained into ``folder``), its mapper, the simulate config of its logger (log seed
    to be set) and a line that describes them."""
    if args.policy == "linucb":
        train(TrainConfig(agent="linucb", actions="arm", epsilon=args.epsilon, requests=200_000, seed=5,
                          log_every=20_000, checkpoint_every=200_000, oracle_requests=0), scenario, folder,
              progress=False)
        trained = read_trained_run(folder, "--policy", deterministic=True)
        logger = SimulateConfig(policy="uniform", requests=args.requests, slots=args.slots)
        return trained.policy, trained.mapper, logger, (
            f"LinUCB (epsilon {args.epsilon}, trained on 200,000 requests) on {args.requests:,} uniform-logged "
            "requests")
    every = args.train_requests // 4
    train(TrainConfig(agent="ppo", requests=args.train_requests, seed=5, slots=64, log_every=every,
                      checkpoint_every=4 * every, oracle_requests=0), scenario, folder, progress=False)
    trained = read_trained_run(folder, "--policy", deterministic=True)
    logger = SimulateConfig(policy=f"run:{folder}", ppo_std_scale=args.std_scale, requests=args.requests,
                            slots=args.slots)
    std = np.exp(trained.policy.policy.log_std.detach().numpy())
    return trained.policy.sampling(1.0, seed=6), trained.mapper, logger, (
        f"PPO (stochastic, standard deviations {', '.join(f'{v:.3f}' for v in std)}; trained on "
        f"{args.train_requests:,} requests) on {args.requests:,} requests logged by the same network with its "
        f"standard deviation x {args.std_scale}")


def estimate(log: pd.DataFrame, policy, mapper, args) -> tuple[dict, str]:
    """Every estimate (value per session, CI lower, CI upper) on one log, and a line that describes the log."""
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64)
    continuous = args.policy == "ppo"
    if continuous:
        arrays = continuous_session_data(log, contexts, policy, mapper, draws=args.draws, seed=7)
        sessions, rows = arrays.sessions, arrays.sessions.row
        q_hat, v_hat = arrays.per_session["q_hat"], arrays.per_session["v_hat"]
        r_hat, r_hat_policy = arrays.per_request["q_hat"], arrays.per_request["v_hat"]
    else:
        action_dist = policy.action_distribution(contexts.astype(np.float32))
        sessions = session_arrays_from_log(log, action_dist)
        rows = sessions.row
        dist, x = action_dist[rows], contexts[rows]
        taken = np.arange(len(rows)), sessions.action
        q_all = fitted_q_evaluation(q_features(x, sessions.step), sessions, dist)
        q_hat, v_hat = q_all[taken], np.einsum("na,na->n", dist, q_all)
        r_all = cross_fitted_rewards(x, sessions.action, sessions.reward, dist.shape[1], 2, seed=0)
        r_hat, r_hat_policy = r_all[taken], np.einsum("na,na->n", dist, r_all)

    data = {**sessions.arrays(), "q_hat": q_hat, "v_hat": v_hat}
    results = {}
    for name, cls in SESSION_ESTIMATORS.items():
        estimator = cls(densities=continuous)
        value = estimator.estimate_policy_value(**data)
        interval = estimator.estimate_interval(**data, n_bootstrap_samples=args.bootstrap, random_state=0)
        results[f"session {name}"] = (value, interval["95.0% CI (lower)"], interval["95.0% CI (upper)"])
    results["session dm (fqe)"] = (float(v_hat[sessions.step == 0].mean()), np.nan, np.nan)
    per_session = sessions.requests_per_session
    session_of_row = sessions.session_of_row
    # per-request IPS and DR (obp's IPW and DR: w r and v_hat + w (r - q_hat) per request), times the requests
    # per session
    w = sessions.evaluation_policy_pscore / sessions.pscore
    for name, term in (("ips", w * sessions.reward), ("dr", r_hat_policy + w * (sessions.reward - r_hat))):
        request_means = bootstrap_means((term,), args.bootstrap, np.random.default_rng(0))[0]
        results[f"per-request {name} x rps"] = (
            term.mean() * per_session, *(np.percentile(request_means, [2.5, 97.5]) * per_session))
        # the same estimate with a bootstrap over sessions: each session's sum of its requests' terms
        sums = np.bincount(session_of_row, weights=term)
        means = bootstrap_means((sums,), args.bootstrap, np.random.default_rng(0))[0]
        results[f"  {name}, session bootstrap"] = (sums.mean(), *np.percentile(means, [2.5, 97.5]))

    rho = np.ones(sessions.n_sessions)
    np.multiply.at(rho, session_of_row, w)
    ess = effective_sample_size(rho)
    logged_return = float(np.bincount(session_of_row, weights=sessions.reward).mean())
    about = (f"{sessions.log_sessions:,} sessions, {sessions.open_at_end} still open at the end; kept "
             f"{sessions.n_sessions:,} (open_sessions='cut'), {len(rows):,} requests, {per_session:.3f} requests per "
             f"session (rps); logged mean return per session {logged_return:.4f}; effective sample size of the "
             f"whole-session weights {ess:,.0f} ({100 * ess / sessions.n_sessions:.1f}% of the sessions)")
    return results, about


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", choices=("linucb", "ppo"), default="linucb", help="the evaluation policy")
    parser.add_argument("--scenario", default="default", help="shipped scenario name or YAML path")
    parser.add_argument("--requests", type=int, default=100_000, help="logged requests (and requests per truth run)")
    parser.add_argument("--slots", type=int, default=256, help="concurrent sessions of the log and the truth runs")
    parser.add_argument("--epsilon", type=float, default=0.1, help="LinUCB's exploration")
    parser.add_argument("--std-scale", type=float, default=1.1, help="the PPO logger's factor on the std")
    parser.add_argument("--train-requests", type=int, default=500_000, help="PPO's training requests")
    parser.add_argument("--logs", type=int, default=1, help="logs on independent seeds (4, 5, ...); the first in full")
    parser.add_argument("--truth-runs", type=int, default=8)
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of each interval")
    parser.add_argument("--draws", type=int, default=32, help="draws from PPO per request for V-hat")
    args = parser.parse_args()
    started = time.perf_counter()
    scenario = load_scenario(args.scenario)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        policy, mapper, logger, about = train_policy(args, scenario, Path(tmp) / "policy")
        for k in range(args.logs):
            logs = Path(tmp) / f"logs{k}"
            run_policy(dataclasses.replace(logger, seed=4 + k), scenario, logs, progress=False)
            runs.append(estimate(read_interaction_log(logs, "--logs"), policy, mapper, args))

    # truth: the same window of traffic on-policy, other seeds
    world, arms = make_shop(scenario)
    returns = [on_policy_returns(world, arms, policy, mapper, args.requests, args.slots, seed=100 + k)
               for k in range(args.truth_runs)]
    all_returns = np.concatenate([r for r, _ in returns])
    truth, truth_se = float(all_returns.mean()), float(all_returns.std(ddof=1) / np.sqrt(len(all_returns)))
    truth_length = sum(n for _, n in returns) / len(all_returns)
    online = run_online(world, arms, policy, mapper, args.requests, seed=100, slots=args.slots)
    online_per_session = float(online.step_rewards.sum() * online.slots / online.step_sessions.sum())
    tail, (tail_lo, tail_hi) = online.tail_per_session()

    results, log_about = runs[0]
    print(f"{about} of the {scenario.name} scenario, {args.slots} concurrent sessions")
    print(f"log (seed 4): {log_about}")
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
    if args.logs > 1:
        print(f"over {args.logs} logs (seeds 4..{3 + args.logs}; the truth's own standard error, "
              f"{100 * truth_se / truth:.2f}%, is common to them all):")
        print(f"{'estimator':<26}{'mean rel. error':>16}{'[95% CI]':>20}{'truth in CI':>13}")
        for name in results:
            values = np.array([r[name] for r, _ in runs])
            errors = 100 * (values[:, 0] - truth) / truth
            half = 1.96 * errors.std(ddof=1) / np.sqrt(len(errors))
            inside = "-" if np.isnan(values[0, 1]) else \
                f"{np.count_nonzero((values[:, 1] <= truth) & (truth <= values[:, 2]))} of {args.logs}"
            ci = f"[{errors.mean() - half:+.2f}, {errors.mean() + half:+.2f}]"
            print(f"{name:<26}{errors.mean():>+15.2f}%{ci:>20}{inside:>13}")
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

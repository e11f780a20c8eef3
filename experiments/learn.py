"""``fusionsim learn``: train a fusion policy from logged traffic alone (off-policy learning), evaluate it off
policy on held-out requests and, on a simulated log, against the simulated truth.

The log is a complete ``fusionsim simulate`` run over discrete actions (arms or the weight grid) with its
propensities. Its earliest ``1 - holdout`` share of requests trains, the rest evaluates. Each training round
i gives every action a a pseudo-reward:

- ``ipw`` (obp's IPWLearner, as a regression): Gamma_ia = r_i 1{a = a_i} / p_i;
- ``dr`` (the doubly robust learner, Dudik et al. 2011): Gamma_ia = q-hat(x_i, a) + 1{a = a_i} (r_i -
  q-hat(x_i, a_i)) / p_i, with q-hat the cross-fitted ridge reward model of ``ope``
  (``evaluation.reward_model``).

Both are unbiased for the reward of every action at x_i, so a ridge regression of Gamma_ia on the context per
action estimates each action's reward function; the learned policy takes the best action with probability
1 - epsilon and a uniform one otherwise (propensities for the next round of off-policy work). It is stored as
a LinUCB with alpha 0 over those ridge statistics (``agents.linear``: A_a = ridge I + X^T X, b_a = X^T
Gamma_a), so ``ope --policy`` reads it as it reads a trained run.

Writes ``policy.npz``, ``metrics.json`` (the held-out DR and IPS estimates of the learned policy, and with
``truth_requests`` > 0 the simulated value of it, of the logging policy and of an ``online``-trained policy
on one fresh seed, with paired intervals of the differences), ``report.md``,
``config.yaml`` and ``complete.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionsim.agents import LinUCB
from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.evaluation import ESTIMATORS, OPEInputError, evaluate
from fusionsim.experiments.evaluation.reward_model import cross_fitted_rewards
from fusionsim.experiments.ope_run import BOOTSTRAP_SAMPLES, read_simulated_log
from fusionsim.experiments.online import batch_means_interval, run_online
from fusionsim.experiments.runs import write_config, write_json
from fusionsim.experiments.simulate import build_simulation, read_simulate_run
from fusionsim.experiments.train import POLICY_FILE, read_trained_run

LEARNERS = ("ipw", "dr")
"""The pseudo-rewards ``learn`` regresses on (module docstring)."""


@dataclass(frozen=True)
class LearnConfig:
    """What one ``fusionsim learn`` run does; written whole as ``config.yaml``'s ``args``."""

    logs: str
    """a complete fusionsim simulate run folder over arms or the weight grid, with propensities"""
    learner: str = "dr"
    """ipw | dr"""
    ridge: float = 1.0
    """lambda of the per-action ridge regressions"""
    epsilon: float = 0.05
    """share of uniformly random actions of the learned policy"""
    holdout: float = 0.2
    """share of the latest requests held out for the off-policy evaluation"""
    folds: int = 2
    """cross-fitting folds of the reward model (dr, and the held-out DR estimate)"""
    truth_requests: int = 100_000
    """requests simulated for the true value of the learned and the logging policy (0: none)"""
    online: str | None = None
    """a complete fusionsim train run over the same arms and actions: its policy, frozen, is simulated beside"""
    seed: int = 0
    """seed of the folds, the bootstrap, the policy and the truth's simulation"""

    def __post_init__(self) -> None:
        if self.learner not in LEARNERS:
            raise OPEInputError(f"--learner {self.learner!r} is not allowed: use one of {', '.join(LEARNERS)}")
        if not 0.0 < self.holdout < 1.0:
            raise OPEInputError(f"--holdout must be in (0, 1); got {self.holdout!r}")
        if not 0.0 <= self.epsilon <= 1.0:
            raise OPEInputError(f"--epsilon must be in [0, 1]; got {self.epsilon!r}")
        if not self.ridge > 0:
            raise OPEInputError(f"--ridge must be > 0; got {self.ridge!r}")


def pseudo_rewards(learner: str, actions: np.ndarray, rewards: np.ndarray, pscores: np.ndarray,
                   q_hat: np.ndarray | None) -> np.ndarray:
    """(n, n_actions) Gamma_ia of the module docstring for logged ``actions``, ``rewards``, ``pscores`` (n,) and,
    for ``dr``, the reward model ``q_hat`` (n, n_actions)."""
    n = len(actions)
    rows = np.arange(n)
    if learner == "ipw":
        out = np.zeros((n, q_hat.shape[1] if q_hat is not None else int(actions.max()) + 1))
        out[rows, actions] = rewards / pscores
        return out
    out = q_hat.astype(np.float64, copy=True)
    out[rows, actions] += (rewards - q_hat[rows, actions]) / pscores
    return out


def learn_policy(contexts: np.ndarray, gamma: np.ndarray, ridge: float, epsilon: float, seed: int,
                 action_mode: str) -> LinUCB:
    """The greedy-on-ridge policy of pseudo-rewards ``gamma`` (n, K) at ``contexts`` (n, d), epsilon-greedy."""
    n, k = gamma.shape
    policy = LinUCB(k, contexts.shape[1], alpha=0.0, ridge=ridge, epsilon=epsilon, seed=seed, action_mode=action_mode)
    for a in range(k):  # every round informs every action: one batch per action
        policy.update(contexts, np.full(n, a), gamma[:, a])
    return policy


def learn(config: LearnConfig, out: Path) -> dict:
    """Learn from ``config.logs``; write the files of the module docstring into ``out``."""
    logs = Path(config.logs)
    log, contexts, log_config = read_simulated_log(logs)
    if (log["action"] < 0).any():
        raise OPEInputError(f"--logs {logs}: the logging policy chose continuous weights (action -1); learn needs "
                            "arm or grid actions (simulate --policy uniform or uniform-grid)")
    logged_policy = log_config.get("policy", {}).get("config", {})
    mode = logged_policy.get("action_mode", "arm")
    n_arms = len(log_config.get("arms", []))
    resolution = int(log_config["args"].get("grid_resolution", 4))
    mapper = ActionMapper(mode, n_arms, resolution)
    n_actions = mapper.n_actions
    actions = log["action"].to_numpy(np.int64)
    rewards = log["reward"].to_numpy(np.float64)
    pscores = log["propensity"].to_numpy(np.float64)
    n_fit = int(round((1.0 - config.holdout) * len(log)))
    if n_fit < config.folds or len(log) - n_fit < config.folds:
        raise OPEInputError(f"--logs {logs} has {len(log)} requests: too few to learn and hold out "
                            f"{config.holdout:.0%}")
    train, test = slice(0, n_fit), slice(n_fit, len(log))
    q_train = (cross_fitted_rewards(contexts[train], actions[train], rewards[train], n_actions, config.folds,
                                    seed=config.seed) if config.learner == "dr" else
               np.zeros((n_fit, n_actions)))
    gamma = pseudo_rewards(config.learner, actions[train], rewards[train], pscores[train], q_train)
    policy = learn_policy(contexts[train], gamma, config.ridge, config.epsilon, config.seed, mode)
    policy.save(out / POLICY_FILE)  # as learned: simulating it below draws from its Generator
    # off-policy value on the held-out requests, of the learned and of the logging policy (its own log: the mean)
    q_test = cross_fitted_rewards(contexts[test], actions[test], rewards[test], n_actions, config.folds,
                                  seed=config.seed)[:, :, None]
    data = {"reward": rewards[test], "action": actions[test], "pscore": pscores[test],
            "action_dist": policy.action_distribution(contexts[test].astype(np.float32))[:, :, None],
            "estimated_rewards_by_reg_model": q_test}
    held_out = evaluate({name: ESTIMATORS[name]() for name in ("ips", "dr")}, data, None, BOOTSTRAP_SAMPLES,
                        config.seed)
    metrics = {"learner": config.learner, "train_requests": n_fit, "held_out_requests": len(log) - n_fit,
               "actions": n_actions, "action_mode": mode,
               "learned_off_policy": held_out, "logging_policy_held_out_reward": float(rewards[test].mean())}
    if config.truth_requests > 0:
        # both policies on one fresh seed (common random numbers): the paired difference is the learning's gain
        simulate_config, _ = read_simulate_run(logs)
        scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
        world, arms = make_shop(scenario, base=simulate_config.base)
        logger = build_simulation(simulate_config, scenario)
        seed = int(np.random.SeedSequence([config.seed, 1]).generate_state(1)[0])
        learned_run = run_online(world, arms, policy, mapper, config.truth_requests, seed, slots=256)
        logging_run = run_online(world, arms, logger.policy, logger.mapper, config.truth_requests, seed, slots=256)
        difference = learned_run.step_rewards - logging_run.step_rewards
        metrics["truth"] = {"learned": learned_run.mean, "logging_policy": logging_run.mean,
                            "difference": float(difference.mean()), "difference_ci95": list(
                                batch_means_interval(difference)), "requests": learned_run.requests, "seed": seed}
        if config.online is not None:
            trained = read_trained_run(Path(config.online), "--online", deterministic=True)
            if trained.arm_names != list(log_config.get("arms", [])) or trained.mapper.n_actions != n_actions:
                raise OPEInputError(f"--online {config.online} chooses among {trained.mapper.n_actions} actions over "
                                    f"the arms [{', '.join(trained.arm_names)}]; the log's are {n_actions} over "
                                    f"[{', '.join(log_config.get('arms', []))}]")
            online_run = run_online(world, arms, trained.policy, trained.mapper, config.truth_requests, seed,
                                    slots=256)
            versus = learned_run.step_rewards - online_run.step_rewards
            metrics["truth"]["online"] = {"run": config.online, "value": online_run.mean,
                                          "learned_minus_online": float(versus.mean()),
                                          "ci95": list(batch_means_interval(versus))}
    write_config(out, "learn", dataclasses.asdict(config), scenario=log_config["scenario"],
                 arms=log_config.get("arms", []),
                 policy_as_train={"agent": "linucb", "actions": mode, "grid_resolution": resolution,
                                  "base": log_config["args"].get("base"), "epsilon": config.epsilon,
                                  "seed": config.seed})
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, logs))
    mark_complete(out, "learn")
    return metrics


def render_report(metrics: dict, logs: Path) -> str:
    lines = [f"# A policy learned off policy from `{logs}`", "",
             f"{metrics['learner'].upper()} learner over {metrics['actions']} {metrics['action_mode']} actions, "
             f"trained on the earliest {metrics['train_requests']:,} requests; evaluated on the latest "
             f"{metrics['held_out_requests']:,} (logging policy's reward there: "
             f"{metrics['logging_policy_held_out_reward']:.4f}).", "",
             "| estimate of the learned policy | value | 95% CI |", "|---|---|---|"]
    for name, r in metrics["learned_off_policy"].items():
        lines.append(f"| {name} (held out) | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] |")
    if "truth" in metrics:
        t = metrics["truth"]
        lines.append(f"| simulated truth ({t['requests']:,} requests, fresh seed) | {t['learned']:.4f} | - |")
        low, high = t["difference_ci95"]
        lines += ["", f"The logging policy's simulated value on the same seed: {t['logging_policy']:.4f}; learned - "
                  f"logging {t['difference']:+.4f} [{low:+.4f}, {high:+.4f}] per request (paired batch means): "
                  + ("the learned policy beats it." if low > 0 else "not resolved." if high > 0 else
                     "the learned policy is worse.")]
        if "online" in t:
            o = t["online"]
            lines += ["", f"The policy trained online (`{o['run']}`, frozen) on the same seed: {o['value']:.4f}; "
                      f"learned - online {o['learned_minus_online']:+.4f} [{o['ci95'][0]:+.4f}, {o['ci95'][1]:+.4f}]."]
    return "\n".join(lines) + "\n"

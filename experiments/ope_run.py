"""``fusionsim ope``: what a trained policy would have earned on logged traffic, by every estimator, and
on simulated logs how far each estimate is from the policy's simulated on-policy value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from fusionsim.agents.ppo import POLICY_FILE as PPO_POLICY_FILE
from fusionsim.envs.calibration.obd import OBD_POSITIONS, read_obd
from fusionsim.envs.calibration.request_contexts import requests_of_impressions
from fusionsim.envs.calibration.schema import SchemaError, read_impression_log
from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.scenario import parse_scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop, world_fields
from fusionsim.experiments.evaluation import ESTIMATORS, OPEInputError, evaluate
from fusionsim.experiments.evaluation.estimators import KernelizedInverseProbabilityWeighting
from fusionsim.experiments.evaluation.propensity import cross_fitted_propensities
from fusionsim.experiments.evaluation.session import (SESSION_ESTIMATORS, PerDecisionDoublyRobust,
                                                      SelfNormalizedTrajectoryWiseIS, TrajectoryWiseIS,
                                                      continuous_session_data, fitted_q_evaluation, q_features,
                                                      session_arrays_from_log)
from fusionsim.experiments.online import run_online
from fusionsim.experiments.evaluation.reward_model import cross_fitted_rewards
from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS
from fusionsim.experiments.runs import parse_choices, read_config, write_config, write_json
from fusionsim.experiments.serving.decision_log import DecisionLogError, read_served_requests
from fusionsim.experiments.simulate import RUN_PREFIX
from fusionsim.experiments.slate_ope import is_run_folder, run_slate_ope
from fusionsim.experiments.train import TrainedRun, read_trained_run
from fusionsim.common.io import atomic_write_text, mark_complete


REQUEST_ESTIMATORS = ("dm", "ips", "snips", "dr", "sndr")
"""The per-request estimators ``ope`` runs unless ``--estimators`` names others."""


def parse_estimators(spec: str, slate: bool = False) -> list[str]:
    """The estimator names of ``--estimators``: per-request ones, or with ``slate`` the slate estimators."""
    return parse_choices(spec, SLATE_ESTIMATORS if slate else ESTIMATORS, "--estimators", "estimator",
                         OPEInputError)


KERNEL_BANDWIDTH = 0.2
ESTIMATOR_ARGS = {"dr-os": {"lambda_": np.inf}}
"""Hyperparameters the ope command gives the estimators (the rest keep obp's defaults; DRos at obp's default
lambda_ = 0 would be DM)."""
BOOTSTRAP_SAMPLES = 1000
"""Bootstrap resamples of each interval."""
PSCORES = ("logged", "estimated")
"""Where ``ope`` takes the logging propensities from (``OPEConfig.pscore``)."""
ESTIMATED_PSCORE_WARNING = ("the propensities are estimated (a multinomial logistic model of the logged action on "
                            "the context, cross-fitted, clipped below): the estimates are only as good as that model, "
                            "and a logger that used features it lacks, or chose deterministically, is not corrected "
                            "for")


def read_simulated_log(logs: Path) -> tuple[pd.DataFrame, np.ndarray, dict]:
    """The request log of a complete ``fusionsim simulate`` run folder, its context matrix
    (n, CONTEXT_DIM) and its config."""
    log = read_interaction_log(logs, "--logs")
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64)
    return log, contexts, read_config(logs, "--logs")


def _check_same_shop(trained: TrainedRun, log_config: dict, logs: Path) -> None:
    """The log must come from the policy's shop: the same arms in the same order and the same world."""
    log_arms = [str(a) for a in log_config.get("arms", [])]
    if log_arms != trained.arm_names:
        raise OPEInputError(f"--policy {trained.folder} blends the arms [{', '.join(trained.arm_names)}] but the "
                            f"log's arms are [{', '.join(log_arms)}] (names and order must match)")
    logged_world = log_config.get("scenario", {}).get("world")
    if world_fields(logged_world or {}) != world_fields(scenario_to_dict(trained.scenario)["world"]):
        raise OPEInputError(f"--policy {trained.folder} was trained on scenario '{trained.scenario.name}', whose "
                            f"world differs from the log's scenario '{log_config.get('scenario', {}).get('name')}'")


@dataclass(frozen=True)
class OPEConfig:
    """What one ``fusionsim ope`` run does; written whole as ``config.yaml``'s ``args``. Either ``logs`` and
    ``policy`` (a simulated log and a trained run) or ``obd`` (a folder in the Open Bandit Dataset layout)."""

    logs: str | None = None
    """a complete fusionsim simulate run folder: the logged traffic with its propensities"""
    policy: str | None = None
    """a complete fusionsim train run folder: the policy to evaluate"""
    obd: str | None = None
    """instead of logs/policy: a folder in the Open Bandit Dataset layout"""
    campaign: str | None = None
    """with obd: the campaign csv (None: the only one)"""
    evaluation: str = "uniform"
    """with obd: the evaluation policy, uniform or best-item"""
    estimators: tuple[str, ...] | None = None
    """estimator names: of experiments.evaluation.ESTIMATORS (None: REQUEST_ESTIMATORS), or with ``rerank`` of
    the slate estimators (None: those the log's propensities feed, ``slate_ope.SLATE_DEFAULT``); a PPO policy
    takes none (its run folder records the ones its log allowed)"""
    folds: int = 2
    """cross-fitting folds of the reward model"""
    seed: int = 0
    """seed of the folds and the bootstrap"""
    truth_requests: int | None = None
    """requests simulated for the on-policy truth of a simulated log (None: as many as the log holds)"""
    pscore: str = "logged"
    """the propensities of the logged actions: "logged" (as the log recorded them) or "estimated" (a
    behaviour-policy model, cross-fitted over ``folds`` and clipped: ``evaluation.propensity``)"""
    rerank: str | None = None
    """with logs: evaluate a ranking policy with the slate estimators, the logged slates re-ranked by this arm
    or by "stacker" (the train-stacker run in ``policy``); see ``experiments.slate_ope``"""

    def __post_init__(self) -> None:
        if self.pscore not in PSCORES:
            raise OPEInputError(f"--pscore {self.pscore!r} is not allowed: use one of {', '.join(PSCORES)}")


def run_ope(config: OPEConfig, out: Path) -> dict:
    """Estimate the value of the policy of ``config``; write ``config.yaml``, ``metrics.json``, ``report.md``
    and ``complete.json`` to ``out``. A PPO run is evaluated on a log of continuous actions: on the log of a PPO
    logger (``simulate --policy run:<PPO run>``) its stochastic policy with exact density ratios, per request and
    per session; on any other (``simulate --policy uniform-weights``) its deterministic action with the
    kernelized estimators (Gaussian kernel of bandwidth KERNEL_BANDWIDTH)."""
    given_estimators = config.estimators
    if config.estimators is None and config.rerank is None:  # the run folder holds the resolved names
        config = dataclasses.replace(config, estimators=REQUEST_ESTIMATORS)
    if config.obd is not None:
        return run_obd_ope(config, out)
    if config.rerank is not None and config.logs is not None:
        return run_slate_ope(config, out)
    if config.logs is None or config.policy is None:
        raise OPEInputError("give either --logs and --policy (or --rerank), or --obd")
    logs, policy_run, estimators = Path(config.logs), Path(config.policy), list(config.estimators)
    folds, seed, truth_requests = config.folds, config.seed, config.truth_requests
    if (policy_run / "config.yaml").is_file() and read_config(policy_run, "--policy").get("command") == "train-stacker":
        raise OPEInputError(f"--policy {policy_run} is a train-stacker run: a stacker ranks items, so evaluate it as "
                            "a re-ranking of the logged slates with --rerank stacker --policy " + str(policy_run))
    trained = read_trained_run(policy_run, "--policy", deterministic=True)
    if not is_run_folder(logs):  # a shop's impression log
        return run_impression_ope(trained, config, out)
    if read_config(logs, "--logs").get("command") == "serve":
        return run_served_ope(trained, config, out)
    log, contexts, log_config = read_simulated_log(logs)
    _check_same_shop(trained, log_config, logs)
    if trained.config.agent == "ppo":
        if given_estimators is not None:
            raise OPEInputError(f"--estimators {','.join(given_estimators)}: a PPO policy is evaluated with the "
                                "estimators its log allows (on a PPO logger's log ips, snips and dr per request and "
                                "the session family; on another log of continuous actions kernel-ipw and kernel-dr); "
                                "leave --estimators out")
        if config.pscore != "logged":
            raise OPEInputError(f"--pscore {config.pscore}: a log of continuous actions holds the density of each "
                                "action, with which a PPO policy is evaluated; estimated propensities are for logs of "
                                "arm or grid actions")
        return _run_continuous_ope(trained, log, contexts, log_config, out, config)
    policy, mapper = trained.policy, trained.mapper
    if (log["action"] < 0).any():
        raise OPEInputError(f"--logs {logs}: the logging policy chose continuous weights (action -1); "
                            "discrete-action estimators need arm or grid actions")
    logged_policy = log_config.get("policy", {}).get("config", {})
    log_mode = logged_policy.get("action_mode", "arm")
    n_log_actions = int(logged_policy.get("n_actions", len(trained.arm_names)))
    log_resolution = int(log_config["args"].get("grid_resolution", 4))
    if mapper.mode != log_mode or mapper.n_actions != n_log_actions or (
            log_mode == "grid" and trained.config.grid_resolution != log_resolution):
        logged = f"{n_log_actions} {log_mode} actions" + (f" (grid resolution {log_resolution})"
                                                          if log_mode == "grid" else "")
        trained_as = f"{mapper.n_actions} {mapper.mode} actions" + (
            f" (grid resolution {trained.config.grid_resolution})" if mapper.mode == "grid" else "")
        hint = "uniform" if mapper.mode == "arm" else \
            f"uniform-grid --grid-resolution {trained.config.grid_resolution}"
        raise OPEInputError(f"--policy {policy_run} chooses among {trained_as} but the log's actions are {logged}; "
                            f"log with simulate --policy {hint} or train with --actions {log_mode}")
    data = discrete_data(policy, log, contexts, n_log_actions, folds, seed)
    action, reward, action_dist = data["action"], data["reward"], data["action_dist"]
    truth_run = _simulated_run(log_config, logs, trained, truth_requests or len(log))
    truth = truth_run.mean
    metrics = {"rounds": len(log), "logged_reward_per_request": float(reward.mean()), "on_policy_truth": truth,
               "pscore": config.pscore}
    if config.pscore == "estimated":
        estimated = cross_fitted_propensities(contexts, action, n_log_actions, folds, seed=seed)
        data["estimated_pscore"] = estimated.pscore
        metrics["estimated_pscore"] = {"clip": estimated.clip, "clipped_share": estimated.clipped,
                                       "held_out_log_loss": estimated.log_loss,
                                       "uniform_log_loss": float(np.log(n_log_actions)),
                                       "mean_abs_relative_error_vs_logged": float(np.mean(np.abs(
                                           estimated.pscore / data["pscore"] - 1.0))),
                                       "warning": ESTIMATED_PSCORE_WARNING}
        # beside them, what the log's own propensities give: the effect of estimating them
        metrics["with_logged_pscore"] = evaluate(_estimators(estimators), data, truth, BOOTSTRAP_SAMPLES, seed)
    metrics["estimators"] = evaluate(_estimators(estimators, config.pscore == "estimated"), data, truth,
                                     BOOTSTRAP_SAMPLES, seed)
    used = data["estimated_pscore"] if config.pscore == "estimated" else data["pscore"]
    metrics["effective_sample_size"] = effective_sample_size(importance_weights(data, used))
    if config.pscore == "logged":
        metrics["per_session"] = _session_estimates(log, contexts, action_dist[:, :, 0], truth_run, seed)
    return _finish(metrics, logs, policy_run, out, config)


def discrete_data(policy, log: pd.DataFrame, contexts: np.ndarray, n_actions: int, folds: int, seed: int) -> dict:
    """obp's keyword arrays for the discrete-action estimators on a log with one row per request (``action``,
    ``reward``, ``propensity`` columns) and its contexts (n, D): the policy's action distribution at the
    contexts and the reward model cross-fitted over ``folds``."""
    action, reward = log["action"].to_numpy(), log["reward"].to_numpy(dtype=np.float64)
    q = cross_fitted_rewards(contexts, action, reward, n_actions, folds, seed=seed)[:, :, None]
    return {"reward": reward, "action": action, "pscore": log["propensity"].to_numpy(dtype=np.float64),
            "action_dist": policy.action_distribution(contexts.astype(np.float32))[:, :, None],
            "estimated_rewards_by_reg_model": q}


def run_served_ope(trained: TrainedRun, config: OPEConfig, out: Path) -> dict:
    """Off-policy evaluation on the decision log of ``fusionsim serve`` (``serving.decision_log``): the
    per-request estimators with the served propensities. A real shop's log has no simulated truth, so none
    is reported; events logged without an outcome count as reward 0, as the service learned from them."""
    logs = Path(config.logs)
    log_config = read_config(logs, "--logs")
    try:
        log = read_served_requests(logs)
    except DecisionLogError as exc:
        raise OPEInputError(str(exc)) from None
    _check_same_shop(trained, log_config, logs)
    served = log_config.get("actions", {})
    mapper = trained.mapper
    if served.get("mode") != mapper.mode or served.get("n_actions") != mapper.n_actions:
        raise OPEInputError(f"--policy {trained.folder} chooses among {mapper.n_actions} {mapper.mode} actions but "
                            f"the served policy chose among {served.get('n_actions')} {served.get('mode')} actions")
    contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64)
    data = discrete_data(trained.policy, log, contexts, mapper.n_actions, config.folds, config.seed)
    metrics = {"rounds": len(log), "logged_reward_per_request": float(data["reward"].mean()), "pscore": "logged",
               "served_log": {"joined_share": float(log["joined"].mean())},
               "estimators": evaluate(_estimators(list(config.estimators)), data, None, BOOTSTRAP_SAMPLES,
                                      config.seed),
               "effective_sample_size": effective_sample_size(importance_weights(data, data["pscore"]))}
    return _finish(metrics, logs, trained.folder, out, config)


def run_impression_ope(trained: TrainedRun, config: OPEConfig, out: Path) -> dict:
    """The per-request estimators on a shop's impression log (``envs.calibration.schema``) for a weight policy:
    the log's ``action`` (an index into the policy's actions: its arms or grid points, in its order) with its
    ``action_propensity``, the reward the policy's scenario asks for (clicks, purchases or revenue per request),
    and the contexts rebuilt from the log (``envs.calibration.request_contexts``). A real log has no truth."""
    logs = Path(config.logs)
    if config.pscore != "logged":
        raise OPEInputError(f"--pscore {config.pscore}: on an impression log the weight policy is evaluated with the "
                            "logged action_propensity (estimated propensities are for simulated logs)")
    if trained.config.agent == "ppo":
        raise OPEInputError(f"--policy {trained.folder}: a PPO policy chooses continuous weights, which an impression "
                            "log's discrete action cannot hold; evaluate it on a simulate --policy uniform-weights log")
    try:
        table = read_impression_log(logs, "--logs")
    except SchemaError as exc:
        raise OPEInputError(str(exc)) from None
    for column in ("action", "action_propensity"):
        if column not in table.columns:
            raise OPEInputError(f"--logs {logs} has no column '{column}': a weight policy is evaluated on the logging "
                                "policy's actions and their propensities")
    reward_name = trained.scenario.reward  # clicks, purchases or revenue: a column of requests_of_impressions
    needs = {"purchases": "purchase", "revenue": "revenue"}.get(reward_name)
    if needs is not None and needs not in table.columns:
        raise OPEInputError(f"--policy {trained.folder} was trained for {reward_name} (scenario "
                            f"'{trained.scenario.name}'), but --logs {logs} has no column '{needs}'")
    requests, contexts = requests_of_impressions(table)
    mapper = trained.mapper
    action = requests["action"].to_numpy(np.int64)
    if action.max() >= mapper.n_actions:
        row = int(np.flatnonzero(action >= mapper.n_actions)[0])
        raise OPEInputError(f"--logs {logs}: request {requests['request_id'].iloc[row]} logged action {action[row]}, "
                            f"but --policy {trained.folder} chooses among {mapper.n_actions} {mapper.mode} actions "
                            f"(indices 0..{mapper.n_actions - 1}, in its order of arms or grid points)")
    frame = pd.DataFrame({"action": action, "reward": requests[reward_name].to_numpy(np.float64),
                          "propensity": requests["action_propensity"].to_numpy(np.float64)})
    data = discrete_data(trained.policy, frame, contexts, mapper.n_actions, config.folds, config.seed)
    metrics = {"rounds": len(frame), "logged_reward_per_request": float(data["reward"].mean()), "pscore": "logged",
               "impression_log": {"reward": reward_name, "contexts": "rebuilt from the log "
                                  "(envs.calibration.request_contexts)"},
               "estimators": evaluate(_estimators(list(config.estimators)), data, None, BOOTSTRAP_SAMPLES,
                                      config.seed),
               "effective_sample_size": effective_sample_size(importance_weights(data, data["pscore"]))}
    return _finish(metrics, logs, trained.folder, out, config)


SESSION_FAMILY = ("pdis", "snpdis", "tis", "dr", "sndr")
"""The session estimators ``ope`` reports beside the per-request ones; DR and SNDR with the fitted Q
evaluation of ``evaluation.session`` (a ridge per action on the context and the session step)."""
FAMILIES = {"request": "per request: each request a bandit round, independent of the others; right for the value "
                       "per request of a policy that does not change what the shopper does next",
            "session": "per session: whole sessions as the units, importance-weighted step by step; right for the "
                       "value per session of a policy that changes satiation, fatigue or leaving (fusion does)"}


def _session_estimates(log: pd.DataFrame, contexts: np.ndarray, action_dist: np.ndarray, truth_run,
                       seed: int) -> dict:
    """The value per session of the policy with ``action_dist`` (n, n_actions) at the log's ``contexts``
    (n, D) on its sessions (those still open at its end cut, ``evaluation.session``), by the estimators of
    :data:`SESSION_FAMILY`, with the simulated reward per ended session of ``truth_run`` as the truth."""
    sessions = session_arrays_from_log(log, action_dist)
    if len(sessions.session_id) == 0:
        return {"skipped": "no session of the log ended before its earliest session still open began (a log of "
                           "fewer requests than concurrent sessions): nothing for the session family"}
    truth = float(truth_run.step_rewards.sum() * truth_run.slots / max(int(truth_run.step_sessions.sum()), 1))
    dist = action_dist[sessions.row]
    q_all = fitted_q_evaluation(q_features(contexts[sessions.row], sessions.step), sessions, dist, seed=seed)
    data = {**sessions.arrays(), "q_hat": q_all[np.arange(len(sessions.row)), sessions.action],
            "v_hat": np.einsum("na,na->n", dist, q_all)}
    results = evaluate({name: SESSION_ESTIMATORS[name]() for name in SESSION_FAMILY}, data, truth,
                       BOOTSTRAP_SAMPLES, seed)
    return {"estimators": results, "on_policy_truth": truth, "sessions": sessions.n_sessions,
            "logged_return_per_session": float(sessions.reward.sum() / sessions.n_sessions)}


def importance_weights(data: dict, pscore: np.ndarray) -> np.ndarray:
    """The evaluation policy's probability of each logged action over ``pscore`` (n,), from obp's keyword arrays."""
    return data["action_dist"][np.arange(len(data["action"])), data["action"], 0] / pscore


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective sample size of importance ``weights`` (n,): (sum w)^2 / sum w^2, n for equal weights,
    1 when one round carries them all; how many on-policy rounds the weighted log is worth."""
    weights = np.asarray(weights, dtype=np.float64)
    total = float(np.sum(weights ** 2))
    return float(np.sum(weights) ** 2 / total) if total > 0 else 0.0


def _estimators(names: list[str], estimated_pscore: bool = False) -> dict:
    """The estimators ``names`` with the ope command's hyperparameters; with ``estimated_pscore`` the ones that
    weight by propensities use ``estimated_pscore`` (obp's ``use_estimated_pscore=True``)."""
    out = {}
    for name in names:
        cls = ESTIMATORS[name]
        args = dict(ESTIMATOR_ARGS.get(name, {}))
        if estimated_pscore and "use_estimated_pscore" in {f.name for f in dataclasses.fields(cls)}:
            args["use_estimated_pscore"] = True
        out[name] = cls(**args)
    return out


def _simulated_run(log_config: dict, logs: Path, trained: TrainedRun, requests: int):
    """The policy served on-policy on the log's shop and seed (an ``OnlineRun``: the ground truth of a
    simulated log, per request and per ended session)."""
    scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
    world, arms = make_shop(scenario, base=log_config["args"].get("base"))
    return run_online(world, arms, trained.policy, trained.mapper, requests,
                      seed=int(log_config["args"]["seed"]), slots=256)



def _finish(metrics: dict, logs: Path, source: Path, out: Path, config: OPEConfig) -> dict:
    """Write the run folder of an ope run: config.yaml, metrics.json, report.md, then complete.json."""
    write_config(out, "ope", dataclasses.asdict(config))
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", _report(metrics, logs, source))
    mark_complete(out, "ope")
    return metrics


CONTINUOUS_REQUEST_FAMILY = {"ips": TrajectoryWiseIS, "snips": SelfNormalizedTrajectoryWiseIS,
                             "dr": PerDecisionDoublyRobust}
"""The per-request estimators on a log of PPO's own Gaussian (exact density ratios): the session estimators on
one-request sessions are IPW, SNIPW and DR."""
DRAWS = 32
"""Draws from the evaluation policy per request for V-hat of a continuous-action policy."""


def _same_ppo_network(logger: Path, evaluated: Path) -> bool:
    """Whether the PPO run ``logger`` (as the log's config names it) holds the same network as ``evaluated``: the
    same folder, or the same bytes of ``ppo_policy.pt``; False when the logger's folder cannot be read."""
    if logger.resolve() == evaluated.resolve():
        return True
    try:
        return (logger / PPO_POLICY_FILE).read_bytes() == (evaluated / PPO_POLICY_FILE).read_bytes()
    except OSError:
        return False


def _run_ppo_logged_ope(trained: TrainedRun, log: pd.DataFrame, contexts: np.ndarray, log_config: dict, out: Path,
                        config: OPEConfig) -> dict:
    """PPO's stochastic policy (its Gaussian, as ``ab-test`` serves it) on the log of a PPO logger (``simulate
    --policy run:<PPO run> [--ppo-std-scale S]``): each logged action weighted by the ratio of the two clipped
    Gaussians' densities, exact, per request and per session (``evaluation.session.continuous_session_data``);
    the truth is the stochastic policy simulated on-policy on the log's shop and seed."""
    logs, seed = Path(config.logs), config.seed
    data = continuous_session_data(log, contexts, trained.policy, trained.mapper, draws=DRAWS, seed=seed)
    if len(data.sessions.session_id) == 0:
        raise OPEInputError(f"--logs {logs}: no session of the log ended before its earliest session still open "
                            "began (a log of fewer requests than concurrent sessions); simulate more requests")
    truth_run = _simulated_run(log_config, logs, dataclasses.replace(trained, policy=trained.policy.sampling(
        1.0, seed=seed + 1)), config.truth_requests or len(log))
    session_truth = float(truth_run.step_rewards.sum() * truth_run.slots / max(int(truth_run.step_sessions.sum()), 1))
    sessions = data.sessions
    weights = sessions.evaluation_policy_pscore / sessions.pscore
    logger = str(log_config.get("args", {}).get("policy", ""))[len(RUN_PREFIX):]
    metrics = {"rounds": len(sessions.row), "logged_requests": len(log),
               "logged_reward_per_request": float(sessions.reward.mean()),
               "on_policy_truth": truth_run.mean, "evaluation_policy": "stochastic",
               "logger": {"run": logger, "std_scale": float(log_config.get("args", {}).get("ppo_std_scale", 1.0)),
                          "same_network": _same_ppo_network(Path(logger), trained.folder)},
               "estimators": evaluate({name: cls(densities=True) for name, cls in CONTINUOUS_REQUEST_FAMILY.items()},
                                      data.per_request, truth_run.mean, BOOTSTRAP_SAMPLES, seed),
               "effective_sample_size": effective_sample_size(weights),
               "per_session": {"estimators": evaluate({name: SESSION_ESTIMATORS[name](densities=True)
                                                       for name in SESSION_FAMILY}, data.per_session, session_truth,
                                                      BOOTSTRAP_SAMPLES, seed),
                               "on_policy_truth": session_truth, "sessions": sessions.n_sessions,
                               "logged_return_per_session": float(sessions.reward.sum() / sessions.n_sessions)}}
    return _finish(metrics, logs, trained.folder, out,
                   dataclasses.replace(config, estimators=tuple(CONTINUOUS_REQUEST_FAMILY)))


def _run_continuous_ope(trained: TrainedRun, log: pd.DataFrame, contexts: np.ndarray, log_config: dict, out: Path,
                        config: OPEConfig) -> dict:
    if log_config.get("policy", {}).get("name") == "ppo":
        return _run_ppo_logged_ope(trained, log, contexts, log_config, out, config)
    logs, folds, seed, truth_requests = Path(config.logs), config.folds, config.seed, config.truth_requests
    action_columns = [c for c in log.columns if c.startswith("action_")]
    if not action_columns:
        raise OPEInputError(f"--logs {logs} holds no continuous actions (action_<arm> columns); log them with "
                            "simulate --policy uniform-weights to evaluate a PPO policy")
    logged = log[action_columns].to_numpy(dtype=np.float64)
    reward = log["reward"].to_numpy(dtype=np.float64)
    target, _ = trained.policy.act(contexts.astype(np.float32))
    # reward model: ridge on [context, action], cross-fitted; evaluated at the logged and target actions
    fold = np.random.default_rng(seed).permutation(len(log)) % folds
    q_logged, q_target = np.empty(len(log)), np.empty(len(log))
    for f in range(folds):
        train = fold != f
        x = np.column_stack([contexts[train], logged[train]])
        theta = np.linalg.solve(x.T @ x + np.eye(x.shape[1]), x.T @ reward[train])
        q_logged[~train] = np.column_stack([contexts[~train], logged[~train]]) @ theta
        q_target[~train] = np.column_stack([contexts[~train], target[~train]]) @ theta
    estimator = KernelizedInverseProbabilityWeighting(bandwidth=KERNEL_BANDWIDTH)
    data = {"reward": reward, "action_by_behavior_policy": logged,
            "pscore": log["propensity"].to_numpy(dtype=np.float64), "action_by_evaluation_policy": target}
    truth = _simulated_run(log_config, logs, trained, truth_requests or len(log)).mean
    results = {**evaluate({"kernel-ipw": estimator}, data, truth, BOOTSTRAP_SAMPLES, seed),
               **evaluate({"kernel-dr": estimator}, {**data, "estimated_rewards_by_reg_model": q_target,
                                                     "estimated_rewards_at_logged_action": q_logged},
                          truth, BOOTSTRAP_SAMPLES, seed)}
    metrics = {"rounds": len(log), "logged_reward_per_request": float(reward.mean()), "estimators": results,
               "on_policy_truth": truth, "bandwidth": KERNEL_BANDWIDTH}
    return _finish(metrics, logs, trained.folder, out, dataclasses.replace(config, estimators=tuple(results)))


def _report(metrics: dict, logs: Path, policy_run: Path) -> str:
    truth = metrics.get("on_policy_truth")
    lines = [f"# Off-policy evaluation of `{policy_run}` on `{logs}`", "",
             f"{metrics['rounds']:,} logged rounds; logged reward per request "
             f"{metrics['logged_reward_per_request']:.4f}"
             + (f"; simulated on-policy value {truth:.4f}" if truth is not None else "")
             + (f"; effective sample size of the importance weights {metrics['effective_sample_size']:,.0f}"
                if "effective_sample_size" in metrics else "") + ".", ""]
    if metrics.get("evaluation_policy") == "stochastic":
        logger = metrics["logger"]
        lines += [f"The policy evaluated is PPO's stochastic Gaussian (as ab-test serves it) on the log of the PPO run "
                  f"`{logger['run']}` with its standard deviation x {logger['std_scale']:g}; each logged action is "
                  "weighted by the ratio of the two clipped Gaussians' densities at it, exactly "
                  "(agents.ppo.clipped_gaussian_density). "
                  f"{metrics['rounds']:,} of the {metrics['logged_requests']:,} logged requests are used: those of "
                  "the sessions that ended before the earliest session still open at the log's end began (the same "
                  "requests for both families; evaluation.session).", ""]
        if not logger["same_network"]:
            lines += [f"**Note:** the logging run's network is not the evaluated `{policy_run}`'s (or the logging run "
                      "is not found from here): the weights are still exact, but the two policies' actions may overlap "
                      "little (see the effective sample size).", ""]
    lines += ["| estimator | estimate | 95% CI | relative error |", "|---|---|---|---|"]
    for name, r in metrics["estimators"].items():
        error = f"{100 * r['relative_error']:.2f}%" if "relative_error" in r else "-"
        lines.append(f"| {name} | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] | {error} |")
    if "impression_log" in metrics:
        lines += ["", f"A shop's impression log: the reward is its {metrics['impression_log']['reward']} per request, "
                  "the contexts were rebuilt from the log (envs.calibration.request_contexts: segment, surface, "
                  "device, hour, and the session's and shopper's history within the log), and there is no simulated "
                  "truth."]
    if "skipped" in metrics.get("per_session", {}):
        lines += ["", f"Per session: {metrics['per_session']['skipped']}."]
    elif "per_session" in metrics:
        p = metrics["per_session"]
        lines += ["", f"The estimates above are {FAMILIES['request']}. Per session, {p['sessions']:,} sessions (those "
                  f"still open at the log's end cut); logged return per session {p['logged_return_per_session']:.4f}; "
                  f"simulated on-policy reward per ended session {p['on_policy_truth']:.4f}. These are "
                  f"{FAMILIES['session']}:", "",
                  "| estimator | per session | 95% CI | relative error |", "|---|---|---|---|"]
        for name, r in p["estimators"].items():
            lines.append(f"| {name} | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] | "
                         f"{100 * r['relative_error']:.2f}% |")
    if "estimated_pscore" in metrics:
        e = metrics["estimated_pscore"]
        lines += ["", f"**Warning:** {e['warning']}.", "",
                  f"Behaviour model: held-out log loss {e['held_out_log_loss']:.4f} per round (a uniform guess "
                  f"{e['uniform_log_loss']:.4f}); {100 * e['clipped_share']:.2f}% of the rounds clipped to "
                  f"{e['clip']:.4g}; mean |estimated / logged - 1| {e['mean_abs_relative_error_vs_logged']:.4f}. "
                  "With the log's own propensities:", "",
                  "| estimator | estimate | 95% CI | relative error |", "|---|---|---|---|"]
        for name, r in metrics["with_logged_pscore"].items():
            error = f"{100 * r['relative_error']:.2f}%" if "relative_error" in r else "-"
            lines.append(f"| {name} | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] | {error} |")
    return "\n".join(lines) + "\n"


OBD_EVALUATIONS = ("uniform", "best-item")


def obd_estimates(log: pd.DataFrame, n_items: int, action_dist: np.ndarray, estimators: list[str], folds: int,
                  seed: int, bootstrap: int = BOOTSTRAP_SAMPLES) -> dict:
    """Every estimator's value of the policy ``action_dist`` (n, n_items, 3) on an Open Bandit Dataset
    campaign ``log`` (``envs.calibration.obd.read_obd``), with intervals from ``bootstrap`` resamples; the
    reward model is a ridge regression on one-hot user features and position, cross-fitted over ``folds``."""
    n = len(log)
    action = log["item_id"].to_numpy().astype(np.int64)
    position = log["position"].to_numpy().astype(np.int64) - 1
    reward = log["click"].to_numpy(dtype=np.float64)
    user_columns = [c for c in log.columns if c.startswith("user_feature_")]
    features = pd.get_dummies(log[user_columns].astype(str)).to_numpy(dtype=np.float64) if user_columns else \
        np.zeros((n, 0))
    # the slot too: a round's q-hat is read at its own position (obp's DM and DR), whose click rate differs
    slots = np.eye(action_dist.shape[2])[position][:, 1:]
    contexts = np.column_stack([np.ones(n), features, slots])
    q = cross_fitted_rewards(contexts, action, reward, n_items, folds, seed=seed)
    q = np.repeat(q[:, :, None], action_dist.shape[2], axis=2)
    data = {"reward": reward, "action": action, "pscore": log["propensity_score"].to_numpy(dtype=np.float64),
            "action_dist": action_dist, "position": position, "estimated_rewards_by_reg_model": q}
    return evaluate(_estimators(estimators), data, None, bootstrap, seed)


def run_obd_ope(config: OPEConfig, out: Path) -> dict:
    """Estimate the value of ``config.evaluation`` ("uniform": every item equally likely in every slot;
    "best-item": in each slot the item with the highest logged click rate) on an Open Bandit Dataset
    campaign, with a ridge reward model on one-hot user features cross-fitted over ``config.folds``."""
    folder, campaign, evaluation = Path(config.obd), config.campaign, config.evaluation
    estimators, folds, seed = list(config.estimators), config.folds, config.seed
    if evaluation not in OBD_EVALUATIONS:
        raise OPEInputError(f"--evaluation {evaluation!r} is not allowed: use one of {', '.join(OBD_EVALUATIONS)}")
    log, n_items, campaign = read_obd(folder, campaign)
    n, len_list = len(log), OBD_POSITIONS
    if evaluation == "uniform":
        action_dist = np.full((n, n_items, len_list), 1.0 / n_items)
    else:
        action, position = log["item_id"].to_numpy(np.int64), log["position"].to_numpy(np.int64) - 1
        clicks = np.zeros((n_items, len_list))
        shown = np.zeros((n_items, len_list))
        np.add.at(clicks, (action, position), log["click"].to_numpy(np.float64))
        np.add.at(shown, (action, position), 1.0)
        best = np.argmax(clicks / np.maximum(shown, 1.0), axis=0)  # (len_list,)
        action_dist = np.zeros((n, n_items, len_list))
        action_dist[:, best, np.arange(len_list)] = 1.0
    results = obd_estimates(log, n_items, action_dist, estimators, folds, seed)
    reward = log["click"].to_numpy(dtype=np.float64)
    metrics = {"rounds": n, "campaign": campaign, "evaluation": evaluation,
               "logged_reward_per_request": float(reward.mean()), "estimators": results}
    write_config(out, "ope", {**dataclasses.asdict(config), "campaign": campaign})
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", _report(metrics, folder / f"{campaign}.csv", Path(evaluation)))
    mark_complete(out, "ope")
    return metrics

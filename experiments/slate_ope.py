"""Ranking-level off-policy evaluation (``fusionsim ope --rerank <arm>`` or ``--policy <train-stacker run>``):
what a ranking policy would earn, estimated from a log of slates with the slate estimators
(``experiments.evaluation.slate``).

What a log of shown items can evaluate. A log holds the k items each request showed, not the candidates the
arms scored, so it cannot say what a policy that picks its own k of C candidates would have shown. What it
can evaluate is a **re-ranking of the logged slate**: the policy shows the logged items, ordered by one arm or
by a stacker (``envs.strategies.RerankedSlate``; the cascade ``logged slate > k > orderer``). Its value is
identified when the logger randomised the order of its items (a position-randomisation bucket):

* fusionsim's own logs (``simulate --shuffle-slates``): every order of a slate's k items equally likely, so the
  logging propensities of the order are exact: 1 / k! for the slate, 1 / k for an item at a position and
  (k - l)! / k! for the first l items. The policy's are 1 where its order agrees with the log (the whole slate,
  the item at a position, the first l items) and 0 elsewhere. An arm orders by its rank among all the
  request's candidates (``rank_<arm>``), a stacker by its score of the logged signals (``zscore_<arm>``,
  ``rank_<arm>``, the contexts): the numbers the simulator's re-ranking uses, so the simulated truth (the
  re-ranked logger served on-policy on the log's shop) is the same policy.
* an impression log in the schema of ``envs.calibration.schema``: ``position_propensity`` feeds IIPS, SNIIPS
  and PI, ``slate_propensity`` SIPS and SNSIPS; an arm orders by ``score_<arm>``; the reward is ``click``.
  A real log has no truth.

Under a shuffle the probability of the item set is the logger's either way, so it cancels from every weight:
the propensities above are those of the order given the set. The per-slot reward is the scenario's: clicks,
purchases, or the price of each item bought (revenue). Cascade-DR's Q-hat is the logged mean of the reward
from each position down (one number per position, no item model): any Q-hat keeps it unbiased, and this one
is a control variate for the position's level only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.calibration.schema import SchemaError, read_impression_log
from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop, world_signature
from fusionsim.envs.stacking.signals import signals
from fusionsim.envs.stacking.stacker import Stacker, StackerError
from fusionsim.envs.strategies import STACKER, RerankedSlate, WeightedBlend, rerank_order
from fusionsim.experiments.evaluation import OPEInputError, evaluate
from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS, SlateCascadeDoublyRobust
from fusionsim.experiments.online import run_online
from fusionsim.experiments.runs import read_config, write_config, write_json

SLATE_DEFAULT = ("iips", "sniips", "rips", "snrips", "sips", "snsips", "cascade-dr")
"""The slate estimators ``ope`` runs on fusionsim's shuffled logs unless ``--estimators`` names others. PI is
left out: it assumes a logger that fills positions independently, and a shuffle shows each item once."""
NEEDS = {"iips": "pscore_item_position", "sniips": "pscore_item_position", "pi": "pscore_item_position",
         "sips": "pscore", "snsips": "pscore", "rips": "pscore_cascade", "snrips": "pscore_cascade",
         "cascade-dr": "pscore_cascade"}
"""The logging propensity each slate estimator weights by."""
IMPRESSION_PROPENSITIES = {"position_propensity": "pscore_item_position", "slate_propensity": "pscore"}
"""The impression schema's propensity columns and the slate estimators' names for them."""
BOOTSTRAP_SAMPLES = 1000
THIN_WEIGHT = 0.01
"""An estimator whose weights' effective sample size falls below this share of the slates at some position is
flagged: its estimate rests on a handful of slates (or none), and its bootstrap interval does not show it."""


@dataclass
class LoggedSlates:
    """n logged requests of k shown items, in shown order: ``items`` (n, k) int64 ids, ``reward`` (n, k) float64
    per slot, ``order_scores`` (n, k) float64 the evaluation policy's score of each item (higher first) and
    ``logging`` the logger's propensities known for this log, flat (n * k,) under the slate estimators' names."""

    items: np.ndarray
    reward: np.ndarray
    order_scores: np.ndarray
    logging: dict[str, np.ndarray]


def shuffle_propensities(n: int, k: int) -> dict[str, np.ndarray]:
    """The propensities (n * k,) of a uniformly random order of k items, n slates: 1 / k! for the slate, 1 / k
    for an item at a position, (k - l)! / k! for the first l items."""
    prefix = np.array([math.factorial(k - l) / math.factorial(k) for l in range(1, k + 1)])
    return {"pscore": np.full(n * k, 1.0 / math.factorial(k)), "pscore_item_position": np.full(n * k, 1.0 / k),
            "pscore_cascade": np.tile(prefix, n)}


def slate_data(slates: LoggedSlates) -> dict[str, np.ndarray]:
    """The slate estimators' keyword arrays (flat, one row per slate and position) of the policy that shows each
    logged slate's items ordered by ``order_scores`` (ties to the smaller id, :func:`rerank_order`)."""
    n, k = slates.items.shape
    order = rerank_order(slates.order_scores, slates.items)  # order[:, j]: the logged index the policy shows at j
    place = np.argsort(order, axis=1)  # where the policy shows each logged item
    match = (place == np.arange(k)).astype(np.float64)
    # Cascade-DR: the item is the policy's place of it (k items); given the logged first l - 1 items, the policy
    # shows the best-placed of the rest, the minimum of its places from l down
    best_rest = np.minimum.accumulate(place[:, ::-1], axis=1)[:, ::-1]
    reward = slates.reward
    q_level = reward[:, ::-1].cumsum(axis=1)[:, ::-1].mean(axis=0)  # (k,) mean reward from position l down
    return {"slate_id": np.repeat(np.arange(n), k), "position": np.tile(np.arange(k), n), "reward": reward.ravel(),
            **slates.logging,
            "evaluation_policy_pscore": np.repeat(match.prod(axis=1), k),
            "evaluation_policy_pscore_item_position": match.ravel(),
            "evaluation_policy_pscore_cascade": np.cumprod(match, axis=1).ravel(),
            "action": place.ravel(), "q_hat": np.repeat(np.tile(q_level, n)[:, None], k, axis=1),
            "evaluation_policy_action_dist": np.eye(k)[best_rest.ravel()]}


def effective_sample_sizes(data: dict[str, np.ndarray], k: int) -> dict[str, list[float]]:
    """Kish's effective sample size (sum w)^2 / sum w^2 over the slates, at each position (k,): of the whole-slate
    weights (``slate``, the same at every position), the item-position weights w(l) and the prefix weights
    w(1:l), where the log holds those propensities. 0 where no slate carries weight."""
    out = {}
    for name, weights in (("slate", "pscore"), ("item_position", "pscore_item_position"),
                          ("prefix", "pscore_cascade")):
        if weights in data:
            w = (data[f"evaluation_policy_{weights}"] / data[weights]).reshape(-1, k)
            squares = (w ** 2).sum(axis=0)
            ess = np.divide(w.sum(axis=0) ** 2, squares, out=np.zeros(k), where=squares > 0)
            out[name] = [float(v) for v in ess]
    return out


ESS_OF = {"pscore": "slate", "pscore_item_position": "item_position", "pscore_cascade": "prefix"}
"""The effective sample size that tells how much of the log each propensity's weights use."""


def _estimator(name: str, k: int):
    return SlateCascadeDoublyRobust(len_list=k, n_unique_action=k) if name == "cascade-dr" else \
        SLATE_ESTIMATORS[name](len_list=k)


def _check_estimators(names: list[str], available: dict[str, np.ndarray], logs: Path) -> None:
    for name in names:
        if NEEDS[name] not in available:
            usable = [n for n in SLATE_ESTIMATORS if NEEDS[n] in available]
            raise OPEInputError(f"--estimators {name} weights by {NEEDS[name]}, which --logs {logs} does not give; "
                                f"use {', '.join(usable)}")


def simulated_slates(logs: Path, log_config: dict, orderer: str, stacker: Stacker | None) -> LoggedSlates:
    """The slates of a fusionsim simulate run folder, ordered by ``orderer`` (an arm name, or "stacker")."""
    log = read_interaction_log(logs, "--logs").sort_values("request_id", kind="stable")
    arm_names = [str(a) for a in log_config.get("arms", [])]
    if not log_config.get("args", {}).get("shuffle_slates"):
        raise OPEInputError(f"--logs {logs} was not position-randomised: its logger showed each slate in its own "
                            "order, so a re-ranking has no logged propensity; log with simulate --shuffle-slates")
    missing = [f"rank_{a}" for a in arm_names if f"rank_{a}" not in log.columns]
    if missing:
        raise OPEInputError(f"--logs {logs} has no column '{missing[0]}' (the arms' ranks of the shown items); "
                            "simulate it again")

    def stacked(column: str, dtype) -> np.ndarray:
        return np.stack(log[column].to_numpy()).astype(dtype, copy=False)

    items = stacked("slate", np.int64)
    n, k = items.shape
    ranks = np.stack([stacked(f"rank_{a}", np.int32) for a in arm_names])
    if orderer == STACKER:
        contexts = log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float32)
        zscores = np.stack([stacked(f"zscore_{a}", np.float32) for a in arm_names])
        order_scores = stacker.score_signals(signals(ranks, zscores), contexts).astype(np.float64)
    else:
        order_scores = -ranks[arm_names.index(orderer)].astype(np.float64)
    scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
    purchased = stacked("purchased", np.float64)
    if scenario.reward == "clicks":
        reward = stacked("clicks", np.float64)
    elif scenario.reward == "purchases":
        reward = purchased
    else:
        world, _ = make_shop(scenario, base=log_config["args"].get("base"))
        reward = purchased * world.catalog.price.astype(np.float64)[items]
    return LoggedSlates(items, reward, order_scores, shuffle_propensities(n, k))


def impression_slates(logs: Path, orderer: str) -> LoggedSlates:
    """The slates of an impression log (``envs.calibration.schema``), ordered by ``score_<orderer>``."""
    try:
        table = read_impression_log(logs, "--logs")
    except SchemaError as exc:
        raise OPEInputError(str(exc)) from None
    column = f"score_{orderer}"
    if column not in table.columns:
        scores = [c[len("score_"):] for c in table.columns if c.startswith("score_")]
        raise OPEInputError(f"--rerank {orderer}: --logs {logs} has no column '{column}'; its arms' scores are "
                            f"{', '.join(scores) or 'none'}")
    table = table.sort_values(["request_id", "position"], kind="stable")
    request = table["request_id"].to_numpy()
    starts = np.flatnonzero(np.r_[True, request[1:] != request[:-1]])
    lengths = np.diff(np.r_[starts, len(table)])
    k = int(lengths[0])
    position = table["position"].to_numpy()
    bad = (lengths != k) | (position[starts + np.minimum(lengths, k) - 1] != k - 1) | (position[starts] != 0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        shown = position[starts[first]:starts[first] + lengths[first]].tolist()
        raise OPEInputError(f"--logs {logs}: request {request[starts[first]]} shows positions {shown[:12]}; the "
                            f"slate estimators need every request to show positions 0..{k - 1}, as the first does")
    n = len(starts)
    logging = {name: table[col].to_numpy(np.float64) for col, name in IMPRESSION_PROPENSITIES.items()
               if col in table.columns}
    return LoggedSlates(table["item_id"].to_numpy(np.int64).reshape(n, k),
                        table["click"].to_numpy(np.float64).reshape(n, k),
                        table[column].to_numpy(np.float64).reshape(n, k), logging)


def run_slate_ope(config, out: Path) -> dict:
    """Evaluate the re-ranking that ``config`` (an ``ope_run.OPEConfig`` with ``rerank``) names on ``config.logs``
    with the slate estimators; write ``config.yaml``, ``metrics.json``, ``report.md`` and ``complete.json``."""
    logs, orderer = Path(config.logs), config.rerank
    simulated = (logs / "config.yaml").is_file()
    stacker = None
    if simulated:
        log_config = read_config(logs, "--logs")
        arm_names = [str(a) for a in log_config.get("arms", [])]
        if orderer == STACKER:
            if config.policy is None:
                raise OPEInputError("--rerank stacker needs --policy <a train-stacker run>")
            try:
                stacker = Stacker.load(config.policy, "--policy")
                scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
                stacker.check_shop(arm_names, world_signature(scenario), f"--policy {config.policy}")
            except StackerError as exc:
                raise OPEInputError(str(exc)) from None
        elif orderer not in arm_names:
            raise OPEInputError(f"--rerank {orderer!r} is not allowed: use an arm of the log "
                                f"({', '.join(arm_names)}) or {STACKER} with --policy <a train-stacker run>")
        slates = simulated_slates(logs, log_config, orderer, stacker)
    else:
        if orderer == STACKER:
            raise OPEInputError(f"--rerank stacker: --logs {logs} is an impression log, whose items carry no "
                                "fusionsim signals (ranks among all candidates); re-rank it by an arm's score_<arm>")
        slates = impression_slates(logs, orderer)
    names = list(config.estimators) if config.estimators else \
        [n for n in SLATE_DEFAULT if NEEDS[n] in slates.logging] if simulated else \
        [n for n in SLATE_ESTIMATORS if n != "cascade-dr" and NEEDS[n] in slates.logging]
    if not slates.logging:
        raise OPEInputError(f"--logs {logs} holds no logging propensities (columns "
                            f"{', '.join(IMPRESSION_PROPENSITIES)}): the slate estimators weight by them")
    _check_estimators(names, slates.logging, logs)
    n, k = slates.items.shape
    data = slate_data(slates)
    truth = _simulated_truth(logs, log_config, orderer, stacker, config.truth_requests or n) if simulated else None
    with np.errstate(invalid="ignore", divide="ignore"):  # a self-normalised estimate with no weight is 0 / 0
        results = evaluate({name: _estimator(name, k) for name in names}, data, truth, BOOTSTRAP_SAMPLES,
                           config.seed)
    ess = effective_sample_sizes(data, k)
    for name, result in results.items():
        result["smallest_effective_sample_size"] = min(ess[ESS_OF[NEEDS[name]]])
    label = f"the logged slates re-ranked by {orderer if orderer != STACKER else 'the stacker ' + str(config.policy)}"
    metrics = {"family": "slate", "policy": label, "rounds": n, "slate_size": k,
               "logged_reward_per_request": float(slates.reward.sum(axis=1).mean()),
               "on_policy_truth": truth, "estimators": results,
               "effective_sample_size_by_position": ess,
               "thin_weight": [name for name, r in results.items()
                               if r["smallest_effective_sample_size"] < THIN_WEIGHT * n],
               "policy_order_matches_log": {"slate": float(data["evaluation_policy_pscore"][::k].mean()),
                                            "top_item": float(data["evaluation_policy_pscore_item_position"][::k]
                                                              .mean())}}
    write_config(out, "ope", dataclasses.asdict(dataclasses.replace(config, estimators=tuple(names))))
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, logs))
    mark_complete(out, "ope")
    return metrics


def _simulated_truth(logs: Path, log_config: dict, orderer: str, stacker: Stacker | None, requests: int) -> float:
    """The re-ranked logger served on-policy on the log's shop: the log's policy chooses the items (and keeps its
    random choices), ``orderer`` orders them; the mean reward per request over ``requests``."""
    from fusionsim.experiments.simulate import SimulateConfig, logging_policy

    scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
    simulate = SimulateConfig(**log_config["args"])
    world, arms = make_shop(scenario, base=simulate.base)
    arm_names = [a.name for a in arms]
    policy, mapper = logging_policy(simulate, scenario, arm_names)
    fusion = RerankedSlate(WeightedBlend(), STACKER if orderer == STACKER else arm_names.index(orderer), stacker)
    return run_online(world, arms, policy, mapper, requests, seed=simulate.seed, slots=min(simulate.slots, requests),
                      fusion=fusion).mean


def render_report(metrics: dict, logs: Path) -> str:
    truth, k = metrics["on_policy_truth"], metrics["slate_size"]
    lines = [f"# Ranking-level off-policy evaluation on `{logs}`", "",
             f"Policy: {metrics['policy']} (it shows each logged slate's {k} items in its own order). "
             f"{metrics['rounds']:,} logged slates; logged reward per request "
             f"{metrics['logged_reward_per_request']:.4f}"
             + (f"; simulated on-policy value {truth:.4f}" if truth is not None else "; no simulated truth (a "
                "shop's own log)") + ". The policy's order equals the logged one on "
             f"{100 * metrics['policy_order_matches_log']['slate']:.2f}% of the slates, and its top item is the "
             f"logged top item on {100 * metrics['policy_order_matches_log']['top_item']:.2f}%.", "",
             "| estimator | estimate | 95% CI | relative error | smallest effective sample size |",
             "|---|---|---|---|---|"]
    ess = metrics["effective_sample_size_by_position"]
    for name, r in metrics["estimators"].items():
        smallest = f"{r['smallest_effective_sample_size']:,.0f}"
        if name in metrics["thin_weight"]:
            smallest += f" (under {100 * THIN_WEIGHT:g}% of the slates: not to be trusted)"
        if not np.isfinite(r["estimate"]):  # a self-normalised estimate with no weight at some position: 0 / 0
            lines.append(f"| {name} | - | - | - | {smallest}; no logged slate carries weight at some position |")
            continue
        error = f"{100 * r['relative_error']:.2f}%" if "relative_error" in r else "-"
        lines.append(f"| {name} | {r['estimate']:.4f} | [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] | {error} | "
                     f"{smallest} |")
    lines += ["", "Effective sample size of the weights (Kish) by position, top first:", ""]
    for name, values in ess.items():
        lines.append(f"- {name.replace('_', '-')}: " + ", ".join(f"{v:,.0f}" for v in values))
    lines += ["", "IIPS assumes the reward at a position depends only on the item there, RIPS and Cascade-DR on the "
              "items down to it, SIPS on nothing; RIPS and SIPS see weight only where the logged order agrees "
              "with the policy's, which a shuffle of k items does with probability (k - l)! / k! for the first l."]
    return "\n".join(lines) + "\n"

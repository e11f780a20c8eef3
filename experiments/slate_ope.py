"""Ranking-level off-policy evaluation (``fusionsim ope --rerank <arm>``, or ``--rerank stacker --policy
<train-stacker run>``): what a ranking policy would earn, estimated from a log of slates with the slate
estimators (``experiments.evaluation.slate``).

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
  ``rank_<arm>``, the contexts): the numbers the simulator's re-ranking uses. Two values are simulated:
  the **truth** the estimators estimate, the value of one request re-ranked on the states the logger's
  traffic left (the log replayed with its seeds; at each step the re-ranked slate is served to the same
  requests and the simulator put back, ``one_request_value``), and the **deployed** value, the re-ranked
  logger served on-policy for whole sessions, whose clicks change the shoppers' later requests (satiation,
  fatigue, leaving). The relative error is against the truth; the gap between the two is what the
  per-request estimators cannot see.
* an impression log in the schema of ``envs.calibration.schema``: ``position_propensity`` feeds IIPS and
  SNIIPS (and PI, on request), ``slate_propensity`` SIPS and SNSIPS; an arm orders by ``score_<arm>`` (ties
  to the smaller item id); the reward is ``click``. The propensities must be those of the *order* given the
  items shown (a randomised-order bucket of k items: 1 / k and 1 / k!): a logger that also drew the items
  at random has smaller unconditional propensities, which would overstate every weight. A real log has no
  truth.

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
from fusionsim.envs.logs import list_column, read_interaction_log
from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop, world_signature
from fusionsim.envs.stacking.stacker import Stacker, StackerError
from fusionsim.envs.strategies import STACKER, RerankedSlate, WeightedBlend, rerank_order
from fusionsim.experiments.evaluation import OPEInputError, evaluate
from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS, SlateCascadeDoublyRobust
from fusionsim.experiments.online import run_online
from fusionsim.experiments.runs import read_config, write_config, write_json
from fusionsim.experiments.train_stacker import read_impressions

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
THIN_WEIGHT, THIN_WEIGHT_SLATES = 0.01, 30
"""An estimator whose weights' effective sample size falls below this share of the slates, or below this many
slates, at some position is flagged: its estimate rests on a handful of slates (or none), and its bootstrap
interval does not show it."""
MAX_SHUFFLED_SLATE = 170
"""The longest shuffled slate whose propensity 1 / k! is a float64 (171! overflows it)."""


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
    if k > MAX_SHUFFLED_SLATE:
        raise OPEInputError(f"slates of {k} items: the propensity 1 / {k}! of a shuffled slate is below the "
                            f"smallest float; the slate estimators take shuffled slates of at most "
                            f"{MAX_SHUFFLED_SLATE} items")
    prefix = np.array([math.factorial(k - l) / math.factorial(k) for l in range(1, k + 1)])
    return {"pscore": np.full(n * k, 1.0 / math.factorial(k)), "pscore_item_position": np.full(n * k, 1.0 / k),
            "pscore_cascade": np.tile(prefix, n)}


def slate_data(slates: LoggedSlates, cascade_dr: bool = True) -> dict[str, np.ndarray]:
    """The slate estimators' keyword arrays (flat, one row per slate and position) of the policy that shows each
    logged slate's items ordered by ``order_scores`` (ties to the smaller id, :func:`rerank_order`); with
    ``cascade_dr`` also Cascade-DR's ``action``, ``q_hat`` and ``evaluation_policy_action_dist`` (each
    (n k, k): 2 n k^2 floats)."""
    n, k = slates.items.shape
    order = rerank_order(slates.order_scores, slates.items)  # order[:, j]: the logged index the policy shows at j
    place = np.argsort(order, axis=1)  # where the policy shows each logged item
    match = (place == np.arange(k)).astype(np.float64)
    reward = slates.reward
    data = {"slate_id": np.repeat(np.arange(n), k), "position": np.tile(np.arange(k), n), "reward": reward.ravel(),
            **slates.logging,
            "evaluation_policy_pscore": np.repeat(match.prod(axis=1), k),
            "evaluation_policy_pscore_item_position": match.ravel(),
            "evaluation_policy_pscore_cascade": np.cumprod(match, axis=1).ravel()}
    if cascade_dr:
        # the item is the policy's place of it (k items); given the logged first l - 1 items, the policy shows the
        # best-placed of the rest, the minimum of its places from l down
        best_rest = np.minimum.accumulate(place[:, ::-1], axis=1)[:, ::-1]
        q_level = reward[:, ::-1].cumsum(axis=1)[:, ::-1].mean(axis=0)  # (k,) mean reward from position l down
        data.update(action=place.ravel(), q_hat=np.repeat(np.tile(q_level, n)[:, None], k, axis=1),
                    evaluation_policy_action_dist=np.eye(k)[best_rest.ravel()])
    return data


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
    """Every estimator of ``names`` must have the logging propensity it weights by in ``available``."""
    given_by = {"pscore": "the column slate_propensity", "pscore_item_position": "the column position_propensity",
                "pscore_cascade": "the propensity of each slate's first items, which only a shuffled simulate log "
                                  "gives"}
    for name in names:
        if NEEDS[name] not in available:
            usable = [n for n in SLATE_ESTIMATORS if NEEDS[n] in available]
            raise OPEInputError(f"--estimators {name} weights by {given_by[NEEDS[name]]}, which --logs {logs} does "
                                f"not give; use {', '.join(usable)}")


def simulated_slates(logs: Path, log_config: dict, scenario, orderer: str, stacker: Stacker | None) -> LoggedSlates:
    """The slates of a fusionsim simulate run folder (its config and scenario), ordered by ``orderer`` (an arm
    name, or "stacker")."""
    if not log_config.get("args", {}).get("shuffle_slates"):
        raise OPEInputError(f"--logs {logs} was not position-randomised: its logger showed each slate in its own "
                            "order, so a re-ranking has no logged propensity; log with simulate --shuffle-slates")
    log = read_interaction_log(logs, "--logs").sort_values("request_id", kind="stable")
    impressions = read_impressions(log, [str(a) for a in log_config.get("arms", [])], logs)
    items = list_column(log, "slate", np.int64)
    if orderer == STACKER:
        order_scores = stacker.score_signals(impressions.signals, impressions.contexts).astype(np.float64)
    else:
        order_scores = -list_column(log, f"rank_{orderer}", np.float64)
    if scenario.reward == "clicks":
        reward = impressions.clicks.astype(np.float64)
    else:
        reward = impressions.purchases.astype(np.float64)
        if scenario.reward == "revenue":
            world, _ = make_shop(scenario, base=log_config["args"].get("base"))
            reward *= world.catalog.price.astype(np.float64)[items]
    logging = shuffle_propensities(*items.shape)
    return LoggedSlates(items, reward, order_scores, logging)


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
    items = table["item_id"].to_numpy(np.int64).reshape(n, k)
    ordered = np.sort(items, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        first = int(np.flatnonzero(repeated)[0])
        item = ordered[first][1:][ordered[first][1:] == ordered[first][:-1]][0]
        raise OPEInputError(f"--logs {logs}: request {request[starts[first]]} shows item {item} twice; a re-ranking "
                            "reorders a slate of distinct items")
    if "slate_propensity" in table.columns:
        by_request = table["slate_propensity"].to_numpy(np.float64).reshape(n, k)
        differs = (by_request != by_request[:, :1]).any(axis=1)
        if differs.any():
            first = int(np.flatnonzero(differs)[0])
            raise OPEInputError(f"--logs {logs}: column 'slate_propensity' must be the same on every row of a "
                                f"request (the whole slate's propensity); request {request[starts[first]]} has "
                                f"{sorted(set(by_request[first].tolist()))}")
    logging = {name: table[col].to_numpy(np.float64) for col, name in IMPRESSION_PROPENSITIES.items()
               if col in table.columns}
    return LoggedSlates(items, table["click"].to_numpy(np.float64).reshape(n, k),
                        table[column].to_numpy(np.float64).reshape(n, k), logging)


def is_run_folder(logs: Path) -> bool:
    """Whether ``--logs`` names a fusionsim run folder (else an impression log file or folder of parts)."""
    return logs.is_dir() and any((logs / name).exists() for name in ("config.yaml", "complete.json", "logs"))


def run_slate_ope(config, out: Path) -> dict:
    """Evaluate the re-ranking that ``config`` (an ``ope_run.OPEConfig`` with ``rerank``) names on ``config.logs``
    with the slate estimators; write ``config.yaml``, ``metrics.json``, ``report.md`` and ``complete.json``."""
    logs, orderer = Path(config.logs), config.rerank
    simulated = is_run_folder(logs)
    if orderer == STACKER and not simulated:
        raise OPEInputError(f"--rerank stacker: --logs {logs} is an impression log, whose items carry no "
                            "fusionsim signals (ranks among all candidates); re-rank it by an arm's score_<arm>")
    if orderer != STACKER and config.policy is not None:
        raise OPEInputError(f"--policy is the stacker of --rerank stacker; --rerank {orderer} orders by an arm and "
                            "takes no --policy")
    if orderer == STACKER and config.policy is None:
        raise OPEInputError("--rerank stacker needs --policy <a train-stacker run>")
    stacker = scenario = log_config = None
    if simulated:
        log_config = read_config(logs, "--logs")
        if log_config.get("command") != "simulate":
            raise OPEInputError(f"--logs {logs} is a {log_config.get('command')} run; --rerank reads a simulate run "
                                "(logged with --shuffle-slates) or an impression log")
        arm_names = [str(a) for a in log_config.get("arms", [])]
        scenario = parse_scenario(log_config["scenario"], f"'{logs / 'config.yaml'}'")
        if orderer == STACKER:
            try:
                stacker = Stacker.load(config.policy, "--policy")
                stacker.check_shop(arm_names, world_signature(scenario), f"--policy {config.policy}")
            except StackerError as exc:
                raise OPEInputError(str(exc)) from None
        elif orderer not in arm_names:
            raise OPEInputError(f"--rerank {orderer!r} is not allowed: use an arm of the log "
                                f"({', '.join(arm_names)}) or {STACKER} with --policy <a train-stacker run>")
        slates = simulated_slates(logs, log_config, scenario, orderer, stacker)
    else:
        slates = impression_slates(logs, orderer)
    if not slates.logging:
        raise OPEInputError(f"--logs {logs} holds no logging propensities (columns "
                            f"{', '.join(IMPRESSION_PROPENSITIES)}): the slate estimators weight by them")
    if config.estimators:
        names = list(dict.fromkeys(config.estimators))
    else:  # the defaults this log's propensities feed
        names = [name for name in SLATE_DEFAULT if NEEDS[name] in slates.logging]
    _check_estimators(names, slates.logging, logs)
    n, k = slates.items.shape
    data = slate_data(slates, cascade_dr="cascade-dr" in names)
    truth = deployed = None
    if simulated:
        truth = one_request_value(log_config, scenario, orderer, stacker)
        deployed = deployed_value(log_config, scenario, orderer, stacker, config.truth_requests or n)
    with np.errstate(invalid="ignore", divide="ignore"):  # a self-normalised estimate with no weight is 0 / 0
        results = evaluate({name: _estimator(name, k) for name in names}, data, truth, BOOTSTRAP_SAMPLES,
                           config.seed)
    ess = effective_sample_sizes(data, k)
    thin = max(THIN_WEIGHT * n, THIN_WEIGHT_SLATES)
    for name, result in results.items():
        for key in ("estimate", "ci_lower", "ci_upper"):  # 0 / 0 of a self-normalised estimate: undefined
            result[key] = None if not np.isfinite(result[key]) else result[key]
        if result["estimate"] is None:
            result.pop("relative_error", None)
        result["smallest_effective_sample_size"] = min(ess[ESS_OF[NEEDS[name]]])
    policy = f"the stacker {config.policy}" if orderer == STACKER else orderer
    metrics = {"family": "slate", "policy": f"the logged slates re-ranked by {policy}", "rounds": n, "slate_size": k,
               "logged_reward_per_request": float(slates.reward.sum(axis=1).mean()),
               "on_policy_truth": truth, "deployed_value": deployed, "estimators": results,
               "effective_sample_size_by_position": ess,
               "thin_weight": [name for name, r in results.items() if r["smallest_effective_sample_size"] < thin],
               "policy_order_matches_log": {"slate": float(data["evaluation_policy_pscore"][::k].mean()),
                                            "top_item": float(data["evaluation_policy_pscore_item_position"][::k]
                                                              .mean())}}
    write_config(out, "ope", dataclasses.asdict(dataclasses.replace(config, estimators=tuple(names))))
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "report.md", render_report(metrics, logs))
    mark_complete(out, "ope")
    return metrics


def _reranked(orderer: str, arm_names: list[str], stacker: Stacker | None, inner) -> RerankedSlate:
    return RerankedSlate(inner, STACKER if orderer == STACKER else arm_names.index(orderer), stacker)


def one_request_value(log_config: dict, scenario, orderer: str, stacker: Stacker | None) -> float:
    """What the slate estimators estimate: the mean reward per request of the logged requests re-ranked one at a
    time. The log is replayed with its own seeds (the same shoppers, states, items and random draws); at each
    step the logger's actions are served once re-ranked by ``orderer`` (the reward kept, the simulator put back
    with ``state_dict``/``load_state_dict``) and once as logged (which advances the shop as the log did)."""
    from fusionsim.experiments.simulate import SimulateConfig, build_simulation

    args = SimulateConfig(**log_config["args"])
    simulation = build_simulation(args, scenario)
    sim, logged_fusion = simulation.sim, simulation.sim.fusion
    counterfactual = _reranked(orderer, simulation.arm_names, stacker, logged_fusion.inner)
    total, done = 0.0, 0
    while done < args.requests:
        actions, _ = simulation.policy.act(sim.contexts)
        decisions = simulation.mapper.decide(actions)
        keep = min(sim.n_slots, args.requests - done)
        state = sim.state_dict()
        sim.fusion = counterfactual
        total += float(sim.step(decisions).reward[:keep].sum())
        sim.load_state_dict(state)
        sim.fusion = logged_fusion
        sim.step(decisions)
        done += keep
    return total / done


def deployed_value(log_config: dict, scenario, orderer: str, stacker: Stacker | None, requests: int) -> float:
    """The re-ranked logger served on-policy for whole sessions on the log's shop: the log's policy chooses the
    items (with its own random choices), ``orderer`` orders them, and the shoppers' later requests follow from
    what they saw; the mean reward per request over ``requests``."""
    from fusionsim.experiments.simulate import SimulateConfig, logging_policy

    args = SimulateConfig(**log_config["args"])
    world, arms = make_shop(scenario, base=args.base)
    arm_names = [a.name for a in arms]
    policy, mapper = logging_policy(args, scenario, arm_names)
    return run_online(world, arms, policy, mapper, requests, seed=args.seed, slots=min(args.slots, requests),
                      fusion=_reranked(orderer, arm_names, stacker, WeightedBlend())).mean


def render_report(metrics: dict, logs: Path) -> str:
    truth, deployed, k = metrics["on_policy_truth"], metrics["deployed_value"], metrics["slate_size"]
    if truth is None:
        values = "; no simulated truth (a shop's own log)"
    else:
        values = (f"; simulated truth {truth:.4f} per request (one request re-ranked on the logged states: what the "
                  f"estimators estimate); deployed {deployed:.4f} (the policy served for whole sessions, whose "
                  f"clicks change later requests: {100 * (deployed / truth - 1):+.2f}% from the truth, which no "
                  "per-request estimate sees)")
    lines = [f"# Ranking-level off-policy evaluation on `{logs}`", "",
             f"Policy: {metrics['policy']} (it shows each logged slate's {k} items in its own order). "
             f"{metrics['rounds']:,} logged slates; logged reward per request "
             f"{metrics['logged_reward_per_request']:.4f}{values}. The policy's order equals the logged one on "
             f"{100 * metrics['policy_order_matches_log']['slate']:.2f}% of the slates, and its top item is the "
             f"logged top item on {100 * metrics['policy_order_matches_log']['top_item']:.2f}%.", "",
             "| estimator | estimate | 95% CI | relative error | smallest effective sample size |",
             "|---|---|---|---|---|"]
    for name, r in metrics["estimators"].items():
        smallest = f"{r['smallest_effective_sample_size']:,.0f}"
        if name in metrics["thin_weight"]:
            smallest += " (too few slates carry weight: not to be trusted)"
        if r["estimate"] is None:  # a self-normalised estimate with no weight at some position: 0 / 0
            lines.append(f"| {name} | - | - | - | {smallest}; no logged slate carries weight at some position |")
            continue
        interval = "-" if r["ci_lower"] is None else f"[{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]"
        error = f"{100 * r['relative_error']:.2f}%" if "relative_error" in r else "-"
        lines.append(f"| {name} | {r['estimate']:.4f} | {interval} | {error} | {smallest} |")
    lines += ["", "Effective sample size of the weights (Kish) by position, top first:", ""]
    for name, values in metrics["effective_sample_size_by_position"].items():
        lines.append(f"- {name.replace('_', '-')}: " + ", ".join(f"{v:,.0f}" for v in values))
    lines += ["", "IIPS assumes the reward at a position depends only on the item there, RIPS and Cascade-DR on the "
              "items down to it, SIPS on nothing; RIPS and SIPS see weight only where the logged order agrees "
              "with the policy's, which a shuffle of k items does with probability (k - l)! / k! for the first l. "
              f"Flagged: an effective sample size under {100 * THIN_WEIGHT:g}% of the slates or under "
              f"{THIN_WEIGHT_SLATES} slates at some position."]
    return "\n".join(lines) + "\n"

"""How close is each slate estimator to the truth for a cascade policy, on fusionsim's own logs? The logger
shows the top k of a fixed blend in a uniformly random order (``simulate --policy blend:... --shuffle-slates``:
a position-randomisation bucket); each evaluation policy is a cascade that keeps the same top k and orders
them by one arm (``envs.strategies.Cascade``, ``blend > k > arm``), or by the blend itself. So the logger's
propensities are known exactly: 1 / k for an item at a position, (k - l)! / k! for the first l items, 1 / k! for
the slate; the evaluation policy's are 1 or 0, from the logged items' ranks under its arm (``rank_<arm>``,
the order the cascade's second stage sorts by). The truth is the cascade simulated on-policy (clicks per
request, the expected sum of a slate's clicks). Prints figures; asserts nothing.

    python benchmarks/slate_ope_accuracy.py [--requests 100000] [--truth-seeds 3]

IIPS assumes the click at a position depends only on the item there, RIPS only on the items down to it,
SIPS nothing: all three are unbiased here if the shopper model has no effect across a slate's positions
(it has none within one request). But SIPS and RIPS need the logged slate, or its first l items, to be the
evaluation policy's: a shuffle of k = 10 items matches a given order's first l with probability
(k - l)! / k!, so beyond l of about 3 they see no weight at 100,000 requests (SNRIPS is then 0 / 0, NaN).
PI assumes a logger that fills positions independently, which a shuffle (no repeats) is not.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np

from fusionsim.agents import ConstantAction
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.strategies import Cascade, CascadeConfig
from fusionsim.experiments.evaluation.slate import SLATE_ESTIMATORS
from fusionsim.experiments.online import run_online
from fusionsim.experiments.simulate import SimulateConfig, run_policy

BLEND = (0.5, 0.5)
"""The logger's blend of the default scenario's two default arms, and every cascade's first stage."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--truth-seeds", type=int, default=3,
                        help="on-policy runs of the truth, each as long as the log (the shop drifts over days)")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    scenario = load_scenario("default")
    world, arms = make_shop(scenario)
    names = [a.name for a in arms]
    k, c = scenario.candidates.slate_size, scenario.candidates.n_candidates
    with tempfile.TemporaryDirectory() as tmp:
        run_policy(SimulateConfig(policy="blend:" + ",".join(map(str, BLEND)), requests=args.requests, seed=args.seed,
                                  shuffle_slates=True, slots=256), scenario, Path(tmp) / "log", progress=False)
        log = read_interaction_log(Path(tmp) / "log", "--logs")
    n = len(log)
    clicks = np.stack(log["clicks"].to_numpy()).astype(np.float64)  # (n, k), in shown order
    slate_id = np.repeat(np.arange(n), k)
    position = np.tile(np.arange(k), n)
    places = np.arange(1, k + 1)
    # the logger's propensities: uniform orders of the same k items
    logging = {"pscore": np.full(n * k, 1.0 / math.factorial(k)), "pscore_item_position": np.full(n * k, 1.0 / k),
               "pscore_cascade": np.tile(np.array([math.factorial(k - l) / math.factorial(k) for l in places]), n)}
    print(f"default scenario, arms [{', '.join(names)}]: logger = top {k} of the blend {BLEND} in a uniformly "
          f"random order, {n:,} logged requests; truth: each cascade on-policy, mean of {args.truth_seeds} runs "
          f"of {n:,} requests (as many simulated days as the log)")
    print(f"{'evaluation policy':<34} {'truth':>7}  " + "  ".join(f"{e:>24}" for e in ESTIMATED))
    orderers = {f"blend > {k} > {name}": (j, tuple(np.eye(len(names))[j])) for j, name in enumerate(names)}
    orderers[f"blend > {k} > blend"] = (None, BLEND)
    for label, (j, second) in orderers.items():
        if j is None:  # the blend's own order of its top k: the order the logger shuffled
            ranks = _blend_order(log, names)
        else:
            ranks = np.stack(log[f"rank_{names[j]}"].to_numpy())  # (n, k) the arm's rank of each shown item
        eval_place = np.argsort(np.argsort(ranks, axis=1, kind="stable"), axis=1)  # where pi_e puts each item
        match = (eval_place == np.arange(k)).astype(np.float64)  # pi_e shows the logged item at its position
        evaluation = {"evaluation_policy_pscore": np.repeat(match.prod(axis=1), k),
                      "evaluation_policy_pscore_item_position": match.ravel(),
                      "evaluation_policy_pscore_cascade": np.cumprod(match, axis=1).ravel()}
        fusion = Cascade([CascadeConfig(BLEND, k, second)], len(names), c, k)
        truth = float(np.mean([run_online(world, arms, ConstantAction(0), fusion, n, args.seed + 1 + t, 256,
                                          fusion=fusion).mean for t in range(args.truth_seeds)]))
        cells = []
        for name in ESTIMATED:
            estimator = SLATE_ESTIMATORS[name](len_list=k)
            data = {"slate_id": slate_id, "reward": clicks.ravel(), "position": position, **logging, **evaluation}
            with np.errstate(invalid="ignore", divide="ignore"):  # SNRIPS: 0 / 0 at positions no prefix matches
                value = estimator.estimate_policy_value(**data)
                interval = estimator.estimate_interval(**data, n_bootstrap_samples=1000, random_state=0)
            cells.append(f"{value:7.4f} [{interval['95.0% CI (lower)']:.3f},{interval['95.0% CI (upper)']:.3f}] "
                         f"{100 * (value / truth - 1):+5.1f}%")
        print(f"{label:<34} {truth:7.4f}  " + "  ".join(f"{cell:>24}" for cell in cells))


ESTIMATED = ("iips", "sniips", "rips", "snrips", "sips", "pi")
"""The slate estimators this logger's propensities feed (Cascade-DR needs a reward model of prefixes)."""


def _blend_order(log, names: list[str]) -> np.ndarray:
    """(n, k): the rank of each shown item in the blend's own order (by its blended z-score, higher first)."""
    blended = sum(w * np.stack(log[f"zscore_{name}"].to_numpy()) for w, name in zip(BLEND, names))
    return np.argsort(np.argsort(-blended, axis=1, kind="stable"), axis=1)


if __name__ == "__main__":
    main()

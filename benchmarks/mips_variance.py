"""MIPS against IPS on fusionsim's own simulator. A log of ``--requests`` requests of the default scenario under
the uniform grid policy (``simulate --policy uniform-grid``, grid resolution ``--grid-resolution``) is used to
evaluate two stochastic policies over the grid, whose true values are simulated on-policy
(``experiments.online.run_online``: the mean of ``--truth-seeds`` runs of ``--requests`` requests, the log's
horizon, since the shop's reward drifts over the simulated days). For IPS, SNIPS and, for each grid embedding,
MIPS and SNMIPS, it prints the estimate on the first log, its 95% bootstrap interval, the relative error against
the on-policy value, the variance of the per-round contributions relative to IPS's (for the self-normalised
estimators, of their linearised terms w_i (r_i - V) / mean w) and the largest weight; then, over
``--replicates`` logs of different seeds, each estimator's mean, mean relative error, standard deviation, the
standard error the per-round contributions imply (the two differ where rounds are not independent: sessions,
the shop's drift), variance relative to IPS's, and RMSE relative to the truth. Prints figures; asserts nothing.

    python benchmarks/mips_variance.py [--requests 100000] [--replicates 20] [--truth-seeds 5]
                                       [--grid-resolution 4] [--seed 0] [--bootstrap 10000]

Expect MIPS's variance below IPS's, and a bias wherever the reward depends on more of the blend than the
embedding keeps (the simulator's reward depends on the whole weight vector: there is a direct effect, and MIPS
is unbiased only without one). Two more sources of error affect every estimator alike: the on-policy value is
itself simulated (its 95% interval over the truth runs is printed), and the log's contexts (session step,
session clicks) follow the uniform policy's sessions, not the evaluated policy's. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import stats

from fusionsim.agents.base import Policy, check_contexts
from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.fusion import ActionMapper, simplex_grid
from fusionsim.envs.logs import read_interaction_log
from fusionsim.envs.scenario import load_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.evaluation.estimators import (InverseProbabilityWeighting,
                                                         SelfNormalizedInverseProbabilityWeighting)
from fusionsim.experiments.evaluation.mips import (MIPS, SNMIPS, coarse_grid_embedding, deterministic_p_e_a,
                                                   largest_arm_embedding)
from fusionsim.experiments.online import run_online
from fusionsim.experiments.simulate import SimulateConfig, run_policy

SEARCH = CONTEXT_NAMES.index("surface_search")
EPSILON = 0.1
"""Uniform mass mixed into the fixed-blend policy, so that it gives every grid point a positive probability."""
TEMPERATURE = 4.0
"""Sharpness of the surface-dependent policy: pi_e(a | x) proportional to exp(TEMPERATURE * weight of the arm)."""


class GridDistribution(Policy):
    """A stochastic policy over the grid points with a known distribution ``distribution(contexts)``
    (B, n_actions): it draws each request's grid point from it and reports its probability."""

    name = "grid_distribution"
    action_mode = "grid"

    def __init__(self, distribution, n_actions: int, seed: int) -> None:
        self.distribution, self.n_actions = distribution, n_actions
        self.rng = np.random.default_rng(seed)

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        return self.distribution(np.asarray(check_contexts(contexts), dtype=np.float64))

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.action_distribution(contexts)
        action = np.minimum((self.rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1), self.n_actions - 1)
        return action.astype(np.int64), p[np.arange(len(p)), action]

    def config(self) -> dict:
        return {"n_actions": self.n_actions}

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]


def evaluation_policies(grid: np.ndarray) -> dict[str, callable]:
    """name -> distribution(contexts) (B, n_actions) over the grid points, each with full support."""
    n_actions, n_arms = grid.shape
    target = np.full(n_arms, 0.25 / max(n_arms - 1, 1))
    target[0] = 0.75 if n_arms > 1 else 1.0
    nearest = int(np.argmin(np.abs(grid - target).sum(axis=1)))
    blend = np.full(n_actions, EPSILON / n_actions)
    blend[nearest] += 1.0 - EPSILON
    blend_name = f"blend [{', '.join(f'{w:g}' for w in grid[nearest])}] + {EPSILON:g} uniform"
    favour = np.exp(TEMPERATURE * grid.T.astype(np.float64))  # (n_arms, n_actions)
    favour /= favour.sum(axis=1, keepdims=True)
    other = 1 if n_arms > 1 else 0

    def fixed(contexts):
        return np.broadcast_to(blend, (len(contexts), n_actions)).copy()

    def by_surface(contexts):
        search = contexts[:, SEARCH] > 0.5
        return np.where(search[:, None], favour[0], favour[other])

    return {blend_name: fixed, f"softmax({TEMPERATURE:g} x weight): arm 0 on search, arm {other} on feed": by_surface}


def read_log(folder: Path) -> dict[str, np.ndarray]:
    log = read_interaction_log(folder, "--logs")
    return {"context": log[[f"context_{c}" for c in CONTEXT_NAMES]].to_numpy(dtype=np.float64),
            "action": log["action"].to_numpy().astype(np.int64),
            "pscore": log["propensity"].to_numpy(dtype=np.float64),
            "reward": log["reward"].to_numpy(dtype=np.float64)}


def simulate_log(requests: int, seed: int, resolution: int, folder: Path) -> dict[str, np.ndarray]:
    config = SimulateConfig(policy="uniform-grid", requests=requests, seed=seed, grid_resolution=resolution)
    run_policy(config, load_scenario("default"), folder, progress=False)
    return read_log(folder)


def per_round(log: dict[str, np.ndarray], pi_e: np.ndarray, embedding: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(w r, w) per round: IPS's weight when ``embedding`` is None, else the marginal weight of the embedding,
    computed here from the uniform logging distribution (independently of the estimators' code)."""
    rows = np.arange(len(log["action"]))
    if embedding is None:
        w = pi_e[rows, log["action"]] / log["pscore"]
    else:
        n_actions = pi_e.shape[1]
        one_hot = np.eye(embedding.max() + 1)[embedding]  # (n_actions, n_embeddings)
        e = embedding[log["action"]]
        w = (pi_e @ one_hot)[rows, e] / (np.full(n_actions, 1.0 / n_actions) @ one_hot)[e]
    return w * log["reward"], w


def estimators(log: dict[str, np.ndarray], pi_e: np.ndarray, embeddings: dict[str, np.ndarray]):
    """(name, embedding name, estimator, arrays, embedding) for IPS, SNIPS and each embedding's MIPS, SNMIPS."""
    n, n_actions = pi_e.shape
    ips = {"reward": log["reward"], "action": log["action"], "pscore": log["pscore"], "action_dist": pi_e[:, :, None]}
    yield "ips", "-", InverseProbabilityWeighting(), ips, None
    yield "snips", "-", SelfNormalizedInverseProbabilityWeighting(), ips, None
    pi_b = np.full((n, n_actions), 1.0 / n_actions)  # uniform-grid: the log's propensity is 1 / n_actions
    for label, embedding in embeddings.items():
        arrays = {"reward": log["reward"], "action": log["action"], "action_embed": embedding[log["action"]],
                  "pi_b": pi_b, "action_dist": pi_e[:, :, None], "p_e_a": deterministic_p_e_a(embedding)}
        yield "mipw", label, MIPS(n_actions), arrays, embedding
        yield "snmipw", label, SNMIPS(n_actions), arrays, embedding


def _interval(values: np.ndarray) -> tuple[float, float]:
    """95% t interval of the mean of ``values`` (NaN for fewer than two)."""
    if len(values) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean() - half), float(values.mean() + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--replicates", type=int, default=20, help="logs of different seeds (the first included)")
    parser.add_argument("--truth-seeds", type=int, default=5,
                        help="on-policy runs of --requests requests each, averaged for the true value")
    parser.add_argument("--grid-resolution", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bootstrap", type=int, default=10_000)
    args = parser.parse_args()
    start = time.perf_counter()
    scenario = load_scenario("default")
    world, arms = make_shop(scenario)
    grid = simplex_grid(len(arms), args.grid_resolution)
    n_actions = len(grid)
    embeddings = {"largest-arm": largest_arm_embedding(grid), "coarse-grid(2)": coarse_grid_embedding(grid, 2)}
    if args.grid_resolution > 4:
        embeddings["coarse-grid(4)"] = coarse_grid_embedding(grid, 4)
    print(f"default scenario, arms [{', '.join(a.name for a in arms)}], grid resolution {args.grid_resolution}: "
          f"{n_actions} grid actions")
    for label, embedding in embeddings.items():
        groups = ["{" + ", ".join(f"[{', '.join(f'{w:g}' for w in grid[a])}]" for a in np.flatnonzero(embedding == e))
                  + "}" for e in np.unique(embedding)]
        print(f"  embedding {label}: {len(groups)} values: {' '.join(groups)}")

    policies = evaluation_policies(grid)
    truths = {}
    for k, (name, distribution) in enumerate(policies.items()):
        values = [run_online(world, arms, GridDistribution(distribution, n_actions, seed=10_000 + 100 * k + s),
                             ActionMapper("grid", len(arms), args.grid_resolution), args.requests,
                             seed=args.seed + 1_000 + 100 * k + s, slots=256).mean for s in range(args.truth_seeds)]
        truths[name] = (float(np.mean(values)), _interval(np.array(values)))

    replicate_estimates: dict[tuple[str, str, str], list[float]] = {}
    replicate_se: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.replicates):
            log = simulate_log(args.requests, args.seed + r, args.grid_resolution, Path(tmp) / f"log{r}")
            for name, distribution in policies.items():
                pi_e = distribution(log["context"])
                if r == 0:
                    truth, (low, high) = truths[name]
                    print(f"\npolicy: {name}")
                    print(f"  on-policy value {truth:.4f} (95% CI [{low:.4f}, {high:.4f}], mean of {args.truth_seeds} "
              f"runs of {args.requests:,} requests); logged (uniform-grid) reward {log['reward'].mean():.4f}; "
              f"{len(log['reward']):,} logged rounds")
                    print(f"  {'estimator':<9} {'embedding':<15} {'estimate':>8}  {'95% CI':<17} {'rel. error':>10}  "
                          f"{'var/IPS (per round)':>19}  {'max w':>6}")
                    ips_var = per_round(log, pi_e, None)[0].var()
                for estimator_name, label, estimator, arrays, embedding in estimators(log, pi_e, embeddings):
                    value = estimator.estimate_policy_value(**arrays)
                    contribution, w = per_round(log, pi_e, embedding)
                    if estimator_name.startswith("sn"):  # linearised per-round terms of the ratio
                        contribution = w * (log["reward"] - value) / w.mean()
                    key = (name, estimator_name, label)
                    replicate_estimates.setdefault(key, []).append(value)
                    replicate_se.setdefault(key, []).append(contribution.std(ddof=1) / np.sqrt(len(w)))
                    if r > 0:
                        continue
                    ci = estimator.estimate_interval(**arrays, n_bootstrap_samples=args.bootstrap,
                                                     random_state=args.seed)
                    print(f"  {estimator_name:<9} {label:<15} {value:8.4f}  [{ci['95.0% CI (lower)']:.4f}, "
                          f"{ci['95.0% CI (upper)']:.4f}] {100 * (value - truth) / truth:+9.2f}%  "
                          f"{contribution.var() / ips_var:19.3f}  {w.max():6.2f}")
    if args.replicates > 1:
        for name in policies:
            truth = truths[name][0]
            last = args.seed + args.replicates - 1
            print(f"\npolicy: {name}: over {args.replicates} logs (seeds {args.seed}..{last})")
            print(f"  {'estimator':<9} {'embedding':<15} {'mean':>8} {'mean rel. error':>15} {'std':>8} "
                  f"{'SE (per round)':>14} {'var/IPS':>8} {'RMSE/truth':>10}")
            ips_values = np.array(replicate_estimates[(name, "ips", "-")])
            for key, values in replicate_estimates.items():
                policy, estimator_name, label = key
                if policy != name:
                    continue
                values = np.array(values)
                print(f"  {estimator_name:<9} {label:<15} {values.mean():8.4f} "
                      f"{100 * (values.mean() - truth) / truth:+14.2f}% {values.std(ddof=1):8.4f} "
                      f"{np.sqrt(np.mean(np.square(replicate_se[key]))):14.4f} "
                      f"{values.var(ddof=1) / ips_values.var(ddof=1):8.3f} "
                      f"{100 * np.sqrt(((values - truth) ** 2).mean()) / truth:9.2f}%")
    print(f"\n{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()

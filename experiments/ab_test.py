"""``fusionsim ab-test``: a simulated A/B test of fusion policies, with honest statistics and the true lift.

Shoppers (not requests) are assigned to buckets by a salted hash of their id. A pre-period under the
uniform policy gives each shopper's pre-period metrics (for CUPED). Then all buckets run concurrently
over the same simulated days, each as its own shop front over the shared world (see :func:`run_buckets`):
every request is served by the policy of its shopper's bucket (learning policies learn only from their
own bucket). Because it is a simulation, the true lift is also
measured: the whole population is replayed under each policy alone, on the same seed (common random
numbers), and the per-shopper means compared.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionsim.agents import LinUCB, Policy
from fusionsim.envs.context import CONTEXT_DIM
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import Scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.world import World
from fusionsim.experiments.abtest import stats
from fusionsim.agents import ConstantAction
from fusionsim.experiments.oracle import grid_search
from fusionsim.experiments.runs import save_figure, write_config, write_json, pyplot
from fusionsim.experiments.simulate import RUN_PREFIX, PolicySpecError, make_static_policy
from fusionsim.experiments.train import read_policy_run, read_trained_run
from fusionsim.envs.logs import atomic_write_parquet
from fusionsim.common.io import atomic_write_text, mark_complete

METRICS = ("revenue", "clicks", "purchases", "requests", "sessions")
"""Per-shopper totals; the tests compare their means per shopper, and CTR/conversion as ratios."""
GRID_RESOLUTION = 4


class ABTestError(ValueError):
    """Bad ``ab-test`` input."""


def assign_buckets(user_id: np.ndarray, split: list[float], salt: str) -> np.ndarray:
    """Bucket (index into ``split``) of each shopper from a salted hash of the id: (n,) int.

    The hash is splitmix64 of (id + a 64-bit digest of the salt), vectorised; a new salt re-randomises."""
    key = np.uint64(int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "little"))
    with np.errstate(over="ignore"):
        z = np.asarray(user_id).astype(np.uint64) + key
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.searchsorted(np.cumsum(split) / np.sum(split), unit, side="right")


@dataclass
class Bucketed:
    """Per-shopper totals (n_users, len(METRICS)) plus impressions, and daily reward per bucket."""

    totals: np.ndarray
    impressions: np.ndarray
    daily: np.ndarray


def _make_policies(names: list[str], arm_names: list[str], search, seed: int) -> tuple[list[Policy], list[bool]]:
    """The policy of each bucket, and whether it learns during the test (only ``linucb`` does; a run's policy
    serves frozen)."""
    policies = []
    for i, name in enumerate(names):
        if name == "best-arm":
            policies.append(ConstantAction(search.best_single_arm))
        elif name == "static":
            policies.append(ConstantAction(search.best_global))
        elif name == "linucb":
            policies.append(LinUCB(len(search.grid), CONTEXT_DIM, alpha=0.5, seed=seed + i, action_mode="grid"))
        elif name.startswith("ppo:"):
            policies.append(_load_ppo(name, arm_names, seed=seed + i))
        elif name.startswith(RUN_PREFIX):
            policies.append(_load_run(name, arm_names))
        else:
            try:
                policy = make_static_policy(name, arm_names, seed=seed + i)
            except PolicySpecError as exc:
                raise ABTestError(f"--policies: {exc}") from None
            policies.append(policy)
    return policies, [name == "linucb" for name in names]


def _load_run(name: str, arm_names: list[str]) -> Policy:
    """``run:<run folder>``: the frozen policy of a complete train or learn run over the same arms, on a weight
    grid of this test's resolution (``train.read_policy_run``; the world is not compared: ``--users`` resizes the
    test's population)."""
    return read_policy_run(name[len(RUN_PREFIX):], f"--policies {name}", arm_names, None, GRID_RESOLUTION).policy


def _load_ppo(name: str, arm_names: list[str], seed: int) -> Policy:
    """``ppo:<run folder>``: the frozen PPO policy of a complete ``fusionsim train --agent ppo`` run over the
    same arms, sampling its Gaussian from a Generator seeded with ``seed``."""
    option = f"--policies {name}"
    try:
        trained = read_trained_run(Path(name[len("ppo:"):]), option)
    except ValueError as exc:
        raise ABTestError(str(exc)) from None
    if trained.config.agent != "ppo":
        raise ABTestError(f"{option}: the run trained {trained.config.agent}, not ppo")
    if trained.arm_names != arm_names:
        raise ABTestError(f"{option}: the run blends the arms [{', '.join(trained.arm_names)}] but this test's arms "
                          f"are [{', '.join(arm_names)}] (names and order must match)")
    return trained.policy.sampling(1.0, seed=seed)


def run_buckets(world: World, arms, policies: list[Policy], bucket_of_user: np.ndarray, days: float, seed: int,
                slots: int = 512, learning: list[bool] | None = None) -> Bucketed:
    """Serve ``days`` of traffic. Each bucket is its own shop front: a simulator whose arrivals are the
    bucket's shoppers, with the bucket's share of the slots and of the requests per day, so a policy that
    keeps shoppers longer slows its own bucket's arrivals, not the other buckets' (no interference through
    shared capacity). All buckets share the world and the arms and advance over the same simulated days.
    ``learning[b]``: bucket b's policy learns from its rewards (None: none does)."""
    n_users, n_buckets = world.population.n_users, len(policies)
    share = np.bincount(bucket_of_user, weights=world.population.activity, minlength=n_buckets)
    share = share / share.sum()
    mappers = {mode: ActionMapper(mode, len(arms), GRID_RESOLUTION) for mode in ("arm", "grid", "weights", "simplex")}
    sims = []
    for b in range(n_buckets):
        traffic = world.scenario.traffic.model_copy(
            update={"requests_per_day": max(1, round(world.scenario.traffic.requests_per_day * share[b]))})
        bucket_world = World(world.scenario.model_copy(update={"traffic": traffic}), world.catalog,
                             world.population, world.history)
        sim = BatchedSimulator(bucket_world, arms, n_slots=max(1, round(slots * share[b])),
                               shoppers=bucket_of_user == b)
        sim.reset(seed=[seed, b])
        sims.append(sim)
    totals = np.zeros((n_users, len(METRICS)))
    impressions = np.zeros(n_users)
    n_days = int(np.ceil(days))
    daily = np.zeros((n_days, n_buckets, 2))  # reward sum, requests
    while min(sim.day for sim in sims) < days:
        for b, (sim, policy) in enumerate(zip(sims, policies, strict=True)):
            if sim.day >= days:
                continue
            day = int(sim.day)
            result = sim.serve(policy, mappers[policy.action_mode])
            users = result.requests.user_id
            if learning is not None and learning[b]:
                policy.update(result.contexts, result.actions, result.reward)
            daily[min(day, n_days - 1), b] += (result.reward.sum(), len(users))
            per_request = np.stack([result.revenue, result.clicks.sum(axis=1), result.purchased.sum(axis=1),
                                    np.ones(len(users)), result.terminated | result.truncated], axis=1)
            np.add.at(totals, users, per_request)
            np.add.at(impressions, users, result.clicks.shape[1])
    return Bucketed(totals, impressions, daily)


@dataclass(frozen=True)
class ABTestConfig:
    """What one ``fusionsim ab-test`` run does; written whole as ``config.yaml``'s ``args``."""

    policies: tuple[str, ...] = ("best-arm", "static")
    """the bucket policies, the first is the control: best-arm | static | linucb | ppo:<run> | uniform | an arm
    name | blend:<w1>,..."""
    split: tuple[float, ...] = (50.0, 50.0)
    """traffic shares of the buckets (any positive scale)"""
    scenario: str = "default"
    """shipped scenario name or YAML path"""
    users: int | None = None
    """shoppers in the test (None: the scenario's population)"""
    days: float = 3.0
    """simulated days of the test"""
    pre_days: float = 1.0
    """pre-period under the uniform policy, for CUPED"""
    base: str | None = None
    """folder of trained arms (None: popularity and new arrivals)"""
    seed: int = 0
    """seed of the bucketing salt, the simulators and the policies"""
    aa: bool = False
    """A/A test: every bucket runs the first policy"""
    true_lift: bool = True
    """also replay everyone under each policy for the true lift"""
    grid_requests: int = 20_000
    """requests per grid blend of the grid search behind best-arm and static"""
    replays: int = 3
    """replays averaged for the true lift"""


def run_ab_test(config: ABTestConfig, scenario: Scenario, out: Path) -> dict:
    """Run the test; write ``users.parquet``, ``metrics.json``, ``report.md``, ``lift.png``, ``daily.png``,
    ``config.yaml`` and ``complete.json``."""
    policy_names, split, days, pre_days = list(config.policies), list(config.split), config.days, config.pre_days
    base, seed, aa = config.base, config.seed, config.aa
    if aa:
        policy_names = [policy_names[0]] * len(split)
    if len(policy_names) != len(split):
        raise ABTestError(f"--split has {len(split)} shares for {len(policy_names)} policies")
    if len(policy_names) < 2:
        raise ABTestError("--policies needs at least two policies (or --aa)")
    world, arms = make_shop(scenario, base=base)
    arm_names = [a.name for a in arms]
    for name in policy_names:  # fail on a bad name before any simulation or file
        if name == "ppo":
            raise ABTestError("--policies ppo: name a trained PPO run as ppo:runs/<run> (fusionsim train --agent ppo)")
        if name.startswith("ppo:"):
            _load_ppo(name, arm_names, seed=seed)
        elif name.startswith(RUN_PREFIX):
            _load_run(name, arm_names)
        elif name not in ("best-arm", "static", "linucb"):
            try:
                make_static_policy(name, arm_names, seed)
            except PolicySpecError as exc:
                raise ABTestError(f"--policies: {exc}") from None
    search = grid_search(world, arms, GRID_RESOLUTION, config.grid_requests, seed=seed + 1000, slots=256)
    users = np.arange(world.population.n_users)
    bucket_of_user = assign_buckets(users, split, salt=f"fusionsim-{seed}")
    write_config(out, "ab-test", dataclasses.asdict(config), scenario=scenario_to_dict(scenario), arms=arm_names)
    # pre-period: everyone under the uniform policy (CUPED covariates)
    pre = run_buckets(world, arms, [make_static_policy("uniform", arm_names, seed)],
               np.zeros_like(bucket_of_user), pre_days, seed + 7)
    policies, learning = _make_policies(policy_names, arm_names, search, seed)
    test = run_buckets(world, arms, policies, bucket_of_user, days, seed, learning=learning)
    active = test.totals[:, METRICS.index("requests")] > 0
    table = shopper_table(bucket_of_user, policy_names, test, pre)
    atomic_write_parquet_df(table, out / "users.parquet")
    result = analyse(table[active], policy_names, split)
    if config.true_lift and not aa:
        result["true_lift"] = _true_lifts(world, arms, policy_names, arm_names, search, days, seed, users,
                                          config.replays)
    result["days"], result["pre_days"] = days, pre_days
    write_json(out / "metrics.json", result)
    _plots(out, test.daily, policy_names, result)
    atomic_write_text(out / "report.md", _report(result, policy_names))
    mark_complete(out, "ab-test")
    return result


def shopper_table(bucket_of_user: np.ndarray, policy_names: list[str], test: Bucketed, pre: Bucketed) -> pd.DataFrame:
    """One row per shopper (``user_id`` 0..n-1): bucket, policy, the test's METRICS totals and impressions, and
    the pre-period's totals as ``pre_<metric>`` (CUPED's covariates); the input of :func:`analyse`."""
    return pd.DataFrame({"user_id": np.arange(len(bucket_of_user)), "bucket": bucket_of_user,
                         "policy": np.array(policy_names, dtype=object)[bucket_of_user],
                         **{m: test.totals[:, i] for i, m in enumerate(METRICS)},
                         "impressions": test.impressions,
                         **{f"pre_{m}": pre.totals[:, i] for i, m in enumerate(METRICS)}})


def atomic_write_parquet_df(table: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa

    atomic_write_parquet(pa.Table.from_pandas(table, preserve_index=False), path)


def analyse(table: pd.DataFrame, policy_names: list[str], split: list[float]) -> dict:
    """Per bucket against bucket 0: Welch (and CUPED-Welch) for per-shopper metrics, delta method for CTR
    and conversion, Holm-adjusted p-values when there are more than two buckets, SRM, MDE."""
    counts = np.bincount(table["bucket"], minlength=len(policy_names))
    srm_statistic, srm_p = stats.sample_ratio_mismatch(counts, np.asarray(split))
    control = table[table["bucket"] == 0]
    comparisons = {}
    for b in range(1, len(policy_names)):
        treated = table[table["bucket"] == b]
        both = pd.concat([control, treated])
        rows: dict[str, dict] = {}
        for metric in ("revenue", "clicks", "purchases", "sessions"):
            rows[metric] = stats.welch(control[metric], treated[metric]).to_dict()
            adjusted = stats.cuped(both[metric].to_numpy(), both[f"pre_{metric}"].to_numpy())
            n_control = len(control)
            rows[f"{metric} (CUPED)"] = stats.welch(adjusted[:n_control], adjusted[n_control:]).to_dict()
        rows["ctr"] = stats.ratio(control["clicks"], control["impressions"], treated["clicks"],
                                  treated["impressions"]).to_dict()
        rows["conversion"] = stats.ratio(control["purchases"], control["requests"], treated["purchases"],
                                         treated["requests"]).to_dict()
        comparisons[f"{policy_names[b]} (bucket {b}) vs {policy_names[0]}"] = rows
    if len(policy_names) > 2:
        keys = [(c, m) for c in comparisons for m in comparisons[c]]
        adjusted = stats.holm(np.array([comparisons[c][m]["p_value"] for c, m in keys]))
        for (c, m), p in zip(keys, adjusted, strict=True):
            comparisons[c][m]["p_value_holm"] = float(p)
    return {"buckets": {f"{b}:{name}": int(counts[b]) for b, name in enumerate(policy_names)},
            "srm": {"chi2": srm_statistic, "p_value": srm_p}, "comparisons": comparisons}


def true_means(world, arms, policy: Policy, days: float, seed: int, replays: int, learns: bool = False) -> np.ndarray:
    """Per-shopper means of METRICS with the whole population under ``policy``, averaged over ``replays``
    simulations (seeds seed, seed + 1, ...), so the truth is far less noisy than one test's estimate."""
    users = np.zeros(world.population.n_users, dtype=np.int64)
    means = []
    for r in range(replays):
        run = run_buckets(world, arms, [copy.deepcopy(policy)], users, days, seed + r, learning=[learns])
        means.append(run.totals[run.totals[:, METRICS.index("requests")] > 0].mean(axis=0))
    return np.mean(means, axis=0)


def _true_lifts(world, arms, policy_names, arm_names, search, days, seed, users, replays: int = 3) -> dict:
    """Each policy alone for the whole population (see :func:`true_means`): lifts of each treatment's
    per-shopper means against the control's."""
    means = []
    for i, name in enumerate(policy_names):
        (policy,), (learns,) = _make_policies([name], arm_names, search, seed + i)
        means.append(true_means(world, arms, policy, days, seed, replays, learns))
    return {f"{policy_names[b]} vs {policy_names[0]}": {m: float(means[b][i] - means[0][i])
                                                         for i, m in enumerate(METRICS) if m != "requests"}
            for b in range(1, len(policy_names))}


def _plots(out: Path, daily: np.ndarray, policy_names: list[str], result: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for b, name in enumerate(policy_names):
        ax.plot(np.arange(1, len(daily) + 1), daily[:, b, 0] / np.maximum(daily[:, b, 1], 1), marker="o",
                label=f"{b}: {name}")
    ax.set_xlabel("simulated day")
    ax.set_ylabel("reward per request")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "daily.png")
    labels, lifts, lows, highs, truths = [], [], [], [], []
    for label, rows in result["comparisons"].items():
        r = rows["revenue"]
        labels.append(label.split(" (")[0])
        lifts.append(r["lift"])
        lows.append(r["lift"] - r["ci_lower"])
        highs.append(r["ci_upper"] - r["lift"])
        truths.append(result.get("true_lift", {}).get(f"{label.split(' (')[0]} vs {policy_names[0]}", {})
                      .get("revenue", np.nan))
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(labels) + 1.5))
    ax.errorbar(lifts, range(len(labels)), xerr=[lows, highs], fmt="o", capsize=4, label="estimate, 95% CI")
    ax.plot(truths, range(len(labels)), "x", color="red", label="true lift")
    ax.axvline(0, color="gray", lw=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(f"revenue per shopper, lift vs {policy_names[0]}")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, out / "lift.png")


def _report(result: dict, policy_names: list[str]) -> str:
    lines = ["# Simulated A/B test", "", "Buckets: " + ", ".join(f"{k} ({v:,} shoppers)"
                                                             for k, v in result["buckets"].items()),
             f"Sample-ratio mismatch: chi2 = {result['srm']['chi2']:.2f}, p = {result['srm']['p_value']:.3f}", ""]
    for label, rows in result["comparisons"].items():
        truth = result.get("true_lift", {}).get(f"{label.split(' (')[0]} vs {policy_names[0]}", {})
        lines += [f"## {label}", "",
                  "| metric | control | treatment | lift | relative | 95% CI | p | MDE | true lift |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for metric, r in rows.items():
            p = f"{r['p_value']:.4f}" + (f" (Holm {r['p_value_holm']:.4f})" if "p_value_holm" in r else "")
            t = truth.get(metric.split(" ")[0])
            lines.append(f"| {metric} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | {r['lift']:+.4f} | "
                         f"{100 * r['relative_lift']:+.2f}% | [{r['ci_lower']:+.4f}, {r['ci_upper']:+.4f}] | {p} | "
                         f"{r['mde']:.4f} | {'' if t is None else f'{t:+.4f}'} |")
        lines.append("")
    lines += ["![daily reward per bucket](daily.png)", "", "![lift with 95% CI and the true lift](lift.png)"]
    return "\n".join(lines) + "\n"

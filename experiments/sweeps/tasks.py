"""The tasks of a sweep: what they are, their seeds, and the pure function that runs one.

A sweep plans three kinds of task, in this order for each of its scenarios:

- ``compare``: one ``fusionsim compare`` method on one seed (``compare.seeds`` of them). Every method of a seed
  gets the same task seed, so within a seed the methods serve the same shoppers and draws (common random
  numbers), as in one ``compare`` run.
- ``ab``: one simulated A/B test of a design (``replicates`` of them), with its own bucketing salt and seeds.
- ``truth``: one replay of the whole population under each of a design's two policies on one seed (the
  true lift of that replay; ``truth_replays`` of them).

Seeds: ``SeedSequence(sweep.seed)`` spawns one child per scenario; each scenario's child spawns one for its
shared inputs (arms, stacker), one for its compare seeds and one per design; those spawn one per seed,
replicate (then replay). A task's seed is its child's first 63-bit word; its spawn key is kept beside it.

:func:`run_task` is a pure function of (task, sweep, the scenario's :class:`ScenarioInputs`): it reads only
the input folders and writes nothing, so where it runs (this process or a Ray worker) never changes what it
returns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fusionsim.envs.scenario import parse_scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.experiments.ab_test import METRICS, analyse, assign_buckets, run_buckets, shopper_table, true_means
from fusionsim.experiments.compare import METHOD_KINDS, CompareConfig, evaluate_methods
from fusionsim.experiments.simulate import make_static_policy
from fusionsim.experiments.sweeps.spec import Design, Sweep, slug

KINDS = ("compare", "ab", "truth")
TASK_COLUMNS = ("task_id", "kind", "scenario", "subject", "replicate", "seed_entropy", "spawn_key", "seed",
                "status", "error")
"""Columns of every row: ``subject`` is the method (compare) or the design (ab, truth); ``status`` is "done" or
"failed" (then ``error`` says why and the figures are null)."""
COMPARE_COLUMNS = ("method_kind", "reward_per_request", "ci95_lower", "ci95_upper", "reward_per_session",
                   "session_ci95_lower", "session_ci95_upper", "mean_reward_per_request", "revenue_per_session",
                   "requests")
"""A compare task's figures: ``compare``'s, over the last 20% of the method's requests, with 95% batch-means
intervals (``reward_per_*`` in the scenario's reward)."""
AB_METRICS = ("revenue", "clicks", "purchases", "sessions", "revenue (CUPED)", "clicks (CUPED)",
              "purchases (CUPED)", "sessions (CUPED)", "ctr", "conversion")
AB_STATISTICS = ("lift", "ci_lower", "ci_upper", "p_value")


def ab_column(metric: str, statistic: str) -> str:
    """The column of an A/B metric's statistic (``revenue (CUPED)``, ``lift`` -> ``revenue_cuped_lift``)."""
    return f"{slug(metric).replace('-', '_')}_{statistic}"


AB_COLUMNS = (*(ab_column(m, s) for m in AB_METRICS for s in AB_STATISTICS),
              "srm_p_value", "control_shoppers", "treatment_shoppers")
"""An A/B task's figures: per metric (per shopper, CUPED-adjusted, or the ratios CTR and conversion) the
treatment's lift over the control, its 95% interval and p-value; the sample-ratio test; the bucket sizes."""
TRUTH_METRICS = ("revenue", "clicks", "purchases", "sessions")
TRUTH_COLUMNS = tuple(f"{m}_true_lift" for m in TRUTH_METRICS)
"""A truth task's figures: the treatment's per-shopper mean minus the control's, the whole population under
each policy on the task's seed."""
COLUMNS = {"compare": COMPARE_COLUMNS, "ab": AB_COLUMNS, "truth": TRUTH_COLUMNS}


@dataclass(frozen=True)
class Task:
    """One unit of a sweep (see the module docstring)."""

    task_id: str
    kind: str
    scenario: str
    subject: str
    replicate: int
    seed: int
    spawn_key: str

    def row(self, seed_entropy: int) -> dict:
        """The identifying columns of this task's row (:data:`TASK_COLUMNS` but status and error)."""
        return {"task_id": self.task_id, "kind": self.kind, "scenario": self.scenario, "subject": self.subject,
                "replicate": self.replicate, "seed_entropy": seed_entropy, "spawn_key": self.spawn_key,
                "seed": self.seed}


@dataclass(frozen=True)
class ScenarioInputs:
    """What every task of one scenario reads, prepared once by the sweep (plain data, so a Ray worker gets it
    whole): the resolved scenario and the folders of its arms and stacker."""

    scenario: dict
    """the resolved scenario (``scenario_to_dict``)"""
    compare_arms: str | None
    """train-base folder of the compare methods' arms (None: the sweep has no compare block)"""
    ab_arms: str | None
    """train-base folder of the A/B tests' arms (None: popularity and new arrivals)"""
    stacker: str | None
    """train-stacker folder for stacking and the cascades (None: no method needs one)"""

    def folders(self) -> dict[str, str]:
        """The input folders by field name (those given)."""
        return {name: getattr(self, name) for name in ("compare_arms", "ab_arms", "stacker")
                if getattr(self, name) is not None}


def _seed_of(sequence: np.random.SeedSequence) -> tuple[int, str]:
    return int(sequence.generate_state(1, np.uint64)[0] >> np.uint64(1)), ".".join(map(str, sequence.spawn_key))


def scenario_sequences(sweep: Sweep) -> list[np.random.SeedSequence]:
    """One spawned SeedSequence per scenario of the sweep, in order."""
    return np.random.SeedSequence(sweep.seed).spawn(len(sweep.scenarios))


def _scenario_children(sweep: Sweep, sequence: np.random.SeedSequence) -> list[np.random.SeedSequence]:
    """A scenario's children: its shared inputs', its compare seeds', then one per design."""
    return sequence.spawn(2 + len(sweep.ab.designs if sweep.ab else []))


def shared_seed(sweep: Sweep, scenario_index: int) -> int:
    """The seed of a scenario's shared inputs (the arms' traffic and training, the stacker's log and fit)."""
    shared, *_ = _scenario_children(sweep, scenario_sequences(sweep)[scenario_index])
    return _seed_of(shared)[0]


def plan_tasks(sweep: Sweep, scenario_names: list[str]) -> list[Task]:
    """Every task of the sweep in its fixed order; ``scenario_names[i]`` is the name of ``sweep.scenarios[i]``."""
    tasks = []
    designs = sweep.ab.designs if sweep.ab else []
    for name, sequence in zip(scenario_names, scenario_sequences(sweep), strict=True):
        _, compare_sequence, *design_sequences = _scenario_children(sweep, sequence)
        if sweep.compare is not None:
            seeds = [_seed_of(s) for s in compare_sequence.spawn(sweep.compare.seeds)]
            for method in sweep.compare.methods:
                for r, (seed, key) in enumerate(seeds):
                    tasks.append(Task(f"compare/{name}/{slug(method)}/{r:04d}", "compare", name, method, r, seed, key))
        for design, design_sequence in zip(designs, design_sequences, strict=True):
            children = design_sequence.spawn(design.replicates + design.truth_replays)
            for r, child in enumerate(children):
                kind, index = ("ab", r) if r < design.replicates else ("truth", r - design.replicates)
                seed, key = _seed_of(child)
                tasks.append(Task(f"{kind}/{name}/{slug(design.name)}/{index:04d}", kind, name, design.name, index,
                                  seed, key))
    return tasks


_SHOPS: dict[tuple[str, str | None], tuple] = {}
_STACKERS: dict[str, Stacker] = {}


def clear_caches() -> None:
    """Forget the shops and stackers built so far (a new sweep in this process may retrain a folder in place)."""
    _SHOPS.clear()
    _STACKERS.clear()


def _shop(scenario: dict, base: str | None) -> tuple:
    """(world, arms) of a resolved scenario and arms folder, built once per process (tasks only read them)."""
    key = (json.dumps(scenario, sort_keys=True), base)
    if key not in _SHOPS:
        if len(_SHOPS) >= 4:
            _SHOPS.pop(next(iter(_SHOPS)))
        _SHOPS[key] = make_shop(parse_scenario(scenario, f"'{scenario['name']}'"), base=base)
    return _SHOPS[key]


def _stacker(folder: str) -> Stacker:
    if folder not in _STACKERS:
        _STACKERS[folder] = Stacker.load(folder)
    return _STACKERS[folder]


def run_task(task: Task, sweep: Sweep, inputs: ScenarioInputs) -> dict:
    """The figures of one task (the columns of ``COLUMNS[task.kind]``), a pure function of its arguments."""
    if task.kind == "compare":
        return _compare_figures(task, sweep, inputs)
    design = next(d for d in sweep.ab.designs if d.name == task.subject)
    world, arms = _shop(inputs.scenario, inputs.ab_arms)
    if task.kind == "ab":
        return _ab_figures(task.seed, sweep, design, world, arms)
    return _truth_figures(task.seed, sweep, design, world, arms)


def _compare_figures(task: Task, sweep: Sweep, inputs: ScenarioInputs) -> dict:
    block = sweep.compare
    config = CompareConfig(scenario=inputs.scenario["name"], base=inputs.compare_arms, stacker=inputs.stacker,
                           requests=block.requests, search_requests=block.search_requests,
                           log_requests=block.log_requests, grid_resolution=block.grid_resolution,
                           cascade_keep=tuple(block.cascade_keep), methods=(task.subject,), seed=task.seed,
                           slots=block.slots, per=block.per)
    world, arms = _shop(inputs.scenario, inputs.compare_arms)
    stacker = _stacker(inputs.stacker) if inputs.stacker is not None else None
    result = evaluate_methods(config, world, arms, stacker)["methods"][task.subject]
    return {"method_kind": METHOD_KINDS[task.subject], "reward_per_request": result["reward_per_request"],
            "ci95_lower": result["ci95"][0], "ci95_upper": result["ci95"][1],
            "reward_per_session": result["reward_per_session"], "session_ci95_lower": result["session_ci95"][0],
            "session_ci95_upper": result["session_ci95"][1],
            "mean_reward_per_request": result["mean_reward_per_request"],
            "revenue_per_session": result["revenue_per_session"], "requests": result["requests"]}


def _sub_seeds(seed: int, n: int) -> list[int]:
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def _ab_figures(seed: int, sweep: Sweep, design: Design, world, arms: list) -> dict:
    """One A/B test as ``fusionsim ab-test`` runs it (pre-period under uniform, then the two buckets)."""
    names = [a.name for a in arms]
    pre_seed, test_seed, control_seed, treatment_seed = _sub_seeds(seed, 4)
    bucket_of_user = assign_buckets(np.arange(world.population.n_users), design.split, salt=f"sweep-{seed}")
    pre = run_buckets(world, arms, [make_static_policy("uniform", names, pre_seed)], np.zeros_like(bucket_of_user),
                      sweep.ab.pre_days, pre_seed)
    policies = [make_static_policy(spec, names, s) for spec, s in zip(design.policies, (control_seed, treatment_seed))]
    test = run_buckets(world, arms, policies, bucket_of_user, sweep.ab.days, test_seed)
    table = shopper_table(bucket_of_user, list(design.policies), test, pre)
    result = analyse(table[table["requests"] > 0], list(design.policies), list(design.split))
    (comparison,) = result["comparisons"].values()
    figures = {ab_column(m, s): float(comparison[m][s]) for m in AB_METRICS for s in AB_STATISTICS}
    shoppers = list(result["buckets"].values())
    return {**figures, "srm_p_value": float(result["srm"]["p_value"]), "control_shoppers": shoppers[0],
            "treatment_shoppers": shoppers[1]}


def _truth_figures(seed: int, sweep: Sweep, design: Design, world, arms: list) -> dict:
    """The true lift of one replay: everyone under the control, then everyone under the treatment, on one
    seed (common random numbers)."""
    names = [a.name for a in arms]
    control_seed, treatment_seed = _sub_seeds(seed, 2)
    means = [true_means(world, arms, make_static_policy(spec, names, s), sweep.ab.days, seed, replays=1)
             for spec, s in zip(design.policies, (control_seed, treatment_seed))]
    return {f"{m}_true_lift": float(means[1][METRICS.index(m)] - means[0][METRICS.index(m)]) for m in TRUTH_METRICS}

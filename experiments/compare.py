"""``fusionsim compare``: every fusion method on one shop, on one fresh seed with common random numbers.

Steps (each a pure function of the config and seeds spawned from ``seed``):

1. Without ``base``: log ``log_requests`` requests of uniformly random arms and train the four arms on them
   (``traffic/``, ``arms/``, complete run folders of ``simulate`` and ``train-base``).
2. Without ``stacker`` (and when a method needs one): log ``log_requests`` requests of uniformly random
   blends served by those arms, each slate in a random order (``stacker_traffic/``), fit a logistic and an
   MLP stacker on that log alone (``stacker_logistic/``, ``stacker_mlp/``) and keep the one whose stacking
   earns more in ``search_requests`` requests on the search seed.
3. Search, each candidate for ``search_requests`` requests on one search seed: every blend of the weight grid
   (the best single arm, the best static blend, and the oracle's best blend per context cell), and every
   cascade ``arm > N > arm or stacker`` for N in ``cascade_keep``.
4. Evaluate every method for ``requests`` requests on one fresh evaluation seed (the same shoppers and
   draws for all): a method's figure is its reward per request (with ``per="session"``: per ended session)
   over the last 20% of its requests, with a 95% batch-means interval; the learners (the bandits of
   ``BANDITS``, ``ppo``, ``adaptive cascade``) learn online from the start.

Writes ``comparison.json``, ``report.md``, ``learning_curve.png``, TensorBoard curves (``tensorboard/``),
``config.yaml`` and ``complete.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionsim.agents import ConstantAction
from fusionsim.common.io import atomic_write_text, check_complete, mark_complete
from fusionsim.envs.context import CELL_NAMES
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import Scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop, world_signature
from fusionsim.envs.stacking import KINDS as STACKER_KINDS
from fusionsim.envs.stacking.stacker import Stacker
from fusionsim.envs.strategies import STACKER, Cascade, CascadeConfig, Stacking
from fusionsim.experiments.online import OnlineRun, StepRecorder, run_online
from fusionsim.experiments.oracle import CellTablePolicy, grid_search, search_actions
from fusionsim.experiments.runs import save_figure, write_config, write_json, pyplot
from fusionsim.experiments.simulate import RUN_PREFIX, SimulateConfig, run_policy
from fusionsim.experiments.train import PPOConfig, TrainConfig, make_agent, read_policy_run
from fusionsim.experiments.train_base import TrainBaseConfig, train_base
from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker

BANDITS = ("linucb", "joint_linucb", "lints", "joint_lints", "eps", "ucb", "ts")
"""The bandits of ``fusionsim train`` over the blend grid, each with train's default hyperparameters."""
METHOD_KINDS = {"best single arm": "reference", "best static blend": "static", "oracle": "reference",
                **{bandit: "adaptive" for bandit in BANDITS}, "ppo": "adaptive", "stacking": "stacking",
                "cascade": "cascade", "adaptive cascade": "cascade"}
"""Every method ``compare`` runs, and its kind."""
METHODS = tuple(METHOD_KINDS)
DEFAULT_METHODS = {"request": tuple(m for m in METHODS if m != "ppo"), "session": METHODS}
"""The methods run when none are named: PPO (which learns from the discounted rest of the session, not the
request alone) where the methods are ranked per session."""
NEEDS_STACKER = ("stacking", "cascade", "adaptive cascade")
PER = ("request", "session")
"""What ``CompareConfig.per`` may rank the methods by."""
CURVE_POINTS = 50
"""Points of each learning curve (windows of consecutive steps)."""


class CompareError(ValueError):
    """Bad ``compare`` input; the message is one line naming the option."""


def method_slug(name: str) -> str:
    """A method's name as the command line writes it (``best static blend`` -> ``best-static-blend``)."""
    return name.replace(" ", "-").replace("_", "-")


@dataclass(frozen=True)
class CompareConfig:
    """What one ``fusionsim compare`` run does; written whole as ``config.yaml``'s ``args``."""

    scenario: str = "default"
    """shipped scenario name or YAML path"""
    base: str | None = None
    """a fusionsim train-base run folder of the arms (None: log traffic and train the four arms first)"""
    stacker: str | None = None
    """a fusionsim train-stacker run folder (None: fit a logistic and an MLP stacker, keep the better)"""
    requests: int = 500_000
    """requests each method is evaluated on (the learners learn during them)"""
    search_requests: int = 100_000
    """requests per blend and per cascade in the searches"""
    log_requests: int = 400_000
    """requests logged to train the arms, and again to fit the stacker, when they are not given"""
    grid_resolution: int = 4
    """resolution of the weight grid of the blends"""
    cascade_keep: tuple[int, ...] = (20, 50)
    """the N of the cascades searched (each from the slate size to the number of candidates)"""
    methods: tuple[str, ...] | None = None
    """the methods to run, from METHODS (None: DEFAULT_METHODS[per])"""
    seed: int = 0
    """seed from which the traffic, search, evaluation and policy seeds are spawned"""
    slots: int = 256
    """concurrent shopper sessions per step"""
    per: str = "request"
    """the figure that ranks the methods: reward per "request", or per "session" (where what is shown early
    decides how long a shopper stays)"""
    policy_runs: tuple[str, ...] = ()
    """complete train or learn runs over this shop's arms, each served frozen as one more (adaptive) method"""

    def __post_init__(self) -> None:
        if self.per not in PER:
            raise CompareError(f"--per {self.per!r} is not allowed; choose from {', '.join(PER)}")
        if self.methods is None:
            object.__setattr__(self, "methods", DEFAULT_METHODS[self.per])
        unknown = [m for m in self.methods if m not in METHOD_KINDS]
        if unknown or not self.methods:
            raise CompareError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; choose from "
                               f"{', '.join(method_slug(m) for m in METHODS)}")
        for name, value in (("--requests", self.requests), ("--search-requests", self.search_requests),
                            ("--log-requests", self.log_requests), ("--slots", self.slots)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CompareError(f"{name} must be an integer >= 1; got {value!r}")
        if self.policy_runs and self.base is None:
            raise CompareError("--policy-run needs --base: the arms the run's policy was trained over")
        if self.requests < 5 * self.slots:
            raise CompareError(f"--requests {self.requests} must be at least 5 steps of --slots {self.slots} "
                               f"({5 * self.slots}), so the last 20% holds a whole step")


@dataclass
class CompareSeeds:
    """The seeds of a compare run's steps, drawn from its one seed."""

    traffic: int
    stacker_traffic: int
    fit: int
    search: int
    evaluation: int
    policy: int


def compare_seeds(seed: int) -> CompareSeeds:
    """The step seeds of a compare run on ``seed`` (its SeedSequence's first six words)."""
    return CompareSeeds(*(int(s) for s in np.random.SeedSequence(seed).generate_state(6)))


def arms_folder(config: CompareConfig, scenario: Scenario, out: Path, seeds: CompareSeeds, progress: bool) -> Path:
    """The arms' train-base folder: ``config.base``, or the four arms trained in ``out/arms`` on a log of
    ``config.log_requests`` uniformly random requests (``out/traffic``)."""
    if config.base is not None:
        return Path(config.base)
    traffic, arms = out / "traffic", out / "arms"
    run_policy(SimulateConfig(scenario=config.scenario, policy="uniform", requests=config.log_requests,
                              seed=seeds.traffic, slots=min(1024, config.log_requests)), scenario, traffic,
               progress=progress)
    train_base(TrainBaseConfig(logs=str(traffic), scenario=config.scenario, seed=seeds.fit), scenario, arms,
               progress=progress)
    return arms


def fit_stacker(config: CompareConfig, scenario: Scenario, world, arms: list, base: Path, out: Path,
                seeds: CompareSeeds, progress: bool) -> tuple[Stacker, dict]:
    """The stacker to use, and how it was chosen: the given one, or of a logistic and an MLP stacker fitted
    on a fresh log, the one whose stacking earned more in ``search_requests`` requests on the search seed
    (their held-out losses are reported beside: a lower loss per impression need not rank better)."""
    arm_names = [a.name for a in arms]
    if config.stacker is not None:
        check_complete(config.stacker, "--stacker", ("train-stacker",))
        stacker = Stacker.load(config.stacker, "--stacker")
        stacker.check_shop(arm_names, world_signature(scenario), f"--stacker {config.stacker}")
        return stacker, {"given": config.stacker, "kind": stacker.spec.kind}
    traffic = out / "stacker_traffic"
    run_policy(SimulateConfig(scenario=config.scenario, policy="uniform-grid", requests=config.log_requests,
                              seed=seeds.stacker_traffic, slots=min(1024, config.log_requests), base=str(base),
                              grid_resolution=config.grid_resolution, shuffle_slates=True), scenario, traffic,
               progress=progress)
    losses, rewards, stackers = {}, {}, {}
    for kind in STACKER_KINDS:
        folder = out / f"stacker_{kind}"
        metrics = train_stacker(TrainStackerConfig(logs=str(traffic), kind=kind, seed=seeds.fit), folder)
        losses[kind] = {"validation_loss": metrics["validation_loss"], "baseline_loss": metrics["baseline_loss"]}
        stackers[kind] = Stacker.load(folder)
        stacking = Stacking(stackers[kind])
        rewards[kind] = run_online(world, arms, ConstantAction(0), stacking, config.search_requests, seeds.search,
                                   config.slots, fusion=stacking).mean
    kind = max(rewards, key=rewards.get)
    return stackers[kind], {"kind": kind, "held_out_loss": losses, "search_reward_per_request": rewards}


def _ppo_run(config: CompareConfig, scenario: Scenario, arms: list, seeds: CompareSeeds) -> OnlineRun:
    """stable-baselines3 PPO (``fusionsim train``'s defaults, ``PPOConfig``) learning online on the evaluation
    seed over continuous blend weights, as ``train --agent ppo`` does, recorded step by step like the others."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from fusionsim.envs.vec_env import FusionVecEnv

    venv = FusionVecEnv(scenario, n_envs=config.slots, action_mode="weights", arms=arms, seed=seeds.evaluation)
    ppo = PPOConfig()
    model = PPO("MlpPolicy", venv, n_steps=ppo.n_steps, batch_size=ppo.batch_size, n_epochs=ppo.n_epochs,
                gamma=ppo.gamma, learning_rate=ppo.learning_rate, ent_coef=ppo.ent_coef, seed=seeds.policy % 2**32,
                device="cpu", verbose=0)
    recorder = StepRecorder(max(1, config.requests // config.slots), config.slots)

    class Record(BaseCallback):
        def _on_step(self) -> bool:
            recorder.add(venv.last_result)
            return recorder.done < recorder.steps

    model.learn(total_timesteps=recorder.steps * config.slots, callback=Record())
    return recorder.run()


def cascade_configs(n_arms: int, keeps: tuple[int, ...], with_stacker: bool) -> list[CascadeConfig]:
    """Every ``arm i > N > arm j`` (j != i) and ``arm i > N > stacker`` for N in ``keeps``."""
    eye = [tuple(float(v) for v in row) for row in np.eye(n_arms)]
    seconds = [*range(n_arms), *([STACKER] if with_stacker else [])]
    return [CascadeConfig(eye[i], int(keep), STACKER if j == STACKER else eye[j])
            for i in range(n_arms) for keep in keeps for j in seconds if j != i]


def _result(run: OnlineRun, kind: str) -> dict:
    low, high = run.tail_interval()
    per_session, session_interval = run.tail_per_session()
    windows = np.array_split(run.step_rewards, min(CURVE_POINTS, len(run.step_rewards)))
    ends = np.cumsum([len(w) for w in windows]) * run.slots
    return {"reward_per_request": run.last_20pct, "ci95": [low, high], "reward_per_session": per_session,
            "session_ci95": list(session_interval), "requests": run.requests, "kind": kind,
            "mean_reward_per_request": run.mean, "revenue_per_session": run.revenue_per_session,
            "curve": {"requests": ends.tolist(), "reward_per_request": [float(w.mean()) for w in windows]}}


def _choices_by_cell(counts: np.ndarray, labels: list[str]) -> dict:
    """{cell: {action label: share of the cell's tail requests}} from counts (N_CELLS, n_actions), the
    actions a cell never took left out, the most taken first; cells without a tail request are left out."""
    choices = {}
    for cell, row in enumerate(counts):
        if row.sum() > 0:
            order = np.argsort(-row, kind="stable")
            choices[CELL_NAMES[cell]] = {labels[a]: float(row[a] / row.sum()) for a in order if row[a] > 0}
    return choices


def headline(result: dict, per: str) -> float:
    """A method's figure per ``per`` ("request" or "session") over the last 20% of its requests."""
    return result[f"reward_per_{per}"]


def compare(config: CompareConfig, scenario: Scenario, out: Path, progress: bool = True) -> dict:
    """Run every method of ``config.methods`` on ``scenario`` (resolved from ``config.scenario``); write
    the outputs listed in the module docstring to ``out`` and return the comparison."""
    seeds = compare_seeds(config.seed)
    check_cascade_keep(config, scenario)
    write_config(out, "compare", {**dataclasses.asdict(config), "methods": list(config.methods),
                                  "cascade_keep": list(config.cascade_keep)}, scenario=scenario_to_dict(scenario))
    base = arms_folder(config, scenario, out, seeds, progress)
    world, arms = make_shop(scenario, base=base)
    arm_names = [a.name for a in arms]
    frozen = {f"{RUN_PREFIX}{folder}": read_policy_run(folder, f"--policy-run {folder}", arm_names, scenario)
              for folder in config.policy_runs}
    comparison: dict = {"scenario": scenario.name, "reward": scenario.reward, "per": config.per, "arms": arm_names}
    stacker = None
    if any(m in NEEDS_STACKER for m in config.methods):
        stacker, comparison["stacker"] = fit_stacker(config, scenario, world, arms, base, out, seeds, progress)
    comparison.update(evaluate_methods(config, world, arms, stacker, frozen))
    write_json(out / "comparison.json", comparison)
    _write_curves(comparison, out)
    atomic_write_text(out / "report.md", render_report(comparison, config))
    mark_complete(out, "compare")
    return comparison


def check_cascade_keep(config: CompareConfig, scenario: Scenario) -> None:
    """A CompareError unless every N of ``config.cascade_keep`` lies from the slate size to the candidates."""
    k, c = scenario.candidates.slate_size, scenario.candidates.n_candidates
    bad = [keep for keep in config.cascade_keep if not k <= keep <= c]
    if bad:
        raise CompareError(f"--cascade-keep {bad[0]} is not allowed: each N must be an integer from the slate size {k} "
                           f"to the number of candidates {c}")


def evaluate_methods(config: CompareConfig, world, arms: list, stacker: Stacker | None,
                     frozen: dict | None = None) -> dict:
    """Steps 3 and 4 on a built shop (``world`` and its ``arms``): the searches on the search seed, then every
    method of ``config.methods`` and every frozen policy run of ``frozen`` ({name: read_policy_run's result})
    on the evaluation seed, all seeds spawned from ``config.seed``. ``stacker`` is needed by the methods of
    NEEDS_STACKER. Returns the comparison's ``blends``, ``cascades`` (when a cascade method ran) and
    ``methods``; writes nothing, so it is a pure function of its inputs."""
    seeds, frozen = compare_seeds(config.seed), frozen or {}
    scenario, arm_names = world.scenario, [a.name for a in arms]
    comparison: dict = {"methods": {}}
    mapper = ActionMapper("grid", len(arms), config.grid_resolution)
    search = grid_search(world, arms, config.grid_resolution, config.search_requests, seeds.search, config.slots)
    comparison["blends"] = search.describe(arm_names)
    cascade = None
    if any(m in ("cascade", "adaptive cascade") for m in config.methods):
        configs = cascade_configs(len(arms), config.cascade_keep, stacker is not None)
        cascade = Cascade(configs, len(arms), scenario.candidates.n_candidates, scenario.candidates.slate_size,
                          stacker=stacker)
        cascade_search = search_actions(world, arms, cascade, len(configs), config.search_requests, seeds.search,
                                        config.slots, fusion=cascade)
        best_cascade = cascade_search.best_global
        comparison["cascades"] = {"best": configs[best_cascade].label(arm_names),
                                  "searched": {c.label(arm_names): float(r)
                                               for c, r in zip(configs, cascade_search.overall)},
                                  "best_by_cell": {CELL_NAMES[cell]: configs[a].label(arm_names)
                                                   for cell, a in enumerate(cascade_search.oracle_table())}}

    def evaluate(method: str) -> OnlineRun:
        def run(policy, decoder, fusion=None, learn=False, n_actions=None):
            return run_online(world, arms, policy, decoder, config.requests, seeds.evaluation, config.slots,
                              fusion=fusion, learn=learn, n_actions=n_actions)
        if method == "best single arm":
            return run(ConstantAction(search.best_single_arm), mapper)
        if method == "best static blend":
            return run(ConstantAction(search.best_global), mapper)
        if method == "oracle":
            return run(CellTablePolicy(search.oracle_table().tolist()), mapper)
        if method in BANDITS:
            agent = make_agent(TrainConfig(agent=method, grid_resolution=config.grid_resolution), mapper.n_actions,
                               seeds.policy, len(arms))
            return run(agent, mapper, learn=True)
        if method == "ppo":
            return _ppo_run(config, scenario, arms, seeds)
        if method == "stacking":
            stacking = Stacking(stacker)
            return run(ConstantAction(0), stacking, stacking)
        if method == "cascade":
            return run(ConstantAction(best_cascade), cascade, cascade)
        if method in frozen:
            return run(frozen[method].policy, frozen[method].mapper)
        agent = make_agent(TrainConfig(agent="linucb"), cascade.n_actions, seeds.policy, len(arms))
        return run(agent, cascade, cascade, learn=True, n_actions=cascade.n_actions)

    runs = {method: evaluate(method) for method in (*config.methods, *frozen)}
    for method, run in runs.items():
        comparison["methods"][method] = _result(run, METHOD_KINDS.get(method, "adaptive"))
        if run.tail_actions is not None:
            comparison["methods"][method]["choices_by_cell"] = _choices_by_cell(
                run.tail_actions, [c.label(arm_names) for c in cascade.configs])
            comparison["methods"][method]["tail_requests_by_cell"] = {
                CELL_NAMES[cell]: int(n) for cell, n in enumerate(run.tail_actions.sum(axis=1)) if n > 0}
        if "best static blend" in runs:
            paired = run.tail_difference if config.per == "request" else run.tail_difference_per_session
            difference, interval = paired(runs["best static blend"])
            comparison["methods"][method]["vs_best_static_blend"] = {"difference": difference, "ci95": list(interval)}
    _add_headroom(comparison["methods"], config.per)
    return comparison


def _add_headroom(methods: dict, per: str) -> None:
    """Each method's share of the headroom, (method - best static blend) / (oracle - best static blend), in
    the figure ``per``."""
    if "best static blend" not in methods or "oracle" not in methods:
        return
    static, oracle = headline(methods["best static blend"], per), headline(methods["oracle"], per)
    for result in methods.values():
        gap = oracle - static
        result["headroom_captured"] = (headline(result, per) - static) / gap if gap > 0 else None


def _write_curves(comparison: dict, out: Path) -> None:
    plt = pyplot()
    from torch.utils.tensorboard import SummaryWriter

    fig, ax = plt.subplots(figsize=(8, 4.5))
    writer = SummaryWriter(str(out / "tensorboard"))
    for name, result in comparison["methods"].items():
        curve = result["curve"]
        ax.plot(curve["requests"], curve["reward_per_request"], label=name,
                linestyle="-" if result["kind"] in ("adaptive", "cascade", "stacking") else "--")
        for x, y in zip(curve["requests"], curve["reward_per_request"]):
            writer.add_scalar(f"compare/{method_slug(name)}", y, x)
    writer.close()
    ax.set_xlabel("requests")
    ax.set_ylabel(f"{comparison['reward']} per request (window mean)")
    ax.set_title(f"Fusion methods on scenario '{comparison['scenario']}'")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "learning_curve.png")


def render_report(comparison: dict, config: CompareConfig) -> str:
    """A Markdown table of every method, and a sentence on which fusion pays."""
    methods, per = comparison["methods"], comparison["per"]
    lines = [f"# Fusion methods on scenario `{comparison['scenario']}`", "",
             f"Each method served {config.requests:,} requests of the same shoppers (one evaluation seed, common "
             f"random numbers); the figures are {comparison['reward']} per request and per ended session over the "
             "last 20%, each with a 95% batch-means interval. Learners learn online from the first request. "
             f"Methods are ranked by {comparison['reward']} per {per}.", "",
             f"| method | kind | reward/request | 95% CI | reward/session | 95% CI | minus best static per {per} "
             "(paired 95% CI) | headroom captured |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in methods.items():
        versus = r.get("vs_best_static_blend")
        versus = (f"{versus['difference']:+.4f} [{versus['ci95'][0]:+.4f}, {versus['ci95'][1]:+.4f}]"
                  if versus and name != "best static blend" else "-")
        headroom = r.get("headroom_captured")
        lines.append(f"| {name} | {r['kind']} | {r['reward_per_request']:.4f} | [{r['ci95'][0]:.4f}, "
                     f"{r['ci95'][1]:.4f}] | {r['reward_per_session']:.4f} | [{r['session_ci95'][0]:.4f}, "
                     f"{r['session_ci95'][1]:.4f}] | {versus} | "
                     f"{'-' if headroom is None else f'{100 * headroom:.0f}%'} |")
    lines += ["", verdict(comparison), *targets(comparison)]
    if "stacker" in comparison:
        chosen = comparison["stacker"]
        searched = chosen.get("search_reward_per_request", {})
        lines += ["", f"Stacker: {chosen['kind']}" + (" (stacking's reward per request in the search: " + ", ".join(
            f"{kind} {value:.4f}" for kind, value in searched.items()) + ")" if searched else "") + "."]
    if "cascades" in comparison:
        lines += [f"Best searched cascade: `{comparison['cascades']['best']}`."]
    return "\n".join(lines) + "\n"


def targets(comparison: dict) -> list[str]:
    """The three fusion targets, each met or missed with its figures: the best adaptive method captures at
    least half the oracle's headroom (and whether that headroom is resolved at all), stacking beats the
    oracle, cascade beats the best single arm. Only those whose methods ran."""
    methods, per = comparison["methods"], comparison["per"]
    lines = ["", "Targets:"]

    def met(ok: bool) -> str:
        return "met" if ok else "**missed**"

    adaptive = [m for m in methods if methods[m]["kind"] == "adaptive"]
    if adaptive and {"oracle", "best static blend"} <= set(methods) and methods["oracle"]["headroom_captured"] is None:
        lines.append("- the best adaptive method captures >= 50% of the headroom: **missed**: there is no headroom "
                     "(the oracle earns no more than the best static blend)")
    elif adaptive and "headroom_captured" in methods[adaptive[0]]:
        best = max(adaptive, key=lambda m: methods[m]["headroom_captured"])
        share = methods[best]["headroom_captured"]
        low, _ = methods["oracle"]["vs_best_static_blend"]["ci95"]
        why = "" if low > 0 else ("; the oracle's own lead over the best static blend is not resolved (its paired "
                                  "95% interval includes zero)")
        lines.append(f"- the best adaptive method captures >= 50% of the headroom: {met(share >= 0.5)} ({best}, "
                     f"{100 * share:.0f}%{why})")
    for method, reference in (("stacking", "oracle"), ("cascade", "best single arm")):
        if method in methods and reference in methods:
            difference = headline(methods[method], per) - headline(methods[reference], per)
            lines.append(f"- {method} beats the {reference}: {met(difference > 0)} ({difference:+.4f} per {per})")
    return lines if len(lines) > 2 else []


def verdict(comparison: dict) -> str:
    """One sentence: the deployable method (not a reference) that earned most per ``comparison["per"]``, by how
    much against the best static blend, and whether that edge is resolved (its paired interval excludes 0)."""
    methods, per = comparison["methods"], comparison["per"]
    deployable = [m for m in methods if methods[m]["kind"] != "reference"] or list(methods)
    best = max(deployable, key=lambda m: headline(methods[m], per))
    r, value = methods[best], headline(methods[best], per)
    if "best static blend" not in methods or best == "best static blend":
        return f"On this shop the best method that a shop can deploy is {best} ({value:.4f} per {per})."
    static = headline(methods["best static blend"], per)
    low, high = r["vs_best_static_blend"]["ci95"]
    resolved = ("the paired 95% interval of the difference excludes zero" if low > 0 else
                "but the paired 95% interval of the difference includes zero: not resolved at this many requests")
    return (f"On this shop {best} pays most: {value:.4f} per {per}, "
            f"{100 * (value / static - 1):+.2f}% against the best static blend; {resolved}.")

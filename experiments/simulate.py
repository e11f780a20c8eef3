"""``fusionsim simulate``: run a policy on a scenario and write the interaction log and traffic metrics."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fusionsim.agents import FixedBlend, Policy, SingleArm, UniformContinuous, UniformRandom
from fusionsim.envs.fusion import ActionMapper, simplex_grid
from fusionsim.envs.logs import InteractionLogWriter
from fusionsim.envs.scenario import Scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.strategies import ShuffledSlate, WeightedBlend
from fusionsim.experiments.metrics import TrafficMetrics
from fusionsim.experiments.runs import read_config, write_config, write_json
from fusionsim.common.io import IncompleteRunError, check_complete, mark_complete


class PolicySpecError(ValueError):
    """A ``--policy`` value that names no policy."""


def make_static_policy(spec: str, arm_names: list[str], seed: int | None, grid_resolution: int = 4) -> Policy:
    """``uniform`` (uniform random arm), ``uniform-grid`` (uniform random point of the weight grid at
    ``grid_resolution``), ``uniform-weights`` (uniform continuous actions in [-1, 1]^A), an arm name (that arm
    only) or ``blend:w1,w2,...`` (fixed blend)."""
    blend_form = "blend:" + ",".join(f"<w{i + 1}>" for i in range(len(arm_names)))
    allowed = f"uniform, uniform-grid, uniform-weights, {', '.join(arm_names)} or {blend_form}"
    if spec == "uniform":
        return UniformRandom(len(arm_names), "arm", seed=seed)
    if spec == "uniform-weights":
        return UniformContinuous(len(arm_names), seed=seed)
    if spec == "uniform-grid":
        return UniformRandom(len(simplex_grid(len(arm_names), grid_resolution)), "grid", seed=seed)
    if spec in arm_names:
        return SingleArm(arm_names.index(spec), len(arm_names))
    if spec.startswith("blend:"):
        try:
            weights = [float(x) for x in spec[len("blend:"):].split(",")]
        except ValueError:
            raise PolicySpecError(f"--policy {spec!r}: blend weights must be numbers, e.g. blend:0.7,0.3") from None
        if len(weights) != len(arm_names):
            raise PolicySpecError(f"--policy {spec!r}: needs {len(arm_names)} weights, one per arm "
                                  f"({', '.join(arm_names)}); got {len(weights)}")
        try:
            return FixedBlend(weights)
        except ValueError as exc:
            raise PolicySpecError(f"--policy {spec!r}: {exc}") from None
    raise PolicySpecError(f"--policy {spec!r} is not allowed: use {allowed}")


@dataclass(frozen=True)
class SimulateConfig:
    """What one ``fusionsim simulate`` run does; written whole as ``config.yaml``'s ``args``."""

    scenario: str = "default"
    """shipped scenario name or YAML path (the resolved scenario is stored in config.yaml beside it)"""
    policy: str = "uniform"
    """uniform | uniform-grid | uniform-weights | an arm name | blend:<w1>,<w2>,... | run:<train or learn run>"""
    requests: int = 100_000
    """requests to simulate and log"""
    seed: int = 0
    """seed of the simulator and the policy (spawned from it)"""
    slots: int = 1024
    """concurrent shopper sessions simulated per step (at most ``requests``)"""
    chunk_rows: int = 500_000
    """rows per Parquet part file"""
    base: str | None = None
    """folder of trained arms from fusionsim train-base (None: popularity and new arrivals)"""
    grid_resolution: int = 4
    """resolution of the weight grid that ``uniform-grid`` draws from"""
    shuffle_slates: bool = False
    """show each slate's items in a uniformly random order (a position randomisation experiment, from which a
    stacker learns position bias apart from item quality)"""
    ppo_std_scale: float = 1.0
    """with ``--policy run:<PPO run>``: the factor on PPO's standard deviation (the policy samples its Gaussian;
    above 1 a wider logger of it, whose log supports the policy's own actions for off-policy evaluation)"""


class SimulateRunError(ValueError):
    """A folder that is not a complete, readable simulate run; the message is one line naming ``--logs``."""


def read_simulate_run(folder: Path, option: str = "--logs") -> tuple[SimulateConfig, list[str]]:
    """The config and arm names of the complete simulate run in ``folder`` (``option`` names it in errors)."""
    try:
        check_complete(folder, option, ("simulate",))
        logged = read_config(folder, option)
        return SimulateConfig(**logged["args"]), [str(a) for a in logged.get("arms", [])]
    except IncompleteRunError as exc:
        raise SimulateRunError(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise SimulateRunError(f"{option} {folder}/config.yaml is not a simulate config ({exc})") from None


@dataclass
class SimulationSummary:
    metrics: dict
    log_parts: list[Path]


RUN_PREFIX = "run:"
"""``--policy run:<folder>``: the frozen policy of a complete train or learn run."""


PPO_STD_SCALE_RANGE = (0.01, 100.0)
"""The factors ``--ppo-std-scale`` allows on PPO's standard deviation."""


def _frozen_run_policy(config: SimulateConfig, scenario: Scenario, arm_names: list[str], seed: int) -> Policy:
    """The policy of the train or learn run that ``config.policy`` names (``run:<folder>``), checked to serve this
    shop (``train.read_policy_run``). It acts as it was saved (an epsilon-greedy bandit keeps exploring, so its
    log has propensities) and does not learn; a PPO policy samples its Gaussian (standard deviation times
    ``config.ppo_std_scale``) from a Generator seeded with ``seed`` and logs the density of each action."""
    from fusionsim.experiments.train import read_policy_run

    option = f"--policy {config.policy}"
    trained = read_policy_run(config.policy[len(RUN_PREFIX):], option, arm_names, scenario, config.grid_resolution)
    if trained.config.agent == "ppo":
        low, high = PPO_STD_SCALE_RANGE
        if not low <= config.ppo_std_scale <= high:  # also refuses nan
            raise PolicySpecError(f"--ppo-std-scale {config.ppo_std_scale}: must be in [{low:g}, {high:g}]")
        return trained.policy.sampling(config.ppo_std_scale, seed=seed)
    _refuse_std_scale(config, f"{option} trained {trained.config.agent}")
    return trained.policy


def _refuse_std_scale(config: SimulateConfig, policy: str) -> None:
    """A --ppo-std-scale other than 1 for a policy that is not PPO (``policy`` says which) is an error."""
    if config.ppo_std_scale != 1.0:
        raise PolicySpecError(f"--ppo-std-scale {config.ppo_std_scale}: only a PPO policy (--policy run:<PPO run>) "
                              f"has a standard deviation to scale; {policy}")


@dataclass
class Simulation:
    """A static policy on a fresh shop, ready to serve: the simulator (reset with the config's seed), the
    policy, the mapper of its actions and the arm names."""

    sim: BatchedSimulator
    policy: Policy
    mapper: ActionMapper
    arm_names: list[str]


def build_simulation(config: SimulateConfig, scenario: Scenario) -> Simulation:
    """The simulator, policy and mapper that ``config`` describes on ``scenario``, the simulator reset with
    the seed spawned from ``config.seed`` (what :func:`run_policy` serves, step by step)."""
    world, arms = make_shop(scenario, base=config.base)
    arm_names = [a.name for a in arms]
    sim_seed, _, order_seed = simulation_seeds(config)
    policy, mapper = logging_policy(config, scenario, arm_names)
    fusion = ShuffledSlate(WeightedBlend(), seed=int(order_seed)) if config.shuffle_slates else None
    sim = BatchedSimulator(world, arms, n_slots=min(config.slots, config.requests), fusion=fusion)
    sim.reset(seed=int(sim_seed))
    return Simulation(sim, policy, mapper, arm_names)


def simulation_seeds(config: SimulateConfig) -> np.ndarray:
    """The seeds (3,) of the simulator, the logging policy and the slate orders, spawned from ``config.seed``."""
    return np.random.SeedSequence(config.seed).generate_state(3)


def logging_policy(config: SimulateConfig, scenario: Scenario, arm_names: list[str]) -> tuple[Policy, ActionMapper]:
    """The policy that ``config`` logs with, seeded as :func:`build_simulation` seeds it, and the mapper of
    its actions."""
    policy_seed = simulation_seeds(config)[1]
    if config.policy.startswith(RUN_PREFIX):
        policy = _frozen_run_policy(config, scenario, arm_names, int(policy_seed))
    else:
        _refuse_std_scale(config, f"--policy {config.policy} has none")
        policy = make_static_policy(config.policy, arm_names, seed=int(policy_seed),
                                    grid_resolution=config.grid_resolution)
    return policy, ActionMapper(policy.action_mode, len(arm_names), config.grid_resolution)


def run_policy(config: SimulateConfig, scenario: Scenario, out: Path, progress: bool = True) -> SimulationSummary:
    """Simulate ``config.requests`` requests under a static policy on ``scenario`` (resolved from
    ``config.scenario``); write logs/, metrics.json, config.yaml and complete.json to ``out``."""
    simulation = build_simulation(config, scenario)
    sim, policy, mapper, arm_names = simulation.sim, simulation.policy, simulation.mapper, simulation.arm_names
    config = dataclasses.replace(config, slots=min(config.slots, config.requests))
    requests, slots = config.requests, config.slots
    write_config(out, "simulate", dataclasses.asdict(config), scenario=scenario_to_dict(scenario), arms=arm_names,
                 policy={"name": policy.name, "config": policy.config()})
    metrics = TrafficMetrics(scenario.candidates.slate_size)
    writer = InteractionLogWriter(out / "logs", arm_names, chunk_rows=config.chunk_rows)
    done = 0
    with tqdm(total=requests, unit="req", disable=not progress, desc="simulate") as bar:
        while done < requests:
            result = sim.serve(policy, mapper)
            keep = min(slots, requests - done)
            metrics.update(result, keep)
            writer.append(result, keep)
            done += keep
            bar.update(keep)
    writer.close()
    summary = metrics.summary()
    summary["policy"] = config.policy
    summary["scenario"] = scenario.name
    write_json(out / "metrics.json", summary)
    mark_complete(out, "simulate")
    return SimulationSummary(metrics=summary, log_parts=writer.parts)

"""``fusionsim simulate``: run a policy on a scenario and write the interaction log and traffic metrics."""

from __future__ import annotations

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
from fusionsim.experiments.metrics import TrafficMetrics
from fusionsim.experiments.runs import write_config, write_json
from fusionsim.recommenders.io import mark_complete


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


@dataclass
class SimulationSummary:
    metrics: dict
    log_parts: list[Path]


def run_policy(scenario: Scenario, policy_spec: str, requests: int, out: Path, seed: int = 0, slots: int = 1024,
               chunk_rows: int = 500_000, progress: bool = True, base: Path | None = None,
               grid_resolution: int = 4) -> SimulationSummary:
    """Simulate ``requests`` requests under a static policy; write logs/, metrics.json and config.yaml to ``out``.
    ``base``: a folder of trained arms (default: popularity and new arrivals); ``grid_resolution``: of the
    weight grid that ``uniform-grid`` draws from."""
    world, arms = make_shop(scenario, base=base)
    arm_names = [a.name for a in arms]
    sim_seed, policy_seed = np.random.SeedSequence(seed).generate_state(2)
    policy = make_static_policy(policy_spec, arm_names, seed=int(policy_seed), grid_resolution=grid_resolution)
    slots = min(slots, requests)
    write_config(out, "simulate", {"scenario": scenario.name, "policy": policy_spec, "requests": requests,
                                   "seed": seed, "slots": slots, "chunk_rows": chunk_rows,
                                   "base": None if base is None else str(base), "grid_resolution": grid_resolution},
                 scenario=scenario_to_dict(scenario), arms=arm_names, policy={"name": policy.name,
                                                                              "config": policy.config()})
    sim = BatchedSimulator(world, arms, n_slots=slots)
    mapper = ActionMapper(policy.action_mode, len(arms), grid_resolution)
    metrics = TrafficMetrics(scenario.candidates.slate_size)
    writer = InteractionLogWriter(out / "logs", arm_names, chunk_rows=chunk_rows)
    contexts = sim.reset(seed=int(sim_seed))
    done = 0
    with tqdm(total=requests, unit="req", disable=not progress, desc="simulate") as bar:
        while done < requests:
            actions, propensities = policy.act(contexts)
            result = sim.step(mapper.to_weights(actions))
            keep = min(slots, requests - done)
            metrics.update(result, keep)
            writer.append(result, actions, propensities, keep)
            contexts = sim.contexts
            done += keep
            bar.update(keep)
    writer.close()
    summary = metrics.summary()
    summary["policy"] = policy_spec
    summary["scenario"] = scenario.name
    write_json(out / "metrics.json", summary)
    mark_complete(out, "simulate")
    return SimulationSummary(metrics=summary, log_parts=writer.parts)

"""``fusionsim train``: a fusion policy learns online in the batched simulator, with TensorBoard curves,
checkpoints every M requests, and ``--resume`` that continues exactly where the last checkpoint was.

A checkpoint is a folder ``checkpoints/<requests>/`` of arrays and JSON, never a pickle:
``simulator.npz`` (the simulator's mutable state and its Generator's state), the policy (``policy.npz``
for bandits; ``ppo_policy.pt`` and ``ppo_optimizer.pt``, torch state dicts, for PPO) and ``progress.json``
(requests done, running totals, the curve). ``checkpoints/latest.json`` names the newest one. The world
and the arms are rebuilt from ``config.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import pickle  # only for the error that torch.load(weights_only=True) raises
import os
import shutil
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from fusionsim.agents import UCB1, EpsilonGreedy, GaussianThompson, JointLinTS, JointLinUCB, LinTS, LinUCB, Policy
from fusionsim.envs.context import CONTEXT_DIM, context_cell
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import SEGMENTS, Scenario, parse_scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments import tags
from fusionsim.experiments.oracle import grid_search
from fusionsim.experiments.runs import CHECKPOINTS, read_config, write_config, write_json
from fusionsim.common.io import (COMPLETE_FILE, atomic_target, atomic_write_json, check_complete, mark_complete,
                                       remove_orphans)

AGENT_CLASSES: dict[str, type[Policy]] = {"linucb": LinUCB, "lints": LinTS, "eps": EpsilonGreedy, "ucb": UCB1,
                                          "ts": GaussianThompson, "joint_linucb": JointLinUCB,
                                          "joint_lints": JointLinTS}
AGENTS = (*AGENT_CLASSES, "ppo")
POLICY_FILE = "policy.npz"
"""The trained bandit policy of a run (PPO: ``agents.ppo.POLICY_FILE`` and ``SPEC_FILE``)."""
LATEST = "latest.json"

if TYPE_CHECKING:  # torch.utils.tensorboard is imported where a run writes curves: it is slow to import
    from torch.utils.tensorboard import SummaryWriter


class TrainError(ValueError):
    """Bad ``train`` input: unknown agent, nothing to resume, a corrupt checkpoint, a resume that differs."""


@dataclass(frozen=True)
class PPOConfig:
    """stable-baselines3 PPO hyperparameters (``--agent ppo``)."""

    n_steps: int = 64
    """rollout steps per sub-env (slot) between updates; a rollout holds n_steps * slots requests"""
    batch_size: int = 1024
    """minibatch size of each gradient step"""
    n_epochs: int = 4
    """passes over each rollout"""
    gamma: float = 0.98
    """discount of future requests within a session"""
    learning_rate: float = 3e-4
    """Adam step size"""
    ent_coef: float = 0.0
    """entropy bonus"""


@dataclass(frozen=True)
class TrainConfig:
    """What one ``fusionsim train`` run does: written whole as ``config.yaml``'s ``args`` and compared field
    by field on ``--resume`` (only ``requests`` may change there, to continue a run further)."""

    agent: str
    """linucb | lints | eps | ucb | ts | joint_linucb | joint_lints | ppo"""
    scenario: str = "default"
    """shipped scenario name or YAML path (the resolved scenario is stored in config.yaml beside it)"""
    requests: int = 500_000
    """simulated requests to learn from"""
    base: str | None = None
    """folder of trained arms from fusionsim train-base (None: popularity and new arrivals)"""
    seed: int = 0
    """seed of the simulator, the policy and the oracle's grid search (spawned from it)"""
    slots: int = 256
    """concurrent shopper sessions; the policy updates after every step of this many requests"""
    actions: str = "grid"
    """bandits: grid (points of the weight simplex) or arm (one arm per request); PPO: continuous weights"""
    grid_resolution: int = 4
    """steps per unit of the weight grid (4: weights in multiples of 0.25)"""
    log_every: int = 20_000
    """requests between TensorBoard points"""
    checkpoint_every: int = 100_000
    """requests between checkpoints (a multiple of log_every)"""
    oracle_requests: int = 20_000
    """requests simulated per grid blend to find the oracle of the regret curve (0: no oracle)"""
    discount: float = 1.0
    """per-request forgetting of the linear bandits: linucb, lints, joint_linucb, joint_lints (1: none)"""
    epsilon: float = 0.0
    """linucb, joint_linucb: share of uniformly random actions (a stochastic policy, for off-policy evaluation)"""
    ppo: PPOConfig = field(default_factory=PPOConfig)
    """PPO's hyperparameters"""

    def __post_init__(self) -> None:
        if self.agent not in AGENTS:
            raise TrainError(f"--agent {self.agent!r} is not allowed: use one of {', '.join(AGENTS)}")
        if self.checkpoint_every % self.log_every:
            raise TrainError(f"--checkpoint-every {self.checkpoint_every} must be a multiple of --log-every "
                             f"{self.log_every} (a checkpoint then never splits a logging interval)")
        if self.discount != 1.0 and self.agent not in ("linucb", "lints", "joint_linucb", "joint_lints"):
            raise TrainError(f"--discount applies to linucb, lints, joint_linucb and joint_lints, not {self.agent}")
        if self.epsilon and self.agent not in ("linucb", "joint_linucb"):
            raise TrainError(f"--epsilon applies to linucb and joint_linucb, not {self.agent}")
        if self.agent in ("joint_linucb", "joint_lints") and self.actions != "grid":
            raise TrainError(f"--actions {self.actions!r} is not allowed with --agent {self.agent}: use --actions grid "
                             "(it models the reward as a function of the blend weights)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, args: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in args.items() if k in known}
        values["ppo"] = PPOConfig(**values.get("ppo", {}))
        return cls(**values)

    @property
    def action_mode(self) -> str:
        return "weights" if self.agent == "ppo" else self.actions

    def mapper(self, n_arms: int) -> ActionMapper:
        """How this run's actions become arm weights."""
        return ActionMapper(self.action_mode, n_arms, self.grid_resolution)


def make_agent(config: TrainConfig, n_actions: int, seed: int, n_arms: int) -> Policy:
    """The bandit ``config.agent`` over ``n_actions`` actions (blends of ``n_arms`` arms) with this project's
    default hyperparameters; ``discount`` < 1 makes the linear bandits forget (for drift); ``epsilon`` makes
    LinUCB and JointLinUCB explore uniformly (for off-policy evaluation)."""
    mode = config.actions
    if config.agent == "joint_linucb":
        return JointLinUCB(n_actions, CONTEXT_DIM, n_arms, config.grid_resolution, alpha=0.3,
                           discount=config.discount, epsilon=config.epsilon, seed=seed)
    if config.agent == "joint_lints":
        return JointLinTS(n_actions, CONTEXT_DIM, n_arms, config.grid_resolution, v=0.2, discount=config.discount,
                          propensity_draws=16, seed=seed)
    if config.agent == "linucb":
        return LinUCB(n_actions, CONTEXT_DIM, alpha=0.5, discount=config.discount, epsilon=config.epsilon, seed=seed,
                      action_mode=mode)
    if config.agent == "lints":
        return LinTS(n_actions, CONTEXT_DIM, v=0.2, discount=config.discount, propensity_draws=16, seed=seed,
                     action_mode=mode)
    if config.agent == "eps":
        return EpsilonGreedy(n_actions, epsilon=0.1, seed=seed, action_mode=mode)
    if config.agent == "ucb":
        return UCB1(n_actions, c=0.5, seed=seed, action_mode=mode)
    return GaussianThompson(n_actions, sigma=0.5, seed=seed, action_mode=mode)


@dataclass
class Progress:
    """The running totals of a run, saved in every checkpoint as ``progress.json``."""

    requests_done: int = 0
    totals: dict = field(default_factory=lambda: {"reward": 0.0, "clicks": 0.0, "purchases": 0.0,
                                                  "revenue": 0.0, "requests": 0, "regret": 0.0, "sessions": 0})
    curve: list = field(default_factory=list)
    """(requests, reward per request in the interval) per TensorBoard point"""
    oracle_reward: list | None = None
    """expected reward per request of the oracle in each context cell (None: no regret curve)"""


# --------------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(out: Path, progress: Progress, sim: BatchedSimulator, write_policy) -> Path:
    """Write ``checkpoints/<requests>/`` (simulator.npz, progress.json and what ``write_policy(folder)``
    writes) as a hidden folder renamed into place, point ``latest.json`` at it, and drop older ones."""
    root = out / CHECKPOINTS
    name = f"{progress.requests_done:012d}"
    tmp = root / f".{name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "simulator.npz", "wb") as f:
        np.savez(f, **sim.state_dict())
    write_policy(tmp)
    atomic_write_json(tmp / "progress.json", dataclasses.asdict(progress))
    final = root / name
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    atomic_write_json(root / LATEST, {"checkpoint": name, "requests_done": progress.requests_done})
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(out: Path, option: str = "--resume") -> Path:
    """The folder of the newest complete checkpoint of the run in ``out``."""
    pointer = out / CHECKPOINTS / LATEST
    if not pointer.is_file():
        advice = "; start without --resume" if option == "--resume" else ""
        raise TrainError(f"{option}: {out} holds no checkpoint ({CHECKPOINTS}/{LATEST} is missing){advice}")
    try:
        name = json.loads(pointer.read_text())["checkpoint"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise TrainError(f"{option}: checkpoint pointer {pointer} is corrupt") from None
    folder = out / CHECKPOINTS / str(name)
    if not isinstance(name, str) or not name.isdigit() or not folder.is_dir():
        raise TrainError(f"{option}: checkpoint pointer {pointer} names no checkpoint folder")
    return folder


def load_simulator_state(sim: BatchedSimulator, folder: Path, option: str) -> None:
    path = folder / "simulator.npz"
    try:
        with np.load(path, allow_pickle=False) as data:
            state = {k: data[k] for k in data.files}
        sim.load_state_dict(state)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise TrainError(f"{option}: checkpoint {path} is corrupt or does not fit this run ({exc})") from None


def load_progress(folder: Path, option: str) -> Progress:
    path = folder / "progress.json"
    try:
        return Progress(**json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise TrainError(f"{option}: checkpoint {path} is corrupt ({type(exc).__name__})") from None


def check_resume(out: Path, config: TrainConfig, scenario: Scenario) -> dict:
    """The stored config of the run in ``out``; a TrainError naming the first argument that differs from
    ``config`` (all but ``requests`` must match), or a scenario that differs."""
    stored = read_config(out, "--resume")
    if stored.get("command") != "train":
        raise TrainError(f"--resume: {out} holds a fusionsim {stored.get('command')} run, not a train run")
    given, old = config.to_dict(), stored["args"]
    for key, value in given.items():
        if key != "requests" and old.get(key) != value:
            flag = "--" + key.replace("_", "-")
            raise TrainError(f"--resume: {flag} {_show(value)} differs from the run's {_show(old.get(key))} "
                             f"({out}/config.yaml); resume with the run's arguments or start a new run")
    if stored.get("scenario") != scenario_to_dict(scenario):
        raise TrainError(f"--resume: scenario '{scenario.name}' differs from the scenario stored in {out}/config.yaml "
                         "(a changed file or override); resume with the run's scenario or start a new run")
    return stored


def _show(value: object) -> str:
    return "none" if value is None else str(value)


# --------------------------------------------------------------------------------------------- training
def train(config: TrainConfig, scenario: Scenario, out: Path, resume: bool = False, progress: bool = True) -> dict:
    """Run ``config`` online; write TensorBoard events, checkpoints, the policy, ``metrics.json`` and
    ``config.yaml`` to ``out``; return the metrics. ``resume`` continues from the last checkpoint."""
    if resume:
        check_resume(out, config, scenario)
    if config.agent == "ppo":
        return train_ppo(config, scenario, out, resume, progress)
    world, arms = make_shop(scenario, base=config.base)
    arm_names = [a.name for a in arms]
    mapper = config.mapper(len(arms))
    sim = BatchedSimulator(world, arms, n_slots=config.slots)
    policy_class = AGENT_CLASSES[config.agent]
    if resume:
        def load_policy(folder: Path) -> Policy:
            try:
                return policy_class.load(folder / POLICY_FILE)
            except ValueError as exc:
                raise TrainError(f"--resume: {exc}") from None

        state, policy = _restore(out, config, sim, load_policy)
    write_config(out, "train", config.to_dict(), scenario=scenario_to_dict(scenario), arms=arm_names)
    if not resume:
        sim_seed, policy_seed, oracle_seed = np.random.SeedSequence(config.seed).generate_state(3)
        state = Progress(oracle_reward=_oracle(config, world, arms, int(oracle_seed), out))
        policy = make_agent(config, mapper.n_actions, int(policy_seed), mapper.n_arms)
        sim.reset(seed=int(sim_seed))
    oracle = None if state.oracle_reward is None else np.asarray(state.oracle_reward)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"), purge_step=state.requests_done or None)
    interval = _Interval(len(SEGMENTS), len(arm_names))
    next_log = (state.requests_done // config.log_every + 1) * config.log_every
    next_checkpoint = (state.requests_done // config.checkpoint_every + 1) * config.checkpoint_every
    started, started_at = time.perf_counter(), state.requests_done

    def checkpoint() -> None:
        save_checkpoint(out, state, sim, lambda folder: policy.save(folder / POLICY_FILE))

    with tqdm(total=config.requests, initial=state.requests_done, unit="req", disable=not progress,
              desc=config.agent) as bar:
        while state.requests_done < config.requests:
            result = sim.serve(policy, mapper)
            policy.update(result.contexts, result.actions, result.reward)
            interval.add(result)
            if oracle is not None:
                interval.regret += float(oracle[context_cell(result.contexts)].sum() - result.reward.sum())
            state.requests_done += sim.n_slots
            bar.update(sim.n_slots)
            if state.requests_done >= next_log:
                rate = (state.requests_done - started_at) / (time.perf_counter() - started)
                state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, rate)))
                next_log += config.log_every
            if state.requests_done >= next_checkpoint:
                checkpoint()
                next_checkpoint += config.checkpoint_every
    return _finish(out, config, scenario, state, interval, writer, arm_names, checkpoint,
                   lambda: policy.save(out / POLICY_FILE))


def _restore(out: Path, config: TrainConfig, sim: BatchedSimulator, load_policy) -> tuple[Progress, object]:
    """``--resume``: the last checkpoint's progress and what ``load_policy(checkpoint folder)`` returns,
    with the checkpoint's state loaded into ``sim``; the run is marked incomplete again until it finishes."""
    remove_orphans(out)
    folder = latest_checkpoint(out)
    state = load_progress(folder, "--resume")
    load_simulator_state(sim, folder, "--resume")
    policy = load_policy(folder)
    if state.requests_done > config.requests:
        raise TrainError(f"--resume: the run already served {state.requests_done} requests; --requests "
                         f"{config.requests} must be at least that")
    (out / COMPLETE_FILE).unlink(missing_ok=True)
    return state, policy


def _finish(out: Path, config: TrainConfig, scenario: Scenario, state: Progress, interval: "_Interval",
            writer: SummaryWriter, arm_names: list[str], checkpoint, save_policy) -> dict:
    """The end of a run: the last TensorBoard point, a final checkpoint, the policy, ``metrics.json`` and,
    last, ``complete.json``."""
    if interval.requests:
        state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, 0.0)))
    writer.close()
    checkpoint()
    save_policy()
    metrics = _summary(state, config.agent, scenario.name)
    write_json(out / "metrics.json", metrics)
    mark_complete(out, "train")
    return metrics


def _oracle(config: TrainConfig, world, arms, seed: int, out: Path) -> list | None:
    """Grid-search every static blend; write ``oracle.json``; the oracle's reward per context cell."""
    if not config.oracle_requests:
        return None
    search = grid_search(world, arms, config.grid_resolution, config.oracle_requests, seed)
    write_json(out / "oracle.json", search.describe([a.name for a in arms]))
    reward = search.oracle_cell_reward(min_requests=max(1, config.oracle_requests // 500))
    return [float(x) for x in reward]


class _Interval:
    """Totals since the last TensorBoard point."""

    def __init__(self, n_segments: int, n_arms: int) -> None:
        self.n_segments, self.n_arms = n_segments, n_arms
        self.reset()

    def reset(self) -> None:
        self.requests, self.reward, self.clicks, self.purchases, self.revenue, self.impressions = 0, 0.0, 0, 0, 0.0, 0
        self.regret = 0.0
        self.sessions = 0
        self.weight_sum = np.zeros((self.n_segments, self.n_arms))
        self.segment_count = np.zeros(self.n_segments)

    def add(self, result) -> None:
        n = len(result.reward)
        self.requests += n
        self.reward += float(result.reward.sum(dtype=np.float64))
        self.clicks += int(result.clicks.sum())
        self.impressions += result.clicks.size
        self.purchases += int(result.purchased.sum())
        self.revenue += float(result.revenue.sum(dtype=np.float64))
        self.sessions += int((result.terminated | result.truncated).sum())
        seg = result.requests.segment.astype(np.int64)
        self.segment_count += np.bincount(seg, minlength=self.n_segments)
        for a in range(self.n_arms):
            self.weight_sum[:, a] += np.bincount(seg, weights=result.weights[:, a], minlength=self.n_segments)

    def flush(self, writer: SummaryWriter, state: Progress, arm_names: list[str], rate: float) -> float:
        step = state.requests_done
        n = max(self.requests, 1)
        reward = self.reward / n
        writer.add_scalar(tags.REWARD, reward, step)
        writer.add_scalar(tags.CTR, self.clicks / max(self.impressions, 1), step)
        writer.add_scalar(tags.CONVERSION, self.purchases / n, step)
        writer.add_scalar(tags.REVENUE, self.revenue / n, step)
        if rate:
            writer.add_scalar(tags.REQUESTS_PER_SECOND, rate, step)
        mean_weight = self.weight_sum / np.maximum(self.segment_count, 1)[:, None]
        for s, segment in enumerate(SEGMENTS):
            for a, arm in enumerate(arm_names):
                writer.add_scalar(tags.arm_weight(segment, arm), mean_weight[s, a], step)
        t = state.totals
        if state.oracle_reward is not None:
            t["regret"] += self.regret
            writer.add_scalar(tags.REGRET, t["regret"], step)
        t["reward"] += self.reward
        t["clicks"] += self.clicks
        t["purchases"] += self.purchases
        t["revenue"] += self.revenue
        t["requests"] += self.requests
        t["sessions"] += self.sessions
        self.reset()
        return reward


def _summary(state: Progress, agent: str, scenario: str) -> dict:
    t = state.totals
    n = max(t["requests"], 1)
    curve = np.array(state.curve, dtype=np.float64).reshape(-1, 2)
    last = curve[curve[:, 0] > 0.8 * state.requests_done] if len(curve) else curve
    return {"agent": agent, "scenario": scenario, "requests": state.requests_done,
            "reward_per_request": t["reward"] / n, "clicks_per_request": t["clicks"] / n,
            "purchases_per_request": t["purchases"] / n, "revenue_per_request": t["revenue"] / n,
            "revenue_per_session": t["revenue"] / max(t["sessions"], 1),
            "reward_per_request_last_20pct": float(last[:, 1].mean()) if len(last) else None,
            "cumulative_regret": t["regret"] if state.oracle_reward is not None else None,
            "curve": [[int(r), float(v)] for r, v in state.curve]}


def train_ppo(config: TrainConfig, scenario: Scenario, out: Path, resume: bool = False,
              progress: bool = True) -> dict:
    """PPO (stable-baselines3) on the batched simulator as a VecEnv of ``slots`` shopper sessions, with
    continuous weights (softmax onto the simplex) and the same curves as the bandits; SB3's own ``train/*``
    figures go to ``tensorboard/sb3``. ``--resume`` continues from the last checkpoint's weights, optimizer
    and simulator state (PPO's rollout buffer restarts, so a resumed run is close to, not identical with,
    an uninterrupted one)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure

    from fusionsim.agents.ppo import OPTIMIZER_FILE, POLICY_FILE as PPO_POLICY_FILE, PPOPolicy
    from fusionsim.envs.vec_env import FusionVecEnv

    sim_seed, policy_seed, oracle_seed = np.random.SeedSequence(config.seed).generate_state(3)
    venv = FusionVecEnv(scenario, n_envs=config.slots, action_mode="weights", base=config.base,
                        seed=int(sim_seed))
    arm_names = [a.name for a in venv.sim.arms]
    model = PPO("MlpPolicy", venv, n_steps=config.ppo.n_steps, batch_size=config.ppo.batch_size,
                n_epochs=config.ppo.n_epochs, gamma=config.ppo.gamma, learning_rate=config.ppo.learning_rate,
                ent_coef=config.ppo.ent_coef, seed=int(policy_seed), device="cpu", verbose=0)
    if resume:
        def load_policy(folder: Path) -> None:
            try:
                model.policy.load_state_dict(torch.load(folder / PPO_POLICY_FILE, weights_only=True))
                model.policy.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_FILE, weights_only=True))
            except (OSError, RuntimeError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as exc:
                raise TrainError(f"--resume: checkpoint {folder} is corrupt ({type(exc).__name__})") from None

        state, _ = _restore(out, config, venv.sim, load_policy)
        model.num_timesteps = state.requests_done
        model._last_obs = venv.sim.contexts.copy()  # continue the restored sessions instead of a reset
        model._last_episode_starts = np.zeros(venv.num_envs, dtype=bool)
    write_config(out, "train", config.to_dict(), scenario=scenario_to_dict(scenario), arms=arm_names)
    if not resume:
        state = Progress(oracle_reward=_oracle(config, venv.sim.world, venv.sim.arms, int(oracle_seed), out))
    model.set_logger(configure(str(out / "tensorboard" / "sb3"), ["tensorboard"]))
    oracle = None if state.oracle_reward is None else np.asarray(state.oracle_reward)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(out / "tensorboard"), purge_step=state.requests_done or None)
    interval = _Interval(len(SEGMENTS), len(arm_names))
    bar = tqdm(total=config.requests, initial=state.requests_done, unit="req", disable=not progress, desc="ppo")

    def write_policy(folder: Path) -> None:
        PPOPolicy(model.policy).save(folder)
        with atomic_target(folder / OPTIMIZER_FILE) as tmp:
            torch.save(model.policy.optimizer.state_dict(), tmp)

    class Curves(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_log = (state.requests_done // config.log_every + 1) * config.log_every
            self.next_checkpoint = (state.requests_done // config.checkpoint_every + 1) * config.checkpoint_every

        def _on_step(self) -> bool:
            result = venv.last_result
            interval.add(result)
            if oracle is not None:
                interval.regret += float(oracle[context_cell(result.contexts)].sum() - result.reward.sum())
            state.requests_done += venv.num_envs
            bar.update(venv.num_envs)
            if state.requests_done >= self.next_log:
                state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, 0.0)))
                self.next_log += config.log_every
            if state.requests_done >= self.next_checkpoint:
                save_checkpoint(out, state, venv.sim, write_policy)
                self.next_checkpoint += config.checkpoint_every
            return state.requests_done < config.requests

    if state.requests_done < config.requests:
        model.learn(total_timesteps=config.requests - state.requests_done, callback=Curves(),
                    reset_num_timesteps=not resume)
    bar.close()
    return _finish(out, config, scenario, state, interval, writer, arm_names,
                   lambda: save_checkpoint(out, state, venv.sim, write_policy),
                   lambda: PPOPolicy(model.policy).save(out))  # loads with agents.ppo.PPOPolicy.load(out)


# --------------------------------------------------------------------------------------------- readers
@dataclass
class TrainedRun:
    """A complete ``fusionsim train`` run, read back without unpickling anything."""

    config: TrainConfig
    scenario: Scenario
    policy: Policy
    mapper: ActionMapper
    arm_names: list[str]
    folder: Path

    def simulator(self) -> BatchedSimulator:
        """The run's simulator as it was at the end of training (world and arms rebuilt from config.yaml)."""
        world, arms = make_shop(self.scenario, base=self.config.base)
        sim = BatchedSimulator(world, arms, n_slots=self.config.slots)
        load_simulator_state(sim, latest_checkpoint(self.folder, str(self.folder)), str(self.folder))
        return sim


def read_policy_run(folder: str | Path, option: str, arm_names: list[str], scenario: Scenario | None,
                    grid_resolution: int | None = None) -> TrainedRun:
    """The complete train or learn run in ``folder`` whose policy is to serve, frozen, the shop of ``scenario``
    with ``arm_names``: the same arms in the same order, the same world (unless ``scenario`` is None), and with
    ``grid_resolution`` a grid policy on that grid. A TrainError names ``option`` and what differs."""
    from fusionsim.envs.shop import world_fields

    trained = read_trained_run(Path(folder), option, deterministic=True)
    if trained.arm_names != list(arm_names):
        raise TrainError(f"{option} blends the arms [{', '.join(trained.arm_names)}]; this shop's arms are "
                         f"[{', '.join(arm_names)}] (names and order must match)")
    if scenario is not None and (world_fields(scenario_to_dict(trained.scenario)["world"])
                                 != world_fields(scenario_to_dict(scenario)["world"])):
        raise TrainError(f"{option} was trained on scenario '{trained.scenario.name}', whose world differs from "
                         f"scenario '{scenario.name}'")
    resolution = trained.config.grid_resolution
    if grid_resolution is not None and trained.mapper.mode == "grid" and resolution != grid_resolution:
        raise TrainError(f"{option} chooses among grid points at resolution {trained.config.grid_resolution}; "
                         f"give --grid-resolution {trained.config.grid_resolution}")
    return trained


def read_trained_run(folder: Path, option: str, deterministic: bool = False) -> TrainedRun:
    """The trained policy of the complete train (or ``learn``) run in ``folder`` (``option`` names it in errors):
    the bandit's ``policy.npz`` or PPO's state dict (``deterministic``: PPO acts with its mean)."""
    folder = Path(folder)
    check_complete(folder, option, ("train", "learn"))
    stored = read_config(folder, option)
    try:
        # a learn run stores its policy as the train run that would hold it (a LinUCB over the same actions)
        args = stored["policy_as_train"] if stored.get("command") == "learn" else stored["args"]
        config = TrainConfig.from_dict(args)
        scenario = parse_scenario(stored["scenario"], f"'{folder / 'config.yaml'}'")
        arm_names = [str(a) for a in stored["arms"]]
    except (KeyError, TypeError) as exc:
        raise TrainError(f"{option} {folder}/config.yaml is not a train config ({exc})") from None
    try:
        if config.agent == "ppo":
            from fusionsim.agents.ppo import PPOPolicy

            policy: Policy = PPOPolicy.load(folder, deterministic=deterministic)
        else:
            policy = AGENT_CLASSES[config.agent].load(folder / POLICY_FILE)
    except ValueError as exc:
        raise TrainError(f"{option} {folder}: {exc}") from None
    return TrainedRun(config, scenario, policy, config.mapper(len(arm_names)), arm_names, folder)

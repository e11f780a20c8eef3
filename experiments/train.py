"""``fusionsim train``: a fusion policy learns online in the batched simulator, with TensorBoard curves,
checkpoints every M requests, and ``--resume`` that continues exactly where the last checkpoint was."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from fusionsim.agents import UCB1, EpsilonGreedy, GaussianThompson, LinTS, LinUCB, Policy
from fusionsim.envs.context import CONTEXT_DIM, context_cell
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import SEGMENTS, Scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.experiments import tags
from fusionsim.experiments.oracle import grid_search
from fusionsim.experiments.runs import write_config, write_json
from fusionsim.recommenders.io import atomic_target

AGENTS = ("linucb", "lints", "eps", "ucb", "ts", "ppo")
CHECKPOINT = "checkpoint.pkl"


class TrainError(ValueError):
    """Bad ``train`` input: unknown agent, nothing to resume, a corrupt checkpoint."""


def make_agent(name: str, n_actions: int, action_mode: str, seed: int, discount: float = 1.0,
               epsilon: float = 0.0) -> Policy:
    """The agent ``name`` with this project's default hyperparameters; ``discount`` < 1 makes the linear
    bandits forget (for drift); ``epsilon`` makes LinUCB explore uniformly (for off-policy evaluation)."""
    if discount != 1.0 and name not in ("linucb", "lints"):
        raise TrainError(f"--discount applies to linucb and lints, not {name}")
    if epsilon and name != "linucb":
        raise TrainError(f"--epsilon applies to linucb, not {name}")
    if name == "linucb":
        return LinUCB(n_actions, CONTEXT_DIM, alpha=0.5, discount=discount, epsilon=epsilon, seed=seed,
                      action_mode=action_mode)
    if name == "lints":
        return LinTS(n_actions, CONTEXT_DIM, v=0.2, discount=discount, propensity_draws=16, seed=seed,
                     action_mode=action_mode)
    if name == "eps":
        return EpsilonGreedy(n_actions, epsilon=0.1, seed=seed, action_mode=action_mode)
    if name == "ucb":
        return UCB1(n_actions, c=0.5, seed=seed, action_mode=action_mode)
    if name == "ts":
        return GaussianThompson(n_actions, sigma=0.5, seed=seed, action_mode=action_mode)
    raise TrainError(f"--agent {name!r} is not allowed: use one of {', '.join(AGENTS)}")


@dataclass
class TrainState:
    """Everything a run needs to continue bit for bit: the simulator (with its Generator and arms), the
    policy, and the running totals."""

    sim: BatchedSimulator
    policy: Policy
    mapper: ActionMapper
    oracle_reward: np.ndarray | None = None
    """expected reward per request of the oracle in each context cell (None: no regret curve)"""
    requests_done: int = 0
    totals: dict = field(default_factory=lambda: {"reward": 0.0, "clicks": 0.0, "purchases": 0.0,
                                                  "revenue": 0.0, "requests": 0, "regret": 0.0})
    curve: list = field(default_factory=list)  # (requests, reward per request in the interval)


def save_checkpoint(state: TrainState, path: Path) -> None:
    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)


def load_checkpoint(path: Path) -> TrainState:
    if not path.is_file():
        raise TrainError(f"--resume: {path} does not exist; start without --resume")
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise TrainError(f"--resume: checkpoint {path} is corrupt ({type(exc).__name__})") from None
    if not isinstance(state, TrainState):
        raise TrainError(f"--resume: {path} is not a fusionsim train checkpoint")
    return state


def train(scenario: Scenario, agent: str, requests: int, out: Path, base: Path | None = None, seed: int = 0,
          slots: int = 256, actions: str = "grid", grid_resolution: int = 4, log_every: int = 20_000,
          checkpoint_every: int = 100_000, resume: bool = False, oracle_requests: int = 20_000,
          discount: float = 1.0, epsilon: float = 0.0, progress: bool = True) -> dict:
    """Run ``agent`` online for ``requests`` requests; write TensorBoard events, checkpoints,
    ``policy.npz``, ``metrics.json`` and ``config.yaml`` to ``out``; return the metrics."""
    if agent not in AGENTS:
        raise TrainError(f"--agent {agent!r} is not allowed: use one of {', '.join(AGENTS)}")
    if checkpoint_every % log_every:
        raise TrainError(f"--checkpoint-every {checkpoint_every} must be a multiple of --log-every {log_every} "
                         "(a checkpoint then never splits a logging interval)")
    if agent == "ppo":
        return train_ppo(scenario, requests, out, base=base, seed=seed, slots=slots, grid_resolution=grid_resolution,
                         log_every=log_every, checkpoint_every=checkpoint_every, resume=resume,
                         oracle_requests=oracle_requests, progress=progress)
    if resume:
        state = load_checkpoint(out / CHECKPOINT)
    else:
        world, arms = make_shop(scenario, base=base)
        sim = BatchedSimulator(world, arms, n_slots=slots)
        mapper = ActionMapper(actions, len(arms), grid_resolution)
        sim_seed, policy_seed, oracle_seed = np.random.SeedSequence(seed).generate_state(3)
        oracle_reward = None
        if oracle_requests:
            search = grid_search(world, arms, grid_resolution, oracle_requests, int(oracle_seed))
            oracle_reward = search.oracle_cell_reward(min_requests=max(1, oracle_requests // 500))
            write_json(out / "oracle.json", search.describe([a.name for a in arms]))
        state = TrainState(sim=sim, policy=make_agent(agent, mapper.n_actions, actions, int(policy_seed), discount,
                                                          epsilon),
                           mapper=mapper, oracle_reward=oracle_reward)
        sim.reset(seed=int(sim_seed))
        write_config(out, "train", {"scenario": scenario.name, "agent": agent, "requests": requests,
                                    "base": None if base is None else str(base), "seed": seed, "slots": slots,
                                    "actions": actions, "grid_resolution": grid_resolution,
                                    "log_every": log_every, "checkpoint_every": checkpoint_every,
                                    "oracle_requests": oracle_requests, "discount": discount,
                                    "epsilon": epsilon},
                     scenario=scenario_to_dict(scenario), arms=[a.name for a in arms])
    sim, policy, mapper = state.sim, state.policy, state.mapper
    arm_names = [a.name for a in sim.arms]
    writer = SummaryWriter(str(out / "tensorboard"), purge_step=state.requests_done or None)
    interval = _Interval(len(SEGMENTS), len(arm_names))
    next_log = (state.requests_done // log_every + 1) * log_every
    next_checkpoint = (state.requests_done // checkpoint_every + 1) * checkpoint_every
    started, started_at = time.perf_counter(), state.requests_done
    with tqdm(total=requests, initial=state.requests_done, unit="req", disable=not progress, desc=agent) as bar:
        while state.requests_done < requests:
            contexts = sim.contexts
            actions_, _ = policy.act(contexts)
            result = sim.step(mapper.to_weights(actions_))
            policy.update(contexts, actions_, result.reward)
            interval.add(result)
            if state.oracle_reward is not None:
                interval.regret += float(state.oracle_reward[context_cell(contexts)].sum() - result.reward.sum())
            state.requests_done += sim.n_slots
            bar.update(sim.n_slots)
            if state.requests_done >= next_log:
                rate = (state.requests_done - started_at) / (time.perf_counter() - started)
                reward = interval.flush(writer, state, arm_names, rate)
                state.curve.append((state.requests_done, reward))
                next_log += log_every
            if state.requests_done >= next_checkpoint:
                save_checkpoint(state, out / CHECKPOINT)
                next_checkpoint += checkpoint_every
    if interval.requests:
        state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, 0.0)))
    writer.close()
    save_checkpoint(state, out / CHECKPOINT)
    policy.save(out / "policy.npz")
    metrics = _summary(state, agent, scenario.name)
    write_json(out / "metrics.json", metrics)
    return metrics


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

    def flush(self, writer: SummaryWriter, state: TrainState, arm_names: list[str], rate: float) -> float:
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
        t["sessions"] = t.get("sessions", 0) + self.sessions
        self.reset()
        return reward


def _summary(state: TrainState, agent: str, scenario: str) -> dict:
    t = state.totals
    n = max(t["requests"], 1)
    curve = np.array(state.curve, dtype=np.float64).reshape(-1, 2)
    last = curve[curve[:, 0] > 0.8 * state.requests_done] if len(curve) else curve
    return {"agent": agent, "scenario": scenario, "requests": state.requests_done,
            "reward_per_request": t["reward"] / n, "clicks_per_request": t["clicks"] / n,
            "purchases_per_request": t["purchases"] / n, "revenue_per_request": t["revenue"] / n,
            "revenue_per_session": t["revenue"] / max(t.get("sessions", 0), 1),
            "reward_per_request_last_20pct": float(last[:, 1].mean()) if len(last) else None,
            "cumulative_regret": t["regret"] if state.oracle_reward is not None else None,
            "curve": [[int(r), float(v)] for r, v in state.curve]}


PPO_MODEL = "ppo.zip"
PPO_STATE = "ppo_state.pkl"


def train_ppo(scenario: Scenario, requests: int, out: Path, base: Path | None = None, seed: int = 0,
              slots: int = 64, grid_resolution: int = 4, log_every: int = 20_000, checkpoint_every: int = 100_000,
              resume: bool = False, oracle_requests: int = 20_000, progress: bool = True) -> dict:
    """PPO (stable-baselines3) on the batched simulator as a VecEnv of ``slots`` shopper sessions, with
    continuous weights (softmax onto the simplex) and the same curves as the bandits. ``--resume``
    continues from the last saved weights and simulator state (PPO's rollout buffer restarts, so a resumed
    run is close to, not identical with, an uninterrupted one)."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback

    from fusionsim.envs.vec_env import FusionVecEnv

    sim_seed, policy_seed, oracle_seed = np.random.SeedSequence(seed).generate_state(3)
    venv = FusionVecEnv(scenario, n_envs=slots, action_mode="weights", base=base, seed=int(sim_seed))
    if resume:
        if not (out / PPO_MODEL).is_file() or not (out / PPO_STATE).is_file():
            raise TrainError(f"--resume: {out / PPO_MODEL} does not exist; start without --resume")
        with open(out / PPO_STATE, "rb") as f:
            state = pickle.load(f)
        venv.sim = state.sim
        try:
            model = PPO.load(str(out / PPO_MODEL), env=venv, device="cpu")
        except Exception as exc:  # SB3 raises many kinds for a damaged zip
            raise TrainError(f"--resume: checkpoint {out / PPO_MODEL} is corrupt ({type(exc).__name__})") from None
    else:
        oracle_reward = None
        if oracle_requests:
            search = grid_search(venv.sim.world, venv.sim.arms, grid_resolution, oracle_requests, int(oracle_seed))
            oracle_reward = search.oracle_cell_reward(min_requests=max(1, oracle_requests // 500))
            write_json(out / "oracle.json", search.describe([a.name for a in venv.sim.arms]))
        model = PPO("MlpPolicy", venv, n_steps=64, batch_size=1024, n_epochs=4, gamma=0.98, learning_rate=3e-4,
                    ent_coef=0.0, seed=int(policy_seed), device="cpu", verbose=0)
        state = TrainState(sim=venv.sim, policy=None, mapper=venv.mapper, oracle_reward=oracle_reward)
        write_config(out, "train", {"scenario": scenario.name, "agent": "ppo", "requests": requests,
                                    "base": None if base is None else str(base), "seed": seed, "slots": slots,
                                    "log_every": log_every, "checkpoint_every": checkpoint_every,
                                    "oracle_requests": oracle_requests},
                     scenario=scenario_to_dict(scenario), arms=[a.name for a in venv.sim.arms])
    arm_names = [a.name for a in venv.sim.arms]
    writer = SummaryWriter(str(out / "tensorboard"), purge_step=state.requests_done or None)
    interval = _Interval(len(SEGMENTS), len(arm_names))
    bar = tqdm(total=requests, initial=state.requests_done, unit="req", disable=not progress, desc="ppo")

    def checkpoint() -> None:
        with atomic_target(out / PPO_MODEL) as tmp:
            with open(tmp, "wb") as f:
                model.save(f)
        save_checkpoint(state, out / PPO_STATE)

    class Curves(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_log = (state.requests_done // log_every + 1) * log_every
            self.next_checkpoint = (state.requests_done // checkpoint_every + 1) * checkpoint_every

        def _on_step(self) -> bool:
            result = venv.last_result
            interval.add(result)
            if state.oracle_reward is not None:
                interval.regret += float(state.oracle_reward[context_cell(result.contexts)].sum()
                                         - result.reward.sum())
            state.requests_done += venv.num_envs
            bar.update(venv.num_envs)
            if state.requests_done >= self.next_log:
                state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, 0.0)))
                self.next_log += log_every
            if state.requests_done >= self.next_checkpoint:
                checkpoint()
                self.next_checkpoint += checkpoint_every
            return state.requests_done < requests

    if state.requests_done < requests:
        model.learn(total_timesteps=requests - state.requests_done, callback=Curves(), reset_num_timesteps=not resume)
    bar.close()
    if interval.requests:
        state.curve.append((state.requests_done, interval.flush(writer, state, arm_names, 0.0)))
    writer.close()
    checkpoint()  # the trained policy loads with agents.ppo.PPOPolicy.load(out / "ppo.zip")
    metrics = _summary(state, "ppo", scenario.name)
    write_json(out / "metrics.json", metrics)
    return metrics


"""Native Gymnasium vector envs over the batched simulator: N sub-envs stepped by one BatchedSimulator.

``gymnasium.make_vec("fusionsim/Fusion-v0", num_envs=N)`` and ``("fusionsim/FusionSession-v0", ...)``
build these (their registered ``vector_entry_point``; ``vectorization_mode="vector_entry_point"`` is the
default for them). The N sub-envs share one shop (world, trending counts, the shoppers' histories) and
one Generator: they are N concurrent sessions of one simulated shop, not N separate shops, so one step
costs one vectorised simulator step instead of N single-env steps.

Autoreset: ``AutoresetMode.SAME_STEP``, as Gymnasium 1.x defines it. When sub-env i ends an episode, the
observation returned for it is already the first one of its next episode; the last observation of the
ended episode is ``infos["final_obs"][i]`` (an object array of length N, None elsewhere, with the bool
mask ``infos["_final_obs"]``) and that step's info is ``infos["final_info"]`` (the same keys, each with
its ``_key`` mask). The top-level info keys then hold the sub-envs that did not end (their masks are
False for the ended ones, whose info after the reset is empty). ``final_obs``/``final_info`` are absent
when no sub-env ended. Info keys, arrays of first axis N: ``slate`` (N, k) int32, ``clicks`` and
``purchases`` (N, k) bool, ``revenue`` (N,) float32, ``request_id``, ``session_id`` (N,) int64,
``segment``, ``surface`` (N,) int8, ``session_end`` (N,) bool (the shopper left). ``last_result``
holds the step's full :class:`StepResult` (candidates, every arm's scores, weights).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from fusionsim.envs.context import CONTEXT_HIGH, CONTEXT_LOW
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import Scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator, StepResult, check_slots
from fusionsim.recommenders import Recommender

class _ShopVectorEnv(VectorEnv):
    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, scenario: str | Scenario = "default", action_mode: str = "arm",
                 grid_resolution: int = 4, temperature: float = 3.0, arms: list[Recommender] | None = None,
                 base: str | None = None, max_episode_steps: int | None = None, render_mode: str | None = None) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode = {render_mode!r} is not allowed: the vector env does not render "
                             "(render_modes is empty); use the single env's 'ansi' or 'rgb_array'")
        if max_episode_steps is not None and (isinstance(max_episode_steps, bool) or not isinstance(
                max_episode_steps, (int, np.integer)) or max_episode_steps < 1):
            raise ValueError(f"max_episode_steps must be None or an int >= 1; got {max_episode_steps!r}")
        world, arms = make_shop(scenario, arms, base)
        self.num_envs = check_slots("num_envs", num_envs, world.scenario, len(arms))
        self.sim = BatchedSimulator(world, arms, n_slots=self.num_envs)
        self.mapper = ActionMapper(action_mode, len(arms), grid_resolution, temperature)
        self.single_observation_space = gym.spaces.Box(CONTEXT_LOW, CONTEXT_HIGH, dtype=np.float32)
        self.single_action_space = self.mapper.space()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.max_episode_steps = None if max_episode_steps is None else int(max_episode_steps)
        self.render_mode = None
        self.episode_steps = np.zeros(self.num_envs, dtype=np.int64)
        """Steps of each sub-env's current episode, (N,) int64."""
        self.last_result: StepResult | None = None
        self._started = False

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Restart the shop at day 0 with N new sessions: ``seed`` (an int) makes a new Generator, as a
        single env's ``reset(seed=...)`` does; without it the current Generator continues. Returns the
        first observations (N, D) and an empty info."""
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
                raise ValueError(f"seed must be an int or None; got {seed!r}: the {self.num_envs} sub-envs share "
                                 "one shop and one Generator, so one int seeds them all")
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
        obs = self.sim.reset(rng=self.np_random)
        self.episode_steps[:] = 0
        self.last_result = None
        self._started = True
        return obs.copy(), {}

    def _weights(self, actions: Any) -> np.ndarray:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        return self.mapper.decide(np.asarray(actions))

    def _outputs(self, result: StepResult, terminated: np.ndarray, truncated: np.ndarray,
                 final_obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Observations, rewards and the SAME_STEP infos; ``final_obs`` (N, D) is read where an episode ended."""
        self.last_result = result
        ended = terminated | truncated
        values = {"slate": result.slate, "clicks": result.clicks, "purchases": result.purchased,
                  "revenue": result.revenue, "request_id": result.request_id, "session_id": result.session_id,
                  "segment": result.requests.segment.copy(), "surface": result.requests.surface,
                  "session_end": result.terminated}
        infos: dict[str, Any] = dict(values)
        ongoing = ~ended
        ongoing.setflags(write=False)
        for key in values:
            infos[f"_{key}"] = ongoing
        ended_rows = np.flatnonzero(ended)
        if len(ended_rows):
            final = np.full(self.num_envs, None, dtype=object)
            final[ended_rows] = np.fromiter(final_obs[ended_rows], dtype=object, count=len(ended_rows))
            ended = ended.copy()
            ended.setflags(write=False)
            final_info: dict[str, Any] = dict(values)
            for key in values:
                final_info[f"_{key}"] = ended
            infos.update(final_obs=final, _final_obs=ended, final_info=final_info, _final_info=ended)
        return (self.sim.contexts.copy(), result.reward.astype(np.float64), terminated, truncated, infos)

    def close_extras(self, **kwargs: Any) -> None:
        self.last_result = None


class FusionVectorEnv(_ShopVectorEnv):
    """N request streams of one shop, stepped together: the vector form of ``fusionsim/Fusion-v0``.

    Each sub-env is one slot of a :class:`BatchedSimulator`: a stream of requests (one per step) from the
    shoppers who pass through that slot. An episode is ``max_episode_steps`` requests of a sub-env (the
    registry passes 100; None = never ends). ``terminated`` is always False; at the time limit
    ``truncated`` is True, the stream goes on, and ``infos["final_obs"][i]`` is the same next-request
    context as the returned observation. Autoreset: ``AutoresetMode.SAME_STEP`` (module docstring).

    Args:
        num_envs: N, 1 to ``MAX_SLOTS``. scenario, action_mode ("arm"), grid_resolution, temperature,
        arms, base: as Fusion-v0. max_episode_steps: requests per episode (None = no limit).
    """

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        result = self.sim.step(self._weights(actions))
        self.episode_steps += 1
        terminated = np.zeros(self.num_envs, dtype=bool)
        if self.max_episode_steps is None:
            truncated = np.zeros(self.num_envs, dtype=bool)
        else:
            truncated = self.episode_steps >= self.max_episode_steps
            self.episode_steps[truncated] = 0
        return self._outputs(result, terminated, truncated, self.sim.contexts)


class FusionSessionVectorEnv(_ShopVectorEnv):
    """N concurrent shopper sessions, stepped together: the vector form of ``fusionsim/FusionSession-v0``.

    Each sub-env is one slot of a :class:`BatchedSimulator`; an episode is one session. ``terminated``:
    the shopper left; ``truncated``: the scenario's ``traffic.max_session_steps``, or
    ``max_episode_steps`` if given and reached first (the simulator then ends that session). The ended
    slot gets the next arriving shopper in the same step. Autoreset: ``AutoresetMode.SAME_STEP``
    (module docstring); ``infos["final_obs"][i]`` is the context the ended session would have shown next.

    Args:
        num_envs: N, 1 to ``MAX_SLOTS``. scenario, action_mode ("weights"), grid_resolution, temperature,
        arms, base: as FusionSession-v0. max_episode_steps: optional extra session limit.
    """

    def __init__(self, num_envs: int = 1, scenario: str | Scenario = "default", action_mode: str = "weights",
                 grid_resolution: int = 4, temperature: float = 3.0, arms: list[Recommender] | None = None,
                 base: str | None = None, max_episode_steps: int | None = None, render_mode: str | None = None) -> None:
        super().__init__(num_envs, scenario, action_mode, grid_resolution, temperature, arms, base, max_episode_steps,
                         render_mode)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        weights = self._weights(actions)
        limit = None if self.max_episode_steps is None else self.episode_steps + 1 >= self.max_episode_steps
        result = self.sim.step(weights, truncate=limit)
        terminated, truncated = result.terminated.copy(), result.truncated.copy()
        self.episode_steps += 1
        self.episode_steps[terminated | truncated] = 0
        return self._outputs(result, terminated, truncated, result.final_contexts)

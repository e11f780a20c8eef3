"""The batched simulator as a stable-baselines3 ``VecEnv``: N shopper sessions, one per sub-env."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import VecEnv

from fusionsim.envs.context import CONTEXT_HIGH, CONTEXT_LOW
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import Scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator, StepResult, check_slots
from fusionsim.recommenders import Recommender


class FusionVecEnv(VecEnv):
    """N sub-environments, each a stream of shopper sessions (as ``FusionSession-v0``), stepped by one
    vectorised :class:`BatchedSimulator` (not N copies of the single env).

    A sub-env whose session ended returns ``done=True`` with ``info["terminal_observation"]`` (the
    context the session would have shown next) and ``info["TimeLimit.truncated"]`` (True when the
    session hit the time limit rather than the shopper leaving); its next observation is the first
    request of a newly arrived shopper. ``last_result`` holds the full :class:`StepResult` of the last step.

    Autoreset: in the same step, SB3's convention (``metadata["autoreset_mode"]`` is
    ``gymnasium.vector.AutoresetMode.SAME_STEP``; the final observation is ``info["terminal_observation"]``).
    Rendering: none (``metadata["render_modes"]`` is empty, ``render_mode`` None).

    Args:
        scenario, action_mode ("weights"), grid_resolution, temperature, arms, base: as ``FusionSession-v0``.
        n_envs: number of concurrent sessions N, 1 to ``envs.simulator.MAX_SLOTS`` (a larger N is refused
            with the memory it would take).
        seed: seed of the first reset (``seed()`` changes it).
    """

    def __init__(self, scenario: str | Scenario = "default", n_envs: int = 8, action_mode: str = "weights",
                 grid_resolution: int = 4, temperature: float = 3.0, arms: list[Recommender] | None = None,
                 base: str | None = None, seed: int | None = None) -> None:
        world, arms = make_shop(scenario, arms, base)
        n_envs = check_slots("n_envs", n_envs, world.scenario, len(arms))
        self.sim = BatchedSimulator(world, arms, n_slots=n_envs)
        self.mapper = ActionMapper(action_mode, len(arms), grid_resolution, temperature)
        observation_space = gym.spaces.Box(CONTEXT_LOW, CONTEXT_HIGH, dtype=np.float32)
        self.render_mode = None
        super().__init__(n_envs, observation_space, self.mapper.space())
        self.metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}
        self._seed = seed
        self._actions: np.ndarray | None = None
        self.last_result: StepResult | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0] if self._seeds and self._seeds[0] is not None else self._seed
        obs = self.sim.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs.copy()

    def seed(self, seed: int | None = None) -> list[int | None]:
        self._seed = seed
        return [seed] * self.num_envs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict]]:
        result = self.sim.step(self.mapper.decide(self._actions))
        self.last_result = result
        dones = result.terminated | result.truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i] = {"terminal_observation": result.final_contexts[i],
                        "TimeLimit.truncated": bool(result.truncated[i])}
        return self.sim.contexts.copy(), result.reward.copy(), dones, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: Any = None, **method_kwargs: Any) -> list[Any]:
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result] * len(self._get_indices(indices))

    def env_is_wrapped(self, wrapper_class: type, indices: Any = None) -> list[bool]:
        return [False] * len(self._get_indices(indices))

"""Gymnasium environments over the shop simulator: one request per step, or one session per episode."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fusionsim.envs.context import CONTEXT_HIGH, CONTEXT_LOW
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import Scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator, StepResult
from fusionsim.recommenders import Recommender

_OBSERVATION_TABLE = """
    | index | feature          | range   | meaning                                                  |
    |-------|------------------|---------|----------------------------------------------------------|
    | 0     | bias             | 1       | always 1 (intercept for linear policies)                 |
    | 1-4   | segment_*        | {0, 1}  | one-hot segment: new, casual, loyal, bargain             |
    | 5     | surface_search   | {0, 1}  | 1 on search, 0 on the home feed                          |
    | 6     | device_mobile    | {0, 1}  | 1 on mobile web                                          |
    | 7     | device_app       | {0, 1}  | 1 in the app (desktop when 6 and 7 are 0)                |
    | 8, 9  | hour_sin, cos    | [-1, 1] | hour of the simulated day on the unit circle             |
    | 10    | session_step     | [0, 1]  | min(requests earlier in the session, 20) / 20            |
    | 11    | history_length   | [0, 1]  | min(log1p(past purchases) / log1p(50), 1)                |
    | 12    | session_clicks   | [0, 1]  | min(clicks earlier in the session, 10) / 10              |
    | 13    | query_names_leaf | {0, 1}  | 1 if the search query names a leaf category              |
"""


def _info(result: StepResult, row: int) -> dict[str, Any]:
    return {"slate": result.slate[row], "clicks": result.clicks[row], "purchases": result.purchased[row],
            "revenue": float(result.revenue[row]), "weights": result.weights[row],
            "candidates": result.candidates[row],
            "arm_scores": np.stack([s[row] for s in result.arm_scores]),
            "request_id": int(result.request_id[row]), "session_id": int(result.session_id[row]),
            "day": result.day, "segment": int(result.requests.segment[row]),
            "surface": int(result.requests.surface[row]), "session_end": bool(result.terminated[row])}


class _ShopEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "arm", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None) -> None:
        world, arms = make_shop(scenario, arms, base)
        self.sim = BatchedSimulator(world, arms, n_slots=1)
        self.arm_names = [a.name for a in arms]
        self.mapper = ActionMapper(action_mode, len(arms), grid_resolution, temperature)
        self.action_space = self.mapper.space()
        self.observation_space = gym.spaces.Box(CONTEXT_LOW, CONTEXT_HIGH, dtype=np.float32)
        self._started = False

    def _start(self, seed: int | None) -> bool:
        """Seed ``np_random``; a seeded (or the first) reset restarts the shop. True if it restarted."""
        super().reset(seed=seed)
        if seed is not None or not self._started:
            self.sim.reset(rng=self.np_random)
            self._started = True
            return True
        return False

    def _serve(self, action: Any) -> StepResult:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        batch = np.asarray(action)[None] if self.mapper.discrete else np.asarray(action, dtype=np.float32)[None]
        return self.sim.step(self.mapper.to_weights(batch))


class FusionEnv(_ShopEnv):
    """One request per step: a contextual bandit over how to blend the arms.

    ## Description
    A simulated shop serves a stream of requests from shoppers who arrive, browse for a session and
    leave. Each step the agent sees the context of the next request and chooses arm weights; the shop
    blends the arms' (normalised) scores over the request's candidates, shows the top-k slate, and the
    shopper clicks, buys or leaves. The next request comes from the same shopper while the session lasts,
    then from the next arriving shopper.

    ## Observation Space
    ``Box(low, high, (14,), float32)``, the request context (only what a shop knows; see
    ``envs/context.py``):
    {table}
    ## Action Space
    By ``action_mode``: ``"arm"`` ``Discrete(A)`` (all weight on one arm), ``"grid"`` ``Discrete(G)``
    (a point of the simplex grid at ``grid_resolution``, one-hot points first), ``"weights"``
    ``Box(-1, 1, (A,))`` (softmax of ``temperature * action``), ``"simplex"`` ``Box(0, 1, (A,))`` (action
    divided by its sum). A = number of arms (default 2: popularity, new_arrivals).

    ## Rewards
    Per request, by the scenario's ``reward``: clicks on the slate, purchases, or revenue (sum of the
    prices of items bought).

    ## Starting State
    ``reset(seed=s)`` restarts the shop at day 0 (the world's initial tastes and histories) with a new
    shopper; ``reset()`` without a seed keeps the shop going and starts a new episode on the next request.

    ## Episode End
    The request stream does not terminate; the episode is truncated after ``episode_requests`` requests.

    ## Arguments
    ``scenario`` (name, path or Scenario), ``action_mode``, ``grid_resolution`` (4), ``temperature`` (3.0),
    ``arms`` (fitted recommenders; default popularity + new arrivals), ``base`` (a folder of arms from
    ``fusionsim train-base``, used when ``arms`` is None), ``episode_requests`` (100).
    ``info``: slate, clicks, purchases (per slot), revenue, weights, candidates, arm_scores (A, C),
    request_id, session_id, day, segment, surface, session_end.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "arm", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None,
                 episode_requests: int = 100) -> None:
        super().__init__(scenario, action_mode, grid_resolution, temperature, arms, base)
        if episode_requests < 1:
            raise ValueError(f"episode_requests must be >= 1; got {episode_requests}")
        self.episode_requests = episode_requests
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self._start(seed)
        self._steps = 0
        return self.sim.contexts[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self._serve(action)
        self._steps += 1
        truncated = self._steps >= self.episode_requests
        return self.sim.contexts[0].copy(), float(result.reward[0]), False, truncated, _info(result, 0)


class FusionSessionEnv(_ShopEnv):
    """One shopper session per episode: sequential blending, where what is shown now changes how long the
    shopper stays (satiation, fatigue). Meant for PPO with continuous weights.

    ## Description
    Each episode follows one shopper from arrival to leaving. Each step serves one request of the
    session with the chosen arm weights. Showing the same categories again and again satiates the
    shopper and tires them, so a policy that maximises session revenue must look ahead.

    ## Observation Space
    ``Box(low, high, (14,), float32)``, the request context:
    {table}
    ## Action Space
    Default ``action_mode="weights"``: ``Box(-1, 1, (A,), float32)``, mapped onto the simplex by a
    softmax of ``temperature * action``. ``"arm"``, ``"grid"`` and ``"simplex"`` work as in Fusion-v0.

    ## Rewards
    Per request, by the scenario's ``reward`` (clicks, purchases or revenue); the return of an episode is
    the session's total.

    ## Starting State
    A newly arrived shopper (drawn by activity), with a session intent drawn from their taste.
    ``reset(seed=s)`` also restarts the shop at day 0.

    ## Episode End
    ``terminated`` when the shopper leaves (fatigue, after a purchase, or by chance); ``truncated`` at the
    scenario's ``traffic.max_session_steps``. The final observation is the context the session would
    have shown next.

    ## Arguments
    ``scenario``, ``action_mode`` ("weights"), ``grid_resolution``, ``temperature``, ``arms``, ``base``.
    ``info`` as in Fusion-v0.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "weights", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None) -> None:
        super().__init__(scenario, action_mode, grid_resolution, temperature, arms, base)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if not self._start(seed) and self.sim.step_in_session[0] > 0:  # mid-session: a new shopper arrives
            self.sim.start_sessions(np.array([0]))
            self.sim.prepare_requests()
        return self.sim.contexts[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self._serve(action)
        terminated, truncated = bool(result.terminated[0]), bool(result.truncated[0])
        obs = result.final_contexts[0] if (terminated or truncated) else self.sim.contexts[0]
        return obs.copy(), float(result.reward[0]), terminated, truncated, _info(result, 0)


FusionEnv.__doc__ = FusionEnv.__doc__.replace("{table}", _OBSERVATION_TABLE)
FusionSessionEnv.__doc__ = FusionSessionEnv.__doc__.replace("{table}", _OBSERVATION_TABLE)

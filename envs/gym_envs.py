"""Gymnasium environments over the shop simulator: one request per step, or one session per episode.

Both envs step the same :class:`envs.simulator.BatchedSimulator` as every other loop, with one slot.
Their docstrings are their specification; the observation table in them is generated from
``envs.context.CONTEXT_FEATURES``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from fusionsim.envs.context import CONTEXT_DIM, CONTEXT_HIGH, CONTEXT_LOW, observation_table
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.scenario import SEGMENTS, Scenario
from fusionsim.envs.shop import make_shop
from fusionsim.envs.simulator import BatchedSimulator, StepResult
from fusionsim.recommenders import Recommender

RENDER_MODES = ["ansi", "rgb_array"]
"""``ansi``: one line of text about the last request; ``rgb_array``: an (16 (k + 1), 240, 3) uint8 picture
of it (top band: the arm weights; one band per slate position: grey shown, blue clicked, green bought)."""

_ARM_COLOURS = np.array([[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178],
                         [213, 94, 0], [204, 121, 167], [120, 120, 120]], dtype=np.uint8)
_SLOT_COLOURS = np.array([[210, 210, 210], [70, 130, 230], [40, 170, 80]], dtype=np.uint8)  # shown, clicked, bought
_BAND, _WIDTH = 16, 240


def _info(result: StepResult) -> dict[str, Any]:
    """The ``info`` of a one-slot step (row 0 of ``result``). (``.item(0)`` gives the Python number without
    the NumPy scalar that ``float(a[0])`` makes on the way.)"""
    return {"slate": result.slate[0], "clicks": result.clicks[0], "purchases": result.purchased[0],
            "revenue": result.revenue.item(0), "weights": result.weights[0], "candidates": result.candidates[0],
            "arm_scores": np.concatenate(result.arm_scores), "request_id": result.request_id.item(0),
            "session_id": result.session_id.item(0), "day": result.day, "segment": result.requests.segment.item(0),
            "surface": result.requests.surface.item(0), "session_end": result.terminated.item(0)}


class _ShopEnv(gym.Env):
    metadata = {"render_modes": RENDER_MODES, "render_fps": 4}

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "arm", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None,
                 render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in RENDER_MODES:
            raise ValueError(f"render_mode = {render_mode!r} is not allowed: must be None or one of {RENDER_MODES}")
        self.render_mode = render_mode
        world, arms = make_shop(scenario, arms, base)
        self.sim = BatchedSimulator(world, arms, n_slots=1)
        self.arm_names = [a.name for a in arms]
        self.mapper = ActionMapper(action_mode, len(arms), grid_resolution, temperature)
        self.action_space = self.mapper.space()
        self.observation_space = gym.spaces.Box(CONTEXT_LOW, CONTEXT_HIGH, dtype=np.float32)
        # Discrete actions: the (1, A) weight row of each action, copied per step (``info`` holds it).
        self._action_rows: list[np.ndarray] | None = None
        if self.mapper.discrete:
            self._action_rows = [self.mapper.decide(np.array([a])) for a in range(self.mapper.n_actions)]
        self._started = False
        self._last: StepResult | None = None

    def _start(self, seed: int | None) -> bool:
        """Seed ``np_random``; a seeded (or the first) reset restarts the shop. True if it restarted."""
        super().reset(seed=seed)
        if seed is not None or not self._started:
            self.sim.reset(rng=self.np_random)
            self._started = True
            self._last = None
            return True
        return False

    def _serve(self, action: Any) -> StepResult:
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        rows = self._action_rows
        if rows is not None and isinstance(action, (int, np.integer)) and not isinstance(action, bool) \
                and 0 <= action < len(rows):
            weights = rows[action].copy()
        else:  # continuous actions, and anything the mapper must check
            batch = np.asarray(action)[None] if rows is not None else np.asarray(action, dtype=np.float32)[None]
            weights = self.mapper.decide(batch)
        self._last = result = self.sim.step(weights)
        return result

    def render(self) -> str | np.ndarray | None:
        """The last request (see :data:`RENDER_MODES`); None when the env was made without a render_mode."""
        if self.render_mode is None:
            return None
        result = self._last
        if self.render_mode == "ansi":
            if result is None:
                req = self.sim.requests
                return (f"pending request: {SEGMENTS[int(req.segment[0])]} shopper on the "
                        f"{'search' if req.surface[0] else 'feed'} surface, no slate shown yet")
            weights = ", ".join(f"{name} {w:.2f}" for name, w in zip(self.arm_names, result.weights[0]))
            return (f"request {int(result.request_id[0])} (session {int(result.session_id[0])}, day "
                    f"{result.day:.3f}, {SEGMENTS[int(result.requests.segment[0])]} on "
                    f"{'search' if result.requests.surface[0] else 'feed'}): weights [{weights}], slate "
                    f"{result.slate[0].tolist()}, clicked positions {np.flatnonzero(result.clicks[0]).tolist()}, "
                    f"bought {np.flatnonzero(result.purchased[0]).tolist()}, reward {float(result.reward[0]):g}")
        k = self.sim.slate_size
        frame = np.full(((k + 1) * _BAND, _WIDTH, 3), 255, dtype=np.uint8)
        if result is None:
            return frame
        edges = np.round(np.cumsum(result.weights[0]) * _WIDTH).astype(np.int64)
        arm_of_column = np.minimum(np.searchsorted(edges, np.arange(_WIDTH), side="right"), len(edges) - 1)
        frame[1:_BAND - 1] = _ARM_COLOURS[arm_of_column % len(_ARM_COLOURS)]
        state = result.clicks[0].astype(np.int64) + result.purchased[0]  # 0 shown, 1 clicked, 2 bought
        bands = np.repeat(_SLOT_COLOURS[state], _BAND, axis=0)  # (k * BAND, 3)
        frame[_BAND:] = bands[:, None, :]
        frame[_BAND::_BAND] = 255  # a white line between positions
        return frame


_AUTORESET = """
    ## Autoreset
    None: the env does not reset itself; call ``reset()`` after ``terminated`` or ``truncated``.
    ``gymnasium.make_vec(id, num_envs=N)`` defaults to the batched simulator
    (``vectorization_mode="vector_entry_point"``, :mod:`envs.vector_env`), which replaces an ended
    episode in the same step (``AutoresetMode.SAME_STEP``: the last observation is
    ``infos["final_obs"][i]``); ``vectorization_mode="sync"`` gives N separate shops, each reset in the next
    step (Gymnasium's default, ``AutoresetMode.NEXT_STEP``).
"""


class FusionEnv(_ShopEnv):
    """One request per step: a contextual bandit over how to blend the arms.

    ## Description
    A simulated shop serves a stream of requests from shoppers who arrive, browse for a session and
    leave. Each step the agent sees the context of the next request and chooses arm weights; the shop
    blends the arms' (normalised) scores over the request's candidates, shows the top-k slate, and the
    shopper clicks, buys or leaves. The next request comes from the same shopper while the session lasts,
    then from the next arriving shopper.

    ## Observation Space
    ``Box(low, high, ({dim},), float32)``, the request context (only what a shop knows; generated from
    ``envs.context.CONTEXT_FEATURES``):

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
    The request stream never terminates and the env itself never truncates: the time limit belongs to
    the registry. ``gymnasium.make("fusionsim/Fusion-v0")`` wraps it in ``TimeLimit`` with
    ``max_episode_steps=100`` (``spec.max_episode_steps``); ``gymnasium.make(..., max_episode_steps=n)``
    truncates after n requests instead. Built directly (``FusionEnv(...)``) it has no time limit.
{autoreset}
    ## Arguments
    ``scenario`` (name, path or Scenario), ``action_mode``, ``grid_resolution`` (4), ``temperature`` (3.0),
    ``arms`` (fitted recommenders; default popularity + new arrivals), ``base`` (a folder of arms from
    ``fusionsim train-base``, used when ``arms`` is None), ``render_mode`` (None, "ansi" or "rgb_array", see
    ``RENDER_MODES``).
    ``info``: slate (k,), clicks and purchases (k,) bool per position, revenue, weights (A,), candidates
    (C,), arm_scores (A, C), request_id, session_id, day, segment, surface, session_end (the shopper left).

    ## Version History
    * v0: initial version; the time limit moved from the ``episode_requests`` argument to the registry.
    """

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "arm", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None,
                 render_mode: str | None = None) -> None:
        super().__init__(scenario, action_mode, grid_resolution, temperature, arms, base, render_mode)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        self._start(seed)
        return self.sim.contexts[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self._serve(action)
        return self.sim.contexts[0].copy(), result.reward.item(0), False, False, _info(result)


class FusionSessionEnv(_ShopEnv):
    """One shopper session per episode: sequential blending, where what is shown now changes how long the
    shopper stays (satiation, fatigue). Meant for PPO with continuous weights.

    ## Description
    Each episode follows one shopper from arrival to leaving. Each step serves one request of the
    session with the chosen arm weights. Showing the same categories again and again satiates the
    shopper and tires them, so a policy that maximises session revenue must look ahead.

    ## Observation Space
    ``Box(low, high, ({dim},), float32)``, the request context (generated from
    ``envs.context.CONTEXT_FEATURES``):

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
    scenario's ``traffic.max_session_steps`` (50 in the default scenario, 100 in long_horizon): the
    session limit is the scenario's, so the registry sets none (``spec.max_episode_steps`` is None).
    ``gymnasium.make(..., max_episode_steps=n)`` adds a ``TimeLimit`` that truncates at n if that comes
    first; the next ``reset()`` then brings a new shopper. The final observation is the context the
    session would have shown next.
{autoreset}
    ## Arguments
    ``scenario``, ``action_mode`` ("weights"), ``grid_resolution``, ``temperature``, ``arms``, ``base``,
    ``render_mode`` as in Fusion-v0. ``info`` as in Fusion-v0.

    ## Version History
    * v0: initial version.
    """

    def __init__(self, scenario: str | Scenario = "default", action_mode: str = "weights", grid_resolution: int = 4,
                 temperature: float = 3.0, arms: list[Recommender] | None = None, base: str | None = None,
                 render_mode: str | None = None) -> None:
        super().__init__(scenario, action_mode, grid_resolution, temperature, arms, base, render_mode)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if not self._start(seed) and self.sim.step_in_session[0] > 0:  # mid-session: a new shopper arrives
            self.sim.start_sessions(np.array([0]))
            self.sim.prepare_requests()
        return self.sim.contexts[0].copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        result = self._serve(action)
        terminated, truncated = result.terminated.item(0), result.truncated.item(0)
        obs = result.final_contexts[0] if (terminated or truncated) else self.sim.contexts[0]
        return obs.copy(), result.reward.item(0), terminated, truncated, _info(result)


def _specify(doc: str) -> str:
    return doc.replace("{table}", observation_table("    ")).replace("{dim}", str(CONTEXT_DIM)).replace(
        "{autoreset}", _AUTORESET)


FusionEnv.__doc__ = _specify(FusionEnv.__doc__)
FusionSessionEnv.__doc__ = _specify(FusionSessionEnv.__doc__)

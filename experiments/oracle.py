"""Reference policies found by simulation: the best single arm, the best global static blend, and the
oracle (the best static blend per context cell). Every grid point is simulated on the same seed (common
random numbers), so differences between blends are not drowned by traffic noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionsim.agents import ConstantAction
from fusionsim.agents.base import Policy, check_batch
from fusionsim.envs.context import CELL_NAMES, N_CELLS, context_cell
from fusionsim.envs.fusion import ActionMapper
from fusionsim.envs.strategies import Fusion
from fusionsim.experiments.online import run_online
from fusionsim.envs.world import World
from fusionsim.recommenders import Recommender


class CellTablePolicy(Policy):
    """A fixed action per context cell (``envs.context.context_cell``); propensity 1.

    Args:
        table: (N_CELLS,) action per cell. action_mode: how the actions are read ("arm" or "grid").
    """

    name = "cell_table"

    def __init__(self, table: list[int], action_mode: str = "grid") -> None:
        if len(table) != N_CELLS:
            raise ValueError(f"table must hold one action per context cell ({N_CELLS}); got {len(table)}")
        bad = [a for a in table if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a < 0]
        if bad:
            raise ValueError(f"table must hold integer actions >= 0; got {bad[0]!r}")
        self.table = np.asarray(table, dtype=np.int64)
        self.action_mode = action_mode

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_batch(contexts)
        return self.table[context_cell(contexts)], np.ones(len(contexts))

    def config(self) -> dict:
        return {"table": self.table.tolist(), "action_mode": self.action_mode}


@dataclass
class ActionSearch:
    """Mean reward per request of every action (a blend of the weight grid, a cascade configuration), overall
    and per context cell, each simulated on the same seed.

    ``overall`` (G,); ``by_cell`` (G, N_CELLS) (NaN where a cell got no request); ``cell_requests`` (G, N_CELLS).
    """

    overall: np.ndarray
    by_cell: np.ndarray
    cell_requests: np.ndarray

    @property
    def best_global(self) -> int:
        return int(np.argmax(self.overall))

    def oracle_table(self, min_requests: int = 200) -> np.ndarray:
        """Best action per cell; cells seen less than ``min_requests`` times take the global best."""
        scores = np.where(self.cell_requests >= min_requests, np.nan_to_num(self.by_cell, nan=-np.inf), -np.inf)
        table = np.argmax(scores, axis=0)
        return np.where(np.isfinite(scores.max(axis=0)), table, self.best_global)

    def oracle_cell_reward(self, min_requests: int = 200) -> np.ndarray:
        """Expected reward per request of the oracle in each cell (N_CELLS,)."""
        table = self.oracle_table(min_requests)
        reward = self.by_cell[table, np.arange(N_CELLS)]
        return np.where(np.isfinite(reward), reward, self.overall[self.best_global])


@dataclass
class GridSearch(ActionSearch):
    """An :class:`ActionSearch` over the points of a weight grid ``grid`` (G, A)."""

    grid: np.ndarray | None = None

    @property
    def best_single_arm(self) -> int:
        one_hot = np.flatnonzero(self.grid.max(axis=1) == 1.0)
        return int(one_hot[np.argmax(self.overall[one_hot])])

    def describe(self, arm_names: list[str]) -> dict:
        def blend(g: int) -> dict:
            return {arm: float(w) for arm, w in zip(arm_names, self.grid[g])}
        table = self.oracle_table()
        return {"best_single_arm": {"weights": blend(self.best_single_arm),
                                    "reward_per_request": float(self.overall[self.best_single_arm])},
                "best_static_blend": {"weights": blend(self.best_global),
                                      "reward_per_request": float(self.overall[self.best_global])},
                "oracle_table": {CELL_NAMES[c]: blend(int(g)) for c, g in enumerate(table)}}


def search_actions(world: World, arms: list[Recommender], decoder, n_actions: int, requests: int, seed: int,
                   slots: int = 512, fusion: Fusion | None = None) -> ActionSearch:
    """Simulate each of the ``n_actions`` actions, always taken, for ``requests`` requests on the same
    ``seed`` (common random numbers) through ``decoder`` and ``fusion`` (see ``experiments.online``)."""
    overall, by_cell, cell_requests = [], [], []
    for action in range(n_actions):
        run = run_online(world, arms, ConstantAction(action), decoder, requests, seed, slots, fusion=fusion)
        overall.append(run.mean)
        with np.errstate(invalid="ignore", divide="ignore"):
            by_cell.append(run.cell_sum / run.cell_count)
        cell_requests.append(run.cell_count)
    return ActionSearch(np.array(overall), np.array(by_cell), np.array(cell_requests))


def grid_search(world: World, arms: list[Recommender], resolution: int, requests: int, seed: int,
                slots: int = 512) -> GridSearch:
    """Simulate every point of the weight grid for ``requests`` requests on the same ``seed``."""
    mapper = ActionMapper("grid", len(arms), resolution)
    found = search_actions(world, arms, mapper, mapper.n_actions, requests, seed, slots)
    return GridSearch(found.overall, found.by_cell, found.cell_requests, grid=mapper.grid)

"""One policy on one fresh shop, step by step: the loop that the oracle, the grid searches and ``compare``
share. The policy acts through ``BatchedSimulator.serve`` (the one request path) and, when it learns, is
updated after every step with that step's rewards (delayed feedback of one step of ``slots`` requests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fusionsim.agents.base import Policy
from fusionsim.envs.context import N_CELLS, context_cell
from fusionsim.envs.simulator import BatchedSimulator
from fusionsim.envs.strategies import Fusion
from fusionsim.envs.world import World
from fusionsim.recommenders import Recommender

TAIL_SHARE = 0.2
"""The share of a run, at its end, over which a method's reward is reported (a learner has learned by then)."""

TAIL_BATCHES = 10
"""Batches of consecutive steps whose means give the interval of the tail's mean reward (batch means)."""


@dataclass
class OnlineRun:
    """What a run of ``steps`` steps of ``slots`` requests earned: ``step_rewards`` (steps,) mean reward per
    request of each step; reward sums and request counts per context cell (N_CELLS,); revenue per ended
    session."""

    step_rewards: np.ndarray
    slots: int
    cell_sum: np.ndarray
    cell_count: np.ndarray
    revenue_per_session: float

    @property
    def requests(self) -> int:
        return len(self.step_rewards) * self.slots

    @property
    def mean(self) -> float:
        return float(self.cell_sum.sum() / self.cell_count.sum())

    def tail(self) -> np.ndarray:
        """The step rewards of the last :data:`TAIL_SHARE` of the steps."""
        return self.step_rewards[int((1.0 - TAIL_SHARE) * len(self.step_rewards)):]

    @property
    def last_20pct(self) -> float:
        return float(self.tail().mean())

    def tail_interval(self, level: float = 0.95) -> tuple[float, float]:
        """Interval of the tail's mean reward per request by batch means (see :func:`batch_means_interval`)."""
        return batch_means_interval(self.tail(), level)

    def tail_difference(self, other: "OnlineRun", level: float = 0.95) -> tuple[float, tuple[float, float]]:
        """This run's tail mean minus ``other``'s, with its paired batch-means interval: both runs served the
        same shoppers on the same seed (common random numbers), so step i of one is compared with step i of
        the other, which cancels most of the traffic noise. Both runs must have the same steps."""
        if len(self.step_rewards) != len(other.step_rewards):
            raise ValueError(f"paired runs need the same steps; got {len(self.step_rewards)} and "
                             f"{len(other.step_rewards)}")
        difference = self.tail() - other.tail()
        return float(difference.mean()), batch_means_interval(difference, level)


def batch_means_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of consecutive step values: cut into :data:`TAIL_BATCHES` consecutive batches, a
    t interval over the batch means (consecutive steps share sessions; batches of many steps are close to
    independent). Fewer steps than batches: one step per batch; a single step has no interval (NaN)."""
    batches = np.array([b.mean() for b in np.array_split(values, min(TAIL_BATCHES, len(values)))])
    if len(batches) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(batches) - 1) * batches.std(ddof=1) / np.sqrt(len(batches))
    return float(batches.mean() - half), float(batches.mean() + half)


def run_online(world: World, arms: list[Recommender], policy: Policy, decoder, requests: int, seed: int,
               slots: int = 512, fusion: Fusion | None = None, learn: bool = False) -> OnlineRun:
    """Serve ``requests`` requests (whole steps of ``slots``, at least one) on a shop reset with ``seed``:
    ``policy`` acts, ``decoder`` (an ``envs.fusion.ActionMapper``, or the ``fusion`` strategy itself) turns its
    actions into the ``fusion`` stage's decisions (None: the weighted blend); with ``learn`` the policy is
    updated with each step's rewards."""
    sim = BatchedSimulator(world, arms, n_slots=slots, fusion=fusion)
    sim.reset(seed=seed)
    steps = max(1, requests // slots)
    step_rewards = np.zeros(steps)
    cell_sum, cell_count = np.zeros(N_CELLS), np.zeros(N_CELLS)
    revenue, sessions = 0.0, 0
    for i in range(steps):
        result = sim.serve(policy, decoder)
        if learn:
            policy.update(result.contexts, result.actions, result.reward)
        cells = context_cell(result.contexts)
        cell_sum += np.bincount(cells, weights=result.reward, minlength=N_CELLS)
        cell_count += np.bincount(cells, minlength=N_CELLS)
        step_rewards[i] = result.reward.mean()
        revenue += float(result.revenue.sum(dtype=np.float64))
        sessions += int((result.terminated | result.truncated).sum())
    return OnlineRun(step_rewards, slots, cell_sum, cell_count, revenue / max(sessions, 1))

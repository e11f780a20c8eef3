"""One policy on one fresh shop, step by step: the loop that the oracle, the grid searches and ``compare``
share. The policy acts through ``BatchedSimulator.serve`` (the one request path) and, when it learns, is
updated after every step with that step's rewards (delayed feedback of one step of ``slots`` requests)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from fusionsim.agents.base import Policy
from fusionsim.envs.context import N_CELLS, context_cell
from fusionsim.envs.simulator import BatchedSimulator, StepResult
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
    session; ``step_sessions`` (steps,) sessions that ended in each step (the shopper left or hit the time
    limit); ``tail_actions`` (N_CELLS, n_actions) how often each discrete action was taken in each cell over
    the tail (None unless asked for)."""

    step_rewards: np.ndarray
    slots: int
    cell_sum: np.ndarray
    cell_count: np.ndarray
    revenue_per_session: float
    step_sessions: np.ndarray
    tail_actions: np.ndarray | None = None

    @property
    def requests(self) -> int:
        return len(self.step_rewards) * self.slots

    @property
    def mean(self) -> float:
        return float(self.cell_sum.sum() / self.cell_count.sum())

    def tail(self) -> np.ndarray:
        """The step rewards of the last :data:`TAIL_SHARE` of the steps."""
        return self.step_rewards[tail_start(len(self.step_rewards)):]

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
        self._check_paired(other)
        difference = self.tail() - other.tail()
        return float(difference.mean()), batch_means_interval(difference, level)

    def _tail_sessions(self) -> tuple[np.ndarray, np.ndarray]:
        """Reward sums and ended sessions of the tail's steps."""
        start = tail_start(len(self.step_rewards))
        return self.step_rewards[start:] * self.slots, self.step_sessions[start:].astype(np.float64)

    def tail_per_session(self, level: float = 0.95) -> tuple[float, tuple[float, float]]:
        """Reward per ended session over the tail (reward earned in its steps / sessions that ended in them),
        with its batch-means interval (see :func:`ratio_residuals`)."""
        return ratio_interval(*self._tail_sessions(), level)

    def tail_difference_per_session(self, other: "OnlineRun",
                                    level: float = 0.95) -> tuple[float, tuple[float, float]]:
        """:meth:`tail_per_session` of this run minus ``other``'s, with the paired interval of the two ratios'
        per-batch residuals (same steps on the same seed, as :meth:`tail_difference`)."""
        self._check_paired(other)
        return ratio_difference(self._tail_sessions(), other._tail_sessions(), level)

    def _check_paired(self, other: "OnlineRun") -> None:
        if len(self.step_rewards) != len(other.step_rewards):
            raise ValueError(f"paired runs need the same steps; got {len(self.step_rewards)} and "
                             f"{len(other.step_rewards)}")


def tail_start(steps: int) -> int:
    """The first step of the tail (the last :data:`TAIL_SHARE`) of a run of ``steps`` steps."""
    return int((1.0 - TAIL_SHARE) * steps)


def batch_means_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of consecutive step values: cut into :data:`TAIL_BATCHES` consecutive batches, a
    t interval over the batch means (consecutive steps share sessions; batches of many steps are close to
    independent). Fewer steps than batches: one step per batch; a single step has no interval (NaN)."""
    batches = np.array([b.mean() for b in np.array_split(values, min(TAIL_BATCHES, len(values)))])
    return _t_interval(float(batches.mean()), batches - batches.mean(), level)


def ratio_residuals(values: np.ndarray, denominators: np.ndarray) -> tuple[float, np.ndarray]:
    """The ratio R = sum(values) / sum(denominators) of consecutive steps (e.g. reward per ended session),
    and its linearised residual in each of :data:`TAIL_BATCHES` consecutive batches b,
    e_b = (v_b - R d_b) / mean(d) with v_b, d_b the batch sums: the delta method's ratio-estimator variance
    is var(e) / batches, so R +- t sd(e) / sqrt(batches) is its interval. NaN when no denominator is > 0."""
    count = min(TAIL_BATCHES, len(values))
    v = np.array([b.sum() for b in np.array_split(values, count)])
    d = np.array([b.sum() for b in np.array_split(denominators, count)])
    if d.sum() <= 0:
        return float("nan"), np.full(count, np.nan)
    ratio = float(v.sum() / d.sum())
    return ratio, (v - ratio * d) / d.mean()


def ratio_interval(values: np.ndarray, denominators: np.ndarray,
                   level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """The ratio sum(values) / sum(denominators) of consecutive steps and its batch-means interval (see
    :func:`ratio_residuals`)."""
    ratio, residuals = ratio_residuals(values, denominators)
    return ratio, _t_interval(ratio, residuals, level)


def ratio_difference(mine: tuple[np.ndarray, np.ndarray], theirs: tuple[np.ndarray, np.ndarray],
                     level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """The difference of two ratios of the same consecutive steps, each given as (values, denominators) (e.g.
    two methods served on one seed), with the paired interval of their per-batch residuals
    (:func:`ratio_residuals`)."""
    (ratio, residuals), (other, other_residuals) = ratio_residuals(*mine), ratio_residuals(*theirs)
    return ratio - other, _t_interval(ratio - other, residuals - other_residuals, level)


def mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """t interval of the mean of independent values (e.g. one figure per seed); NaN for fewer than 2."""
    values = np.asarray(values, dtype=np.float64)
    center = float(values.mean()) if len(values) else float("nan")
    return _t_interval(center, values - center, level)


def _t_interval(center: float, residuals: np.ndarray, level: float) -> tuple[float, float]:
    """center +- t(level, n - 1) sd(residuals) / sqrt(n) over n batch residuals; NaN for n < 2 or a NaN."""
    if len(residuals) < 2 or not np.isfinite(residuals).all():
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(residuals) - 1) * residuals.std(ddof=1) / np.sqrt(len(residuals))
    return center - half, center + half


class StepRecorder:
    """Accumulates the :class:`OnlineRun` of a run of ``steps`` steps of ``slots`` requests, one
    :class:`StepResult` at a time (``n_actions``: count discrete actions per cell over the tail)."""

    def __init__(self, steps: int, slots: int, n_actions: int | None = None) -> None:
        self.steps, self.slots, self.n_actions, self.done = steps, slots, n_actions, 0
        self.step_rewards, self.step_sessions = np.zeros(steps), np.zeros(steps, dtype=np.int64)
        self.cell_sum, self.cell_count = np.zeros(N_CELLS), np.zeros(N_CELLS)
        self.revenue = 0.0
        self.first_tail_step = tail_start(steps)
        self.tail_actions = None if n_actions is None else np.zeros(N_CELLS * n_actions, dtype=np.int64)

    def add(self, result: StepResult) -> None:
        i = self.done
        cells = context_cell(result.contexts)
        if self.tail_actions is not None and i >= self.first_tail_step:
            self.tail_actions += np.bincount(cells * self.n_actions + result.actions, minlength=len(self.tail_actions))
        self.cell_sum += np.bincount(cells, weights=result.reward, minlength=N_CELLS)
        self.cell_count += np.bincount(cells, minlength=N_CELLS)
        self.step_rewards[i] = result.reward.mean()
        self.revenue += float(result.revenue.sum(dtype=np.float64))
        self.step_sessions[i] = int((result.terminated | result.truncated).sum())
        self.done += 1

    def run(self) -> OnlineRun:
        tail_actions = None if self.tail_actions is None else self.tail_actions.reshape(N_CELLS, self.n_actions)
        return OnlineRun(self.step_rewards, self.slots, self.cell_sum, self.cell_count,
                         self.revenue / max(int(self.step_sessions.sum()), 1), self.step_sessions, tail_actions)


def run_online(world: World, arms: list[Recommender], policy: Policy, decoder, requests: int, seed: int,
               slots: int = 512, fusion: Fusion | None = None, learn: bool = False,
               n_actions: int | None = None) -> OnlineRun:
    """Serve ``requests`` requests (whole steps of ``slots``, at least one) on a shop reset with ``seed``:
    ``policy`` acts, ``decoder`` (an ``envs.fusion.ActionMapper``, or the ``fusion`` strategy itself) turns its
    actions into the ``fusion`` stage's decisions (None: the weighted blend); with ``learn`` the policy is
    updated with each step's rewards. With ``n_actions`` (a policy of discrete actions 0 .. n_actions - 1) the
    run counts the actions taken per context cell over its tail."""
    sim = BatchedSimulator(world, arms, n_slots=slots, fusion=fusion)
    sim.reset(seed=seed)
    recorder = StepRecorder(max(1, requests // slots), slots, n_actions)
    for _ in range(recorder.steps):
        result = sim.serve(policy, decoder)
        if learn:
            policy.update(result.contexts, result.actions, result.reward)
        recorder.add(result)
    return recorder.run()

"""Fusion: turn an action into arm weights, blend the arms' scores, and pick the slate.

Blend: each arm's scores are standardised per request (z-score over the request's candidates), then
summed with the request's weights: ``blended[b, c] = sum_a w[b, a] * (s_a[b, c] - mean_a[b]) / std_a[b]``.
Slate: the top-k candidates by blended score, each item at most once.
"""

from __future__ import annotations

import functools
import itertools

import numpy as np

STD_FLOOR = 1e-6
"""Added to each arm's per-request standard deviation (an arm with constant scores adds nothing)."""


def simplex_grid(n_arms: int, resolution: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/resolution, ..., 1} that sum to 1: (n_points, n_arms) float32,
    one-hot points first (in arm order), then the rest in lexicographic order."""
    if n_arms < 1:
        raise ValueError(f"n_arms must be >= 1; got {n_arms}")
    if resolution < 1:
        raise ValueError(f"grid resolution must be >= 1; got {resolution}")
    points = [p for p in itertools.product(range(resolution + 1), repeat=n_arms) if sum(p) == resolution]
    points.sort(key=lambda p: (max(p) != resolution, [-x for x in p]))
    return np.asarray(points, dtype=np.float32) / resolution


def weights_from_continuous(action: np.ndarray, temperature: float = 3.0) -> np.ndarray:
    """Map actions in [-1, 1]^A (B, A) onto the simplex with a softmax of ``temperature * action``."""
    z = temperature * np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def blend(arm_scores: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Blended scores (B, C) float32 from per-arm scores [(B, C)] * A and weights (B, A).

    Only the ranking within a request matters downstream, so the per-request constant
    ``-sum_a w_a mean_a / std_a`` is dropped; when a single arm carries all the weight of every request
    its raw scores are returned (a positive per-request rescaling does not change the ranking).
    """
    active = np.nonzero(weights.any(axis=0))[0]
    if len(active) == 1:
        return arm_scores[active[0]]
    c = arm_scores[0].shape[1]
    blended = np.zeros_like(arm_scores[0])
    term = np.empty_like(blended)
    for a in active:
        s = arm_scores[a]
        mean = np.add.reduce(s, axis=1) / c
        var = np.maximum(np.einsum("bc,bc->b", s, s) / c - mean * mean, 0.0)
        np.multiply(s, (weights[:, a] / (np.sqrt(var) + STD_FLOOR))[:, None], out=term)
        blended += term
    return blended


_INT32_MIN = np.iinfo(np.int32).min


@functools.lru_cache(maxsize=8)
def _position_bits(c: int) -> tuple[int, np.ndarray]:
    """Bits needed for a candidate position, and the positions' key bits (C - 1 ... 0) as int32."""
    return max(1, (c - 1).bit_length()), np.arange(c - 1, -1, -1, dtype=np.int32)


def select_slate(candidates: np.ndarray, blended: np.ndarray, k: int, excluded: np.ndarray | None = None,
                 ) -> np.ndarray:
    """Top-``k`` items (B, k) int32 by ``blended`` (B, C) scores, best first, never an ``excluded`` (B, C)
    candidate. Candidates must be distinct within a request (the candidate stage guarantees it).

    Each score is turned into an int32 with the same order (IEEE bits, negatives flipped) whose lowest
    ceil(log2 C) bits are replaced by the candidate's position (earlier positions win ties), so one
    int32 partition finds the top k. Scores closer than about 2^(ceil(log2 C) - 23) relative (3e-5
    for C = 200) count as tied.
    """
    b, c = blended.shape
    bits, low_bits = _position_bits(c)
    keys = np.ascontiguousarray(blended, dtype=np.float32).view(np.int32)
    keys = keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))
    keys &= np.int32(-(1 << bits))
    keys |= low_bits
    if excluded is not None:
        keys[excluded] = _INT32_MIN
    top = np.partition(keys, c - k, axis=1)[:, c - k:]
    top.sort(axis=1)
    position = (c - 1) - (top[:, ::-1] & np.int32((1 << bits) - 1))
    return candidates.reshape(-1)[position + (np.arange(b) * c)[:, None]]


ACTION_MODES = ("arm", "grid", "weights", "simplex")


class ActionMapper:
    """How a policy's action becomes arm weights (B, A) on the simplex.

    Modes: ``arm`` (Discrete(A): all weight on one arm), ``grid`` (Discrete(G): a point of
    :func:`simplex_grid` at ``grid_resolution``), ``weights`` (Box([-1, 1]^A): softmax of
    ``temperature * action``, the mode for PPO), ``simplex`` (Box([0, 1]^A): the action divided by its
    sum, uniform when it sums to 0; for fixed blends).
    """

    def __init__(self, mode: str, n_arms: int, grid_resolution: int = 4, temperature: float = 3.0) -> None:
        if mode not in ACTION_MODES:
            raise ValueError(f"action_mode = {mode!r} is not allowed: must be one of {list(ACTION_MODES)}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature}")
        self.mode, self.n_arms, self.temperature = mode, n_arms, float(temperature)
        self.grid = simplex_grid(n_arms, grid_resolution) if mode == "grid" else np.eye(n_arms, dtype=np.float32)

    @property
    def discrete(self) -> bool:
        return self.mode in ("arm", "grid")

    @property
    def n_actions(self) -> int:
        """Number of discrete actions (arms or grid points); the action width A in continuous modes."""
        return len(self.grid) if self.discrete else self.n_arms

    def space(self):
        import gymnasium as gym

        if self.discrete:
            return gym.spaces.Discrete(self.n_actions)
        low = -1.0 if self.mode == "weights" else 0.0
        return gym.spaces.Box(low=low, high=1.0, shape=(self.n_arms,), dtype=np.float32)

    def to_weights(self, actions: np.ndarray) -> np.ndarray:
        """Weights (B, A) float32 for a batch of actions: (B,) ints or (B, A) floats."""
        actions = np.asarray(actions)
        if self.discrete:
            index = actions.astype(np.int64).reshape(-1)
            if index.size and (index.min() < 0 or index.max() >= len(self.grid)):
                bad = index[(index < 0) | (index >= len(self.grid))][0]
                raise ValueError(f"action {bad} is out of range: must be in [0, {len(self.grid)})")
            return self.grid[index]
        actions = actions.reshape(-1, self.n_arms).astype(np.float32)
        if self.mode == "weights":
            return weights_from_continuous(actions, self.temperature)
        clipped = np.clip(actions, 0.0, None)
        total = clipped.sum(axis=1, keepdims=True)
        return np.where(total > 0, clipped / np.where(total > 0, total, 1.0), np.float32(1.0 / self.n_arms))

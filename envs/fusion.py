"""Fusion: turn an action into arm weights, blend the arms' scores, and pick the slate.

Blend: each arm's scores are standardised per request (z-score over the request's candidates), then
summed with the request's weights: ``blended[b, c] = sum_a w[b, a] * (s_a[b, c] - mean_a[b]) / std_a[b]``.
Slate: the top-k candidates by blended score, each item at most once.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

STD_FLOOR = 1e-6
"""Added to each arm's per-request standard deviation (an arm with constant scores adds nothing)."""


class ActionError(ValueError):
    """An invalid action, or action setting (mode, grid resolution, temperature): the message is one line
    naming the value, where it is (row, arm) and what is allowed."""


MAX_GRID_POINTS = 100_000
"""Most points a weight grid may have (4 arms at resolution 80 have 91,881; 2 arms allow resolution 99,999):
a policy keeps statistics per point, and a typo in ``grid_resolution`` should fail, not build for hours."""


def grid_size(n_arms: int, resolution: int) -> int:
    """Number of points of :func:`simplex_grid`: C(resolution + n_arms - 1, n_arms - 1)."""
    return math.comb(resolution + n_arms - 1, n_arms - 1)


def simplex_grid(n_arms: int, resolution: int) -> np.ndarray:
    """All weight vectors with entries in {0, 1/resolution, ..., 1} that sum to 1: (n_points, n_arms) float32,
    one-hot points first (in arm order), then the rest in lexicographic order. At most
    :data:`MAX_GRID_POINTS` points (see :func:`grid_size`)."""
    if not _is_int(n_arms) or n_arms < 1:
        raise ActionError(f"n_arms = {_plain(n_arms)!r} is not allowed: must be an integer >= 1")
    if not _is_int(resolution) or resolution < 1:
        raise ActionError(f"grid_resolution = {_plain(resolution)!r} is not allowed: must be an integer >= 1")
    n_points = grid_size(n_arms, resolution)
    if n_points > MAX_GRID_POINTS:
        raise ActionError(f"grid_resolution = {resolution} is not allowed with {n_arms} arms: the grid would have "
                         f"{_count_text(n_points)} points (C(resolution + arms - 1, arms - 1)); must have at most "
                         f"{MAX_GRID_POINTS:,}")
    # Stars and bars: each choice of n_arms - 1 bar positions among resolution + n_arms - 1 slots is a point.
    bars = np.fromiter(itertools.chain.from_iterable(itertools.combinations(range(resolution + n_arms - 1),
                                                                            n_arms - 1)),
                       dtype=np.int64, count=n_points * (n_arms - 1)).reshape(n_points, n_arms - 1)
    edges = np.concatenate([np.full((n_points, 1), -1), bars, np.full((n_points, 1), resolution + n_arms - 1)],
                           axis=1)
    points = np.diff(edges, axis=1) - 1
    not_one_hot = points.max(axis=1) != resolution
    order = np.lexsort([*(-points[:, ::-1]).T, not_one_hot])  # last key first: one-hots, then by -p0, -p1, ...
    return points[order].astype(np.float32) / np.float32(resolution)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _count_text(n: int) -> str:
    return f"{n:,}" if n < 10**15 else f"10^{int(n.bit_length() * math.log10(2))}"


def weights_from_continuous(action: np.ndarray, temperature: float = 3.0) -> np.ndarray:
    """Map actions in [-1, 1]^A (B, A) onto the simplex with a softmax of ``temperature * action``; values
    outside [-1, 1] are clipped. Actions must be finite (:class:`ActionMapper` checks them)."""
    action = np.asarray(action)
    if action.dtype.kind != "f":
        action = action.astype(np.float32)
    z = np.maximum(action, -1.0)  # clipped in the given precision, so the float32 cast cannot overflow
    np.minimum(z, 1.0, out=z)
    z = z.astype(np.float32, copy=False)
    z *= np.float32(temperature)
    z -= np.maximum.reduce(z, axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= np.add.reduce(z, axis=-1, keepdims=True)
    return z


def blend(arm_scores: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Blended scores (B, C) float32 from per-arm scores [(B, C)] * A and weights (B, A).

    Only the ranking within a request matters downstream, so the per-request constant
    ``-sum_a w_a mean_a / std_a`` is dropped; when a single arm carries all the weight of every request
    its raw scores are returned (a positive per-request rescaling does not change the ranking).
    """
    # arms with weight in some request (a count per column: cheaper than a reduction over few rows)
    active = [a for a in range(weights.shape[1]) if np.count_nonzero(weights[:, a])]
    if len(active) == 1:
        return arm_scores[active[0]]
    c = np.array(arm_scores[0].shape[1], dtype=np.float32)  # 0-d float32 constants: the numbers Python
    blended = np.zeros_like(arm_scores[0])                   # scalars would give, at less cost per operation
    for a in active:
        s = arm_scores[a]
        mean = np.add.reduce(s, axis=1) / c
        var = np.maximum(np.einsum("bc,bc->b", s, s) / c - mean * mean, _ZERO)
        blended += s * (weights[:, a] / (np.sqrt(var) + _STD_FLOOR))[:, None]
    return blended


_ZERO, _STD_FLOOR = np.array(0.0, dtype=np.float32), np.array(STD_FLOOR, dtype=np.float32)


# Bit-twiddling constants of select_slate as 0-d int32 arrays (cheaper per operation than Python ints).
_INT32_MAX = np.array(np.iinfo(np.int32).max, dtype=np.int32)
_SIGN_SHIFT, _LOW_31_BITS = np.array(31, dtype=np.int32), np.array(0x7FFFFFFF, dtype=np.int32)


@dataclass(frozen=True)
class _SlateKeys:
    """Per-shape constants of :func:`select_slate` for B requests x C candidates, with p = ceil(log2 C)
    position bits: ``score_bits`` (0-d int32) masks a key's upper 32 - p bits, ``position_bits`` (0-d
    int32) its lowest p bits, ``flip`` (1, C) int32 the upper bits set and candidate c's position code
    c + 2^p - C in the lowest bits, ``row_offset`` (B, k) int32 what turns a position code of row b into
    a flat index into the (B, C) candidates, b C - (2^p - C). (Operands shaped as the arrays they meet
    take NumPy's fast path when B = 1.)"""

    score_bits: np.ndarray
    position_bits: np.ndarray
    flip: np.ndarray
    row_offset: np.ndarray


@functools.lru_cache(maxsize=4)  # row_offset holds B x k int32: keep few shapes
def _slate_keys(b: int, c: int, k: int) -> _SlateKeys:
    bits = position_bits(c)
    spare = (1 << bits) - c
    return _SlateKeys(score_bits=np.array(-(1 << bits), dtype=np.int32),
                      position_bits=np.array((1 << bits) - 1, dtype=np.int32),
                      flip=(np.int32(-(1 << bits)) | (np.arange(c, dtype=np.int32) + spare))[None, :],
                      row_offset=np.repeat((np.arange(b, dtype=np.int32) * c - spare)[:, None], k, axis=1))


def position_bits(c: int) -> int:
    """Low bits of a ranking key that hold a candidate's position among ``c``: ceil(log2 c), at least 1."""
    return max(1, (c - 1).bit_length())


def ranking_keys(scores: np.ndarray) -> np.ndarray:
    """Distinct int32 keys (B, C) in the order in which :func:`select_slate` ranks ``scores`` (B, C): the
    float32 bits made order-preserving (negatives flipped), their lowest :func:`position_bits` bits replaced
    by ``C - 1 - position``, so each key is unique and an earlier position wins a tie. (``select_slate``
    builds their complement in place, for speed.)"""
    c = scores.shape[1]
    bits = position_bits(c)
    keys = np.ascontiguousarray(scores, dtype=np.float32).view(np.int32)
    keys = keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))
    keys &= np.int32(-(1 << bits))
    keys |= np.arange(c - 1, -1, -1, dtype=np.int32)
    return keys


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
    const = _slate_keys(b, c, k)
    score_bits = np.ascontiguousarray(blended, dtype=np.float32).view(np.int32)
    # key = ((s ^ ((s >> 31) & 0x7FFFFFFF)) & score_bits) | (C - 1 - position) orders like the score; its
    # complement, built in one new array by xor with ``flip``, sorts the best first (complementing the
    # low bits turns C - 1 - position into the position code position + 2^p - C)
    keys = np.right_shift(score_bits, _SIGN_SHIFT)
    keys &= _LOW_31_BITS
    keys ^= score_bits
    keys &= const.score_bits
    keys ^= const.flip
    if excluded is not None:
        np.copyto(keys, _INT32_MAX, where=excluded)
    keys.partition(k - 1, axis=1)
    top = keys[:, :k]
    top.sort(axis=1)
    position_code = np.bitwise_and(top, const.position_bits)
    return candidates.take(position_code + const.row_offset)  # take without an axis indexes the flattened array


ACTION_MODES = ("arm", "grid", "weights", "simplex")

_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class ActionMapper:
    """How a policy's action becomes arm weights (B, A) on the simplex.

    Modes: ``arm`` (Discrete(A): all weight on one arm), ``grid`` (Discrete(G): a point of
    :func:`simplex_grid` at ``grid_resolution``, at most :data:`MAX_GRID_POINTS` points), ``weights``
    (Box([-1, 1]^A): softmax of ``temperature * action``, the mode for PPO; values outside [-1, 1] are
    clipped), ``simplex`` (Box([0, 1]^A): the action divided by its sum; for fixed blends).

    :meth:`decide` refuses, with an :class:`ActionError` (a ``ValueError``) naming the value, its row
    and what is allowed: discrete actions that are not integers (floats such as 1.7 or 2.0, bools,
    strings) or are outside [0, n_actions); continuous actions that are not finite; ``simplex`` rows with
    a negative entry or whose sum is not positive and finite as float32 (any other row works: only its
    proportions matter); any batch not of shape (B,) (discrete) or (B, A) (continuous). The common case
    costs one dtype check and one reduction over the batch; the full scan runs only to name a bad entry.
    """

    def __init__(self, mode: str, n_arms: int, grid_resolution: int = 4, temperature: float = 3.0) -> None:
        if mode not in ACTION_MODES:
            raise ActionError(f"action_mode = {mode!r} is not allowed: must be one of {list(ACTION_MODES)}")
        if not _is_int(n_arms) or n_arms < 1:
            raise ActionError(f"n_arms = {_plain(n_arms)!r} is not allowed: must be an integer >= 1")
        if not (isinstance(temperature, (int, float, np.integer, np.floating))
                and not isinstance(temperature, (bool, np.bool_)) and 0 < temperature <= _FLOAT32_MAX):
            raise ActionError(f"temperature = {_plain(temperature)!r} is not allowed: must be a finite float32 "
                             "number > 0")
        self.mode, self.n_arms, self.temperature = mode, int(n_arms), float(temperature)
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

    def decide(self, actions: np.ndarray) -> np.ndarray:
        """Weights (B, A) float32 for a batch of actions: (B,) integers (``arm``, ``grid``) or (B, A) numbers
        (``weights``, ``simplex``). Invalid actions raise :class:`ActionError` (see the class docstring)."""
        actions = np.asarray(actions)
        if self.discrete:
            return self.grid.take(self._check_indices(actions), axis=0)
        kind = actions.dtype.kind
        if kind not in "fiu" or actions.shape[1:] != (self.n_arms,) or actions.ndim != 2:
            self._refuse_continuous_layout(actions)
        if self.mode == "weights":
            # One reduction finds any non-finite entry (nan and inf propagate into the sum); a sum that
            # overflows from finite entries only costs the full scan, which then finds nothing.
            if not math.isfinite(np.add.reduce(actions, axis=None)):
                self._check_finite(actions, actions, "finite numbers (values outside [-1, 1] are clipped)")
            return weights_from_continuous(actions, self.temperature)
        if kind == "f" and actions.dtype.itemsize > 4:
            with np.errstate(over="ignore"):  # values beyond the float32 range become inf and are refused below
                x = actions.astype(np.float32)
        else:
            x = np.asarray(actions, dtype=np.float32)
        total = np.add.reduce(x, axis=1, keepdims=True)
        if x.size and not (x.min() >= 0.0 and total.min() > 0.0 and total.max() <= _FLOAT32_MAX):
            self._refuse_simplex(actions, x, total[:, 0])
        return x / total

    def _check_indices(self, actions: np.ndarray) -> np.ndarray:
        """``actions`` as valid indices into :attr:`grid`, or ActionError: one dtype check, one reduction."""
        n = len(self.grid)
        allowed = f"{self.mode} actions must be integers in [0, {n})"
        kind = actions.dtype.kind
        if kind not in "iu":
            raise ActionError(f"{allowed}; got dtype {actions.dtype}{_example(actions)}")
        if actions.ndim != 1:
            raise ActionError(f"{allowed}, one per request in an array of shape (B,); got shape {actions.shape}")
        if actions.size:
            # Viewed as unsigned, a negative index is huge, so one max() checks both ends of the range.
            as_unsigned = actions.view(_UNSIGNED[actions.dtype.itemsize]) if kind == "i" else actions
            if as_unsigned.max() >= n:
                row = int(np.flatnonzero((actions < 0) | (actions >= n))[0])
                raise ActionError(f"{allowed}; got {actions[row].item()} at row {row}")
        return actions

    def _refuse_continuous_layout(self, actions: np.ndarray) -> None:
        allowed = f"{self.mode} actions must be numbers in an array of shape (B, {self.n_arms})"
        if actions.dtype.kind not in "fiu":
            raise ActionError(f"{allowed}; got dtype {actions.dtype}{_example(actions)}")
        raise ActionError(f"{allowed}, one row of {self.n_arms} per request; got shape {actions.shape}")

    def _check_finite(self, actions: np.ndarray, values: np.ndarray, allowed: str) -> None:
        """Raise naming the first entry of ``values`` (``actions`` or their float32 cast) that is not finite."""
        bad = ~np.isfinite(values)
        if bad.any():
            row, arm = (int(i) for i in np.argwhere(bad)[0])
            raise ActionError(f"{self.mode} actions must be {allowed}; got {actions[row, arm].item()!r} "
                             f"at row {row}, arm {arm}")

    def _refuse_simplex(self, actions: np.ndarray, x: np.ndarray, total: np.ndarray) -> None:
        allowed = "finite float32 numbers >= 0 with a positive sum in each row"
        self._check_finite(actions, x, allowed)
        negative = x < 0
        if negative.any():
            row, arm = (int(i) for i in np.argwhere(negative)[0])
            raise ActionError(f"simplex actions must be {allowed}; got {actions[row, arm].item()!r} "
                             f"at row {row}, arm {arm}")
        row = int(np.flatnonzero(~((total > 0) & (total <= _FLOAT32_MAX)))[0])
        raise ActionError(f"simplex actions must be {allowed}; got a row summing to {float(total[row])!r} "
                         f"at row {row}")


def _example(actions: np.ndarray) -> str:
    """`` (<first value> at row 0)`` for a message, or nothing for an empty array."""
    return f" ({actions.reshape(-1)[:1].tolist()[0]!r} at row 0)" if actions.size else ""


def _plain(value: object) -> object:
    """A numpy scalar as the Python number it holds (so messages read ``nan``, not ``np.float64(nan)``)."""
    return value.item() if isinstance(value, np.generic) else value

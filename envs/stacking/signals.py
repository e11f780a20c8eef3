"""What a stacker sees of each candidate: every arm's standardised score and rank within the request.

For arm a and candidate c of a request with C candidates:

- ``zscore``: ``(s_a[c] - mean_a) / (std_a + STD_FLOOR)``, mean and standard deviation over the request's C
  candidates, computed in float32 as :func:`envs.fusion.blend` standardises;
- ``rank``: the candidate's place in the arm's own ranking of the C candidates, 0 = the arm's best, by the
  order-preserving int32 keys of :func:`ranking_keys` (scores closer than about 3e-5 relative count as
  tied, and ties go to the earlier candidate position). The model reads it as the discount
  ``1 / log2(2 + rank)`` in (0, 1].

The same numbers are logged for the shown items (``envs.logs``: ``zscore_<arm>``, ``rank_<arm>``) and
computed for every candidate when a stacker serves, by the same function, so a model trained on a log
sees at serving time exactly what it was trained on.
"""

from __future__ import annotations

import functools

import numpy as np

from fusionsim.envs.fusion import STD_FLOOR

SIGNALS_PER_ARM = 2
"""Channels per arm in a signal array: the z-score, then the rank discount."""


def signal_names(arm_names: list[str]) -> list[str]:
    """Names of the channels of :func:`candidate_signals`, in order: ``<arm>_zscore``, ``<arm>_rank`` per arm."""
    return [f"{arm}_{kind}" for arm in arm_names for kind in ("zscore", "rank")]


def rank_discount(rank: np.ndarray) -> np.ndarray:
    """``1 / log2(2 + rank)`` as float32, for ranks >= 0 of any shape."""
    return (1.0 / np.log2(2.0 + np.asarray(rank, dtype=np.float32))).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _position_bits(c: int) -> tuple[int, np.ndarray]:
    """Bits needed for a candidate position, and the positions' key bits (C - 1 ... 0) as int32."""
    return max(1, (c - 1).bit_length()), np.arange(c - 1, -1, -1, dtype=np.int32)


def ranking_keys(scores: np.ndarray) -> np.ndarray:
    """Distinct int32 keys (B, C) in the order of ``scores`` (B, C): the float32 bits made order-preserving
    (negatives flipped), their lowest ceil(log2 C) bits replaced by ``C - 1 - position`` so that each key is
    unique and an earlier position wins a tie."""
    c = scores.shape[1]
    bits, low_bits = _position_bits(c)
    keys = np.ascontiguousarray(scores, dtype=np.float32).view(np.int32)
    keys = keys ^ ((keys >> 31) & np.int32(0x7FFFFFFF))
    keys &= np.int32(-(1 << bits))
    keys |= low_bits
    return keys


def _zscores(s: np.ndarray) -> np.ndarray:
    """z-scores (B, C) float32 of float32 scores (B, C), standardised over each request's candidates."""
    c = s.shape[1]
    mean = np.add.reduce(s, axis=1) / np.float32(c)
    var = np.maximum(np.einsum("bc,bc->b", s, s) / np.float32(c) - mean * mean, np.float32(0.0))
    return (s - mean[:, None]) * (np.float32(1.0) / (np.sqrt(var) + np.float32(STD_FLOOR)))[:, None]


def ranks_and_zscores(arm_scores: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate's rank (A, B, C) int32 and z-score (A, B, C) float32 under each arm, from per-arm
    scores [(B, C)] * A."""
    b, c = arm_scores[0].shape
    bits, _ = _position_bits(c)
    ranks = np.empty((len(arm_scores), b, c), dtype=np.int32)
    zscores = np.empty((len(arm_scores), b, c), dtype=np.float32)
    places = np.broadcast_to(np.arange(c, dtype=np.int32), (b, c))
    for a, scores in enumerate(arm_scores):
        s = np.asarray(scores, dtype=np.float32)
        zscores[a] = _zscores(s)
        # sorted distinct keys carry their candidate's position in their low bits: one int32 sort ranks them
        best_first = np.sort(ranking_keys(s), axis=1)[:, ::-1]
        np.put_along_axis(ranks[a], (c - 1) - (best_first & np.int32((1 << bits) - 1)), places, axis=1)
    return ranks, zscores


def shown_ranks_and_zscores(arm_scores: list[np.ndarray], positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranks (A, B, k) int32 and z-scores (A, B, k) float32 of the candidates at ``positions`` (B, k) only
    (what a log keeps of the shown items): the same numbers as :func:`ranks_and_zscores` at those positions,
    a rank counted as the number of candidates whose key is higher, without sorting all C."""
    ranks = np.empty((len(arm_scores),) + positions.shape, dtype=np.int32)
    zscores = np.empty((len(arm_scores),) + positions.shape, dtype=np.float32)
    for a, scores in enumerate(arm_scores):
        s = np.asarray(scores, dtype=np.float32)
        keys = ranking_keys(s)
        shown = np.take_along_axis(keys, positions, axis=1)
        np.add.reduce(keys[:, None, :] > shown[:, :, None], axis=2, dtype=np.int32, out=ranks[a])
        zscores[a] = np.take_along_axis(_zscores(s), positions, axis=1)
    return ranks, zscores


def signals(ranks: np.ndarray, zscores: np.ndarray) -> np.ndarray:
    """(B, n, 2A) float32 signals (channel order of :func:`signal_names`) from ranks and z-scores (A, B, n)
    of n candidates per request: all of them when serving, the shown ones when read from a log."""
    a, b, n = ranks.shape
    out = np.empty((b, n, SIGNALS_PER_ARM * a), dtype=np.float32)
    out[:, :, 0::2] = np.moveaxis(zscores, 0, -1)
    out[:, :, 1::2] = np.moveaxis(rank_discount(ranks), 0, -1)
    return out


def candidate_signals(arm_scores: list[np.ndarray]) -> np.ndarray:
    """Signals (B, C, 2A) of every candidate, from per-arm scores [(B, C)] * A: the numbers of
    ``signals(*ranks_and_zscores(arm_scores))``, written straight into the output (the rank discounts come
    from a table, scattered by the sort's positions), as the serving path needs them."""
    b, c = arm_scores[0].shape
    bits, _ = _position_bits(c)
    out = np.empty((b, c, SIGNALS_PER_ARM * len(arm_scores)), dtype=np.float32)
    discounts = np.broadcast_to(_discount_table(c), (b, c))
    for a, scores in enumerate(arm_scores):
        s = np.asarray(scores, dtype=np.float32)
        out[:, :, 2 * a] = _zscores(s)
        best_first = np.sort(ranking_keys(s), axis=1)[:, ::-1]
        np.put_along_axis(out[:, :, 2 * a + 1], (c - 1) - (best_first & np.int32((1 << bits) - 1)), discounts, axis=1)
    return out


@functools.lru_cache(maxsize=8)
def _discount_table(c: int) -> np.ndarray:
    """:func:`rank_discount` of ranks 0 .. C - 1 (C,) float32."""
    return rank_discount(np.arange(c))

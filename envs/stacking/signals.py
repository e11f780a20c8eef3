"""What a stacker sees of each candidate: every arm's standardised score and rank within the request.

For arm a and candidate c of a request with C candidates:

- ``zscore``: ``(s_a[c] - mean_a) / (std_a + STD_FLOOR)``, mean and standard deviation over the request's C
  candidates, computed in float32 as :func:`envs.fusion.blend` standardises;
- ``rank``: the candidate's place in the arm's own ranking of the C candidates, 0 = the arm's best, by the
  order-preserving int32 keys of :func:`envs.fusion.ranking_keys`, the order slates are picked in (scores
  closer than about 3e-5 relative count as tied, and ties go to the earlier candidate position). The model
  reads it as the discount ``1 / log2(2 + rank)`` in (0, 1].

The same numbers are logged for the shown items (``envs.logs``: ``zscore_<arm>``, ``rank_<arm>``) and
computed for every candidate when a stacker serves, by the same function, so a model trained on a log
sees at serving time exactly what it was trained on.
"""

from __future__ import annotations

import functools

import numpy as np

from fusionsim.envs.fusion import STD_FLOOR, position_bits, ranking_keys

SIGNALS_PER_ARM = 2
"""Channels per arm in a signal array: the z-score, then the rank discount."""


def signal_names(arm_names: list[str]) -> list[str]:
    """Names of the channels of :func:`candidate_signals`, in order: ``<arm>_zscore``, ``<arm>_rank`` per arm."""
    return [f"{arm}_{kind}" for arm in arm_names for kind in ("zscore", "rank")]


def rank_discount(rank: np.ndarray) -> np.ndarray:
    """``1 / log2(2 + rank)`` as float32, for ranks >= 0 of any shape."""
    return (1.0 / np.log2(2.0 + np.asarray(rank, dtype=np.float32))).astype(np.float32)


def _zscores(s: np.ndarray) -> np.ndarray:
    """z-scores (B, C) float32 of float32 scores (B, C), standardised over each request's candidates."""
    c = s.shape[1]
    mean = np.add.reduce(s, axis=1) / np.float32(c)
    var = np.maximum(np.einsum("bc,bc->b", s, s) / np.float32(c) - mean * mean, np.float32(0.0))
    return (s - mean[:, None]) * (np.float32(1.0) / (np.sqrt(var) + np.float32(STD_FLOOR)))[:, None]


def shown_ranks_and_zscores(arm_scores: list[np.ndarray], positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ranks (A, B, k) int32 and z-scores (A, B, k) float32 of the candidates at ``positions`` (B, k) (what
    a log keeps of the shown items): a rank is the number of the request's candidates whose key is higher."""
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
    """Signals (B, C, 2A) of every candidate, from per-arm scores [(B, C)] * A: the numbers
    ``signals(*shown_ranks_and_zscores(arm_scores, positions))`` gives for all positions, written straight
    into the output (sorted distinct keys carry their candidate's position in their low bits, so one int32
    sort ranks them, and the rank discounts come from a table scattered by those flat positions)."""
    b, c = arm_scores[0].shape
    bits = position_bits(c)
    out = np.empty((b, c, SIGNALS_PER_ARM * len(arm_scores)), dtype=np.float32)
    # row r's last flat index; the low bits of a key hold (C - 1) - the candidate's position
    row_ends = np.arange(1, b + 1, dtype=np.intp)[:, None] * c - 1
    worst_first = _tiled_discounts(b, c)
    discount = np.empty(b * c, dtype=np.float32)
    for a, scores in enumerate(arm_scores):
        s = np.asarray(scores, dtype=np.float32)
        out[:, :, 2 * a] = _zscores(s)
        ascending = np.sort(ranking_keys(s), axis=1)
        ascending &= np.int32((1 << bits) - 1)
        flat = row_ends - ascending  # intp: a scatter by intp indices needs no conversion
        discount[flat.ravel()] = worst_first
        out[:, :, 2 * a + 1] = discount.reshape(b, c)
    return out


@functools.lru_cache(maxsize=8)
def _tiled_discounts(b: int, c: int) -> np.ndarray:
    """(B * C,) float32: for each of B requests, the rank discounts of an ascending sort (worst first)."""
    return np.tile(_discount_table(c)[::-1], b)


@functools.lru_cache(maxsize=8)
def _discount_table(c: int) -> np.ndarray:
    """:func:`rank_discount` of ranks 0 .. C - 1 (C,) float32."""
    return rank_discount(np.arange(c))

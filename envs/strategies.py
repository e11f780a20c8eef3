"""Fusion strategies: the stage of the request path that turns the arms' scores into a ranking.

A strategy takes the candidates (B, C), which of them may not be shown (B, C), every arm's scores
[(B, C)] * A, the request contexts (B, D) and the per-request decisions the policy's actions became, and
returns the slate (B, k) and the arm weights (B, A) that ordered it:

- :class:`WeightedBlend` (the default): a weighted sum of the arms' standardised scores
  (``envs.fusion.blend``); its decisions are the weights, which an ``envs.fusion.ActionMapper`` decodes from
  the policy's actions.
- :class:`Stacking`: a learned meta-ranker (``envs.stacking``) scores every candidate; one action (0).
- :class:`Cascade`: stage one ranks the candidates by one blend and keeps the top N; stage two orders
  those N by another blend or by a stacker. A cascade holds a list of :class:`CascadeConfig`; the policy's
  action is the index of the configuration to use for the request (a constant for a grid-searched cascade,
  a bandit's choice per context for an adaptive one).
- :class:`ShuffledSlate` and :class:`RerankedSlate`: another strategy's slate in a random order (a position
  randomisation bucket), or re-ordered by one arm or a stacker (what off-policy evaluation of a logged slate
  can estimate).

A *decoder* turns a batch of the policy's actions into the strategy's decisions with ``decide(actions)``
and refuses bad ones with a one-line :class:`envs.fusion.ActionError`: an ``ActionMapper`` for the blend;
stacking and cascades decode their own actions. The batched simulator's ``serve(policy, decoder)`` calls it.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from fusionsim.envs.fusion import ActionError, blend, select_slate
from fusionsim.envs.stacking.signals import shown_ranks_and_zscores
from fusionsim.envs.stacking.stacker import Stacker


class FusionError(ValueError):
    """A fusion strategy that cannot be built as asked; the message is one line naming the value."""


class Fusion(abc.ABC):
    """The fusion stage (see the module docstring)."""

    name: str

    @abc.abstractmethod
    def rank(self, candidates: np.ndarray, excluded: np.ndarray, arm_scores: list[np.ndarray], contexts: np.ndarray,
             decisions: object, slate_size: int) -> tuple[np.ndarray, np.ndarray]:
        """The slate (B, k) int32 item ids, best first, never an excluded candidate, and the arm weights
        (B, A) float32 of the blend that ordered it (NaN rows where a stacker ordered it)."""


class WeightedBlend(Fusion):
    """The weighted blend (``envs.fusion.blend``), top-k by blended score. Decisions: weights (B, A) on the
    simplex (any float array of that shape; rows are used as given)."""

    name = "blend"

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        weights = np.asarray(decisions, dtype=np.float32)
        if weights.shape != (len(candidates), len(arm_scores)):
            raise ValueError(f"weights must have shape ({len(candidates)}, {len(arm_scores)}); got {weights.shape}")
        return select_slate(candidates, blend(arm_scores, weights), slate_size, excluded), weights


def _check_index_actions(actions: np.ndarray, n: int, what: str) -> np.ndarray:
    """``actions`` as (B,) int64 indices in [0, n), or an ActionError naming the first bad one."""
    actions = np.asarray(actions)
    allowed = f"{what} actions must be integers in [0, {n})"
    if actions.dtype.kind not in "iu" or actions.ndim != 1:
        raise ActionError(f"{allowed}, one per request in an array of shape (B,); got dtype {actions.dtype} and "
                          f"shape {actions.shape}")
    bad = np.flatnonzero((actions < 0) | (actions >= n))
    if len(bad):
        raise ActionError(f"{allowed}; got {actions[bad[0]].item()} at row {int(bad[0])}")
    return actions.astype(np.int64, copy=False)


class Stacking(Fusion):
    """A trained :class:`envs.stacking.Stacker` ranks every candidate; the only action is 0."""

    name = "stacking"
    n_actions = 1

    def __init__(self, stacker: Stacker) -> None:
        self.stacker = stacker

    def decide(self, actions: np.ndarray) -> np.ndarray:
        return _check_index_actions(actions, 1, "stacking")

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        slate = select_slate(candidates, self.stacker.score(arm_scores, contexts), slate_size, excluded)
        return slate, np.full((len(candidates), len(arm_scores)), np.nan, dtype=np.float32)


class ShuffledSlate(Fusion):
    """Another strategy's slate in a uniformly random order per request: a position randomisation
    experiment, as shops run to measure position bias. With the order independent of the items, the
    examination of each position can be learned apart from how good the items put there are (the
    stacker's position term, ``envs.stacking.stacker``). The orders come from this strategy's own Generator
    (``seed``), so the shop's random draws are those of the same run without shuffling.

    Args:
        inner: the strategy that chooses the items (and decodes the decisions). seed: of the orders.
    """

    def __init__(self, inner: Fusion, seed: int | None = None) -> None:
        self.inner, self.name = inner, f"shuffled {inner.name}"
        self.rng = np.random.default_rng(seed)

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        slate, weights = self.inner.rank(candidates, excluded, arm_scores, contexts, decisions, slate_size)
        order = np.argsort(self.rng.random(slate.shape), axis=1)
        return np.take_along_axis(slate, order, axis=1), weights


STACKER = "stacker"
"""The stage-two orderer that names the cascade's stacker instead of a blend."""


def rerank_order(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    """The order (B, k) of a slate's k items re-ranked by ``scores`` (B, k), higher first, ties to the smaller
    item id (``items`` (B, k)): column j holds the index of the item shown at position j. The simulator and
    off-policy evaluation of a logged slate both order by it, so they agree item for item."""
    return np.lexsort((items, -np.asarray(scores, dtype=np.float64)), axis=1)


class RerankedSlate(Fusion):
    """Another strategy's slate, its items re-ordered by one arm or by a stacker: the ranking policy that
    off-policy evaluation of a logged slate can estimate (``experiments.slate_ope``), since it shows the
    logged items, only in another order. An arm orders its items by their rank among all the request's
    candidates (``envs.stacking.signals``), the stacker by its score; :func:`rerank_order` breaks ties.
    The weights returned are the inner strategy's: those of the blend that chose the items (the order is the
    orderer's). The inner strategy is given the candidates' positions (0 .. C - 1) in place of their ids, as
    a cascade's stage two is, so it must use them only to pick (every strategy here does).

    Args:
        inner: the strategy that chooses the items (and whose decisions the policy's actions decode to).
        orderer: an arm index, or :data:`STACKER`. stacker: the stacker, when ``orderer`` names it.
    """

    def __init__(self, inner: Fusion, orderer: int | str, stacker: Stacker | None = None) -> None:
        if orderer == STACKER and stacker is None:
            raise FusionError("a slate re-ranked by the stacker needs a stacker")
        self.inner, self.orderer, self.stacker = inner, orderer, stacker
        self.name = f"{inner.name} re-ranked by " + (STACKER if orderer == STACKER else f"arm {orderer}")

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        b, c = candidates.shape
        places = np.ascontiguousarray(np.broadcast_to(np.arange(c, dtype=np.int32), (b, c)))
        shown, weights = self.inner.rank(places, excluded, arm_scores, contexts, decisions, slate_size)
        if self.orderer == STACKER:
            scores = self.stacker.score(arm_scores, contexts, shown)
        else:
            scores = -shown_ranks_and_zscores([arm_scores[self.orderer]], shown)[0][0]
        items = np.take_along_axis(candidates, shown, axis=1)
        return np.take_along_axis(items, rerank_order(scores, items), axis=1), weights


@dataclass(frozen=True)
class CascadeConfig:
    """One cascade: stage one orders the candidates by the blend ``first`` (A arm weights) and keeps the top
    ``keep``; stage two orders those by the blend ``second`` (A arm weights) or by the stacker
    (``second = "stacker"``), and the top k of them form the slate."""

    first: tuple[float, ...]
    keep: int
    second: tuple[float, ...] | str

    def label(self, arm_names: list[str]) -> str:
        """E.g. ``popularity>50>content`` or ``0.5 mf + 0.5 content>100>stacker``."""
        def side(weights: tuple[float, ...] | str) -> str:
            if isinstance(weights, str):
                return weights
            total = sum(weights)
            parts = [(w / total, name) for w, name in zip(weights, arm_names) if w > 0]
            return parts[0][1] if len(parts) == 1 else " + ".join(f"{w:g} {name}" for w, name in parts)
        return f"{side(self.first)}>{self.keep}>{side(self.second)}"

    @classmethod
    def from_label(cls, label: str, arm_names: list[str]) -> "CascadeConfig":
        """The cascade of a single-arm label ``<arm>><N>><arm or stacker>`` (what :meth:`label` writes for single
        arms); a FusionError saying what is allowed."""
        parts = label.split(">")
        if len(parts) != 3 or parts[0] not in arm_names or parts[2] not in (*arm_names, STACKER) \
                or not parts[1].isdigit():
            raise FusionError(f"must be <arm>><N>><arm or {STACKER}>, e.g. {arm_names[0]}>50>{STACKER}, with arms "
                              f"among {', '.join(arm_names)}")
        eye = np.eye(len(arm_names))

        def weights(arm: str) -> tuple[float, ...]:
            return tuple(eye[arm_names.index(arm)].tolist())

        return cls(weights(parts[0]), int(parts[1]), STACKER if parts[2] == STACKER else weights(parts[2]))


class Cascade(Fusion):
    """Filter, then re-rank, with one of ``configs`` per request (the policy's action is its index).

    Args:
        configs: the cascades to choose from. n_arms: A. n_candidates: C. slate_size: k.
        stacker: the stacker of the configurations whose stage two is ``"stacker"``.

    Every ``keep`` must be in [k, C] (a cascade that keeps fewer items than the slate shows, or more than
    there are candidates, is refused), every blend must have A non-negative weights with a positive sum.
    """

    name = "cascade"

    def __init__(self, configs: list[CascadeConfig], n_arms: int, n_candidates: int, slate_size: int,
                 stacker: Stacker | None = None) -> None:
        if not configs:
            raise FusionError("a cascade needs at least one configuration")
        self.configs = list(configs)
        self.stacker = stacker
        self._first, self._second = [], []
        for i, config in enumerate(self.configs):
            if isinstance(config.keep, bool) or not isinstance(config.keep, (int, np.integer)) \
                    or not slate_size <= config.keep <= n_candidates:
                raise FusionError(f"cascade N (keep) = {config.keep!r} is not allowed in configuration {i}: must be "
                                  f"an integer from the slate size {slate_size} to the number of candidates "
                                  f"{n_candidates}")
            self._first.append(self._weights(config.first, n_arms, i, "stage one"))
            if config.second == STACKER:
                if stacker is None:
                    raise FusionError(f"cascade configuration {i} orders stage two by the stacker, but no stacker "
                                      "was given")
                self._second.append(None)
            else:
                self._second.append(self._weights(config.second, n_arms, i, "stage two"))

    @property
    def n_actions(self) -> int:
        return len(self.configs)

    @staticmethod
    def _weights(weights: object, n_arms: int, index: int, stage: str) -> np.ndarray:
        if isinstance(weights, str):
            raise FusionError(f"cascade configuration {index}: {stage} = {weights!r} is not allowed: must be "
                              f"{n_arms} arm weights" + (f" or '{STACKER}'" if stage == "stage two" else ""))
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n_arms,) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
            raise FusionError(f"cascade configuration {index}: {stage} weights {list(weights)} are not allowed: "
                              f"must be {n_arms} finite numbers >= 0 with a positive sum")
        return (w / w.sum()).astype(np.float32)

    def decide(self, actions: np.ndarray) -> np.ndarray:
        return _check_index_actions(actions, len(self.configs), "cascade")

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        b, c = candidates.shape
        slate = np.empty((b, slate_size), dtype=np.int32)
        weights = np.empty((b, len(arm_scores)), dtype=np.float32)
        places = np.broadcast_to(np.arange(c, dtype=np.int32), (b, c))
        in_use = np.unique(decisions).tolist()
        for index in in_use:  # one pass per configuration in use, not per request
            rows = slice(None) if len(in_use) == 1 else decisions == index
            scores = [s[rows] for s in arm_scores]
            n = len(scores[0])
            first = np.broadcast_to(self._first[index], (n, len(arm_scores)))
            kept = select_slate(np.ascontiguousarray(places[rows]), blend(scores, first), self.configs[index].keep,
                                excluded[rows])
            dropped = np.ones((n, c), dtype=bool)
            np.put_along_axis(dropped, kept, False, axis=1)
            dropped |= excluded[rows]
            second = self._second[index]
            if second is None:  # the stacker scores the kept candidates only; the dropped ones are never shown
                ordering = np.zeros((n, c), dtype=np.float32)
                np.put_along_axis(ordering, kept, self.stacker.score(scores, contexts[rows], kept), axis=1)
                weights[rows] = np.nan
            else:
                ordering = blend(scores, np.broadcast_to(second, (n, len(arm_scores))))
                weights[rows] = second
            slate[rows] = select_slate(candidates[rows], ordering, slate_size, dropped)
        return slate, weights

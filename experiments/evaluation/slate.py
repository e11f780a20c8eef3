"""Off-policy estimators for slates (rankings of len_list positions), ported from the Open Bandit Pipeline
(obp 0.5.7, ``obp.ope.estimators_slate``): the same class names, dataclass fields in the same order
(``len_list`` first; Cascade-DR also ``n_unique_action``), ``estimator_name`` values, and
``estimate_policy_value`` / ``estimate_interval`` arguments in obp's order with ``**kwargs`` for the rest, so
obp's ``SlateOffPolicyEvaluation``, which passes every array to every estimator, drives these classes too.
Besides obp's seven there is :class:`SlatePseudoInverse` (Swaminathan et al. 2017) for a logging policy that
fills each position independently.

Array conventions. Every array is flat, one row per (slate, position): n_rows = n_slates * len_list. A slate's
rows are contiguous and in position order, and every slate has len_list rows:

* ``slate_id`` (n_rows,) integers: the slate (round) of each row; each slate's rows form one block.
* ``position`` (n_rows,) integers: 0, 1, ..., len_list - 1 down each slate's rows.
* ``reward`` (n_rows,) finite: r_i(l), the reward at position l of slate i.
* ``action`` (n_rows,) integers in [0, n_unique_action): a_i(l), the item at position l (Cascade-DR).
* ``pscore`` (n_rows,) in (0, 1]: pi_b(s_i | x_i), the logging policy's probability of the whole slate,
  the same on every row of the slate; ``evaluation_policy_pscore`` (n_rows,) in [0, 1]: pi_e(s_i | x_i).
* ``pscore_item_position`` (n_rows,) in (0, 1]: pi_b(a_i(l) at l | x_i), the marginal probability that the
  logging policy puts this row's item at this position; ``evaluation_policy_pscore_item_position`` in [0, 1].
* ``pscore_cascade`` (n_rows,) in (0, 1]: pi_b(a_i(1:l) | x_i), the probability of the slate's first l items
  (non-increasing down a slate); ``evaluation_policy_pscore_cascade`` (n_rows,) in [0, 1].
* ``q_hat`` (n_rows * n_unique_action,) flat as obp takes it, or (n_rows, n_unique_action):
  Q-hat_l(x_i, a_i(1:l-1), a) for every item a (Cascade-DR).
* ``evaluation_policy_action_dist`` (same shape as ``q_hat``): pi_e(a | x_i, a_i(1:l-1)) for every item a,
  summing to 1 over a on each row (Cascade-DR).

Logging propensities must be in (0, 1]; evaluation ones may be 0 (the evaluation policy never shows that slate).

The policy value is the expected sum of rewards over a slate's positions, V(pi_e) = E[sum_l r(l)], as obp's.
Every estimate is a mean over slates of a per-slate contribution; with positions l = 1..L (L = len_list):

* SIPS:   mean_i sum_l w_i r_i(l),               w_i = pi_e(s_i) / pi_b(s_i)
* IIPS:   mean_i sum_l w_i(l) r_i(l),            w_i(l) = pi_e(a_i(l) at l) / pi_b(a_i(l) at l)
* RIPS:   mean_i sum_l w_i(1:l) r_i(l),          w_i(1:l) = pi_e(a_i(1:l)) / pi_b(a_i(1:l))
* self-normalised: SNSIPS divides by mean_i w_i; SNIIPS and SNRIPS divide each position's term by that
  position's mean weight, sum_l [sum_i w_i(l) r_i(l) / sum_i w_i(l)]
* Cascade-DR: mean_i sum_l [w_i(1:l) (r_i(l) - Q-hat_l(a_i(1:l))) + w_i(1:l-1) sum_a pi_e(a | a_i(1:l-1))
  Q-hat_l(a_i(1:l-1), a)], w_i(1:0) = 1
* PI (independent logging): mean_i (sum_l w_i(l) - (L - 1)) sum_l r_i(l)

``estimate_interval`` is a percentile bootstrap over slates (a slate's rows stay together), vectorised over
resamples with :func:`~fusionsim.experiments.evaluation.estimators.bootstrap_means`; it returns obp's keys
(``"mean"``, ``"95.0% CI (lower)"``, ``"95.0% CI (upper)"``). Its draws are not obp's, and the self-normalised
estimators recompute their normalisers in every resample (obp resamples per-slate terms normalised once), so
intervals agree with obp's up to Monte-Carlo error for the plain estimators and differ for the self-normalised
ones (often narrower: the normaliser moves with the weighted rewards); point estimates agree with obp's.

Stricter than obp: ``position`` must be in row order within each slate, every slate must have len_list rows,
and ``slate_id`` need not be non-negative. Bad input raises :class:`OPEInputError` with a one-line message
naming the array, the first bad row and what is allowed.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fusionsim.experiments.evaluation.estimators import (OPEInputError, OPEInputTypeError, _first_bad,
                                                         contiguous_blocks, flat_arrays, percentile_interval)

__all__ = ["SLATE_ESTIMATORS", "BaseSlateInverseProbabilityWeighting", "BaseSlateOffPolicyEstimator",
           "SelfNormalizedSlateIndependentIPS", "SelfNormalizedSlateRewardInteractionIPS",
           "SelfNormalizedSlateStandardIPS", "SlateCascadeDoublyRobust", "SlateIndependentIPS", "SlatePseudoInverse",
           "SlateRewardInteractionIPS", "SlateStandardIPS", "check_slate_inputs"]

CASCADE_RTOL = 1e-12
"""A cascade propensity may exceed the one above it by this relative amount (rounding) before it is an error."""

ACTION_DIST_ATOL = 1e-6
"""How far from 1 a row of ``evaluation_policy_action_dist`` may sum (as the discrete estimators' check)."""

CASCADE_BLOCK_ROWS = 8192
"""Cascade-DR reads its per-item arrays in blocks of about this many rows (whole slates), so that its
temporaries stay small: on 10M rows, whole-array temporaries spent more time in page faults than in arithmetic."""


def _check_count(name: str, value: object) -> None:
    """``value`` must be an integer >= 1 (a TypeError for a non-integer, as obp's check_scalar)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise OPEInputTypeError(f"{name} must be an integer >= 1; got {value!r} ({type(value).__name__})")
    if value < 1:
        raise OPEInputError(f"{name} must be an integer >= 1; got {value}")


def _slate_layout(slate_id: np.ndarray, position: np.ndarray) -> tuple[int, int]:
    """(n_slates, rows per slate) after checking that each slate is one block of rows, that every slate has
    the same number of rows and that ``position`` counts 0, 1, ... down each slate's rows."""
    n = len(slate_id)
    starts = contiguous_blocks(slate_id, "slate_id", "slate")
    ids = slate_id[starts]
    lengths = np.diff(np.append(starts, n))
    k = int(lengths[0])
    if (lengths != k).any():
        expected = np.arange(n) - np.repeat(starts, lengths)
        if (position != expected).any():  # a position out of order explains the odd slate best
            _raise_position(slate_id, position, expected, _first_bad(position != expected))
        block = _first_bad(lengths != k)
        raise OPEInputError(f"every slate must have as many rows as the first ({k}, one per position); slate_id "
                            f"{ids[block]} at row {starts[block]} has {lengths[block]}")
    bad = position.reshape(len(starts), k) != np.arange(k)
    if bad.any():
        row = _first_bad(bad.ravel())
        _raise_position(slate_id, position, np.arange(n) % k, row)
    return len(starts), k


def _raise_position(slate_id: np.ndarray, position: np.ndarray, expected: np.ndarray, row: int) -> None:
    raise OPEInputError(f"position must be 0, 1, 2, ... in row order within each slate; got {position[row]} at "
                        f"row {row} (slate_id {slate_id[row]}, expected {expected[row]})")


def _check_probabilities(name: str, array: np.ndarray, zero_allowed: bool) -> None:
    ok = ((array >= 0) if zero_allowed else (array > 0)) & (array <= 1)  # nan fails both
    if not ok.all():
        row = _first_bad(~ok)
        allowed = "[0, 1]" if zero_allowed else "(0, 1]"
        raise OPEInputError(f"{name} must be in {allowed}; got {float(array[row])} at row {row}")


def check_slate_inputs(estimator_name: str, len_list: int, arrays: dict[str, object],
                       logging: tuple[str, ...] = (), evaluation: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Validate flat slate arrays and return them as (n_slates, len_list) arrays.

    ``arrays`` maps each argument's name to its value, in the estimator's argument order, and holds
    ``slate_id``, ``position`` and ``reward`` (and ``action`` for Cascade-DR); ``logging`` names the logging
    propensities among them (in (0, 1]), ``evaluation`` the evaluation ones (in [0, 1]). Checks, in order:
    each array given and 1-D; one value per row of ``slate_id``; at least one row; ``slate_id``, ``position``
    and ``action`` integers; each slate one contiguous block of rows; every slate as long as the first;
    ``position`` 0, 1, ... in row order within each slate; slates of ``len_list`` rows; ``reward`` finite;
    propensities in range.
    """
    checked = flat_arrays(estimator_name, arrays, "slate_id", "slate and position", ("slate_id", "position", "action"))
    n_slates, k = _slate_layout(checked["slate_id"], checked["position"])
    if k != len_list:
        raise OPEInputError(f"len_list is {len_list} but the slates have {k} rows each (positions 0..{k - 1}); "
                            f"give len_list={k}")
    for name in ("reward", *logging, *evaluation):
        checked[name] = checked[name].astype(np.float64, copy=False)
    reward = checked["reward"]
    if not np.isfinite(reward).all():
        row = _first_bad(~np.isfinite(reward))
        raise OPEInputError(f"reward must be finite; got {reward[row]} at row {row}")
    for name in logging:
        _check_probabilities(name, checked[name], zero_allowed=False)
    for name in evaluation:
        _check_probabilities(name, checked[name], zero_allowed=True)
    return {name: array.reshape(n_slates, k) for name, array in checked.items()}


def _check_same_in_slate(name: str, array: np.ndarray) -> None:
    """A whole-slate propensity: every row of a slate (a row of ``array``, (n_slates, len_list)) the same."""
    bad = array != array[:, :1]
    if bad.any():
        row = _first_bad(bad.ravel())
        first = row - row % array.shape[1]
        raise OPEInputError(f"{name} must be the same on every row of a slate (the whole-slate propensity); got "
                            f"{array.flat[row]} at row {row}, {array.flat[first]} on its slate's first row {first}")


def _check_non_increasing(name: str, array: np.ndarray) -> None:
    """A cascade propensity pi(a(1:l)): non-increasing down each slate (up to CASCADE_RTOL)."""
    bad = array[:, 1:] > array[:, :-1]
    if bad.any():
        bad &= array[:, 1:] > array[:, :-1] * (1 + CASCADE_RTOL)
    if bad.any():
        index = _first_bad(bad.ravel())
        row = index // (array.shape[1] - 1) * array.shape[1] + index % (array.shape[1] - 1) + 1
        raise OPEInputError(f"{name} must not increase down a slate (it is the propensity of the slate's first l "
                            f"items); got {array.flat[row]} at row {row} after {array.flat[row - 1]} at row {row - 1}")


def _check_per_item(name: str, value: object, n_rows: int, n_unique_action: int) -> np.ndarray:
    """``q_hat`` or ``evaluation_policy_action_dist``: flat (n_rows * n_unique_action,) or 2-D, as (n_rows, A)."""
    array = np.asarray(value, dtype=np.float64)
    if array.shape not in ((n_rows * n_unique_action,), (n_rows, n_unique_action)):
        raise OPEInputError(f"{name} must have n_rows * n_unique_action = {n_rows * n_unique_action} values (flat, "
                            f"as obp takes it) or shape ({n_rows}, {n_unique_action}); got shape {array.shape}")
    return array.reshape(n_rows, n_unique_action)


def _cascade_q_terms(q: np.ndarray, dist: np.ndarray, action: np.ndarray, offset: int) -> tuple[np.ndarray, ...]:
    """For a block of rows (q, dist: (n, A); action: (n,)) whose first row is row ``offset`` of the input:
    sum_a pi_e(a) q_hat(a) and q_hat at the logged action, both (n,), after checking the block's
    ``evaluation_policy_action_dist`` (probabilities summing to 1) and ``q_hat`` (finite) rows."""
    sums = dist @ np.ones(dist.shape[1])  # a matrix-vector product: the fastest row sum here
    if not dist.min() >= 0 or not (np.abs(sums - 1.0) <= ACTION_DIST_ATOL).all():  # min is nan if any is
        bad = ~(np.isfinite(dist) & (dist >= 0)).all(axis=1)
        if bad.any():
            row = _first_bad(bad)
            raise OPEInputError(f"evaluation_policy_action_dist must hold probabilities (finite, >= 0); row "
                                f"{offset + row} has {dist[row][~(np.isfinite(dist[row]) & (dist[row] >= 0))][0]}")
        row = _first_bad(np.abs(sums - 1.0) > ACTION_DIST_ATOL)
        raise OPEInputError(f"evaluation_policy_action_dist must sum to 1 over the {dist.shape[1]} actions of each "
                            f"row; row {offset + row} sums to {sums[row]}")
    expected_q = np.einsum("na,na->n", dist, q)  # not finite where q is not (0 * nan and 0 * inf are nan)
    if not np.isfinite(expected_q).all():
        bad = ~np.isfinite(q).all(axis=1)
        if bad.any():
            raise OPEInputError(f"q_hat must be finite; row {offset + _first_bad(bad)} is not")
    index = np.arange(0, q.size, q.shape[1])
    index += action
    return expected_q, np.take(q, index)  # q_hat at the logged action: a flat take is the fastest gather here


@dataclass
class BaseSlateOffPolicyEstimator(abc.ABC):
    """One slate estimator: ``estimate_policy_value`` (a float) and ``estimate_interval`` (a bootstrap CI).

    Subclasses give the per-slate arrays (:meth:`_components`) and how their means make the estimate
    (:meth:`_combine`); ``len_list`` (obp's field) is the number of positions in a slate, an integer >= 1.
    """

    len_list: int

    def __post_init__(self) -> None:
        _check_count("len_list", self.len_list)

    @abc.abstractmethod
    def _components(self, **arrays: object) -> tuple[np.ndarray, ...]:
        """Per-slate arrays (n_slates,) whose means :meth:`_combine` turns into the estimate."""

    def _combine(self, *means: np.ndarray) -> np.ndarray:
        """The estimate from the means of the per-slate arrays (default: the single mean)."""
        return means[0]

    def _value(self, **arrays: object) -> float:
        return float(self._combine(*(c.mean() for c in self._components(**arrays))))

    def _interval(self, alpha: float, n_bootstrap_samples: int, random_state, **arrays: object) -> dict[str, float]:
        return percentile_interval(self._components(**arrays), self._combine, alpha, n_bootstrap_samples,
                                   random_state)


@dataclass
class BaseSlateInverseProbabilityWeighting(BaseSlateOffPolicyEstimator):
    """Slate IPS with one kind of propensity, ``_pscore`` (``pscore``, ``pscore_item_position`` or
    ``pscore_cascade``) and ``evaluation_policy_<that>``: weights w = evaluation / logging propensity per row."""

    _pscore: ClassVar[str] = "pscore"

    def _weights(self, slate_id, reward, position, pscore, evaluation_policy_pscore) -> tuple[np.ndarray, np.ndarray]:
        """(reward, w), each (n_slates, len_list), after the checks."""
        logging, evaluation = self._pscore, f"evaluation_policy_{self._pscore}"
        arrays = check_slate_inputs(self.estimator_name, self.len_list,
                                    {"slate_id": slate_id, "reward": reward, "position": position, logging: pscore,
                                     evaluation: evaluation_policy_pscore}, logging=(logging,),
                                    evaluation=(evaluation,))
        if logging == "pscore":
            _check_same_in_slate(logging, arrays[logging])
            _check_same_in_slate(evaluation, arrays[evaluation])
        elif logging == "pscore_cascade":
            _check_non_increasing(logging, arrays[logging])
            _check_non_increasing(evaluation, arrays[evaluation])
        return arrays["reward"], arrays[evaluation] / arrays[logging]

    def _components(self, **arrays):
        reward, w = self._weights(**arrays)
        return ((w * reward).sum(axis=1),)

    def _estimate(self, slate_id, reward, position, pscore, evaluation_policy_pscore) -> float:
        return self._value(slate_id=slate_id, reward=reward, position=position, pscore=pscore,
                           evaluation_policy_pscore=evaluation_policy_pscore)

    def _estimate_interval(self, slate_id, reward, position, pscore, evaluation_policy_pscore, alpha,
                           n_bootstrap_samples, random_state) -> dict[str, float]:
        return self._interval(alpha, n_bootstrap_samples, random_state, slate_id=slate_id, reward=reward,
                              position=position, pscore=pscore, evaluation_policy_pscore=evaluation_policy_pscore)


@dataclass
class SlateStandardIPS(BaseSlateInverseProbabilityWeighting):
    """Standard slate IPS (SIPS; McInerney et al. 2020, Eq. 1): no assumption on how rewards depend on the
    slate, V = mean_i sum_l w_i r_i(l) with w_i = pi_e(s_i | x_i) / pi_b(s_i | x_i), the whole-slate weight.

    ``len_list`` (positions per slate), ``estimator_name`` = "sips" (obp's fields).

    James McInerney, Brian Brost, Praveen Chandar, Rishabh Mehrotra, Ben Carterette. "Counterfactual
    Evaluation of Slate Recommendations with Sequential Reward Interactions", KDD 2020.
    """

    estimator_name: str = "sips"

    def estimate_policy_value(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                              pscore: np.ndarray, evaluation_policy_pscore: np.ndarray, **kwargs) -> float:
        """The estimated expected sum of rewards over a slate under the evaluation policy.

        slate_id, reward, position (n_rows,) as the module docstring says; pscore (n_rows,) in (0, 1] =
        pi_b(s_i | x_i) and evaluation_policy_pscore (n_rows,) in [0, 1] = pi_e(s_i | x_i), each the same on
        every row of a slate. ``**kwargs`` (what obp's SlateOffPolicyEvaluation passes besides) is ignored.
        """
        return self._estimate(slate_id, reward, position, pscore, evaluation_policy_pscore)

    def estimate_interval(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray, pscore: np.ndarray,
                          evaluation_policy_pscore: np.ndarray, alpha: float = 0.05, n_bootstrap_samples: int = 10000,
                          random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over slates: ``{"mean", "95.0% CI (lower)", "95.0% CI (upper)"}`` (obp's keys;
        the level follows ``alpha``). Arrays as in ``estimate_policy_value``; ``n_bootstrap_samples``
        resamples drawn from ``random_state`` (None, an int, a Generator or a RandomState)."""
        return self._estimate_interval(slate_id, reward, position, pscore, evaluation_policy_pscore, alpha,
                                       n_bootstrap_samples, random_state)


@dataclass
class SlateIndependentIPS(BaseSlateInverseProbabilityWeighting):
    """Independent slate IPS (IIPS; Li et al. 2018, McInerney et al. 2020 Eq. 2): assumes the reward at a
    position depends only on the item there (item-position model),
    V = mean_i sum_l w_i(l) r_i(l) with w_i(l) = pi_e(a_i(l) at l | x_i) / pi_b(a_i(l) at l | x_i).

    ``len_list``, ``estimator_name`` = "iips" (obp's fields).

    Shuai Li, Yasin Abbasi-Yadkori, Branislav Kveton, S. Muthukrishnan, Vishwa Vinay, Zheng Wen. "Offline
    Evaluation of Ranking Policies with Click Models", KDD 2018.
    """

    _pscore: ClassVar[str] = "pscore_item_position"
    estimator_name: str = "iips"

    def estimate_policy_value(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                              pscore_item_position: np.ndarray, evaluation_policy_pscore_item_position: np.ndarray,
                              **kwargs) -> float:
        """The estimated expected sum of rewards over a slate under the evaluation policy.

        slate_id, reward, position (n_rows,) as the module docstring says; pscore_item_position (n_rows,) in
        (0, 1] = pi_b(a_i(l) at l | x_i), evaluation_policy_pscore_item_position (n_rows,) in [0, 1] =
        pi_e(a_i(l) at l | x_i). ``**kwargs`` is ignored.
        """
        return self._estimate(slate_id, reward, position, pscore_item_position, evaluation_policy_pscore_item_position)

    def estimate_interval(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                          pscore_item_position: np.ndarray, evaluation_policy_pscore_item_position: np.ndarray,
                          alpha: float = 0.05, n_bootstrap_samples: int = 10000, random_state=None,
                          **kwargs) -> dict[str, float]:
        """Percentile bootstrap over slates, obp's keys; arrays as in ``estimate_policy_value``."""
        return self._estimate_interval(slate_id, reward, position, pscore_item_position,
                                       evaluation_policy_pscore_item_position, alpha, n_bootstrap_samples,
                                       random_state)


@dataclass
class SlateRewardInteractionIPS(BaseSlateInverseProbabilityWeighting):
    """Reward-interaction slate IPS (RIPS; McInerney et al. 2020, Eq. 3-4): assumes the reward at position l
    depends only on the items at positions 1..l (cascade model),
    V = mean_i sum_l w_i(1:l) r_i(l) with w_i(1:l) = pi_e(a_i(1:l) | x_i) / pi_b(a_i(1:l) | x_i).

    ``len_list``, ``estimator_name`` = "rips" (obp's fields).

    McInerney et al., "Counterfactual Evaluation of Slate Recommendations with Sequential Reward
    Interactions", KDD 2020.
    """

    _pscore: ClassVar[str] = "pscore_cascade"
    estimator_name: str = "rips"

    def estimate_policy_value(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                              pscore_cascade: np.ndarray, evaluation_policy_pscore_cascade: np.ndarray,
                              **kwargs) -> float:
        """The estimated expected sum of rewards over a slate under the evaluation policy.

        slate_id, reward, position (n_rows,) as the module docstring says; pscore_cascade (n_rows,) in (0, 1]
        = pi_b(a_i(1:l) | x_i) and evaluation_policy_pscore_cascade (n_rows,) in [0, 1] = pi_e(a_i(1:l) | x_i),
        each non-increasing down a slate. ``**kwargs`` is ignored.
        """
        return self._estimate(slate_id, reward, position, pscore_cascade, evaluation_policy_pscore_cascade)

    def estimate_interval(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                          pscore_cascade: np.ndarray, evaluation_policy_pscore_cascade: np.ndarray,
                          alpha: float = 0.05, n_bootstrap_samples: int = 10000, random_state=None,
                          **kwargs) -> dict[str, float]:
        """Percentile bootstrap over slates, obp's keys; arrays as in ``estimate_policy_value``."""
        return self._estimate_interval(slate_id, reward, position, pscore_cascade, evaluation_policy_pscore_cascade,
                                       alpha, n_bootstrap_samples, random_state)


@dataclass
class SelfNormalizedSlateStandardIPS(SlateStandardIPS):
    """Self-normalised SIPS (SNSIPS): V = [mean_i sum_l w_i r_i(l)] / mean_i w_i, w_i the whole-slate weight
    (obp divides by the mean weight over rows, the same thing since every slate has len_list rows).

    ``len_list``, ``estimator_name`` = "snsips". Biased but consistent (Swaminathan and Joachims 2015).
    """

    estimator_name: str = "snsips"

    def _components(self, **arrays):
        reward, w = self._weights(**arrays)
        return (w * reward).sum(axis=1), w[:, 0]

    def _combine(self, weighted_reward, weight):
        return weighted_reward / weight


class _PerPositionSelfNormalization:
    """Self-normalisation per position: V = sum_l [sum_i w_i(l) r_i(l) / sum_i w_i(l)] (obp's SNIIPS, SNRIPS)."""

    def _components(self, **arrays):
        reward, w = self._weights(**arrays)
        return *(w * reward).T, *w.T

    def _combine(self, *means):
        k = len(means) // 2
        return sum(means[l] / means[k + l] for l in range(k))


@dataclass
class SelfNormalizedSlateIndependentIPS(_PerPositionSelfNormalization, SlateIndependentIPS):
    """Self-normalised IIPS (SNIIPS): V = sum_l [sum_i w_i(l) r_i(l) / sum_i w_i(l)], w_i(l) the item-position
    weight; each position's term is divided by that position's mean weight.

    ``len_list``, ``estimator_name`` = "sniips".
    """

    estimator_name: str = "sniips"


@dataclass
class SelfNormalizedSlateRewardInteractionIPS(_PerPositionSelfNormalization, SlateRewardInteractionIPS):
    """Self-normalised RIPS (SNRIPS): V = sum_l [sum_i w_i(1:l) r_i(l) / sum_i w_i(1:l)], w_i(1:l) the
    top-down prefix weight; each position's term is divided by that position's mean weight.

    ``len_list``, ``estimator_name`` = "snrips".
    """

    estimator_name: str = "snrips"


@dataclass
class SlateCascadeDoublyRobust(BaseSlateOffPolicyEstimator):
    """Cascade doubly robust (Cascade-DR; Kiyohara et al. 2022, Section 3.1): RIPS with the Q-function
    estimate as a control variate. With w_i(1:l) = pi_e(a_i(1:l) | x_i) / pi_b(a_i(1:l) | x_i), w_i(1:0) = 1,

        V = mean_i sum_l [ w_i(1:l) (r_i(l) - Q-hat_l(x_i, a_i(1:l)))
                           + w_i(1:l-1) sum_a pi_e(a | x_i, a_i(1:l-1)) Q-hat_l(x_i, a_i(1:l-1), a) ],

    where Q-hat_l(x, a(1:l)) estimates Q_l(x, a(1:l)) = E[sum_{l' >= l} r(l') | x, a(1:l)] with the later
    positions filled by pi_e (obp's SlateRegressionModel fits it backwards from the last position). Under the
    cascade assumption (the reward at l depends only on x and a(1:l)) and correct propensities it is unbiased
    for any Q-hat; with Q-hat = Q only the rewards' own noise is left: with noise-free rewards every slate
    contributes exactly sum_a pi_e(a | x_i) Q_1(x_i, a), the value of pi_e at x_i.
    ``evaluation_policy_action_dist`` must be the conditionals behind ``evaluation_policy_pscore_cascade``
    (the ratio of consecutive cascade propensities is its entry at the logged item); that is not checked.

    Fields (obp's): ``len_list``; ``n_unique_action`` (items, an integer >= 1); ``estimator_name`` = "cascade-dr".

    Haruka Kiyohara, Yuta Saito, Tatsuya Matsuhiro, Yusuke Narita, Nobuyuki Shimizu, Yasuo Yamamoto. "Doubly
    Robust Off-Policy Evaluation for Ranking Policies under the Cascade Behavior Model", WSDM 2022.
    """

    n_unique_action: int
    estimator_name: str = "cascade-dr"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_count("n_unique_action", self.n_unique_action)

    def _components(self, slate_id, action, reward, position, pscore_cascade, evaluation_policy_pscore_cascade,
                    q_hat, evaluation_policy_action_dist):
        arrays = check_slate_inputs(self.estimator_name, self.len_list,
                                    {"slate_id": slate_id, "action": action, "reward": reward, "position": position,
                                     "pscore_cascade": pscore_cascade,
                                     "evaluation_policy_pscore_cascade": evaluation_policy_pscore_cascade},
                                    logging=("pscore_cascade",), evaluation=("evaluation_policy_pscore_cascade",))
        _check_non_increasing("pscore_cascade", arrays["pscore_cascade"])
        _check_non_increasing("evaluation_policy_pscore_cascade", arrays["evaluation_policy_pscore_cascade"])
        action = arrays["action"].ravel()
        n_actions = self.n_unique_action
        if action.min() < 0 or action.max() >= n_actions:
            row = _first_bad((action < 0) | (action >= n_actions))
            raise OPEInputError(f"action must be integers in [0, {n_actions}) (n_unique_action = {n_actions}); "
                                f"got {action[row]} at row {row}")
        for name, value in (("q_hat", q_hat), ("evaluation_policy_action_dist", evaluation_policy_action_dist)):
            if value is None:
                raise OPEInputError(f"{self.estimator_name} needs {name}; got None")
        n_rows = len(action)
        q = _check_per_item("q_hat", q_hat, n_rows, n_actions)
        dist = _check_per_item("evaluation_policy_action_dist", evaluation_policy_action_dist, n_rows, n_actions)
        w = arrays["evaluation_policy_pscore_cascade"] / arrays["pscore_cascade"]  # w(1:l), (n_slates, L)
        reward = arrays["reward"]
        n_slates, len_list = w.shape
        per_slate = np.empty(n_slates)
        step = max(1, CASCADE_BLOCK_ROWS // len_list)
        for first in range(0, n_slates, step):  # blocks of slates: small temporaries that stay in cache
            rows = slice(first * len_list, min(first + step, n_slates) * len_list)
            expected_q, logged_q = _cascade_q_terms(q[rows], dist[rows], action[rows], rows.start)
            block_w = w[first:first + step]
            residual = reward[first:first + step] - logged_q.reshape(block_w.shape)
            expected_q = expected_q.reshape(block_w.shape)
            # sum_l w(1:l) (r(l) - q_hat(a(l))) + expected_q(1) + sum_{l >= 2} w(1:l-1) expected_q(l)
            per_slate[first:first + step] = (np.einsum("sk,sk->s", block_w, residual) + expected_q[:, 0]
                                             + np.einsum("sk,sk->s", block_w[:, :-1], expected_q[:, 1:]))
        return (per_slate,)

    def estimate_policy_value(self, slate_id: np.ndarray, action: np.ndarray, reward: np.ndarray,
                              position: np.ndarray, pscore_cascade: np.ndarray,
                              evaluation_policy_pscore_cascade: np.ndarray, q_hat: np.ndarray,
                              evaluation_policy_action_dist: np.ndarray, **kwargs) -> float:
        """The estimated expected sum of rewards over a slate under the evaluation policy.

        slate_id, action, reward, position (n_rows,), pscore_cascade (n_rows,) in (0, 1],
        evaluation_policy_pscore_cascade (n_rows,) in [0, 1], q_hat and evaluation_policy_action_dist
        (n_rows * n_unique_action,) or (n_rows, n_unique_action), as the module docstring says.
        ``**kwargs`` is ignored.
        """
        return self._value(slate_id=slate_id, action=action, reward=reward, position=position,
                           pscore_cascade=pscore_cascade,
                           evaluation_policy_pscore_cascade=evaluation_policy_pscore_cascade, q_hat=q_hat,
                           evaluation_policy_action_dist=evaluation_policy_action_dist)

    def estimate_interval(self, slate_id: np.ndarray, action: np.ndarray, reward: np.ndarray, position: np.ndarray,
                          pscore_cascade: np.ndarray, evaluation_policy_pscore_cascade: np.ndarray, q_hat: np.ndarray,
                          evaluation_policy_action_dist: np.ndarray, alpha: float = 0.05,
                          n_bootstrap_samples: int = 10000, random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over slates, obp's keys; arrays as in ``estimate_policy_value``."""
        return self._interval(alpha, n_bootstrap_samples, random_state, slate_id=slate_id, action=action,
                              reward=reward, position=position, pscore_cascade=pscore_cascade,
                              evaluation_policy_pscore_cascade=evaluation_policy_pscore_cascade, q_hat=q_hat,
                              evaluation_policy_action_dist=evaluation_policy_action_dist)


@dataclass
class SlatePseudoInverse(BaseSlateOffPolicyEstimator):
    """Pseudoinverse estimator (PI; Swaminathan et al. 2017), in the special case of a logging policy that
    fills each position independently: pi_b(s | x) = prod_l pi_b(s(l) at l | x), items drawn per position
    (so an item may appear at several positions), every item possible at every position.

    The general PI estimate is mean_i q_x^T Gamma_x^+ 1_{s_i} sum_l r_i(l), with 1_s in {0, 1}^(L * n_items)
    the indicator of slate s's (position, item) pairs, Gamma_x = E_{s ~ pi_b}[1_s 1_s^T] and
    q_x = E_{s ~ pi_e}[1_s]. For independent logging, Gamma_x y = q_x is solved by
    y(l, a) = q_x(l, a) / pi_b(a at l | x) - c_l with sum_l c_l = L - 1, and every solution gives the same
    y^T 1_s on the logging policy's support (q_x^T Gamma_x^+ is the minimum-norm one), so the weight is the sum
    of the item-position weights less L - 1:

        V = mean_i (sum_l w_i(l) - (L - 1)) sum_l r_i(l),   w_i(l) = pi_e(a_i(l) at l | x_i) / pi_b(a_i(l) at l | x_i).

    Only pi_e's item-position marginals enter, so pi_e may be any slate policy. Unbiased when the expected
    slate reward is additive over positions, E[sum_l r(l) | x, s] = sum_l phi_x(l, s(l)) (a position's reward
    may depend on the items elsewhere as long as the total is additive), a weaker assumption than IIPS's; it
    is biased if the logging policy is not independent across positions (e.g. a ranking without repeats),
    which cannot be checked from these arrays. Arguments as :class:`SlateIndependentIPS`'s.

    Fields: ``len_list``, ``estimator_name`` = "pi" (not in obp).

    Adith Swaminathan, Akshay Krishnamurthy, Alekh Agarwal, Miroslav Dudik, John Langford, Damien Jose, Imed
    Zitouni. "Off-policy evaluation for slate recommendation", NeurIPS 2017.
    """

    estimator_name: str = "pi"

    def _components(self, slate_id, reward, position, pscore_item_position, evaluation_policy_pscore_item_position):
        arrays = check_slate_inputs(self.estimator_name, self.len_list,
                                    {"slate_id": slate_id, "reward": reward, "position": position,
                                     "pscore_item_position": pscore_item_position,
                                     "evaluation_policy_pscore_item_position": evaluation_policy_pscore_item_position},
                                    logging=("pscore_item_position",),
                                    evaluation=("evaluation_policy_pscore_item_position",))
        w = arrays["evaluation_policy_pscore_item_position"] / arrays["pscore_item_position"]
        slate_weight = w.sum(axis=1) - (self.len_list - 1)
        return (slate_weight * arrays["reward"].sum(axis=1),)

    def estimate_policy_value(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                              pscore_item_position: np.ndarray, evaluation_policy_pscore_item_position: np.ndarray,
                              **kwargs) -> float:
        """The estimated expected sum of rewards over a slate under the evaluation policy; arrays as
        :meth:`SlateIndependentIPS.estimate_policy_value`'s. ``**kwargs`` is ignored."""
        return self._value(slate_id=slate_id, reward=reward, position=position,
                           pscore_item_position=pscore_item_position,
                           evaluation_policy_pscore_item_position=evaluation_policy_pscore_item_position)

    def estimate_interval(self, slate_id: np.ndarray, reward: np.ndarray, position: np.ndarray,
                          pscore_item_position: np.ndarray, evaluation_policy_pscore_item_position: np.ndarray,
                          alpha: float = 0.05, n_bootstrap_samples: int = 10000, random_state=None,
                          **kwargs) -> dict[str, float]:
        """Percentile bootstrap over slates, obp's keys; arrays as in ``estimate_policy_value``."""
        return self._interval(alpha, n_bootstrap_samples, random_state, slate_id=slate_id, reward=reward,
                              position=position, pscore_item_position=pscore_item_position,
                              evaluation_policy_pscore_item_position=evaluation_policy_pscore_item_position)


SLATE_ESTIMATORS = {cls.estimator_name: cls for cls in (
    SlateStandardIPS, SlateIndependentIPS, SlateRewardInteractionIPS, SelfNormalizedSlateStandardIPS,
    SelfNormalizedSlateIndependentIPS, SelfNormalizedSlateRewardInteractionIPS, SlateCascadeDoublyRobust,
    SlatePseudoInverse)}
"""Slate estimator classes by ``estimator_name``; all take ``len_list``, Cascade-DR also ``n_unique_action``."""

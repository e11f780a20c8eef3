"""Off-policy estimators for discrete actions, ported from the Open Bandit Pipeline (obp 0.5.7; Saito et al.
2021): the same class names, dataclass fields (in the same order), hyperparameter defaults and
``estimator_name`` values, and the same ``estimate_policy_value`` / ``estimate_interval`` arguments, in
obp's order, with ``**kwargs`` for the arguments an estimator does not use. Code written against obp ports
unchanged, and ``obp.ope.OffPolicyEvaluation(bandit_feedback=..., ope_estimators=[...])`` drives these
classes and gets obp's point estimates.

Arrays (n rounds): ``reward`` (n,), ``action`` (n,) int, ``pscore`` (n,) = pi_b(a_i | x_i) in (0, 1],
``position`` (n,) int (may be None when there is one slot), ``action_dist`` (n, n_actions, len_list) = pi_e,
``estimated_rewards_by_reg_model`` (n, n_actions, len_list) = q-hat, ``estimated_pscore`` (n,) = an
estimate of pi_b(a_i | x_i), used instead of ``pscore`` when ``use_estimated_pscore=True``. With
w_i = action_dist[i, a_i, p_i] / pscore_i and q-hat_i(a) = q-hat[i, a, p_i]:

* DM: mean_i sum_a pi_e(a | x_i, p_i) q-hat_i(a)
* IPW: mean_i min(w_i, lambda) r_i (lambda = inf: no clipping);  SNIPW: sum w_i r_i / sum w_i
* DR (Dudik et al. 2014): DM term + mean_i min(w_i, lambda) (r_i - q-hat_i(a_i))
* SNDR: DM term + mean_i [w_i (r_i - q-hat_i(a_i))] / mean_i w_i
* Switch-DR (Su et al. 2020): DM term + mean_i 1{w_i <= lambda} w_i (r_i - q-hat_i(a_i))
* DRos (Su et al. 2020): DR with w replaced by lambda w / (w^2 + lambda); lambda = 0 (the default) is DM,
  lambda = inf is DR

``estimate_interval`` is a percentile bootstrap over rounds, vectorised over resamples; it returns obp's
keys (``"mean"``, ``"95.0% CI (lower)"``, ``"95.0% CI (upper)"``). Its draws are not obp's, and the
self-normalised estimators recompute the normaliser in every resample, so intervals agree with obp's up to
Monte-Carlo error, not digit for digit.

The kernelized estimator for continuous actions at the end of this module is fusionsim's own (it weights
multi-dimensional actions and takes the reward model at both actions); it does not take obp's
``kernel=`` argument.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass
from typing import ClassVar

import numpy as np


class OPEInputError(ValueError):
    """Arrays or hyperparameters that do not fit the conventions; the message names the argument, the bad
    value (and its first bad row) and what is allowed."""


class OPEInputTypeError(OPEInputError, TypeError):
    """A hyperparameter of the wrong type (a TypeError, as obp raises, and an OPEInputError)."""


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def flat_arrays(estimator_name: str, arrays: dict[str, object], id_name: str, row: str,
                integers: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``arrays`` (name -> value) as 1-D numpy arrays of one value per row of ``id_name``, in ``arrays``'
    order: each given (``estimator_name`` needs it), 1-D, as long as ``id_name``, at least one row, and the
    ``integers`` present of integer dtype. ``row`` says what a row is in messages (e.g. "request")."""
    checked = {}
    for name, value in arrays.items():
        if value is None:
            raise OPEInputError(f"{estimator_name} needs {name}; got None")
        array = np.asarray(value)
        if array.ndim != 1:
            raise OPEInputError(f"{name} must be 1-D (one value per row, i.e. per {row}); got shape {array.shape}")
        checked[name] = array
    n = len(checked[id_name])
    for name, array in checked.items():
        if len(array) != n:
            raise OPEInputError(f"{name} must have one value per row of {id_name} ({n} rows); got {len(array)}")
    if n == 0:
        raise OPEInputError(f"{id_name} must have at least one row; got 0")
    for name in integers:
        if name in checked and checked[name].dtype.kind not in "iu":
            raise OPEInputError(f"{name} must be integers; got dtype {checked[name].dtype}")
    return checked


def contiguous_blocks(ids: np.ndarray, name: str, unit: str) -> np.ndarray:
    """The first row of each block of equal ``ids`` (n,); an OPEInputError if an id comes back after other
    ids' rows (each ``unit``'s rows, a slate's or a session's, must be contiguous). ``name`` is the array."""
    starts = np.concatenate(([0], np.flatnonzero(ids[1:] != ids[:-1]) + 1))
    first = ids[starts]
    if len(first) > 1 and not (first[1:] > first[:-1]).all():  # not increasing: look for one that comes back
        order = np.argsort(first, kind="stable")
        again = first[order[1:]] == first[order[:-1]]
        if again.any():
            block = int(order[1:][again].min())
            raise OPEInputError(f"{name} must keep each {unit}'s rows together (contiguous); {name} {first[block]} "
                                f"appears again at row {starts[block]} after other {unit}s' rows")
    return starts


def check_lambda(lambda_: object) -> None:
    """``lambda_`` must be a real number >= 0 (``np.inf`` allowed), as obp checks it."""
    if not isinstance(lambda_, numbers.Real):
        raise OPEInputTypeError(f"lambda_ must be a number >= 0 (np.inf allowed); got {lambda_!r} "
                                f"({type(lambda_).__name__})")
    if not lambda_ >= 0:  # also rejects nan
        raise OPEInputError(f"lambda_ must be a number >= 0 (np.inf allowed); got {lambda_}")


def check_use_estimated_pscore(use_estimated_pscore: object) -> None:
    if not isinstance(use_estimated_pscore, bool):
        raise OPEInputTypeError(f"use_estimated_pscore must be True or False; got {use_estimated_pscore!r} "
                                f"({type(use_estimated_pscore).__name__})")


def check_inputs(action_dist: np.ndarray, reward: np.ndarray | None = None, action: np.ndarray | None = None,
                 pscore: np.ndarray | None = None, position: np.ndarray | None = None,
                 estimated_rewards_by_reg_model: np.ndarray | None = None,
                 pscore_name: str = "pscore") -> tuple[np.ndarray | None, ...]:
    """Validate and return (reward, action, pscore, action_dist, position, q-hat) as arrays; the ones not
    given stay None, except ``position``, which is zeros when ``action_dist`` has one slot.
    ``pscore_name`` is the argument the propensities came from (``estimated_pscore`` when an estimator
    uses estimated propensities), named in messages."""
    action_dist = np.asarray(action_dist, dtype=np.float64)
    if action_dist.ndim != 3:
        raise OPEInputError(f"action_dist must be 3-D (n_rounds, n_actions, len_list); got shape {action_dist.shape}")
    n, n_actions, len_list = action_dist.shape
    if position is None:
        if len_list > 1:
            raise OPEInputError(f"position must be given when action_dist has several slots; got None with "
                                f"action_dist.shape[2] = {len_list} (give the slot of each round, integers in "
                                f"[0, {len_list}))")
        position = np.zeros(n, dtype=np.int64)
    position = np.asarray(position)
    reward = None if reward is None else np.asarray(reward, dtype=np.float64)
    action = None if action is None else np.asarray(action)
    pscore = None if pscore is None else np.asarray(pscore, dtype=np.float64)
    for name, array in (("reward", reward), ("action", action), (pscore_name, pscore), ("position", position)):
        if array is not None and array.shape != (n,):
            raise OPEInputError(f"{name} must have shape ({n},) like action_dist's first axis; got {array.shape}")
    for name, array in (("reward", reward), (pscore_name, pscore)):
        if array is not None and not np.isfinite(array).all():
            raise OPEInputError(f"{name} must be finite; got {array[_first_bad(~np.isfinite(array))]} at row "
                                f"{_first_bad(~np.isfinite(array))}")
    if action is not None and (action.dtype.kind not in "iu" or ((action < 0) | (action >= n_actions)).any()):
        bad = _first_bad((action < 0) | (action >= n_actions)) if action.dtype.kind in "iu" else 0
        raise OPEInputError(f"action must be integers in [0, {n_actions}); got {action[bad]} at row {bad}")
    if position.dtype.kind not in "iu" or ((position < 0) | (position >= len_list)).any():
        bad = _first_bad((position < 0) | (position >= len_list)) if position.dtype.kind in "iu" else 0
        raise OPEInputError(f"position must be integers in [0, {len_list}); got {position[bad]} at row {bad}")
    if pscore is not None and ((pscore <= 0) | (pscore > 1)).any():
        bad = _first_bad((pscore <= 0) | (pscore > 1))
        raise OPEInputError(f"{pscore_name} must be in (0, 1]; got {pscore[bad]} at row {bad}")
    if not np.isfinite(action_dist).all() or (action_dist < 0).any():
        bad = _first_bad(~(np.isfinite(action_dist) & (action_dist >= 0)).all(axis=(1, 2)))
        raise OPEInputError(f"action_dist must hold probabilities; row {bad} has a negative or non-finite value")
    sums = action_dist.sum(axis=1)
    if (np.abs(sums - 1.0) > 1e-6).any():
        bad = _first_bad((np.abs(sums - 1.0) > 1e-6).any(axis=1))
        raise OPEInputError(f"action_dist must sum to 1 over actions; row {bad} sums to {sums[bad].tolist()}")
    q = estimated_rewards_by_reg_model
    if q is not None:
        q = np.asarray(q, dtype=np.float64)
        if q.shape != action_dist.shape:
            raise OPEInputError(f"estimated_rewards_by_reg_model must have action_dist's shape {action_dist.shape}; "
                                f"got {q.shape}")
        if not np.isfinite(q).all():
            bad = _first_bad(~np.isfinite(q).all(axis=(1, 2)))
            raise OPEInputError(f"estimated_rewards_by_reg_model must be finite; row {bad} is not")
    return (reward, None if action is None else action.astype(np.int64), pscore, action_dist,
            position.astype(np.int64), q)


def _bootstrap_rng(random_state) -> np.random.Generator:
    """A Generator from ``random_state``: None, an int, a Generator or SeedSequence, or (as obp takes) a
    ``numpy.random.RandomState``, which seeds the Generator with one draw."""
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2 ** 31 - 1))
    return np.random.default_rng(random_state)


@dataclass
class BaseOffPolicyEstimator(abc.ABC):
    """One estimator: ``estimate_policy_value`` (a float) and ``estimate_interval`` (a bootstrap CI).

    Subclasses give the per-round arrays (:meth:`_components`) and how their means make the estimate
    (:meth:`_combine`); the public methods, with obp's arguments, are defined once per family (IPW, DM, DR).
    """

    needs_pscore: ClassVar[bool] = True
    needs_reward_model: ClassVar[bool] = False

    @abc.abstractmethod
    def _components(self, reward, action, pscore, action_dist, position, q) -> tuple[np.ndarray, ...]:
        """Per-round arrays (n,) whose means :meth:`_combine` turns into the estimate."""

    def _combine(self, *means: np.ndarray) -> np.ndarray:
        """The estimate from the means of the per-round arrays (default: the single mean)."""
        return means[0]

    def _rounds(self, action_dist, reward=None, action=None, pscore=None, position=None,
                estimated_rewards_by_reg_model=None, estimated_pscore=None) -> tuple[np.ndarray, ...]:
        name = self.estimator_name
        if self.needs_reward_model and estimated_rewards_by_reg_model is None:
            raise OPEInputError(f"{name} needs estimated_rewards_by_reg_model")
        pscore_name = "pscore"
        if self.needs_pscore:
            if self.use_estimated_pscore:
                if estimated_pscore is None:
                    raise OPEInputError(f"{name} has use_estimated_pscore=True and needs estimated_pscore; got None")
                pscore, pscore_name = estimated_pscore, "estimated_pscore"
            elif pscore is None:
                raise OPEInputError(f"{name} needs pscore (or use_estimated_pscore=True with estimated_pscore); "
                                    "got None")
        else:
            pscore = None
        arrays = check_inputs(action_dist, reward, action, pscore, position, estimated_rewards_by_reg_model,
                              pscore_name=pscore_name)
        return self._components(*arrays)

    def _value(self, **arrays) -> float:
        return float(self._combine(*(c.mean() for c in self._rounds(**arrays))))

    def _interval(self, alpha: float, n_bootstrap_samples: int, random_state, **arrays) -> dict[str, float]:
        return percentile_interval(self._rounds(**arrays), self._combine, alpha, n_bootstrap_samples, random_state)


def percentile_interval(components: tuple[np.ndarray, ...], combine, alpha: float, n_bootstrap_samples: int,
                        random_state, resample=None) -> dict[str, float]:
    """obp's interval dict (``"mean"``, ``"<level>% CI (lower)"``, ``"<level>% CI (upper)"``) of the estimate
    ``combine(*means)`` of per-unit ``components`` (first axis: one entry per resampled unit, a round, a
    slate or a session), by the percentile bootstrap of ``resample(components, n_samples, rng)`` (None:
    :func:`bootstrap_means`)."""
    if not (isinstance(alpha, numbers.Real) and 0 < alpha < 1) or not (
            isinstance(n_bootstrap_samples, numbers.Integral) and n_bootstrap_samples >= 1):
        raise OPEInputError(f"alpha must be in (0, 1) and n_bootstrap_samples >= 1; got {alpha}, "
                            f"{n_bootstrap_samples}")
    means = (resample or bootstrap_means)(tuple(np.ascontiguousarray(c) for c in components),
                                          int(n_bootstrap_samples), _bootstrap_rng(random_state))
    values = combine(*means)
    level = 100 * (1 - alpha)
    return {"mean": float(values.mean()),
            f"{level}% CI (lower)": float(np.percentile(values, 100 * alpha / 2)),
            f"{level}% CI (upper)": float(np.percentile(values, 100 * (1 - alpha / 2)))}


PLAIN_BOOTSTRAP_MAX_ROUNDS = 50_000
"""Up to this many rounds the interval resamples rounds directly; above, the Bag of Little Bootstraps."""


def bootstrap_means(arrays: tuple[np.ndarray, ...], n_samples: int, rng: np.random.Generator,
                    chunk: int = 1 << 24) -> list[np.ndarray]:
    """Bootstrap resamples of the rounds (the same rounds for every array): the mean of each per-round
    array in each resample, a list of (n_samples,).

    Up to PLAIN_BOOTSTRAP_MAX_ROUNDS rounds: the percentile bootstrap, resampling n rounds with
    replacement (vectorised in chunks of resamples). Above: the Bag of Little Bootstraps (Kleiner et al.
    2014): s = ceil(n_samples / 100) subsets of b = n^0.6 distinct rounds, and within each subset 100
    resamples of n rounds drawn as multinomial counts over its b rounds; the cost is s * 100 * b instead of
    n_samples * n, and the interval is as consistent as the plain bootstrap's. Each subset's resample means
    are centred on the full sample's mean, so percentiles over all resamples average the subsets' intervals
    (BLB's estimate) instead of mixing in the spread between subsets.
    """
    n = len(arrays[0])
    out = [np.empty(n_samples) for _ in arrays]
    if n <= PLAIN_BOOTSTRAP_MAX_ROUNDS:
        per_chunk = max(1, chunk // max(n, 1))
        for start in range(0, n_samples, per_chunk):
            k = min(per_chunk, n_samples - start)
            index = rng.integers(0, n, (k, n), dtype=np.int32)
            for array, result in zip(arrays, out, strict=True):
                result[start:start + k] = np.take(array, index).mean(axis=1)
        return out
    b = int(np.ceil(n ** 0.6))
    per_subset = 100
    for start in range(0, n_samples, per_subset):
        k = min(per_subset, n_samples - start)
        subset = rng.choice(n, size=b, replace=False)
        counts = rng.multinomial(n, np.full(b, 1.0 / b), size=k).astype(np.float64)  # (k, b)
        for array, result in zip(arrays, out, strict=True):
            means = counts @ array[subset] / n
            result[start:start + k] = means - means.mean() + array.mean()
    return out


def _chosen(action_dist: np.ndarray, action: np.ndarray, position: np.ndarray) -> np.ndarray:
    return action_dist[np.arange(len(action)), action, position]


def _at_position(array: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(n, n_actions, len_list) -> (n, n_actions) at each round's position (a view when len_list is 1)."""
    if array.shape[2] == 1:
        return array[:, :, 0]
    return np.take_along_axis(array, position[:, None, None], axis=2)[:, :, 0]


def _dm_term(action_dist: np.ndarray, q: np.ndarray, position: np.ndarray) -> np.ndarray:
    return np.einsum("na,na->n", _at_position(action_dist, position), _at_position(q, position))


@dataclass
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    """Inverse probability weighting (Strehl et al. 2010): V = mean_i min(w_i, lambda_) r_i.

    Hyperparameters (obp's): ``lambda_`` = inf, the largest importance weight (larger ones are clipped;
    >= 0); ``use_estimated_pscore`` = False, weight by ``estimated_pscore`` instead of ``pscore``;
    ``estimator_name`` = "ipw".
    """

    lambda_: float = np.inf
    use_estimated_pscore: bool = False
    estimator_name: str = "ipw"

    def __post_init__(self) -> None:
        check_lambda(self.lambda_)
        check_use_estimated_pscore(self.use_estimated_pscore)

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = _chosen(action_dist, action, position) / pscore
        if self.lambda_ < np.inf:
            w = np.minimum(w, self.lambda_)
        return (w * reward,)

    def estimate_policy_value(self, reward: np.ndarray, action: np.ndarray, action_dist: np.ndarray,
                              pscore: np.ndarray | None = None, position: np.ndarray | None = None,
                              estimated_pscore: np.ndarray | None = None, **kwargs) -> float:
        """The estimated value of the evaluation policy ``action_dist`` (mean reward per round).

        reward (n_rounds,); action (n_rounds,) ints in [0, n_actions); action_dist (n_rounds, n_actions,
        len_list) = pi_e; pscore (n_rounds,) in (0, 1], needed unless ``use_estimated_pscore``; position
        (n_rounds,) ints in [0, len_list), needed when len_list > 1; estimated_pscore (n_rounds,) in (0, 1],
        needed when ``use_estimated_pscore``. ``**kwargs`` takes what obp's OffPolicyEvaluation passes besides
        (context, estimated_rewards_by_reg_model, estimated_importance_weights, action_embed, pi_b, p_e_a)
        and ignores it.
        """
        return self._value(reward=reward, action=action, action_dist=action_dist, pscore=pscore, position=position,
                           estimated_pscore=estimated_pscore)

    def estimate_interval(self, reward: np.ndarray, action: np.ndarray, action_dist: np.ndarray,
                          pscore: np.ndarray | None = None, position: np.ndarray | None = None,
                          estimated_pscore: np.ndarray | None = None, alpha: float = 0.05,
                          n_bootstrap_samples: int = 10000, random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over rounds of the estimate: ``{"mean", "95.0% CI (lower)", "95.0% CI
        (upper)"}`` (obp's keys; the level follows ``alpha``). The arrays as in ``estimate_policy_value``;
        ``n_bootstrap_samples`` resamples, drawn from ``random_state`` (None, an int, a Generator or a
        RandomState).
        """
        return self._interval(alpha, n_bootstrap_samples, random_state, reward=reward, action=action,
                              action_dist=action_dist, pscore=pscore, position=position,
                              estimated_pscore=estimated_pscore)


@dataclass
class SelfNormalizedInverseProbabilityWeighting(InverseProbabilityWeighting):
    """Self-normalised IPW (Swaminathan and Joachims 2015): V = sum_i w_i r_i / sum_i w_i.

    Hyperparameters as IPW's, with ``estimator_name`` = "snipw"; like obp 0.5.7, it does not clip: the
    inherited ``lambda_`` is validated but not applied.
    """

    estimator_name: str = "snipw"

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = _chosen(action_dist, action, position) / pscore
        return w * reward, w

    def _combine(self, weighted_reward, weight):
        return weighted_reward / weight


@dataclass
class DirectMethod(BaseOffPolicyEstimator):
    """Direct method (Beygelzimer and Langford 2009): V = mean_i sum_a pi_e(a | x_i, p_i) q-hat_i(a).

    Hyperparameter (obp's): ``estimator_name`` = "dm". ``estimate_policy_value(action_dist,
    estimated_rewards_by_reg_model, position=None, **kwargs)``, as obp's: reward, action and the
    propensities, which obp's OffPolicyEvaluation passes too, are ignored.
    """

    needs_pscore: ClassVar[bool] = False
    needs_reward_model: ClassVar[bool] = True
    estimator_name: str = "dm"

    def _components(self, reward, action, pscore, action_dist, position, q):
        return (_dm_term(action_dist, q, position),)

    def estimate_policy_value(self, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray | None,
                              position: np.ndarray | None = None, **kwargs) -> float:
        """The estimated value of the evaluation policy ``action_dist`` (mean reward per round).

        action_dist (n_rounds, n_actions, len_list) = pi_e; estimated_rewards_by_reg_model (n_rounds,
        n_actions, len_list) = q-hat; position (n_rounds,) ints in [0, len_list), needed when len_list > 1.
        ``**kwargs`` (reward, action, pscore, ... as obp's OffPolicyEvaluation passes them) is ignored.
        """
        return self._value(action_dist=action_dist, position=position,
                           estimated_rewards_by_reg_model=estimated_rewards_by_reg_model)

    def estimate_interval(self, action_dist: np.ndarray, estimated_rewards_by_reg_model: np.ndarray | None,
                          position: np.ndarray | None = None, alpha: float = 0.05, n_bootstrap_samples: int = 10000,
                          random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over rounds of the estimate: ``{"mean", "95.0% CI (lower)", "95.0% CI
        (upper)"}`` (obp's keys; the level follows ``alpha``). The arrays as in ``estimate_policy_value``;
        ``n_bootstrap_samples`` resamples, drawn from ``random_state`` (None, an int, a Generator or a
        RandomState).
        """
        return self._interval(alpha, n_bootstrap_samples, random_state, action_dist=action_dist, position=position,
                              estimated_rewards_by_reg_model=estimated_rewards_by_reg_model)


@dataclass
class DoublyRobust(BaseOffPolicyEstimator):
    """Doubly robust (Dudik et al. 2014): V = DM term + mean_i min(w_i, lambda_) (r_i - q-hat_i(a_i)).

    Hyperparameters (obp's): ``lambda_`` = inf, the largest importance weight (a finite one is DR with
    pessimistic shrinkage, Su et al. 2020; >= 0); ``use_estimated_pscore`` = False; ``estimator_name`` = "dr".
    """

    needs_reward_model: ClassVar[bool] = True
    lambda_: float = np.inf
    use_estimated_pscore: bool = False
    estimator_name: str = "dr"

    def __post_init__(self) -> None:
        check_lambda(self.lambda_)
        check_use_estimated_pscore(self.use_estimated_pscore)

    def _weight(self, w: np.ndarray) -> np.ndarray:
        return np.minimum(w, self.lambda_) if self.lambda_ < np.inf else w

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = self._weight(_chosen(action_dist, action, position) / pscore)
        q_chosen = q[np.arange(len(action)), action, position]
        return (_dm_term(action_dist, q, position) + w * (reward - q_chosen),)

    def estimate_policy_value(self, reward: np.ndarray, action: np.ndarray, action_dist: np.ndarray,
                              estimated_rewards_by_reg_model: np.ndarray | None, pscore: np.ndarray | None = None,
                              position: np.ndarray | None = None, estimated_pscore: np.ndarray | None = None,
                              **kwargs) -> float:
        """The estimated value of the evaluation policy ``action_dist`` (mean reward per round).

        reward (n_rounds,); action (n_rounds,) ints in [0, n_actions); action_dist (n_rounds, n_actions,
        len_list) = pi_e; estimated_rewards_by_reg_model (n_rounds, n_actions, len_list) = q-hat; pscore
        (n_rounds,) in (0, 1], needed unless ``use_estimated_pscore``; position (n_rounds,) ints in
        [0, len_list), needed when len_list > 1; estimated_pscore (n_rounds,) in (0, 1], needed when
        ``use_estimated_pscore``. ``**kwargs`` takes what obp's OffPolicyEvaluation passes besides (context,
        estimated_importance_weights, action_embed, pi_b, p_e_a) and ignores it.
        """
        return self._value(reward=reward, action=action, action_dist=action_dist, pscore=pscore, position=position,
                           estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
                           estimated_pscore=estimated_pscore)

    def estimate_interval(self, reward: np.ndarray, action: np.ndarray, action_dist: np.ndarray,
                          estimated_rewards_by_reg_model: np.ndarray | None, pscore: np.ndarray | None = None,
                          position: np.ndarray | None = None, estimated_pscore: np.ndarray | None = None,
                          alpha: float = 0.05, n_bootstrap_samples: int = 10000, random_state=None,
                          **kwargs) -> dict[str, float]:
        """Percentile bootstrap over rounds of the estimate: ``{"mean", "95.0% CI (lower)", "95.0% CI
        (upper)"}`` (obp's keys; the level follows ``alpha``). The arrays as in ``estimate_policy_value``;
        ``n_bootstrap_samples`` resamples, drawn from ``random_state`` (None, an int, a Generator or a
        RandomState).
        """
        return self._interval(alpha, n_bootstrap_samples, random_state, reward=reward, action=action,
                              action_dist=action_dist, pscore=pscore, position=position,
                              estimated_rewards_by_reg_model=estimated_rewards_by_reg_model,
                              estimated_pscore=estimated_pscore)


@dataclass
class SelfNormalizedDoublyRobust(DoublyRobust):
    """Self-normalised DR (Kallus and Uehara 2019): V = DM term + mean_i [w_i (r_i - q-hat_i(a_i))] / mean_i w_i.

    Hyperparameters as DR's, with ``estimator_name`` = "sndr"; like obp 0.5.7, it does not clip: the
    inherited ``lambda_`` is validated but not applied.
    """

    estimator_name: str = "sndr"

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = _chosen(action_dist, action, position) / pscore
        q_chosen = q[np.arange(len(action)), action, position]
        return _dm_term(action_dist, q, position), w * (reward - q_chosen), w

    def _combine(self, dm, weighted_residual, weight):
        return dm + weighted_residual / weight


@dataclass
class SwitchDoublyRobust(DoublyRobust):
    """Switch-DR (Wang et al. 2017; Su et al. 2020): the DR correction only where the weight is at most
    ``lambda_``, V = DM term + mean_i 1{w_i <= lambda_} w_i (r_i - q-hat_i(a_i)).

    Hyperparameters (obp's): ``lambda_`` = inf (DR; 0 keeps only rounds with w_i = 0, i.e. DM; >= 0),
    ``use_estimated_pscore`` = False, ``estimator_name`` = "switch-dr".
    """

    lambda_: float = np.inf
    estimator_name: str = "switch-dr"

    def _weight(self, w: np.ndarray) -> np.ndarray:
        return np.where(w <= self.lambda_, w, 0.0)


@dataclass
class DoublyRobustWithShrinkage(DoublyRobust):
    """DR with optimistic shrinkage (DRos, Su et al. 2020): DR with w replaced by lambda_ w / (w^2 + lambda_).

    Hyperparameters (obp's): ``lambda_`` = 0.0, which gives DM (every shrunk weight is 0, also where
    w_i = 0, for which obp 0.5.7 computes 0/0 = nan); inf gives DR; >= 0. ``use_estimated_pscore`` = False,
    ``estimator_name`` = "dr-os".
    """

    lambda_: float = 0.0
    estimator_name: str = "dr-os"

    def _weight(self, w: np.ndarray) -> np.ndarray:
        if np.isinf(self.lambda_):
            return w
        if self.lambda_ == 0:
            return np.zeros_like(w)
        return self.lambda_ * w / (w ** 2 + self.lambda_)


ESTIMATORS = {"dm": DirectMethod, "ips": InverseProbabilityWeighting,
              "snips": SelfNormalizedInverseProbabilityWeighting, "dr": DoublyRobust,
              "sndr": SelfNormalizedDoublyRobust, "switch-dr": SwitchDoublyRobust,
              "dr-os": DoublyRobustWithShrinkage}
"""Estimator classes by the names the ``ope`` command takes. ``ESTIMATORS[name]()`` has obp's defaults:
``dr-os`` then is DM (lambda_ = 0) and ``switch-dr`` is DR (lambda_ = inf) unless a lambda_ is given."""


@dataclass
class KernelizedInverseProbabilityWeighting:
    """Continuous actions (Kallus and Zhou 2018): IPS with the deterministic evaluation action smoothed
    by a Gaussian kernel of ``bandwidth`` h, V = mean_i K_h(a_i - pi_e(x_i)) r_i / pscore_i, where pscore_i is
    the logging policy's density at a_i and K_h the product of 1-D Gaussians over the action's dimensions.
    With a reward model (``estimated_rewards_by_reg_model`` at the evaluation action and
    ``estimated_rewards_at_logged_action``) it is the kernelized doubly robust estimator."""

    bandwidth: float = 0.1
    estimator_name: str = "kernel-ipw"

    def _weights(self, action_by_behavior_policy: np.ndarray, pscore: np.ndarray,
                 action_by_evaluation_policy: np.ndarray) -> np.ndarray:
        if not self.bandwidth > 0:
            raise OPEInputError(f"bandwidth must be > 0; got {self.bandwidth}")
        logged = np.asarray(action_by_behavior_policy, dtype=np.float64)
        target = np.asarray(action_by_evaluation_policy, dtype=np.float64)
        logged = logged[:, None] if logged.ndim == 1 else logged
        target = target[:, None] if target.ndim == 1 else target
        if logged.shape != target.shape:
            raise OPEInputError(f"action_by_evaluation_policy must have the logged actions' shape {logged.shape}; "
                                f"got {target.shape}")
        pscore = np.asarray(pscore, dtype=np.float64)
        if pscore.shape != (len(logged),) or (pscore <= 0).any() or not np.isfinite(pscore).all():
            bad = _first_bad(~(np.isfinite(pscore) & (pscore > 0))) if pscore.shape == (len(logged),) else 0
            raise OPEInputError(f"pscore must be positive densities of shape ({len(logged)},); bad at row {bad}")
        u = (logged - target) / self.bandwidth
        kernel = np.exp(-0.5 * (u ** 2).sum(axis=1)) / (np.sqrt(2 * np.pi) * self.bandwidth) ** logged.shape[1]
        return kernel / pscore

    def _per_round(self, reward, action_by_behavior_policy, pscore, action_by_evaluation_policy,
                   estimated_rewards_by_reg_model=None, estimated_rewards_at_logged_action=None) -> np.ndarray:
        w = self._weights(action_by_behavior_policy, pscore, action_by_evaluation_policy)
        reward = np.asarray(reward, dtype=np.float64)
        if estimated_rewards_by_reg_model is None:
            return w * reward
        if estimated_rewards_at_logged_action is None:
            raise OPEInputError("kernelized DR needs estimated_rewards_at_logged_action too")
        q_target = np.asarray(estimated_rewards_by_reg_model, dtype=np.float64)
        q_logged = np.asarray(estimated_rewards_at_logged_action, dtype=np.float64)
        return q_target + w * (reward - q_logged)

    def estimate_policy_value(self, reward: np.ndarray, action_by_behavior_policy: np.ndarray, pscore: np.ndarray,
                              action_by_evaluation_policy: np.ndarray,
                              estimated_rewards_by_reg_model: np.ndarray | None = None,
                              estimated_rewards_at_logged_action: np.ndarray | None = None) -> float:
        return float(self._per_round(reward, action_by_behavior_policy, pscore, action_by_evaluation_policy,
                                     estimated_rewards_by_reg_model, estimated_rewards_at_logged_action).mean())

    def estimate_interval(self, reward: np.ndarray, action_by_behavior_policy: np.ndarray, pscore: np.ndarray,
                          action_by_evaluation_policy: np.ndarray,
                          estimated_rewards_by_reg_model: np.ndarray | None = None,
                          estimated_rewards_at_logged_action: np.ndarray | None = None, alpha: float = 0.05,
                          n_bootstrap_samples: int = 1000, random_state: int | None = None) -> dict[str, float]:
        """Bootstrap interval over rounds, as :meth:`BaseOffPolicyEstimator.estimate_interval`."""
        per_round = self._per_round(reward, action_by_behavior_policy, pscore, action_by_evaluation_policy,
                                    estimated_rewards_by_reg_model, estimated_rewards_at_logged_action)
        values = bootstrap_means((per_round,), n_bootstrap_samples, np.random.default_rng(random_state))[0]
        level = 100 * (1 - alpha)
        return {"mean": float(values.mean()),
                f"{level}% CI (lower)": float(np.percentile(values, 100 * alpha / 2)),
                f"{level}% CI (upper)": float(np.percentile(values, 100 * (1 - alpha / 2)))}

"""Off-policy estimators in the Open Bandit Pipeline's array conventions (Saito et al. 2021), so code
written against obp ports unchanged.

Arrays (n rounds): ``reward`` (n,), ``action`` (n,) int, ``pscore`` (n,) = pi_b(a_i | x_i) in (0, 1],
``position`` (n,) int (zeros when there is one slot), ``action_dist`` (n, n_actions, len_list) = pi_e,
``estimated_rewards_by_reg_model`` (n, n_actions, len_list) = q-hat. With
w_i = action_dist[i, a_i, p_i] / pscore_i and q-hat_i(a) = q-hat[i, a, p_i]:

* DM: mean_i sum_a pi_e(a | x_i, p_i) q-hat_i(a)
* IPS: mean_i w_i r_i;  SNIPS: sum w_i r_i / sum w_i
* DR (Dudik et al. 2014): DM term + mean_i w_i (r_i - q-hat_i(a_i))
* SNDR: DM term + mean_i [w_i (r_i - q-hat_i(a_i))] / mean_i w_i
* Switch-DR (Su et al. 2020): DM term + mean_i 1{w_i <= lambda} w_i (r_i - q-hat_i(a_i))
* DRos (Su et al. 2020): DR with w replaced by lambda w / (w^2 + lambda)

``estimate_interval`` is a percentile bootstrap over rounds, vectorised over resamples.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


class OPEInputError(ValueError):
    """Arrays that do not fit the conventions; the message names the array and the first bad row."""


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_inputs(reward: np.ndarray, action: np.ndarray, pscore: np.ndarray, action_dist: np.ndarray,
                 position: np.ndarray | None = None, estimated_rewards_by_reg_model: np.ndarray | None = None,
                 need_pscore: bool = True) -> tuple[np.ndarray, ...]:
    """Validate and return (reward, action, pscore, action_dist, position, q-hat) as arrays."""
    action_dist = np.asarray(action_dist, dtype=np.float64)
    if action_dist.ndim != 3:
        raise OPEInputError(f"action_dist must be 3-D (n_rounds, n_actions, len_list); got shape {action_dist.shape}")
    n, n_actions, len_list = action_dist.shape
    reward = np.asarray(reward, dtype=np.float64)
    action = np.asarray(action)
    position = np.zeros(n, dtype=np.int64) if position is None else np.asarray(position)
    pscore = np.ones(n) if pscore is None and not need_pscore else np.asarray(pscore, dtype=np.float64)
    for name, array in (("reward", reward), ("action", action), ("pscore", pscore), ("position", position)):
        if array.shape != (n,):
            raise OPEInputError(f"{name} must have shape ({n},) like action_dist's first axis; got {array.shape}")
    for name, array in (("reward", reward), ("pscore", pscore)):
        if not np.isfinite(array).all():
            raise OPEInputError(f"{name} must be finite; got {array[_first_bad(~np.isfinite(array))]} at row "
                                f"{_first_bad(~np.isfinite(array))}")
    if action.dtype.kind not in "iu" or ((action < 0) | (action >= n_actions)).any():
        bad = _first_bad((action < 0) | (action >= n_actions)) if action.dtype.kind in "iu" else 0
        raise OPEInputError(f"action must be integers in [0, {n_actions}); got {action[bad]} at row {bad}")
    if position.dtype.kind not in "iu" or ((position < 0) | (position >= len_list)).any():
        bad = _first_bad((position < 0) | (position >= len_list)) if position.dtype.kind in "iu" else 0
        raise OPEInputError(f"position must be integers in [0, {len_list}); got {position[bad]} at row {bad}")
    if need_pscore and ((pscore <= 0) | (pscore > 1)).any():
        bad = _first_bad((pscore <= 0) | (pscore > 1))
        raise OPEInputError(f"pscore must be in (0, 1]; got {pscore[bad]} at row {bad}")
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
    return reward, action.astype(np.int64), pscore, action_dist, position.astype(np.int64), q


@dataclass
class BaseOffPolicyEstimator(abc.ABC):
    """One estimator: ``estimate_policy_value`` (a float) and ``estimate_interval`` (a bootstrap CI)."""

    estimator_name: str = "base"
    needs_pscore: bool = True
    needs_reward_model: bool = False

    @abc.abstractmethod
    def _components(self, reward, action, pscore, action_dist, position, q) -> tuple[np.ndarray, ...]:
        """Per-round arrays (n,) whose means :meth:`_combine` turns into the estimate."""

    def _combine(self, *means: np.ndarray) -> np.ndarray:
        """The estimate from the means of the per-round arrays (default: the single mean)."""
        return means[0]

    def _prepare(self, reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model):
        if self.needs_reward_model and estimated_rewards_by_reg_model is None:
            raise OPEInputError(f"{self.estimator_name} needs estimated_rewards_by_reg_model")
        arrays = check_inputs(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model,
                              need_pscore=self.needs_pscore)
        return self._components(*arrays)

    def estimate_policy_value(self, reward: np.ndarray, action: np.ndarray, pscore: np.ndarray | None,
                              action_dist: np.ndarray, position: np.ndarray | None = None,
                              estimated_rewards_by_reg_model: np.ndarray | None = None) -> float:
        """The estimated value of the evaluation policy ``action_dist`` (mean reward per round)."""
        components = self._prepare(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
        return float(self._combine(*(c.mean() for c in components)))

    def estimate_interval(self, reward: np.ndarray, action: np.ndarray, pscore: np.ndarray | None,
                          action_dist: np.ndarray, position: np.ndarray | None = None,
                          estimated_rewards_by_reg_model: np.ndarray | None = None, alpha: float = 0.05,
                          n_bootstrap_samples: int = 1000, random_state: int | None = None) -> dict[str, float]:
        """Percentile bootstrap over rounds: ``{"mean", "95.0% CI (lower)", "95.0% CI (upper)"}`` (obp keys)."""
        if not 0 < alpha < 1 or n_bootstrap_samples < 1:
            raise OPEInputError(f"alpha must be in (0, 1) and n_bootstrap_samples >= 1; got {alpha}, "
                                f"{n_bootstrap_samples}")
        components = self._prepare(reward, action, pscore, action_dist, position, estimated_rewards_by_reg_model)
        means = bootstrap_means(components, n_bootstrap_samples, np.random.default_rng(random_state))
        values = self._combine(*means)
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
class DirectMethod(BaseOffPolicyEstimator):
    estimator_name: str = "dm"
    needs_pscore: bool = False
    needs_reward_model: bool = True

    def _components(self, reward, action, pscore, action_dist, position, q):
        return (_dm_term(action_dist, q, position),)


@dataclass
class InverseProbabilityWeighting(BaseOffPolicyEstimator):
    estimator_name: str = "ipw"

    def _components(self, reward, action, pscore, action_dist, position, q):
        return (_chosen(action_dist, action, position) / pscore * reward,)


@dataclass
class SelfNormalizedInverseProbabilityWeighting(BaseOffPolicyEstimator):
    estimator_name: str = "snipw"

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = _chosen(action_dist, action, position) / pscore
        return w * reward, w

    def _combine(self, weighted_reward, weight):
        return weighted_reward / weight


@dataclass
class DoublyRobust(BaseOffPolicyEstimator):
    estimator_name: str = "dr"
    needs_reward_model: bool = True

    def _weight(self, w: np.ndarray) -> np.ndarray:
        return w

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = self._weight(_chosen(action_dist, action, position) / pscore)
        q_chosen = q[np.arange(len(action)), action, position]
        return (_dm_term(action_dist, q, position) + w * (reward - q_chosen),)


@dataclass
class SelfNormalizedDoublyRobust(BaseOffPolicyEstimator):
    estimator_name: str = "sndr"
    needs_reward_model: bool = True

    def _components(self, reward, action, pscore, action_dist, position, q):
        w = _chosen(action_dist, action, position) / pscore
        q_chosen = q[np.arange(len(action)), action, position]
        return _dm_term(action_dist, q, position), w * (reward - q_chosen), w

    def _combine(self, dm, weighted_residual, weight):
        return dm + weighted_residual / weight


@dataclass
class SwitchDoublyRobust(DoublyRobust):
    """DR correction only where the weight is at most ``lambda_``."""

    estimator_name: str = "switch-dr"
    lambda_: float = np.inf

    def _weight(self, w: np.ndarray) -> np.ndarray:
        return np.where(w <= self.lambda_, w, 0.0)


@dataclass
class DoublyRobustWithShrinkage(DoublyRobust):
    """Optimistic shrinkage: w -> lambda w / (w^2 + lambda); lambda = inf gives DR, 0 gives DM."""

    estimator_name: str = "dr-os"
    lambda_: float = np.inf

    def _weight(self, w: np.ndarray) -> np.ndarray:
        if np.isinf(self.lambda_):
            return w
        return self.lambda_ * w / (w ** 2 + self.lambda_)


ESTIMATORS = {"dm": DirectMethod, "ips": InverseProbabilityWeighting,
              "snips": SelfNormalizedInverseProbabilityWeighting, "dr": DoublyRobust,
              "sndr": SelfNormalizedDoublyRobust, "switch-dr": SwitchDoublyRobust,
              "dr-os": DoublyRobustWithShrinkage}
"""Estimator classes by the names the ``ope`` command takes."""


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

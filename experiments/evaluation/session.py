"""Session-level (trajectory) off-policy estimators: the value of a policy per shopper session, when what the
policy shows changes the shopper's state (satiation, fatigue) and with it the later requests of the session
and how many there are.

Why not the per-request estimators (``estimators.py``): they treat the requests of a session as independent
bandit rounds and weight each reward by its own step's ratio pi_e(a_t | x_t) / pi_b(a_t | x_t). That
evaluates the new policy's choices on the *logging* policy's states: the later requests of a session, and
the session's length, are the ones the logging policy led to. Their value per request times the log's
requests per session is biased for the value per session as soon as the policy changes what comes next, and
their bootstrap over requests treats correlated requests of one session as independent draws, which makes
the intervals too narrow. Here the unit is the session: weights are products over a session's steps and the
bootstrap resamples whole sessions.

Array conventions. Every array is flat, one row per request (n rows); a session's rows are contiguous and in
step order, and sessions may have different lengths (a session that ended, or was cut short, has fewer steps):

* ``session_id`` (n,) integers: the session of each row; each session's rows form one block.
* ``step`` (n,) integers: 0, 1, 2, ... down each session's rows (requests earlier in the session).
* ``reward`` (n,) finite: r_t, the reward of the request.
* ``pscore`` (n,) in (0, 1]: pi_b(a_t | x_t), the logging policy's probability of the logged action.
* ``evaluation_policy_pscore`` (n,) in [0, 1]: pi_e(a_t | x_t), the evaluation policy's probability of the
  logged action (0 where it would never take it).
* ``q_hat`` (n,) finite (the doubly robust estimators): Q-hat(x_t, a_t), an estimate of the expected
  discounted return from step t on, E[sum_{t' >= t} gamma^(t' - t) r_t' | x_t, a_t], when a_t is the logged
  action and pi_e acts from step t + 1 on.
* ``v_hat`` (n,) finite (the doubly robust estimators): V-hat(x_t) = sum_a pi_e(a | x_t) Q-hat(x_t, a).
* ``gamma`` in [0, 1], default 1: the discount. The policy value is V(pi_e) = E_{pi_e}[sum_t gamma^t r_t],
  with gamma = 1 the expected sum of a session's rewards.

With w_t = pi_e(a_t | x_t) / pi_b(a_t | x_t) and rho_t = prod_{t' <= t} w_t' (rho_{-1} = 1), for sessions
i = 1..n_sessions of T_i steps (rewards, Q-hat and V-hat are 0 and rho_t = rho_{T_i - 1} for t >= T_i: once a
session has ended nothing the evaluation policy would do changes it, so its weight stays):

* TIS (trajectory-wise IS):    mean_i rho_{i,T_i-1} sum_t gamma^t r_{i,t}
* SNTIS:                       sum_i rho_{i,T_i-1} sum_t gamma^t r_{i,t} / sum_i rho_{i,T_i-1}
* PDIS (per-decision IS):      mean_i sum_t gamma^t rho_{i,t} r_{i,t}                      (Precup et al. 2000)
* SNPDIS (weighted PDIS):      sum_t gamma^t [sum_i rho_{i,t} r_{i,t}] / [sum_i rho_{i,t}]   (Thomas 2015, CWPDIS)
* DR (per-decision DR):        mean_i sum_t gamma^t [rho_{i,t} (r_{i,t} - q_hat_{i,t}) + rho_{i,t-1} v_hat_{i,t}]
                               (Jiang and Li 2016; Thomas and Brunskill 2016)
* SNDR:                        sum_t gamma^t [mean_i rho_{i,t} (r_{i,t} - q_hat_{i,t}) / mean_i rho_{i,t}
                                              + mean_i rho_{i,t-1} v_hat_{i,t} / mean_i rho_{i,t-1}]

The self-normalised estimators divide each step's sum by the mean weight over *all* sessions, the ended ones
with their frozen weight: E_b[rho_t] = 1 at every t (the weight is a martingale stopped at the session's
end), whereas dividing by the sessions still running would estimate each step's reward given that the
session is still running and lose the evaluation policy's effect on the session's length. A step whose
weights are all 0 contributes 0 (its numerator is 0 too). TIS, PDIS and DR are unbiased when pscore is the
logging policy's probability and pi_b(a | x) > 0 wherever pi_e(a | x) > 0; DR for any Q-hat, and with the
true Q, deterministic rewards and deterministic transitions every session contributes exactly
V(x_0) = sum_a pi_e(a | x_0) Q(x_0, a) (only the randomness of the start state is left). The self-normalised
ones are biased in small samples but consistent, and never leave the range of the observed returns (SNTIS).
The weight of a long session is a product of many ratios: TIS's variance grows exponentially with the
session's length, PDIS's less, DR's least when Q-hat is good (Jiang and Li 2016).

``estimate_interval`` is a percentile bootstrap over sessions (a session's rows stay together), vectorised
over resamples with :func:`~fusionsim.experiments.evaluation.estimators.bootstrap_means`'s draws (the per-step
self-normalised estimators compute all steps' means of a resample as one matrix product); it returns obp's
keys (``"mean"``, ``"95.0% CI (lower)"``, ``"95.0% CI (upper)"``); the self-normalised estimators recompute
their normalisers in every resample. Sessions are the independent units: effects that cross sessions (the
same shopper returning, shared state such as trending counts) are outside these estimators.

The padded layout costs n_sessions * (longest session) numbers per array. Bad input raises
:class:`~fusionsim.experiments.evaluation.estimators.OPEInputError` with a one-line message naming the array,
the bad value and its first bad row, and what is allowed.

:func:`session_arrays_from_log` builds these arrays from a ``fusionsim simulate`` log (which interleaves the
requests of concurrent sessions) and an evaluation policy's action distribution per request; see there for
how sessions still open at the log's end are treated.

References: Doina Precup, Richard S. Sutton, Satinder Singh. "Eligibility Traces for Off-Policy Policy
Evaluation", ICML 2000. Nan Jiang, Lihong Li. "Doubly Robust Off-policy Value Evaluation for Reinforcement
Learning", ICML 2016. Philip S. Thomas, Emma Brunskill. "Data-Efficient Off-Policy Policy Evaluation for
Reinforcement Learning", ICML 2016. Philip S. Thomas. "Safe Reinforcement Learning", PhD thesis, University of
Massachusetts Amherst, 2015. SCOPE-RL (Kiyohara et al. 2023, ``scope_rl.ope.discrete``) has these
estimators (TIS, PDIS, DR and their self-normalised forms, the same ``estimator_name`` values) for
trajectories of a fixed length.
"""

from __future__ import annotations

import abc
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from fusionsim.experiments.evaluation.estimators import (PLAIN_BOOTSTRAP_MAX_ROUNDS, OPEInputError,
                                                         OPEInputTypeError, _first_bad, bootstrap_means,
                                                         contiguous_blocks, flat_arrays, percentile_interval)

__all__ = ["OPEN_SESSIONS", "SESSION_ESTIMATORS", "BaseSessionOffPolicyEstimator", "ContinuousSessionData",
           "PerDecisionDoublyRobust", "PerDecisionIS", "SelfNormalizedPerDecisionDoublyRobust",
           "SelfNormalizedPerDecisionIS", "SelfNormalizedTrajectoryWiseIS", "SessionArrays", "SessionLog",
           "TrajectoryWiseIS", "action_basis", "check_gamma", "check_session_inputs", "continuous_q_features",
           "continuous_session_data", "fitted_q_evaluation", "linear_fitted_q_evaluation", "q_features",
           "session_arrays_from_log"]

ACTION_DIST_ATOL = 1e-6
"""How far from 1 a row of an action distribution may sum (as the discrete estimators' check)."""

OPEN_SESSIONS = ("cut", "drop", "keep")
"""How :func:`session_arrays_from_log` treats sessions still open at the log's end."""


def check_gamma(gamma: object) -> float:
    """``gamma`` must be a real number in [0, 1] (a TypeError for a non-number, as obp's check_scalar)."""
    if not isinstance(gamma, numbers.Real) or isinstance(gamma, bool):
        raise OPEInputTypeError(f"gamma must be a number in [0, 1]; got {gamma!r} ({type(gamma).__name__})")
    if not 0 <= gamma <= 1:  # also rejects nan
        raise OPEInputError(f"gamma must be a number in [0, 1]; got {gamma}")
    return float(gamma)


def _check_probabilities(name: str, array: np.ndarray, zero_allowed: bool, densities: bool = False) -> None:
    """Probabilities in (0, 1] ([0, 1] with ``zero_allowed``); densities (of a continuous action) in (0, inf)
    ([0, inf))."""
    upper = array < np.inf if densities else array <= 1
    ok = ((array >= 0) if zero_allowed else (array > 0)) & upper  # nan fails both
    if not ok.all():
        row = _first_bad(~ok)
        allowed = (("[0, inf)" if zero_allowed else "(0, inf)") + " (a density)" if densities
                   else "[0, 1]" if zero_allowed else "(0, 1]")
        raise OPEInputError(f"{name} must be in {allowed}; got {float(array[row])} at row {row}")


@dataclass(frozen=True)
class SessionArrays:
    """Validated session arrays in a padded layout, (n_sessions, horizon) with horizon the longest session:
    ``reward``, ``q_hat``, ``v_hat`` 0 after a session's end; ``weight`` the per-step ratio w_t, 1 after the
    end; ``rho`` its cumulative product along each session (frozen after the end); ``rho_prev`` = rho_{t-1}
    (rho_{-1} = 1); ``discount`` (horizon,) gamma^t; ``lengths`` (n_sessions,) steps per session;
    ``first_row`` (n_sessions,) each session's first row in the flat arrays."""

    reward: np.ndarray
    weight: np.ndarray
    rho: np.ndarray
    rho_prev: np.ndarray
    discount: np.ndarray
    lengths: np.ndarray
    first_row: np.ndarray
    q_hat: np.ndarray | None = None
    v_hat: np.ndarray | None = None


def _session_layout(session_id: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row, length) of each session after checking that each session is one block of rows and that
    ``step`` counts 0, 1, ... down each session's rows."""
    n = len(session_id)
    starts = contiguous_blocks(session_id, "session_id", "session")
    lengths = np.diff(np.append(starts, n))
    expected = np.arange(n) - np.repeat(starts, lengths)
    if (step != expected).any():
        row = _first_bad(step != expected)
        raise OPEInputError(f"step must be 0, 1, 2, ... in row order within each session; got {step[row]} at row "
                            f"{row} (session_id {session_id[row]}, expected {expected[row]})")
    return starts, lengths


def check_session_inputs(estimator_name: str, arrays: dict[str, object], logging: tuple[str, ...] = ("pscore",),
                         evaluation: tuple[str, ...] = ("evaluation_policy_pscore",),
                         gamma: object = 1.0, densities: bool = False) -> SessionArrays:
    """Validate flat session arrays and return them in the padded layout of :class:`SessionArrays`.

    ``arrays`` maps each argument's name to its value, in the estimator's argument order, and holds
    ``session_id``, ``step``, ``reward``, the propensities named by ``logging`` (in (0, 1]) and ``evaluation``
    (in [0, 1]; with ``densities``, the densities of a continuous action, in (0, inf) and [0, inf)), and
    optionally ``q_hat`` and ``v_hat``. Checks, in order: ``gamma`` in [0, 1]; each array
    given and 1-D; one value per row of ``session_id``; at least one row; ``session_id`` and ``step``
    integers; each session one contiguous block of rows; ``step`` 0, 1, ... in row order within each
    session; ``reward``, ``q_hat`` and ``v_hat`` finite; propensities in range; the cumulative weights finite.
    """
    gamma = check_gamma(gamma)
    checked = flat_arrays(estimator_name, arrays, "session_id", "request", ("session_id", "step"))
    starts, lengths = _session_layout(checked["session_id"], checked["step"])
    checked = {name: array if name in ("session_id", "step") else array.astype(np.float64, copy=False)
               for name, array in checked.items()}
    for name in ("reward", "q_hat", "v_hat"):
        if name in checked and not np.isfinite(checked[name]).all():
            row = _first_bad(~np.isfinite(checked[name]))
            raise OPEInputError(f"{name} must be finite; got {checked[name][row]} at row {row}")
    for name in logging:
        _check_probabilities(name, checked[name], zero_allowed=False, densities=densities)
    for name in evaluation:
        _check_probabilities(name, checked[name], zero_allowed=True, densities=densities)

    n_sessions, horizon = len(starts), int(lengths.max())
    session = np.repeat(np.arange(n_sessions), lengths)
    step = checked["step"]

    def pad(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((n_sessions, horizon), fill)
        out[session, step] = values
        return out

    weight = pad(checked[evaluation[0]] / checked[logging[0]], 1.0)
    with np.errstate(over="ignore"):
        rho = np.cumprod(weight, axis=1)
    if not np.isfinite(rho[:, -1]).all():
        bad = _first_bad(~np.isfinite(rho[:, -1]))
        raise OPEInputError(f"the cumulative importance weight of session_id {checked['session_id'][starts[bad]]} "
                            f"(rows {starts[bad]}..{starts[bad] + lengths[bad] - 1}) overflows: the product of "
                            f"{evaluation[0]} / {logging[0]} over its steps is not finite")
    rho_prev = np.empty_like(rho)
    rho_prev[:, 0] = 1.0
    rho_prev[:, 1:] = rho[:, :-1]
    return SessionArrays(reward=pad(checked["reward"], 0.0), weight=weight, rho=rho, rho_prev=rho_prev,
                         discount=np.power(gamma, np.arange(horizon, dtype=np.float64)), lengths=lengths,
                         first_row=starts,
                         q_hat=pad(checked["q_hat"], 0.0) if "q_hat" in checked else None,
                         v_hat=pad(checked["v_hat"], 0.0) if "v_hat" in checked else None)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (all weights 0: the numerator is 0 too)."""
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape),
                     where=denominator != 0)


def _session_bootstrap_means(components: tuple[np.ndarray, ...], n_samples: int, rng: np.random.Generator,
                             block: int = 256) -> list[np.ndarray]:
    """Bootstrap resamples of the sessions (the same sessions for every component): each component's mean over
    the sessions of each resample, (n_samples,) for a component (n_sessions,), (n_samples, k) for one
    (n_sessions, k).

    The resamples are :func:`bootstrap_means`'s (the same draws from ``rng``): up to
    PLAIN_BOOTSTRAP_MAX_ROUNDS sessions the plain percentile bootstrap, above the Bag of Little Bootstraps,
    which ``bootstrap_means`` itself computes. With more than two columns in all, the plain bootstrap's
    resamples are turned into counts per session and every column's mean comes from one matrix product per
    block of resamples, instead of one gather per column."""
    columns = [c[:, None] if c.ndim == 1 else c for c in components]
    widths = [c.shape[1] for c in columns]
    n = len(columns[0])
    if sum(widths) <= 2 or n > PLAIN_BOOTSTRAP_MAX_ROUNDS:
        flat = tuple(np.ascontiguousarray(c[:, j]) for c in columns for j in range(c.shape[1]))
        means = np.stack(bootstrap_means(flat, n_samples, rng), axis=1)
    else:
        matrix = np.concatenate(columns, axis=1)
        means = np.empty((n_samples, matrix.shape[1]))
        per_chunk = max(1, (1 << 24) // max(n, 1))  # bootstrap_means's chunks, so its draws
        for start in range(0, n_samples, per_chunk):
            k = min(per_chunk, n_samples - start)
            index = rng.integers(0, n, (k, n), dtype=np.int32)
            for lo in range(0, k, block):
                hi = min(lo + block, k)
                flat_index = (index[lo:hi] + (np.arange(hi - lo, dtype=np.int64) * n)[:, None]).ravel()
                counts = np.bincount(flat_index, minlength=(hi - lo) * n).reshape(hi - lo, n)
                means[start + lo:start + hi] = counts.astype(np.float64) @ matrix / n
    out, at = [], 0
    for component, width in zip(components, widths, strict=True):
        out.append(means[:, at] if component.ndim == 1 else means[:, at:at + width])
        at += width
    return out


@dataclass
class BaseSessionOffPolicyEstimator(abc.ABC):
    """One session estimator: ``estimate_policy_value`` (a float, the value per session) and
    ``estimate_interval`` (a bootstrap CI over sessions).

    ``densities``: ``pscore`` and ``evaluation_policy_pscore`` are the densities of a continuous action under
    the logging and the evaluation policy (e.g. ``agents.ppo.PPOPolicy.action_density``), so they may exceed 1;
    the weights are their ratios all the same.

    Subclasses give the per-session arrays (:meth:`_components`, each (n_sessions,) or (n_sessions, horizon))
    and how their means over sessions make the estimate (:meth:`_combine`, vectorised over leading axes)."""

    needs_reward_model: ClassVar[bool] = False
    estimator_name: str = "base"
    densities: bool = False

    @abc.abstractmethod
    def _components(self, s: SessionArrays) -> tuple[np.ndarray, ...]:
        """Per-session arrays whose means over sessions :meth:`_combine` turns into the estimate."""

    def _combine(self, s: SessionArrays, *means: np.ndarray) -> np.ndarray:
        """The estimate from the means of the per-session arrays (default: the single mean)."""
        return means[0]

    def _sessions(self, session_id, step, reward, pscore, evaluation_policy_pscore, q_hat=None, v_hat=None,
                  gamma=1.0) -> SessionArrays:
        arrays = {"session_id": session_id, "step": step, "reward": reward, "pscore": pscore,
                  "evaluation_policy_pscore": evaluation_policy_pscore}
        if self.needs_reward_model:
            arrays.update(q_hat=q_hat, v_hat=v_hat)
        return check_session_inputs(self.estimator_name, arrays, gamma=gamma, densities=self.densities)

    def _value(self, **arrays) -> float:
        s = self._sessions(**arrays)
        return float(self._combine(s, *(c.mean(axis=0) for c in self._components(s))))

    def _interval(self, alpha: float, n_bootstrap_samples: int, random_state, **arrays) -> dict[str, float]:
        s = self._sessions(**arrays)
        return percentile_interval(self._components(s), lambda *means: self._combine(s, *means), alpha,
                                   n_bootstrap_samples, random_state, resample=_session_bootstrap_means)


@dataclass
class _SessionImportanceSampling(BaseSessionOffPolicyEstimator):
    """The public methods of the importance-sampling estimators (no reward model)."""

    def estimate_policy_value(self, session_id: np.ndarray, step: np.ndarray, reward: np.ndarray,
                              pscore: np.ndarray, evaluation_policy_pscore: np.ndarray, gamma: float = 1.0,
                              **kwargs) -> float:
        """The estimated value per session of the evaluation policy, E_{pi_e}[sum_t gamma^t r_t].

        session_id, step (n,) integers; reward (n,); pscore (n,) in (0, 1] = pi_b(a_t | x_t);
        evaluation_policy_pscore (n,) in [0, 1] = pi_e(a_t | x_t); gamma in [0, 1] (the module docstring has
        the conventions). ``**kwargs`` (e.g. q_hat and v_hat when one dict of arrays feeds every estimator)
        is ignored.
        """
        return self._value(session_id=session_id, step=step, reward=reward, pscore=pscore,
                           evaluation_policy_pscore=evaluation_policy_pscore, gamma=gamma)

    def estimate_interval(self, session_id: np.ndarray, step: np.ndarray, reward: np.ndarray, pscore: np.ndarray,
                          evaluation_policy_pscore: np.ndarray, gamma: float = 1.0, alpha: float = 0.05,
                          n_bootstrap_samples: int = 10000, random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over sessions of the estimate: ``{"mean", "95.0% CI (lower)", "95.0% CI
        (upper)"}`` (obp's keys; the level follows ``alpha``). Arrays as in ``estimate_policy_value``;
        ``n_bootstrap_samples`` resamples of the sessions drawn from ``random_state`` (None, an int, a
        Generator or a RandomState)."""
        return self._interval(alpha, n_bootstrap_samples, random_state, session_id=session_id, step=step,
                              reward=reward, pscore=pscore, evaluation_policy_pscore=evaluation_policy_pscore,
                              gamma=gamma)


@dataclass
class TrajectoryWiseIS(_SessionImportanceSampling):
    """Trajectory-wise importance sampling (TIS): the whole session's return weighted by the whole session's
    ratio, V = mean_i rho_{i,T_i-1} sum_t gamma^t r_{i,t}, rho_{i,T_i-1} = prod_t pi_e(a_{i,t} | x_{i,t}) /
    pi_b(a_{i,t} | x_{i,t}).

    Unbiased; its variance grows exponentially with the session length. ``estimator_name`` = "tis"
    (SCOPE-RL's). Precup, Sutton and Singh 2000 (their "IS").
    """

    estimator_name: str = "tis"

    def _components(self, s):
        return (s.rho[:, -1] * (s.reward @ s.discount),)


@dataclass
class SelfNormalizedTrajectoryWiseIS(_SessionImportanceSampling):
    """Self-normalised (weighted) TIS: V = sum_i rho_{i,T_i-1} G_i / sum_i rho_{i,T_i-1}, G_i = sum_t gamma^t
    r_{i,t}, a weighted mean of the sessions' returns (0 when every weight is 0).

    Biased, consistent, within the range of the observed returns. ``estimator_name`` = "sntis" (SCOPE-RL's).
    Precup, Sutton and Singh 2000 (their "weighted IS").
    """

    estimator_name: str = "sntis"

    def _components(self, s):
        rho = s.rho[:, -1]
        return rho * (s.reward @ s.discount), rho

    def _combine(self, s, weighted_return, weight):
        return _ratio(weighted_return, weight)


@dataclass
class PerDecisionIS(_SessionImportanceSampling):
    """Per-decision importance sampling (PDIS; Precup, Sutton and Singh 2000): each reward weighted by the
    ratio of the steps up to it only, V = mean_i sum_t gamma^t rho_{i,t} r_{i,t}, rho_{i,t} = prod_{t' <= t}
    pi_e(a_{i,t'} | x_{i,t'}) / pi_b(a_{i,t'} | x_{i,t'}).

    Unbiased (a reward cannot depend on later actions), with less variance than TIS. ``estimator_name`` =
    "pdis" (SCOPE-RL's).
    """

    estimator_name: str = "pdis"

    def _components(self, s):
        return ((s.rho * s.reward) @ s.discount,)


@dataclass
class SelfNormalizedPerDecisionIS(_SessionImportanceSampling):
    """Self-normalised (weighted) PDIS, normalised per step: V = sum_t gamma^t [sum_i rho_{i,t} r_{i,t}] /
    [sum_i rho_{i,t}], where a session that ended before step t keeps its last weight in the denominator and
    has r_{i,t} = 0 (so the denominator estimates E_b[rho_t] = 1 and the evaluation policy's effect on the
    session's length stays in the estimate); a step whose weights are all 0 contributes 0.

    Biased, consistent. ``estimator_name`` = "snpdis" (SCOPE-RL's). This is Thomas's (2015) consistent
    weighted per-decision IS (CWPDIS) and Thomas and Brunskill's (2016) WPDIS; the weighted per-decision
    estimator of Precup, Sutton and Singh (2000) normalises differently.
    """

    estimator_name: str = "snpdis"

    def _components(self, s):
        return s.rho * s.reward, s.rho

    def _combine(self, s, weighted_reward, weight):
        return (_ratio(weighted_reward, weight) * s.discount).sum(axis=-1)


@dataclass
class _SessionDoublyRobustBase(BaseSessionOffPolicyEstimator):
    """The public methods of the doubly robust estimators (a Q-function estimate as control variate)."""

    needs_reward_model: ClassVar[bool] = True

    def estimate_policy_value(self, session_id: np.ndarray, step: np.ndarray, reward: np.ndarray,
                              pscore: np.ndarray, evaluation_policy_pscore: np.ndarray, q_hat: np.ndarray,
                              v_hat: np.ndarray, gamma: float = 1.0, **kwargs) -> float:
        """The estimated value per session of the evaluation policy, E_{pi_e}[sum_t gamma^t r_t].

        session_id, step (n,) integers; reward (n,); pscore (n,) in (0, 1] = pi_b(a_t | x_t);
        evaluation_policy_pscore (n,) in [0, 1] = pi_e(a_t | x_t); q_hat (n,) = Q-hat(x_t, a_t) at the logged
        action; v_hat (n,) = sum_a pi_e(a | x_t) Q-hat(x_t, a); gamma in [0, 1] (the module docstring has the
        conventions). ``**kwargs`` is ignored.
        """
        return self._value(session_id=session_id, step=step, reward=reward, pscore=pscore,
                           evaluation_policy_pscore=evaluation_policy_pscore, q_hat=q_hat, v_hat=v_hat, gamma=gamma)

    def estimate_interval(self, session_id: np.ndarray, step: np.ndarray, reward: np.ndarray, pscore: np.ndarray,
                          evaluation_policy_pscore: np.ndarray, q_hat: np.ndarray, v_hat: np.ndarray,
                          gamma: float = 1.0, alpha: float = 0.05, n_bootstrap_samples: int = 10000,
                          random_state=None, **kwargs) -> dict[str, float]:
        """Percentile bootstrap over sessions of the estimate, obp's keys; arrays as in
        ``estimate_policy_value``."""
        return self._interval(alpha, n_bootstrap_samples, random_state, session_id=session_id, step=step,
                              reward=reward, pscore=pscore, evaluation_policy_pscore=evaluation_policy_pscore,
                              q_hat=q_hat, v_hat=v_hat, gamma=gamma)


@dataclass
class PerDecisionDoublyRobust(_SessionDoublyRobustBase):
    """Per-decision doubly robust estimator (Jiang and Li 2016; Thomas and Brunskill 2016, their DR):

        V = mean_i sum_t gamma^t [ rho_{i,t} (r_{i,t} - q_hat_{i,t}) + rho_{i,t-1} v_hat_{i,t} ],  rho_{i,-1} = 1,

    with q_hat_{i,t} = Q-hat(x_{i,t}, a_{i,t}) and v_hat_{i,t} = sum_a pi_e(a | x_{i,t}) Q-hat(x_{i,t}, a),
    Q-hat an estimate of the evaluation policy's Q-function (e.g. fitted Q evaluation). PDIS with Q-hat as a
    control variate: unbiased for any Q-hat (q_hat = v_hat = 0 gives PDIS); with the true Q, deterministic
    rewards and deterministic transitions each session contributes exactly V(x_{i,0}) (with the true Q only
    the randomness of the start, the rewards and the transitions is left; Jiang and Li 2016).
    ``estimator_name`` = "dr" (SCOPE-RL's).
    """

    estimator_name: str = "dr"

    def _components(self, s):
        return ((s.rho * (s.reward - s.q_hat) + s.rho_prev * s.v_hat) @ s.discount,)


@dataclass
class SelfNormalizedPerDecisionDoublyRobust(_SessionDoublyRobustBase):
    """Self-normalised (weighted) per-decision DR (Thomas and Brunskill 2016, their WDR), each step's weights
    divided by their mean over all sessions (the ended ones with their frozen weight):

        V = sum_t gamma^t [ mean_i rho_{i,t} (r_{i,t} - q_hat_{i,t}) / mean_i rho_{i,t}
                            + mean_i rho_{i,t-1} v_hat_{i,t} / mean_i rho_{i,t-1} ],  rho_{i,-1} = 1.

    Biased, consistent. ``estimator_name`` = "sndr" (SCOPE-RL's).
    """

    estimator_name: str = "sndr"

    def _components(self, s):
        return s.rho * (s.reward - s.q_hat), s.rho_prev * s.v_hat, s.rho

    def _combine(self, s, residual, control, weight):
        weight_prev = np.concatenate([np.ones(weight.shape[:-1] + (1,)), weight[..., :-1]], axis=-1)
        return ((_ratio(residual, weight) + _ratio(control, weight_prev)) * s.discount).sum(axis=-1)


SESSION_ESTIMATORS = {cls.estimator_name: cls for cls in (
    TrajectoryWiseIS, SelfNormalizedTrajectoryWiseIS, PerDecisionIS, SelfNormalizedPerDecisionIS,
    PerDecisionDoublyRobust, SelfNormalizedPerDecisionDoublyRobust)}
"""Session estimator classes by ``estimator_name`` (SCOPE-RL's names); "dr" and "sndr" need q_hat and v_hat."""


# ---------------------------------------------------------------------------------------------------------------
LOG_COLUMNS = ("request_id", "session_id", "session_step", "action", "propensity", "reward", "terminated",
               "truncated")
"""The columns of a fusionsim interaction log that :func:`session_arrays_from_log` reads."""


@dataclass(frozen=True)
class SessionLog:
    """The session arrays of a log (:func:`session_arrays_from_log`), one row per kept request, a session's
    rows contiguous and in step order, sessions in increasing ``session_id``:

    ``session_id``, ``step`` (n,) int64; ``reward``, ``pscore`` (n,) float64 (the log's ``propensity``);
    ``evaluation_policy_pscore`` (n,) = pi_e(a_t | x_t) from the action distribution; ``action`` (n,) int64;
    ``row`` (n,) int64, each row's position (0-based) in the log as given, to align contexts or a reward model;
    ``next_row`` (n,) int64, the index in these arrays of the session's next request, -1 at a session's last.
    Counts: ``log_sessions`` in the log, ``open_at_end`` of them still open at its end, ``begun_before`` whose
    first logged request is not step 0 (the log began inside them), ``dropped`` in all (see
    ``open_sessions``)."""

    session_id: np.ndarray
    step: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    evaluation_policy_pscore: np.ndarray
    action: np.ndarray
    row: np.ndarray
    next_row: np.ndarray
    open_sessions: str
    log_sessions: int
    open_at_end: int
    begun_before: int
    dropped: int
    n_sessions: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "n_sessions", int(np.count_nonzero(self.step == 0)))

    @property
    def session_of_row(self) -> np.ndarray:
        """(n,) int64: each row's session as 0, 1, ... in row order (an index into per-session arrays)."""
        return np.cumsum(self.step == 0) - 1

    @property
    def requests_per_session(self) -> float:
        """Kept requests per kept session (the factor that turns a value per request into one per session)."""
        return len(self.step) / max(self.n_sessions, 1)

    def arrays(self) -> dict[str, np.ndarray]:
        """The estimators' keyword arrays: session_id, step, reward, pscore, evaluation_policy_pscore."""
        return {"session_id": self.session_id, "step": self.step, "reward": self.reward, "pscore": self.pscore,
                "evaluation_policy_pscore": self.evaluation_policy_pscore}


def session_arrays_from_log(log, action_dist: np.ndarray | None, open_sessions: str = "cut",
                            evaluation_pscore: np.ndarray | None = None) -> SessionLog:
    """The session arrays of a ``fusionsim simulate`` interaction log (a pandas DataFrame, e.g.
    ``fusionsim.envs.logs.read_interaction_log(folder, "--logs")``) for an evaluation policy.

    A log interleaves the requests of concurrent sessions; here they are grouped by ``session_id`` and ordered
    by ``session_step`` (which must run 0, 1, 2, ... without gaps or repeats within a session).

    Args:
        log: the log's rows, with the columns :data:`LOG_COLUMNS` (request_id, session_id, session_step,
            action, propensity, reward, terminated, truncated), in any row order.
        action_dist: (n_log_rows, n_actions), or (n_log_rows, n_actions, 1) as obp's ``action_dist``: the
            evaluation policy's distribution over the discrete actions at each of the log's requests, row i
            for the log's i-th row (e.g. ``policy.action_distribution(contexts)`` of the log's contexts);
            ``evaluation_policy_pscore`` is its entry at the logged action. None: the logging policy itself
            (``evaluation_policy_pscore`` = ``propensity``, every weight 1: the on-policy mean return), unless
            ``evaluation_pscore`` is given.
        open_sessions: what to do with the sessions still open when the log ends (no ``terminated`` or
            ``truncated`` on their last request; their returns are incomplete):

            * ``"cut"`` (the default): drop every session that began at or after the first request of the
              earliest-begun session still open. Every kept session ended, and whether one is kept depends on
              when it began and on other sessions, not on how long it lasted.
            * ``"drop"``: drop only the open sessions. The sessions that began shortly before the end are then
              kept only if they were short, which biases the value per session (usually downwards).
            * ``"keep"``: keep the open sessions' logged requests as if they had ended there (partial returns).

            Sessions whose first logged request is not step 0 (the log began inside them; never so for a
            whole simulate run, which starts with fresh sessions) are always dropped.
        evaluation_pscore: (n_log_rows,), instead of ``action_dist``: the evaluation policy's probability, or
            density, of each row's logged action, row i for the log's i-th row. For continuous actions (a log
            whose ``action`` is -1 and whose ``propensity`` is the logging policy's density, e.g. of a PPO
            policy, ``agents.ppo.PPOPolicy.action_density`` of the logged ``action_<arm>`` values); feed the
            arrays to estimators made with ``densities=True``.

    Returns:
        a :class:`SessionLog`; ``.arrays()`` feeds the estimators.
    """
    if open_sessions not in OPEN_SESSIONS:
        raise OPEInputError(f"open_sessions must be one of {', '.join(OPEN_SESSIONS)}; got {open_sessions!r}")
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if missing:
        raise OPEInputError(f"log has no column '{missing[0]}'; expected a fusionsim interaction log "
                            "(envs.logs.read_interaction_log)")
    n = len(log)
    if n == 0:
        raise OPEInputError("log must have at least one row; got 0")
    request_id = log["request_id"].to_numpy().astype(np.int64)
    session_id = log["session_id"].to_numpy().astype(np.int64)
    session_step = log["session_step"].to_numpy().astype(np.int64)
    action = log["action"].to_numpy()
    pscore = log["propensity"].to_numpy(dtype=np.float64)
    reward = log["reward"].to_numpy(dtype=np.float64)
    ends = log["terminated"].to_numpy(dtype=bool) | log["truncated"].to_numpy(dtype=bool)
    if action_dist is not None and evaluation_pscore is not None:
        raise OPEInputError("give action_dist or evaluation_pscore, not both")
    if evaluation_pscore is not None:
        evaluation = np.asarray(evaluation_pscore, dtype=np.float64)
        if evaluation.shape != (n,):
            raise OPEInputError(f"evaluation_pscore must have shape ({n},), one value per row of the log; got "
                                f"{evaluation.shape}")
        if not (np.isfinite(evaluation) & (evaluation >= 0)).all():
            row = _first_bad(~(np.isfinite(evaluation) & (evaluation >= 0)))
            raise OPEInputError(f"evaluation_pscore must be finite and >= 0; got {evaluation[row]} at row {row}")
    elif action_dist is None:
        evaluation = pscore.copy()
    else:
        evaluation = _logged_action_probability(action_dist, action, n)

    order = np.lexsort((session_step, session_id))
    sid, stp = session_id[order], session_step[order]
    starts = np.concatenate(([0], np.flatnonzero(sid[1:] != sid[:-1]) + 1))
    lengths = np.diff(np.append(starts, n))
    first_step = np.repeat(stp[starts], lengths)
    expected = first_step + np.arange(n) - np.repeat(starts, lengths)
    if (stp != expected).any():
        i = _first_bad(stp != expected)
        if stp[i] == stp[i - 1]:
            raise OPEInputError(f"log has session_id {sid[i]} at session_step {stp[i]} twice (rows {order[i - 1]} "
                                f"and {order[i]}); each request of a session must be logged once")
        raise OPEInputError(f"log's session_id {sid[i]} jumps from session_step {stp[i - 1]} to {stp[i]} (row "
                            f"{order[i]}): requests of the session are missing")
    last = starts + lengths - 1
    ended = ends[order[last]]
    begun_inside = stp[starts] != 0
    keep = ~begun_inside
    if open_sessions == "drop":
        keep &= ended
    elif open_sessions == "cut" and not ended.all():
        began = request_id[order[starts]]
        keep &= began < began[~ended].min()
    rows = order[np.repeat(keep, lengths)]
    kept_lengths = lengths[keep]
    next_row = np.arange(1, len(rows) + 1, dtype=np.int64)
    next_row[np.cumsum(kept_lengths) - 1] = -1
    return SessionLog(session_id=session_id[rows], step=session_step[rows], reward=reward[rows], pscore=pscore[rows],
                      evaluation_policy_pscore=evaluation[rows], action=action[rows].astype(np.int64), row=rows,
                      next_row=next_row, open_sessions=open_sessions, log_sessions=len(starts),
                      open_at_end=int(np.count_nonzero(~ended)), begun_before=int(np.count_nonzero(begun_inside)),
                      dropped=int(np.count_nonzero(~keep)))


def _logged_action_probability(action_dist: np.ndarray, action: np.ndarray, n: int) -> np.ndarray:
    """action_dist[i, action[i]] after checking the distribution (n, n_actions) and the actions."""
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim == 3 and dist.shape[2] == 1:
        dist = dist[:, :, 0]
    if dist.ndim != 2 or len(dist) != n:
        raise OPEInputError(f"action_dist must have shape ({n}, n_actions), one row per row of the log; got "
                            f"{dist.shape}")
    n_actions = dist.shape[1]
    if action.dtype.kind not in "iu" or ((action < 0) | (action >= n_actions)).any():
        row = _first_bad((action < 0) | (action >= n_actions)) if action.dtype.kind in "iu" else 0
        raise OPEInputError(f"action must be integers in [0, {n_actions}) (the action_dist's actions); got "
                            f"{action[row]} at row {row} (-1: a log of continuous actions)")
    if not dist.min() >= 0 or not np.isfinite(dist).all():
        row = _first_bad(~(np.isfinite(dist) & (dist >= 0)).all(axis=1))
        raise OPEInputError(f"action_dist must hold probabilities (finite, >= 0); row {row} has "
                            f"{dist[row][~(np.isfinite(dist[row]) & (dist[row] >= 0))][0]}")
    sums = dist.sum(axis=1)
    if (np.abs(sums - 1.0) > ACTION_DIST_ATOL).any():
        row = _first_bad(np.abs(sums - 1.0) > ACTION_DIST_ATOL)
        raise OPEInputError(f"action_dist must sum to 1 over the {n_actions} actions of each row; row {row} sums "
                            f"to {sums[row]}")
    return dist[np.arange(n), action.astype(np.int64)]


STEP_FEATURES = 16
"""One-hot session-step features of the fitted Q evaluation: steps 0 .. STEP_FEATURES - 2, and one for later."""


def q_features(contexts: np.ndarray, step: np.ndarray) -> np.ndarray:
    """The fitted Q evaluation's features: the context and a one-hot of the session step (capped)."""
    onehot = np.zeros((len(step), STEP_FEATURES))
    onehot[np.arange(len(step)), np.minimum(step, STEP_FEATURES - 1)] = 1.0
    return np.column_stack([contexts, onehot])


def _session_folds(sessions: SessionLog, folds: int, seed: int) -> np.ndarray:
    """(n,) the cross-fitting fold of each row: whole sessions are assigned to folds at random."""
    return (np.random.default_rng(seed).permutation(sessions.n_sessions) % folds)[sessions.session_of_row]


def fitted_q_evaluation(x: np.ndarray, sessions: SessionLog, action_dist: np.ndarray, gamma: float = 1.0,
                        folds: int = 2, ridge: float = 1.0, seed: int = 0) -> np.ndarray:
    """Q-hat (n, n_actions) of the evaluation policy ``action_dist`` (n, n_actions) at every kept request by
    fitted Q evaluation (Le et al. 2019): per action a ridge regression of r_t + gamma V-hat(x_{t+1}) on the
    features ``x`` (n, d), V-hat(x_{t+1}) = sum_a pi_e(a | x_{t+1}) Q-hat(x_{t+1}, a) and 0 at a session's end,
    iterated once per step of the longest session; cross-fitted over sessions (a session's requests never fit
    its own Q-hat)."""
    n, d = x.shape
    n_actions = action_dist.shape[1]
    fold = _session_folds(sessions, folds, seed)
    has_next = sessions.next_row >= 0
    out = np.empty((n, n_actions))
    eye = ridge * np.eye(d)
    for f in range(folds):
        train_rows = fold != f
        theta = np.zeros((n_actions, d))
        for _ in range(int(sessions.step.max()) + 1):
            v = np.einsum("na,na->n", action_dist, x @ theta.T)
            target = sessions.reward + gamma * np.where(has_next, v[np.where(has_next, sessions.next_row, 0)], 0.0)
            for a in range(n_actions):
                rows = train_rows & (sessions.action == a)
                theta[a] = np.linalg.solve(x[rows].T @ x[rows] + eye, x[rows].T @ target[rows])
        out[~train_rows] = x[~train_rows] @ theta.T
    return out


def action_basis(weights: np.ndarray) -> np.ndarray:
    """(n, 1 + 2A): the basis [1, w, w^2] of arm weights ``weights`` (n, A) in which the fitted Q evaluation of
    a continuous-action policy is linear (for each context and step feature)."""
    weights = np.asarray(weights, dtype=np.float64)
    return np.column_stack([np.ones(len(weights)), weights, weights * weights])


def continuous_q_features(contexts: np.ndarray, step: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(n, (D + STEP_FEATURES) * k): :func:`q_features` of ``contexts`` (n, D) and ``step`` (n,) crossed with an
    action basis (n, k) (:func:`action_basis` of one action's weights, or its mean over the evaluation
    policy's actions: the features are linear in the basis, so their mean is the features of the mean)."""
    base = q_features(contexts, step)
    return (base[:, :, None] * np.asarray(basis, dtype=np.float64)[:, None, :]).reshape(len(base), -1)


def linear_fitted_q_evaluation(phi: np.ndarray, phi_policy: np.ndarray, sessions: SessionLog, gamma: float = 1.0,
                               folds: int = 2, ridge: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fitted Q evaluation (Le et al. 2019) with a Q-function linear in features of the state and the action,
    for a continuous-action evaluation policy: q_hat (n,) = Q-hat(x_t, a_t) at each kept request's logged
    action and v_hat (n,) = E_{a ~ pi_e}[Q-hat(x_t, a)].

    ``phi`` (n, d): the features of each request and its logged action; ``phi_policy`` (n, d): their mean
    over the evaluation policy's actions at the request (e.g. :func:`continuous_q_features` with the mean
    :func:`action_basis` of Monte Carlo draws from pi_e). One ridge regression of r_t + gamma V-hat(x_{t+1})
    (0 at a session's end) on ``phi``, iterated once per step of the longest session (once with gamma 0, the
    reward model); cross-fitted over sessions as :func:`fitted_q_evaluation`.
    """
    n, d = phi.shape
    if phi_policy.shape != (n, d):
        raise OPEInputError(f"phi_policy must have the shape of phi, {(n, d)}; got {phi_policy.shape}")
    fold = _session_folds(sessions, folds, seed)
    has_next = sessions.next_row >= 0
    next_row = np.where(has_next, sessions.next_row, 0)
    q_hat, v_hat = np.empty(n), np.empty(n)
    for f in range(folds):
        train_rows = fold != f
        x = phi[train_rows]
        gram = x.T @ x + ridge * np.eye(d)
        theta = np.zeros(d)
        for _ in range(int(sessions.step.max()) + 1 if gamma > 0 else 1):
            target = sessions.reward + gamma * np.where(has_next, (phi_policy @ theta)[next_row], 0.0)
            theta = np.linalg.solve(gram, x.T @ target[train_rows])
        q_hat[~train_rows], v_hat[~train_rows] = phi[~train_rows] @ theta, phi_policy[~train_rows] @ theta
    return q_hat, v_hat


@dataclass(frozen=True)
class ContinuousSessionData:
    """The estimators' arrays for a continuous-action evaluation policy on a log of continuous actions
    (:func:`continuous_session_data`): ``sessions`` (the kept sessions, :class:`SessionLog`); ``per_session``,
    the session estimators' keyword arrays with the fitted Q evaluation's ``q_hat`` and ``v_hat``;
    ``per_request``, the same requests as one-request sessions (each its own session, step 0) with the
    cross-fitted per-request reward model as ``q_hat`` and ``v_hat``, so that TIS, SNTIS and DR on them are
    the per-request IPW, SNIPW and DR. Feed both to estimators made with ``densities=True``."""

    sessions: SessionLog
    per_session: dict[str, np.ndarray]
    per_request: dict[str, np.ndarray]


def continuous_session_data(log, contexts: np.ndarray, policy, mapper, draws: int = 32, gamma: float = 1.0,
                            seed: int = 0) -> ContinuousSessionData:
    """Session and per-request arrays for the continuous-action ``policy`` on the simulate ``log`` of a
    continuous-action logger (``action`` -1, the actions in ``action_<arm>``, the blend in ``weights_<arm>``,
    ``propensity`` the logger's density, e.g. ``simulate --policy run:<PPO run> --ppo-std-scale S``).

    Args:
        log: the log's rows (``fusionsim.envs.logs.read_interaction_log``), sessions still open at its end cut.
        contexts: (n_log_rows, D) the contexts the logger saw, row i for the log's i-th row.
        policy: the evaluation policy, with ``action_density(contexts, actions)`` (its density at the logged
            actions, e.g. ``agents.ppo.PPOPolicy``) and ``sampling(std_scale, seed)`` (a copy drawing actions
            from a Generator of its own, for the expectation of Q-hat under the policy).
        mapper: the ``envs.fusion.ActionMapper`` that turns the policy's actions into arm weights.
        draws: Monte Carlo draws from the policy per request for V-hat = E_{a ~ pi_e}[Q-hat(x, a)].
        gamma: the discount of the value per session. seed: the draws' and the cross-fitting's seed.

    Q-hat is :func:`linear_fitted_q_evaluation` on :func:`continuous_q_features` with the weights' basis
    :func:`action_basis`; the per-request reward model is the same with gamma 0.
    """
    arm_names = [c[len("action_"):] for c in log.columns if c.startswith("action_")]
    if not arm_names:
        raise OPEInputError("log holds no continuous actions (action_<arm> columns); log a continuous-action "
                            "policy, e.g. simulate --policy run:<PPO run>")
    contexts = np.asarray(contexts, dtype=np.float32)
    logged_actions = log[[f"action_{a}" for a in arm_names]].to_numpy(dtype=np.float32)
    sessions = session_arrays_from_log(log, None, evaluation_pscore=policy.action_density(contexts, logged_actions))
    rows, step = sessions.row, sessions.step
    x = contexts[rows].astype(np.float64)
    logged_basis = action_basis(log[[f"weights_{a}" for a in arm_names]].to_numpy()[rows])
    sampler, policy_basis = policy.sampling(1.0, seed=seed), np.zeros_like(logged_basis)
    for _ in range(draws):
        policy_basis += action_basis(mapper.decide(sampler.act(contexts[rows])[0])) / draws
    phi, phi_policy = continuous_q_features(x, step, logged_basis), continuous_q_features(x, step, policy_basis)
    q_hat, v_hat = linear_fitted_q_evaluation(phi, phi_policy, sessions, gamma=gamma, seed=seed)
    r_hat, r_hat_policy = linear_fitted_q_evaluation(phi, phi_policy, sessions, gamma=0.0, seed=seed)
    arrays = sessions.arrays()
    n = len(rows)
    per_request = {**arrays, "session_id": np.arange(n), "step": np.zeros(n, dtype=np.int64), "q_hat": r_hat,
                   "v_hat": r_hat_policy}
    return ContinuousSessionData(sessions, {**arrays, "q_hat": q_hat, "v_hat": v_hat}, per_request)

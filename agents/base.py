"""The policy interface every fusion policy implements (batched: first axis = requests), the checks of its
inputs, and the checkpoint protocol (statistics as arrays, Generator states as JSON; see ``agents.checkpoint``)."""

from __future__ import annotations

import abc
import math
import numbers
from pathlib import Path
from typing import ClassVar

import numpy as np

from fusionsim.agents.checkpoint import check_state, read_checkpoint, restore_generators, save_arrays

DISCRETE_MODES = ("arm", "grid")
"""Action modes whose actions are (B,) integer indices; the others (``weights``, ``simplex``) are (B, A) floats."""

_NUMBER_KINDS = "biuf"  # bool, signed, unsigned, float: what contexts and rewards may hold


class Policy(abc.ABC):
    """A fusion policy: maps contexts (B, D) to actions and the probability it chose them.

    ``action_mode`` says how the environment reads the actions (see ``envs.fusion.ActionMapper``):
    ``"arm"``/``"grid"`` -> (B,) int64 indices, ``"weights"``/``"simplex"`` -> (B, A) float32 vectors.

    A checkpoint (:meth:`save` / :meth:`load`) holds :meth:`config`, the arrays of :meth:`state_arrays`
    and the ``bit_generator.state`` of every Generator in :meth:`generators`, so a loaded policy continues
    with exactly the actions, propensities and statistics the saved one would have produced.
    """

    name: ClassVar[str]
    action_mode: str

    @abc.abstractmethod
    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Actions for ``contexts`` (B, D) float32 and their propensities (B,) float64: the probability
        (probability density for continuous actions) with which this policy chose each action."""

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        """P(action | context) for every action: (B, n_actions), rows summing to 1, for off-policy
        evaluation. Policies whose probabilities have no closed form (Thompson sampling, PPO) raise."""
        raise NotImplementedError(f"policy '{self.name}' has no closed-form action distribution; evaluate an "
                                  "epsilon-greedy or deterministic policy off-policy")

    def update(self, contexts: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> None:
        """Learn from a batch of (context (B, D), action, reward (B,)); a policy that does not learn only
        checks the batch. Discrete actions are (B,) integers, in [0, n_actions) when the policy has
        ``n_actions``; continuous ones (B, A) floats, A = ``n_arms`` when the policy has it."""
        contexts = check_contexts(contexts)
        check_rewards(rewards, len(contexts))
        if self.action_mode in DISCRETE_MODES:
            check_discrete_actions(actions, len(contexts), getattr(self, "n_actions", None))
        else:
            check_continuous_actions(actions, len(contexts), getattr(self, "n_arms", None))

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable constructor arguments."""

    # ----------------------------------------------------------------------------------------- checkpoints
    def state_arrays(self) -> dict[str, np.ndarray]:
        """What the policy has learned, as named arrays (empty for a policy that does not learn); they may be
        the live statistics, so copy them to keep them. A freshly built policy's arrays give the names, shapes
        and dtypes a checkpoint of the same config must hold."""
        return {}

    def set_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Take over ``arrays``, already checked against :meth:`state_arrays` (same names, shapes, dtypes)."""

    def generators(self) -> list[np.random.Generator]:
        """Every Generator the policy draws from, in a fixed order."""
        return []

    def save(self, path: str | Path) -> None:
        """Write config, statistics and Generator states to one ``.npz``, atomically; no pickles."""
        save_arrays(path, self.name, self.config(), self.state_arrays(), self.generators())

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """The policy saved by :meth:`save`; a one-line ValueError naming ``path`` for a missing, corrupt,
        truncated or foreign file, or one whose arrays do not fit its config."""
        checkpoint = read_checkpoint(path, cls.name)
        try:
            policy = cls(**checkpoint.config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"checkpoint {path} holds a config that does not build a '{cls.name}' policy: "
                             f"{exc}") from None
        arrays = check_state(path, policy.state_arrays(), checkpoint.arrays)
        policy.set_state_arrays(arrays)
        restore_generators(path, policy.generators(), checkpoint.generators)
        return policy


# --------------------------------------------------------------------------------------------- input checks
def _first_non_finite(name: str, values: np.ndarray) -> None:
    """Raise the ValueError for the first non-finite entry of ``values`` (1-D: its row, 2-D: row and column);
    return when every entry is finite (a fast check failed only because a sum overflowed)."""
    bad = np.argwhere(~np.isfinite(values))
    if len(bad) == 0:
        return
    where = f"row {bad[0][0]}" if values.ndim == 1 else f"row {bad[0][0]}, column {bad[0][1]}"
    raise ValueError(f"{name} must be finite; got {values[tuple(bad[0])]} at {where}")


def check_contexts(contexts: np.ndarray, width: int | None = None) -> np.ndarray:
    """``contexts`` as an array (B, width) of finite numbers, its dtype kept; a ValueError naming the argument
    (and for a non-finite value its row and column) otherwise. One sum is the fast check; only when it is
    not finite are the entries scanned."""
    contexts = np.asarray(contexts)
    if contexts.ndim != 2:
        raise ValueError(f"contexts must be a 2-D array (requests, features); got shape {contexts.shape}")
    if width is not None and contexts.shape[1] != width:
        raise ValueError(f"contexts must have {width} features per row; got {contexts.shape[1]}")
    return _finite_numbers("contexts", contexts)


def check_rewards(rewards: np.ndarray, n: int) -> np.ndarray:
    """``rewards`` as an array (n,) of finite numbers; a ValueError naming the argument (and row) otherwise."""
    rewards = np.asarray(rewards)
    if rewards.shape != (n,):
        raise ValueError(f"rewards must have shape ({n},); got {rewards.shape}")
    return _finite_numbers("rewards", rewards)


def _finite_numbers(name: str, values: np.ndarray) -> np.ndarray:
    """``values`` if they are finite numbers; a ValueError naming ``name`` (and the first bad entry) otherwise.
    One sum is the fast check; only when it is not finite are the entries scanned."""
    if values.dtype.kind not in _NUMBER_KINDS:
        raise ValueError(f"{name} must be numbers; got dtype {values.dtype}")
    if values.dtype.kind == "f" and not math.isfinite(values.sum()):
        _first_non_finite(name, values)
    return values


def check_discrete_actions(actions: np.ndarray, n: int, n_actions: int | None = None) -> np.ndarray:
    """``actions`` as an int64 array (n,) with every entry in [0, n_actions) (no range check when
    ``n_actions`` is None). Floats (1.7), strings ("0") and booleans are refused with their dtype, never cast."""
    actions = np.asarray(actions)
    if actions.shape != (n,):
        raise ValueError(f"actions must have shape ({n},); got {actions.shape}")
    if actions.dtype.kind not in "iu":
        raise ValueError(f"actions must be integers (action indices); got dtype {actions.dtype}")
    if n_actions is not None and n and actions.astype(np.int64, copy=False).view(np.uint64).max() >= n_actions:
        # as unsigned, a negative index is huge: one max() finds entries below 0 and at or above n_actions
        bad = int(np.flatnonzero((actions < 0) | (actions >= n_actions))[0])
        raise ValueError(f"actions must be in [0, {n_actions}); got {actions[bad]} at row {bad}")
    return actions.astype(np.int64, copy=False)


def check_continuous_actions(actions: np.ndarray, n: int, width: int | None = None) -> np.ndarray:
    """``actions`` as a float array (n, width) of finite numbers (any width when ``width`` is None)."""
    actions = np.asarray(actions)
    if actions.ndim != 2 or len(actions) != n or (width is not None and actions.shape[1] != width):
        want = f"({n}, {width})" if width is not None else f"({n}, n_arms)"
        raise ValueError(f"actions must have shape {want}; got {actions.shape}")
    if actions.dtype.kind != "f":
        raise ValueError(f"actions must be floats (weight vectors); got dtype {actions.dtype}")
    if not math.isfinite(actions.sum()):
        _first_non_finite("actions", actions)
    return actions


def check_batch(contexts: np.ndarray, width: int | None = None, rewards: np.ndarray | None = None) -> None:
    """Raise ValueError naming the argument when ``contexts`` is not (B, width) finite or ``rewards``
    is not (B,) finite."""
    contexts = check_contexts(contexts, width)
    if rewards is not None:
        check_rewards(rewards, len(contexts))


# ------------------------------------------------------------------------------------ hyperparameter checks
def _shown(value: object) -> str:
    return str(value) if isinstance(value, numbers.Number) else repr(value)


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; booleans and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {_shown(value)}")
    return int(value)


def check_seed(seed: object) -> int | None:
    """``seed`` as a non-negative int, or None (fresh entropy)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer or None; got {_shown(seed)}")
    return int(seed)


_RULES = {">= 0": lambda v: v >= 0, "> 0": lambda v: v > 0, "in [0, 1]": lambda v: 0 <= v <= 1,
          "in (0, 1]": lambda v: 0 < v <= 1}


def check_real(name: str, value: object, rule: str) -> float:
    """``value`` as a finite float obeying ``rule`` (one of ``">= 0"``, ``"> 0"``, ``"in [0, 1]"``,
    ``"in (0, 1]"``); NaN, infinities, booleans and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or not _RULES[rule](value):
        raise ValueError(f"{name} must be a finite number {rule}; got {_shown(value)}")
    return float(value)


def check_index(name: str, value: object, n: int) -> int:
    """``value`` as an int in [0, n); booleans and non-integral numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value < n:
        raise ValueError(f"{name} must be an integer in [0, {n}); got {_shown(value)}")
    return int(value)


def check_action_mode(action_mode: object) -> str:
    if action_mode not in DISCRETE_MODES:
        raise ValueError(f"action_mode = {action_mode!r} is not allowed: must be 'arm' or 'grid'")
    return action_mode


# ---------------------------------------------------------------------------------------- epsilon-greedy
def epsilon_greedy(rng: np.random.Generator, greedy: np.ndarray, n_actions: int,
                   epsilon: float) -> tuple[np.ndarray, np.ndarray]:
    """Each round takes its ``greedy`` (B,) action, or with probability ``epsilon`` a uniform one; returns the
    actions (B,) and their exact propensities: 1 - epsilon + epsilon / K for the greedy action, epsilon / K
    for any other. With epsilon 0 no random numbers are drawn."""
    b = len(greedy)
    if epsilon == 0.0:
        return greedy, np.ones(b)
    explore = rng.random(b) < epsilon
    actions = np.where(explore, rng.integers(0, n_actions, b), greedy)
    return actions, np.where(actions == greedy, 1 - epsilon + epsilon / n_actions, epsilon / n_actions)


def epsilon_greedy_distribution(greedy: np.ndarray, n_actions: int, epsilon: float) -> np.ndarray:
    """The action probabilities (B, K) of :func:`epsilon_greedy` for ``greedy`` (B,)."""
    out = np.full((len(greedy), n_actions), epsilon / n_actions)
    out[np.arange(len(greedy)), greedy] += 1.0 - epsilon
    return out

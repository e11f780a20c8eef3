"""Static policies: the logging policy (uniform random), a single arm, a fixed blend."""

from __future__ import annotations

import numpy as np

from fusionsim.agents.base import Policy, check_action_mode, check_contexts, check_count, check_index, check_seed


class UniformRandom(Policy):
    """Each request gets one of ``n_actions`` actions (arms or grid points) uniformly at random;
    propensity 1 / n_actions. The logging policy for off-policy evaluation.

    Args:
        n_actions: number of arms (``action_mode="arm"``) or grid points (``"grid"``), >= 1.
        action_mode: "arm" or "grid".
        seed: seed of the policy's own Generator.
    """

    name = "uniform"

    def __init__(self, n_actions: int, action_mode: str = "arm", seed: int | None = None) -> None:
        self.n_actions, self.action_mode = check_count("n_actions", n_actions), check_action_mode(action_mode)
        self.seed = check_seed(seed)
        self.rng = np.random.default_rng(self.seed)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        contexts = check_contexts(contexts)
        actions = self.rng.integers(0, self.n_actions, len(contexts))
        return actions, np.full(len(contexts), 1.0 / self.n_actions)

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        check_contexts(contexts)
        return np.full((len(contexts), self.n_actions), 1.0 / self.n_actions)

    def config(self) -> dict:
        return {"n_actions": self.n_actions, "action_mode": self.action_mode, "seed": self.seed}

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]


class SingleArm(Policy):
    """Always the same arm; propensity 1.

    Args:
        arm: arm index, 0 <= arm < n_arms.
        n_arms: number of arms.
    """

    name = "single_arm"
    action_mode = "arm"

    def __init__(self, arm: int, n_arms: int) -> None:
        self.n_arms = check_count("n_arms", n_arms)
        self.arm = check_index("arm", arm, self.n_arms)

    @property
    def n_actions(self) -> int:
        """The number of arms (the actions this policy could log)."""
        return self.n_arms

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_contexts(contexts)
        return np.full(len(contexts), self.arm, dtype=np.int64), np.ones(len(contexts))

    def action_distribution(self, contexts: np.ndarray) -> np.ndarray:
        check_contexts(contexts)
        out = np.zeros((len(contexts), self.n_arms))
        out[:, self.arm] = 1.0
        return out

    def config(self) -> dict:
        return {"arm": self.arm, "n_arms": self.n_arms}


class ConstantAction(Policy):
    """The same point of the weight grid for every request (a static blend as a policy); propensity 1.

    Args:
        action: grid index >= 0 (the grid itself is the action mapper's: ``envs.fusion.ActionMapper``).
    """

    name = "constant"
    action_mode = "grid"

    def __init__(self, action: int) -> None:
        self.action = check_index("action", action, 2**62)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_contexts(contexts)
        return np.full(len(contexts), self.action, dtype=np.int64), np.ones(len(contexts))

    def config(self) -> dict:
        return {"action": self.action}


class FixedBlend(Policy):
    """The same arm weights for every request (the blend "determined by experiment"); propensity 1.

    Args:
        weights: one non-negative weight per arm, not all zero; normalised to sum to 1.
    """

    name = "fixed_blend"
    action_mode = "simplex"

    def __init__(self, weights: list[float]) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or len(w) == 0 or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise ValueError(f"weights must be non-negative numbers, one per arm, not all zero; got {list(weights)}")
        self.weights = (w / w.sum()).astype(np.float32)
        self.n_arms = len(w)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_contexts(contexts)
        return np.repeat(self.weights[None, :], len(contexts), axis=0), np.ones(len(contexts))

    def config(self) -> dict:
        return {"weights": [float(x) for x in self.weights]}


class UniformContinuous(Policy):
    """Continuous actions drawn uniformly from [-1, 1]^A (the ``weights`` mode: softmax onto the simplex);
    propensity = the density 2^-A. The logging policy for kernelized off-policy evaluation of PPO.

    Args:
        n_arms: action dimension A. seed: the policy's Generator.
    """

    name = "uniform_continuous"
    action_mode = "weights"

    def __init__(self, n_arms: int, seed: int | None = None) -> None:
        self.n_arms, self.seed = check_count("n_arms", n_arms), check_seed(seed)
        self.rng = np.random.default_rng(self.seed)

    def act(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        check_contexts(contexts)
        actions = self.rng.uniform(-1.0, 1.0, (len(contexts), self.n_arms)).astype(np.float32)
        return actions, np.full(len(contexts), 0.5 ** self.n_arms)

    def config(self) -> dict:
        return {"n_arms": self.n_arms, "seed": self.seed}

    def generators(self) -> list[np.random.Generator]:
        return [self.rng]

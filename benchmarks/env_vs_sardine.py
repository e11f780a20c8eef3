"""Single-env step rate of ``fusionsim/Fusion-v0`` beside SARDINE's ``sardine/SlateTopK-Bored-v0``, measured
in one process, in alternating runs (the machine is shared, so each figure is a median). Prints figures;
asserts nothing.

    python benchmarks/env_vs_sardine.py [--steps 5000] [--runs 7]

SARDINE (Deffayet et al. 2023, https://github.com/naver/sardine) is an optional benchmark dependency:
``pip install sardine-rec``. Both envs are made with ``gymnasium.make`` (so both carry Gymnasium's
standard wrappers), step random actions drawn beforehand, and are reset when an episode ends (both have
100-step episodes), so a run times the loop a training script runs. fusionsim serves each request from
200 candidates scored by two arms, a blend, a slate of 10 and a session model; SARDINE ranks 1,000
items for a fixed slate of 10 given by the action.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import gymnasium as gym
import numpy as np

import fusionsim.envs  # noqa: F401  (registers the environments)

SARDINE_ID = "sardine/SlateTopK-Bored-v0"
INSTALL_HINT = "SARDINE is not installed, so only fusionsim is measured: pip install sardine-rec"


def _loop(env: gym.Env, actions: list[Any]) -> float:
    """Steps per second over ``actions`` (an episode end resets the env, inside the timing)."""
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return len(actions) / (time.perf_counter() - start)


def _prepare(env_id: str, steps: int, **kwargs: Any) -> tuple[gym.Env, list[Any]]:
    env = gym.make(env_id, **kwargs)
    env.reset(seed=0)
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(steps)]
    if isinstance(env.action_space, gym.spaces.Discrete):
        actions = [int(a) for a in actions]
    _loop(env, actions[: max(1, steps // 10)])  # warm-up
    return env, actions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5_000, help="steps per timed run")
    parser.add_argument("--runs", type=int, default=7, help="timed runs per env, alternating between the envs")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # SARDINE's spaces trigger Gymnasium's passive checker warnings
    envs = {"fusionsim/Fusion-v0": _prepare("fusionsim/Fusion-v0", args.steps, scenario="default",
                                            action_mode="arm")}
    try:
        import sardine  # noqa: F401  (registers SARDINE's environments)
    except ImportError:
        print(INSTALL_HINT)
    else:
        envs[SARDINE_ID] = _prepare(SARDINE_ID, args.steps)
    rates: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(args.runs):
        for name, (env, actions) in envs.items():
            rates[name].append(_loop(env, actions))
    medians = {name: float(np.median(r)) for name, r in rates.items()}
    for name, r in rates.items():
        print(f"{name:<28} {medians[name]:>8,.0f} steps/s (median of {args.runs} runs of {args.steps:,} steps; "
              f"range {min(r):,.0f}-{max(r):,.0f})")
    if SARDINE_ID in medians:
        print(f"fusionsim / SARDINE: {medians['fusionsim/Fusion-v0'] / medians[SARDINE_ID]:.2f}")


if __name__ == "__main__":
    main()

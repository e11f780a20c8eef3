"""LinUCB throughput on a synthetic Bernoulli stream (d = 16 features, 8 arms), exact per round and in
batches of 256, and a check that the per-round policy picks the same arms as a textbook LinUCB.
Prints figures; asserts nothing.

    python benchmarks/bandit_throughput.py [--rounds 50000]

Targets on a 2-core machine: >= 50,000 rounds/s exact per round, >= 500,000 rounds/s in batches of 256.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fusionsim.agents.linear import LinUCB

D, K, ALPHA = 16, 8, 0.5
REPEATS = 3


def stream(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (n, D) with an intercept and each arm's click probability (n, K) under a logistic model."""
    theta = np.random.default_rng(123).normal(size=(K, D)) * 0.3
    x = rng.normal(size=(n, D))
    x[:, 0] = 1.0
    return x, 1.0 / (1.0 + np.exp(-(x @ theta.T)))


def textbook_linucb(x: np.ndarray, uniforms: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Li et al. (2010), Algorithm 1, written plainly: A_a, b_a per arm, inverse each round."""
    A = [np.eye(D) for _ in range(K)]
    b = [np.zeros(D) for _ in range(K)]
    chosen = np.empty(len(x), dtype=np.int64)
    for t in range(len(x)):
        ucb = []
        for a in range(K):
            inv = np.linalg.inv(A[a])
            theta = inv @ b[a]
            ucb.append(theta @ x[t] + ALPHA * np.sqrt(x[t] @ inv @ x[t]))
        a = int(np.argmax(ucb))
        r = float(uniforms[t] < p[t, a])
        A[a] += np.outer(x[t], x[t])
        b[a] += r * x[t]
        chosen[t] = a
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, p = stream(rng, args.rounds)
    uniforms = rng.random(args.rounds)

    rates = []
    for _ in range(REPEATS):  # the machine is shared: report the median of a few identical runs
        policy = LinUCB(K, D, alpha=ALPHA)
        chosen = np.empty(args.rounds, dtype=np.int64)
        reward = np.zeros(1)
        start = time.perf_counter()
        for t in range(args.rounds):
            context = x[t:t + 1]
            action, _ = policy.act(context)
            reward[0] = uniforms[t] < p[t, action[0]]
            policy.update(context, action, reward)
            chosen[t] = action[0]
        rates.append(args.rounds / (time.perf_counter() - start))
    exact_rate = float(np.median(rates))
    print(f"LinUCB exact per round: {exact_rate:,.0f} rounds/s, median of {REPEATS} runs (target >= 50,000); "
          f"mean reward {p[np.arange(args.rounds), chosen].mean():.4f} vs best arm {p.max(axis=1).mean():.4f}")

    n_check = min(2000, args.rounds)
    same = (textbook_linucb(x[:n_check], uniforms[:n_check], p[:n_check]) == chosen[:n_check]).mean()
    print(f"same arm as the textbook LinUCB in {100 * same:.2f}% of the first {n_check:,} rounds")

    batch = 256
    policy = LinUCB(K, D, alpha=ALPHA)
    n = args.rounds * 10 // batch * batch
    x, p = stream(rng, n)
    uniforms = rng.random(n)
    start = time.perf_counter()
    for i in range(0, n, batch):
        rows = slice(i, i + batch)
        actions, _ = policy.act(x[rows])
        rewards = (uniforms[rows] < p[np.arange(i, i + batch), actions]).astype(np.float64)
        policy.update(x[rows], actions, rewards)
    batch_rate = n / (time.perf_counter() - start)
    print(f"LinUCB in batches of {batch}: {batch_rate:,.0f} rounds/s (target >= 500,000)")


if __name__ == "__main__":
    main()

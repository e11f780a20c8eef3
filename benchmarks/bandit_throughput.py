"""LinUCB throughput on a synthetic Bernoulli stream (d = 16 features, 8 arms): exact per round (act one
context, update with its reward, repeat) side by side with a plain numpy LinUCB on the same stream, and in
batches of 256; checks that the policy picks the same arms as both plain versions. Prints figures; asserts
nothing.

    python benchmarks/bandit_throughput.py [--rounds 50000] [--repeats 5]

The peer, :func:`sherman_morrison_linucb`, is the textbook algorithm written the fast way in numpy: A_a^-1
kept with Sherman-Morrison, theta_a cached, A_a^-1 x of the chosen arm reused by its update. The two run
alternately in one process, ``--repeats`` times each; the figures are medians, the ratio is policy / peer.
Targets on a 2-core machine: per round >= 0.8x the peer, >= 500,000 rounds/s in batches of 256.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fusionsim.agents.linear import LinUCB

D, K, ALPHA = 16, 8, 0.5
BATCH = 256


def stream(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (n, D) with an intercept and each arm's click probability (n, K) under a logistic model."""
    theta = np.random.default_rng(123).normal(size=(K, D)) * 0.3
    x = rng.normal(size=(n, D))
    x[:, 0] = 1.0
    return x, 1.0 / (1.0 + np.exp(-(x @ theta.T)))


def textbook_linucb(x: np.ndarray, uniforms: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Li et al. (2010), Algorithm 1, written plainly: A_a, b_a per arm, inverse each round. The chosen
    arms (n,) for contexts x (n, D), reward uniforms (n,) and click probabilities p (n, K)."""
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


def sherman_morrison_linucb(x: np.ndarray, uniforms: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The same algorithm as :func:`textbook_linucb`, kept as A_a^-1 (K, D, D) with the Sherman-Morrison
    update and theta_a = A_a^-1 b_a (K, D) cached: the fast plain-numpy peer. Returns the chosen arms (n,)."""
    A_inv = np.repeat(np.eye(D)[None], K, axis=0)
    b = np.zeros((K, D))
    theta = np.zeros((K, D))
    chosen = np.empty(len(x), dtype=np.int64)
    for t in range(len(x)):
        xt = x[t]
        A_inv_x = A_inv @ xt  # (K, D)
        ucb = theta @ xt + ALPHA * np.sqrt(A_inv_x @ xt)
        a = int(np.argmax(ucb))
        r = float(uniforms[t] < p[t, a])
        u = A_inv_x[a]
        A_inv[a] -= np.outer(u, u) / (1.0 + xt @ u)
        b[a] += r * xt
        theta[a] = A_inv[a] @ b[a]
        chosen[t] = a
    return chosen


def policy_per_round(x: np.ndarray, uniforms: np.ndarray, p: np.ndarray) -> np.ndarray:
    """``LinUCB`` through its public interface, one round per ``act`` and ``update``; the chosen arms (n,)."""
    policy = LinUCB(K, D, alpha=ALPHA)
    chosen = np.empty(len(x), dtype=np.int64)
    reward = np.zeros(1)
    for t in range(len(x)):
        context = x[t:t + 1]
        action, _ = policy.act(context)
        reward[0] = uniforms[t] < p[t, action[0]]
        policy.update(context, action, reward)
        chosen[t] = action[0]
    return chosen


def policy_batched(x: np.ndarray, uniforms: np.ndarray, p: np.ndarray) -> None:
    """``LinUCB`` acting on and then learning from batches of :data:`BATCH` rounds."""
    policy = LinUCB(K, D, alpha=ALPHA)
    for i in range(0, len(x), BATCH):
        rows = slice(i, i + BATCH)
        actions, _ = policy.act(x[rows])
        rewards = (uniforms[rows] < p[np.arange(i, i + BATCH), actions]).astype(np.float64)
        policy.update(x[rows], actions, rewards)


def _rate(run, *args) -> tuple[float, object]:
    start = time.perf_counter()
    out = run(*args)
    return len(args[0]) / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x, p = stream(rng, args.rounds)
    uniforms = rng.random(args.rounds)

    peer_rates, policy_rates = [], []
    for i in range(args.repeats):  # pairs run back to back, each starting first in turn: the machine is shared
        for name in (("peer", "policy") if i % 2 == 0 else ("policy", "peer")):
            if name == "peer":
                rate, peer_chosen = _rate(sherman_morrison_linucb, x, uniforms, p)
                peer_rates.append(rate)
            else:
                rate, chosen = _rate(policy_per_round, x, uniforms, p)
                policy_rates.append(rate)
    peer, mine = float(np.median(peer_rates)), float(np.median(policy_rates))
    paired = float(np.median(np.array(policy_rates) / np.array(peer_rates)))
    print(f"exact per round, medians of {args.repeats} alternating runs of {args.rounds:,} rounds:")
    print(f"  numpy LinUCB (Sherman-Morrison) {peer:10,.0f} rounds/s")
    print(f"  fusionsim LinUCB                {mine:10,.0f} rounds/s")
    print(f"  ratio fusionsim / numpy: {mine / peer:.2f}x of the medians, {paired:.2f}x median of the "
          f"{args.repeats} back-to-back pairs (target >= 0.8x)")
    print(f"  mean reward {p[np.arange(args.rounds), chosen].mean():.4f} vs best arm {p.max(axis=1).mean():.4f}")
    print(f"  same arm as the Sherman-Morrison peer in {100 * (peer_chosen == chosen).mean():.2f}% of "
          f"{args.rounds:,} rounds")
    n_check = min(2000, args.rounds)
    same = (textbook_linucb(x[:n_check], uniforms[:n_check], p[:n_check]) == chosen[:n_check]).mean()
    print(f"  same arm as the textbook LinUCB (inverse each round) in {100 * same:.2f}% of the first "
          f"{n_check:,} rounds")

    n = args.rounds * 10 // BATCH * BATCH
    xb, pb = stream(rng, n)
    ub = rng.random(n)
    batch_rates = [_rate(policy_batched, xb, ub, pb)[0] for _ in range(3)]
    print(f"fusionsim LinUCB in batches of {BATCH}: {float(np.median(batch_rates)):,.0f} rounds/s, median of 3 runs "
          f"of {n:,} rounds (target >= 500,000)")


if __name__ == "__main__":
    main()

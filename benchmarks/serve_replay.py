"""The served LinUCB learning through ``fusionsim serve --learn`` against the same LinUCB trained by
``fusionsim train``, on the same scenario and seed; and the loop closure: ``fusionsim ope`` on the served log
against the value the replay measured. Prints figures; asserts nothing.

    python benchmarks/serve_replay.py [--requests 50000] [--scenario default]

1. ``train --agent linucb --epsilon 0.05 --requests 256`` (one update: the policy to start serving from).
2. ``serve <it> --learn --learn-batch 256`` (the update cadence of ``train``'s 256 slots) and
   ``replay --requests N --slots 256``: the served learning curve.
3. ``train`` the same LinUCB for 256 + N requests: the curve in process. The two runs draw different
   random streams (the simulator of ``train`` is seeded through SeedSequence.spawn), so they agree within noise,
   not bit for bit: each interval's difference is printed with its 95% interval (the intervals' per-request
   standard deviations, requests treated as independent), and the overall difference of ``--seeds`` seeds
   with a t interval across seeds.
4. ``serve`` the trained policy frozen, ``replay`` N requests, and ``ope`` on its decision log evaluates the
   LinUCB of step 3 (its greedy choice with 5% exploration); compared with the replay value of that policy.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from serve_latency import start_server  # the sibling benchmark (this folder is on sys.path)

CLI = [sys.executable, "-m", "fusionsim.experiments.cli"]


def run(*args: str) -> None:
    subprocess.run([*CLI, *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def served_replay(policy: Path, log_dir: Path, learn: bool, scenario: str, requests: int, out: Path,
                  log_every: int, seed: int = 0) -> dict:
    """Start ``fusionsim serve`` on ``policy``, replay ``requests`` against it, stop it; the replay's metrics."""
    extra = ["--learn", "--learn-batch", "256"] if learn else []
    process, port = start_server(policy, log_dir, *extra)
    try:
        url = f"http://127.0.0.1:{port}"
        run("replay", "--server", url, "--scenario", scenario, "--requests", str(requests), "--slots", "256",
            "--log-every", str(log_every), "--seed", str(seed), "--out", str(out))
    finally:
        process.terminate()
        process.wait(timeout=60)
    return json.loads((out / "metrics.json").read_text())


def learning_pair(root: Path, scenario: str, seed: int, n: int, every: int) -> tuple[dict, dict]:
    """LinUCB of ``seed`` learning through the service (from one 256-request update) and trained in process for
    256 + ``n`` requests: the replay's metrics and the train run's."""
    common = ["--agent", "linucb", "--epsilon", "0.05", "--scenario", scenario, "--slots", "256",
              "--oracle-requests", "0", "--seed", str(seed)]
    run("train", *common, "--requests", "256", "--log-every", "256", "--checkpoint-every", "256", "--out",
        str(root / f"start_{seed}"))
    online = served_replay(root / f"start_{seed}", root / f"served_learning_{seed}", True, scenario, n,
                           root / f"replay_learning_{seed}", every, seed=seed)
    run("train", *common, "--requests", str(n + 256), "--log-every", str(every),
        "--checkpoint-every", str(every * math.ceil((n + 256) / every)), "--out", str(root / f"trained_{seed}"))
    return online, json.loads((root / f"trained_{seed}" / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--scenario", default="default")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the served-vs-trained comparison")
    args = parser.parse_args()
    n, every = args.requests, max(args.requests // 5, 256)
    every -= every % 256
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pairs = [learning_pair(root, args.scenario, seed, n, every) for seed in range(args.seeds)]
        online, trained = pairs[0]
        print(f"LinUCB (5% exploration) on '{args.scenario}', seed 0; reward per request per interval of {every:,} "
              "requests")
        print("| requests | served through HTTP (replay) | trained in process | difference [95%] |")
        print("|---:|---:|---:|---:|")
        by_requests = dict(trained["curve"])
        for done, r_online in online["curve"]:
            if done not in by_requests:  # a last, shorter interval that the two runs cut differently
                continue
            r_trained = by_requests[done]
            spread = 1.96 * online["reward_sd"] * math.sqrt(2 / every)  # two independent interval means
            print(f"| {done:,} | {r_online:.4f} | {r_trained:.4f} | {r_online - r_trained:+.4f} "
                  f"[{r_online - r_trained - spread:+.4f}, {r_online - r_trained + spread:+.4f}] |")
        print("\n| seed | served overall [95%, batch means] | trained overall | served - trained |")
        print("|---:|---:|---:|---:|")
        differences = []
        for seed, (served, in_process) in enumerate(pairs):
            lo, hi = served["reward_per_request_ci95"]
            differences.append(served["reward_per_request"] - in_process["reward_per_request"])
            print(f"| {seed} | {served['reward_per_request']:.4f} [{lo:.4f}, {hi:.4f}] | "
                  f"{in_process['reward_per_request']:.4f} | {differences[-1]:+.4f} |")
        d = np.array(differences)
        if len(d) > 1:
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
            print(f"served - trained over {len(d)} seeds: {d.mean():+.4f} [{d.mean() - half:+.4f}, "
                  f"{d.mean() + half:+.4f}] (t interval across seeds; outcomes of seed 0: {online['rewards']})")
        root_start, root_trained = root / "start_0", root / "trained_0"

        served_replay(root_start, root / "served_frozen", False, args.scenario, n, root / "replay_frozen", n)
        run("ope", "--logs", str(root / "served_frozen"), "--policy", str(root_trained), "--out",
            str(root / "ope"))
        estimates = json.loads((root / "ope" / "metrics.json").read_text())["estimators"]
        truth = served_replay(root_trained, root / "served_target", False, args.scenario, n,
                              root / "replay_target", n)
        lo, hi = truth["reward_per_request_ci95"]
        print(f"\nloop closure: the trained LinUCB replayed through the service: {truth['reward_per_request']:.4f} "
              f"[{lo:.4f}, {hi:.4f}]; off-policy on the log served by the 256-request policy:")
        for name, r in estimates.items():
            inside = r["ci_lower"] <= truth["reward_per_request"] <= r["ci_upper"]
            print(f"  {name:>5}: {r['estimate']:.4f} [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}] "
                  f"({'holds' if inside else 'misses'} the replayed value)")


if __name__ == "__main__":
    main()

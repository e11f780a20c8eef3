"""Train the PyTorch arms at GPU scale on synthetic interactions and print samples/s.
Needs only torch, numpy and pandas (no network, no gymnasium). Run through benchmarks/gpu_check.sh.

    python benchmarks/gpu_train.py [--scale 1.0] [--device auto] [--epochs 2]

At scale 1: BPR matrix factorisation with 1,000,000 users, 200,000 items, dim 64, batch 262,144
(target >= 25,000,000 samples/s on one H100) and the GRU sequence model on sequences of 50 items over
200,000 items, dim 128 (target >= 60,000 sequences/s). After each, the trained model scores 1,024
requests x 200 candidates on the training device (requests/s) and is checked against the same weights
scoring on the CPU. Smaller --scale shrinks every size (for a CPU dry run).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from fusionsim.recommenders.base import RECENT_ITEMS, ItemTable, Recommender, RequestBatch
from fusionsim.recommenders.mf import MatrixFactorization
from fusionsim.recommenders.sequence import SequenceModel


def synthetic_items(n_items: int) -> ItemTable:
    zeros = np.zeros(n_items, dtype=np.int32)
    return ItemTable(item_id=np.arange(n_items, dtype=np.int32), top=zeros, leaf=zeros, brand=zeros,
                     price=np.ones(n_items, np.float32), tokens=np.zeros((n_items, 4), np.int32),
                     launch_day=np.zeros(n_items, np.float32), vocab_size=1)


def synthetic_interactions(rng: np.random.Generator, n_users: int, n_items: int, n: int) -> pd.DataFrame:
    """n clicks with Zipf-like item popularity, time-ordered per shopper."""
    items = np.minimum(rng.zipf(1.2, n) - 1, n_items - 1)
    return pd.DataFrame({"user_id": rng.integers(0, n_users, n), "item_id": rng.permutation(n_items)[items],
                         "t": rng.random(n), "purchase": rng.random(n) < 0.1})


def scoring_check(model: Recommender, cpu_model: Recommender, n_users: int, n_items: int,
                  rng: np.random.Generator, batch: int = 1024, n_candidates: int = 200) -> str:
    """Requests/s of ``model.score`` on (batch, n_candidates) candidate batches, and the largest score
    difference against ``cpu_model`` (the same weights on the CPU)."""
    requests = RequestBatch.feed(rng.integers(0, n_users, batch), rng.integers(0, n_items, (batch, RECENT_ITEMS)))
    candidates = rng.integers(0, n_items, (batch, n_candidates)).astype(np.int32)
    scores = model.score(requests, candidates)  # warm-up; returns numpy, so every call is synchronised
    difference = float(np.abs(scores - cpu_model.score(requests, candidates)).max())
    repeats = 20
    start = time.perf_counter()
    for _ in range(repeats):
        model.score(requests, candidates)
    rate = repeats * batch / (time.perf_counter() - start)
    return f"scoring {batch:,} x {n_candidates}: {rate:,.0f} requests/s, max |score - CPU score| {difference:.2e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(f"torch {torch.__version__}, device: {name}")

    n_users, n_items = int(1_000_000 * args.scale), int(200_000 * args.scale)
    clicks = synthetic_interactions(rng, n_users, n_items, int(50_000_000 * args.scale))
    mf = MatrixFactorization(dim=64, train={"epochs": args.epochs, "batch_size": max(1, int(262_144 * args.scale)),
                                            "device": args.device, "progress": False})
    mf.fit(clicks, synthetic_items(n_items))
    print(f"BPR mf: {n_users:,} users x {n_items:,} items, dim 64, batch {mf.train_config.batch_size:,}: "
          f"{mf.report.samples_per_second:,.0f} samples/s on {mf.report.device} (target >= 25,000,000 on an H100)")
    mf_cpu = MatrixFactorization(dim=64, train={"device": "cpu"})
    mf_cpu.load_state(mf.state())
    print(f"  {scoring_check(mf, mf_cpu, n_users, n_items, rng)}")

    length = 50
    n_sequences = int(400_000 * args.scale)
    sequences = synthetic_interactions(rng, n_sequences, n_items, n_sequences * length)
    sequences["user_id"] = np.repeat(np.arange(n_sequences), length)
    sequences["t"] = np.tile(np.arange(length, dtype=np.float64), n_sequences)
    gru = SequenceModel(dim=128, window=length, n_negatives=2048,
                        train={"epochs": args.epochs, "batch_size": 512 * length, "device": args.device,
                               "progress": False})
    gru.fit(sequences, synthetic_items(n_items))
    print(f"GRU sequence: sequences of {length} over {n_items:,} items, dim 128: "
          f"{gru.report.samples_per_second:,.0f} sequences/s on {gru.report.device} (target >= 60,000 on an H100)")
    gru_cpu = SequenceModel(dim=128, window=length, train={"device": "cpu"})
    gru_cpu.load_state(gru.state())
    print(f"  {scoring_check(gru, gru_cpu, n_sequences, n_items, rng)}")


if __name__ == "__main__":
    main()

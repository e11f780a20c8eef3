"""Latency of ``fusionsim serve``'s ``POST /rank`` over loopback: 200 candidates x 4 arms, batch sizes 1 and 32,
at a sustained 500 requests/s, and the rate at which the service saturates. Prints figures; asserts nothing.

    python benchmarks/serve_latency.py [--base runs/cmp500_default/arms] [--seconds 20]

The server runs as ``fusionsim serve`` in its own process (a LinUCB trained for 512 requests on the four arms of
``--base``, frozen, decision log on). The load comes from another process, open loop: request i is due at
i / rate, and its latency runs from when it was due to when its answer is read, so a slow answer also
delays the ones queued behind it (no coordinated omission). Four client threads share the schedule, each on one
kept-alive connection; the bodies are encoded beforehand. Every answered ``/rank`` gets its outcome posted
(``/reward``), in batches of 32 per client as a shop's event collector would send them. Saturation: the same
clients closed loop (each sends as soon as it has its answer), for ``--seconds`` / 2. Both processes share
this machine's 2 cores. The load generator runs with Python's cycle collector off (what it allocates is freed by
reference counting), so that its own collections are not counted as the server's latency.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

N_CANDIDATES, CLIENTS, REWARD_BATCH = 200, 4, 32


def start_server(policy: Path, log_dir: Path, *options: str) -> tuple[subprocess.Popen, int]:
    """``fusionsim serve policy --log-dir log_dir *options`` on a free port, in its own process; it and the port."""
    process = subprocess.Popen([sys.executable, "-m", "fusionsim.experiments.cli", "serve", str(policy), "--port", "0",
                                "--log-dir", str(log_dir), *options], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    port = int(line.rsplit(":", 1)[1].split(";")[0])
    return process, port


def bodies(arm_names: list[str], batch: int, n: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        requests = [{"context": {"segment": ["new", "casual", "loyal", "bargain"][rng.integers(4)],
                                 "surface": ["feed", "search"][rng.integers(2)], "device": "mobile",
                                 "hour": float(rng.uniform(0, 24)), "session_step": int(rng.integers(10))},
                     "candidates": rng.choice(5000, N_CANDIDATES, replace=False).tolist(),
                     "scores": {a: rng.normal(size=N_CANDIDATES).tolist() for a in arm_names}} for _ in range(batch)]
        out.append(json.dumps({"requests": requests}).encode())
    return out


def _client(port: int, payloads: list[bytes], due: np.ndarray | None, take, latencies: list, errors: list,
            stop: float) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"}
    outcomes: list[dict] = []
    while True:
        i = take()
        if i is None:
            break
        start = time.perf_counter()
        if due is not None:
            if i >= len(due) or due[i] > stop:
                break
            wait = due[i] - start
            if wait > 0:
                time.sleep(wait)
            start = due[i]
        elif start > stop:
            break
        try:
            connection.request("POST", "/rank", body=payloads[i % len(payloads)], headers=headers)
            answer = connection.getresponse()
            data = answer.read()
            latencies.append(time.perf_counter() - start)
            if answer.status != 200:
                errors.append(answer.status)
                continue
            outcomes += [{"event_id": r["event_id"], "clicks": [0] * len(r["slate"])}
                         for r in json.loads(data)["results"]]
            if len(outcomes) >= REWARD_BATCH:
                connection.request("POST", "/reward", body=json.dumps({"rewards": outcomes}).encode(),
                                   headers=headers)
                reply = connection.getresponse()
                reply.read()
                outcomes = []
                if reply.status != 200:
                    errors.append(reply.status)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(type(exc).__name__)
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)


def load(port: int, payloads: list[bytes], calls_per_second: float | None, seconds: float) -> dict:
    """Open loop at ``calls_per_second`` (None: closed loop, as fast as the clients get answers)."""
    counter = iter(range(10**9))
    lock = threading.Lock()

    def take():
        with lock:
            return next(counter)

    start = time.perf_counter() + 0.2
    due = None if calls_per_second is None else (start + np.arange(int(seconds * calls_per_second) + 1)
                                                 / calls_per_second)
    latencies: list[float] = []
    errors: list = []
    threads = [threading.Thread(target=_client, args=(port, payloads, due, take, latencies, errors, start + seconds))
               for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array(latencies) * 1000
    return {"calls": len(lat), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
            "max_ms": float(lat.max()), "errors": len(errors), "calls_per_second": len(lat) / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, default=Path("runs/cmp500_default/arms"), help="four trained arms")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per open-loop measurement")
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second of the open-loop load")
    parser.add_argument("--repeats", type=int, default=3, help="open-loop runs per batch size (medians reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "linucb"
        subprocess.run([sys.executable, "-m", "fusionsim.experiments.cli", "train", "--agent", "linucb", "--base",
                        str(args.base), "--requests", "512", "--slots", "256", "--log-every", "256",
                        "--checkpoint-every", "512", "--oracle-requests", "0", "--epsilon", "0.05", "--out",
                        str(policy)], check=True, stdout=subprocess.DEVNULL)
        server, port = start_server(policy, Path(tmp) / "serve")
        try:
            health = http.client.HTTPConnection("127.0.0.1", port)
            health.request("GET", "/health")
            arm_names = json.loads(health.getresponse().read())["shop"]["arms"]
            print(f"server: {len(arm_names)} arms ({', '.join(arm_names)}), {N_CANDIDATES} candidates, "
                  f"{CLIENTS} client threads, {args.rate:g} requests/s for {args.seconds:g} s per row")
            gc.freeze()
            gc.disable()
            load(port, bodies(arm_names, 1, 50, seed=9), None, 2.0)  # warm-up
            for batch in (1, 32):
                payloads = bodies(arm_names, batch, 200 if batch == 1 else 20)
                runs = [load(port, payloads, args.rate / batch, args.seconds) for _ in range(args.repeats)]
                p50, p99 = (np.array([r[key] for r in runs]) for key in ("p50_ms", "p99_ms"))
                print(f"batch {batch:>2}, {args.rate:g} requests/s open loop, {args.repeats} runs: p50 median "
                      f"{np.median(p50):.2f} ms (range {p50.min():.2f}-{p50.max():.2f}), p99 median "
                      f"{np.median(p99):.2f} ms (range {p99.min():.2f}-{p99.max():.2f}) per call; "
                      f"{sum(r['calls'] for r in runs):,} calls, {sum(r['errors'] for r in runs)} errors")
                s = load(port, payloads, None, args.seconds / 2)
                print(f"batch {batch:>2}, saturated (closed loop): {s['calls_per_second'] * batch:,.0f} requests/s "
                      f"({s['calls_per_second']:,.0f} calls/s), p50 {s['p50_ms']:.2f} ms, {s['errors']} errors")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()

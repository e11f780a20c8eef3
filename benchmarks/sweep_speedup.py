"""How much faster does a sweep run on Ray with 2 workers than in this process? Prints figures; asserts nothing.

    python benchmarks/sweep_speedup.py [--tasks 16] [--shops small,default] [--runs 3]

The sweep, per shop: ``--tasks`` A/B tests of new arrivals against popularity, each about 15 s on one core
(half a day of pre-period, then 60 simulated days on ``small``, the tests' shop of 1,200 items and 3,000
shoppers, or 14 days on ``default``, 20,000 shoppers). Each run times run_sweep as a user waits for it: the
local backend (one task at a time in this process), then the ray backend with 2 workers, which starts Ray on
this machine (about 5 s), imports fusionsim in its workers (about 5 s) and stops Ray at the end (about 1.5 s),
all counted. The backends alternate, so a slow minute of the machine hits both; the figure is the median over
runs of the ratio of their wall times. Target: >= 1.7x on this 2-core machine. The tables of the two backends
are compared value for value as well.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from fusionsim.experiments.runs import new_run
from fusionsim.experiments.sweep import SweepRunConfig, run_sweep
from fusionsim.experiments.sweeps.spec import parse_sweep

SMALL = {"name": "small", "world": {"n_items": 1200, "n_users": 3000, "n_top_categories": 2, "n_leaf_per_top": 3,
                                    "n_brands": 40}, "candidates": {"trending_size": 300},
         "traffic": {"requests_per_day": 20000}}
"""The tests' small shop (tests/conftest.py), whose simulation fits in this machine's caches."""
DAYS = {"small": 60.0, "default": 14.0}
"""Simulated days per task: about 15 s on one core for each shop."""


def speedup(scenario: str, days: float, tasks: int, runs: int, root: Path) -> None:
    """Time the sweep on ``scenario`` with each backend ``runs`` times, alternating; print the figures."""
    sweep = parse_sweep({"name": "speedup", "seed": 0, "scenarios": [scenario],
                         "ab": {"days": days, "pre_days": 0.5,
                                "designs": [{"name": "new arrivals", "policies": ["popularity", "new_arrivals"],
                                             "replicates": tasks}]}})
    ratios, identical, name = [], True, Path(scenario).stem
    for run in range(runs):
        seconds, tables = {}, {}
        for backend, workers in (("local", 1), ("ray", 2)):
            out = root / f"{name}_{backend}_{run}"
            start = time.perf_counter()
            with new_run(out) as folder:
                run_sweep(SweepRunConfig(sweep="speedup", backend=backend, workers=workers), sweep, folder,
                          progress=False)
            seconds[backend] = time.perf_counter() - start
            tables[backend] = pq.read_table(out / "results.parquet")
        identical &= tables["local"].equals(tables["ray"])
        ratios.append(seconds["local"] / seconds["ray"])
        print(f"{name} run {run + 1}: local {seconds['local']:.1f} s, ray with 2 workers {seconds['ray']:.1f} s: "
              f"{ratios[-1]:.2f}x", flush=True)
    median = statistics.median(ratios)
    print(f"{name}: {tasks} tasks of {days:g} simulated days: ray (2 workers) is {median:.2f}x faster than local "
          f"(median of {runs} runs; range {min(ratios):.2f}-{max(ratios):.2f}x); target >= 1.7x: "
          f"{'met' if median >= 1.7 else 'MISSED'}; tables identical: {'yes' if identical else 'NO'}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--shops", default="small,default")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "small.yaml").write_text(yaml.safe_dump(SMALL))
        for shop in args.shops.split(","):
            speedup(str(root / "small.yaml") if shop == "small" else shop, DAYS[shop], args.tasks, args.runs, root)


if __name__ == "__main__":
    main()

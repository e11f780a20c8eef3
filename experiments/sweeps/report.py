"""A sweep's outputs from its task rows: the table (``results.parquet``), ``report.md`` and ``sweep.png``.

Everything here is a function of the rows alone, so two sweeps whose rows are equal (whichever backend ran
them) write equal tables and reports.

- compare: per scenario and method, the mean over seeds of the method's reward per request (and per
  session) with a 95% t interval across seeds (with one seed: that run's batch-means interval), the mean
  per-seed difference from the best static blend with its paired t interval (the methods of one seed share
  common random numbers), and the share of the oracle's headroom captured.
- A/B: per design, for an A/A design the false-positive rate at alpha = 0.05 per metric, for a design with
  truth replays the true lift (mean over replays, t interval) and the share of the tests' 95% intervals
  that cover it, otherwise the share of tests that reject at 0.05 (power); each rate with a Wilson interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from fusionsim.experiments.abtest.stats import wilson_interval
from fusionsim.experiments.online import mean_interval
from fusionsim.experiments.runs import save_figure, pyplot
from fusionsim.experiments.sweeps.spec import Sweep
from fusionsim.experiments.sweeps.tasks import (AB_METRICS, COLUMNS, TASK_COLUMNS, TRUTH_METRICS,
                                                ab_column)

ALPHA = 0.05
INTEGER_COLUMNS = ("replicate", "seed_entropy", "seed", "requests", "control_shoppers", "treatment_shoppers")
TEXT_COLUMNS = ("task_id", "kind", "scenario", "subject", "spawn_key", "status", "error", "method_kind")
AA_TARGET = (0.03, 0.07)
"""The false-positive rate an honest A/A test shows at alpha = 0.05, within simulation noise."""
COVERAGE_TARGET = 0.93
"""The least share of 95% intervals that should cover the true lift."""


def results_table(rows: list[dict], kinds: list[str]) -> pa.Table:
    """The rows as one Arrow table: :data:`TASK_COLUMNS`, then the figures of each kind in ``kinds`` (null
    where a row is of another kind or failed), with fixed types."""
    names = [*TASK_COLUMNS, *(c for kind in kinds for c in COLUMNS[kind])]
    fields = [pa.field(n, pa.int64() if n in INTEGER_COLUMNS else pa.string() if n in TEXT_COLUMNS else pa.float64())
              for n in names]
    return pa.table({f.name: pa.array([row.get(f.name) for row in rows], f.type) for f in fields},
                    schema=pa.schema(fields))


def _interval(low: float, high: float, digits: int = 4) -> str:
    return "-" if not (np.isfinite(low) and np.isfinite(high)) else f"[{low:.{digits}f}, {high:.{digits}f}]"


def _signed_interval(low: float, high: float) -> str:
    return "-" if not (np.isfinite(low) and np.isfinite(high)) else f"[{low:+.4f}, {high:+.4f}]"


def _rate(hits: np.ndarray) -> str:
    low, high = wilson_interval(int(hits.sum()), len(hits), ALPHA)
    return f"{hits.mean():.3f} {_interval(low, high, 3)}"


def compare_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per scenario and method (done compare rows): seeds, mean reward per request and per session with their
    across-seed intervals, the paired difference from the best static blend, and the headroom captured."""
    out = []
    for scenario, rows in frame.groupby("scenario", sort=False):
        static = rows[rows["subject"] == "best static blend"].set_index("replicate")["reward_per_request"]
        oracle = rows[rows["subject"] == "oracle"]["reward_per_request"]
        for method, group in rows.groupby("subject", sort=False):
            values = group["reward_per_request"].to_numpy()
            one = len(values) == 1
            low, high = ((group["ci95_lower"].iloc[0], group["ci95_upper"].iloc[0]) if one
                         else mean_interval(values))
            sessions = group["reward_per_session"].to_numpy()
            session_low, session_high = ((group["session_ci95_lower"].iloc[0], group["session_ci95_upper"].iloc[0])
                                         if one else mean_interval(sessions))
            paired = group.set_index("replicate")["reward_per_request"] - static
            paired = paired.dropna().to_numpy()
            gap = oracle.mean() - static.mean() if len(oracle) and len(static) else np.nan
            out.append({"scenario": scenario, "method": method, "kind": group["method_kind"].iloc[0],
                        "seeds": len(values), "reward_per_request": values.mean(), "low": low, "high": high,
                        "reward_per_session": sessions.mean(), "session_low": session_low,
                        "session_high": session_high,
                        "paired": paired.mean() if len(paired) else np.nan,
                        "paired_interval": mean_interval(paired) if len(paired) else (np.nan, np.nan),
                        "headroom": (values.mean() - static.mean()) / gap if gap > 0 else np.nan})
    return pd.DataFrame(out)


def ab_summary(frame: pd.DataFrame, sweep: Sweep) -> list[dict]:
    """Per scenario and design (done ab and truth rows): its tests and, per metric, the rate that judges it
    (false positives, coverage or power) with its hits, and the true lift where replays measured it."""
    summaries = []
    designs = {d.name: d for d in (sweep.ab.designs if sweep.ab else [])}
    for (scenario, name), rows in frame.groupby(["scenario", "subject"], sort=False):
        design = designs[name]
        tests, replays = rows[rows["kind"] == "ab"], rows[rows["kind"] == "truth"]
        summary = {"scenario": scenario, "design": design, "tests": len(tests), "replays": len(replays),
                   "metrics": {}}
        for metric in AB_METRICS:
            lift = tests[ab_column(metric, "lift")].to_numpy()
            low, high = tests[ab_column(metric, "ci_lower")].to_numpy(), tests[ab_column(metric, "ci_upper")].to_numpy()
            entry = {"mean_lift": lift.mean() if len(lift) else np.nan,
                     "lift_interval": mean_interval(lift) if len(lift) else (np.nan, np.nan)}
            truth_metric = metric.split(" ")[0]
            if design.is_aa:
                entry["rate"], entry["hits"] = "false positives", tests[ab_column(metric, "p_value")].to_numpy() < ALPHA
            elif len(replays) and truth_metric in TRUTH_METRICS:
                truth = replays[f"{truth_metric}_true_lift"].to_numpy()
                entry["truth"], entry["truth_interval"] = truth.mean(), mean_interval(truth)
                entry["rate"], entry["hits"] = "coverage", (low <= truth.mean()) & (truth.mean() <= high)
            else:
                entry["rate"], entry["hits"] = "power", tests[ab_column(metric, "p_value")].to_numpy() < ALPHA
            summary["metrics"][metric] = entry
        summaries.append(summary)
    return summaries


def render_report(sweep: Sweep, table: pa.Table) -> str:
    """report.md of a sweep from its table."""
    frame = table.to_pandas()
    done = frame[frame["status"] == "done"]
    failed = frame[frame["status"] != "done"]
    lines = [f"# Sweep `{sweep.name}`", "",
             f"{len(frame):,} tasks: {len(done):,} done, {len(failed):,} failed. Every task's seed is spawned from "
             f"the sweep's seed {sweep.seed} (numpy `SeedSequence.spawn`); `results.parquet` holds one row per "
             "task with its seed and spawn key.", ""]
    compare_rows = done[done["kind"] == "compare"]
    if len(compare_rows):
        block = sweep.compare
        lines += ["## Fusion methods", "",
                  f"Each method on {block.seeds} seed(s), {block.requests:,} requests per seed; a seed's figure is "
                  "the method's reward over the last 20% of its requests. Intervals are 95% t intervals across "
                  "seeds (with one seed: that run's batch-means interval). The difference from the best static "
                  "blend is paired by seed (the methods of a seed serve the same shoppers and draws).", ""]
        summary = compare_summary(compare_rows)
        for scenario, rows in summary.groupby("scenario", sort=False):
            lines += [f"### Scenario `{scenario}`", "",
                      "| method | kind | seeds | reward/request | 95% CI | reward/session | 95% CI | minus best "
                      "static blend (paired 95% CI) | headroom captured |", "|---|---|---|---|---|---|---|---|---|"]
            for r in rows.itertuples():
                paired = ("-" if r.method == "best static blend" or not np.isfinite(r.paired)
                          else f"{r.paired:+.4f} {_signed_interval(*r.paired_interval)}")
                headroom = "-" if not np.isfinite(r.headroom) else f"{100 * r.headroom:.0f}%"
                lines.append(f"| {r.method} | {r.kind} | {r.seeds} | {r.reward_per_request:.4f} | "
                             f"{_interval(r.low, r.high)} | {r.reward_per_session:.4f} | "
                             f"{_interval(r.session_low, r.session_high)} | {paired} | {headroom} |")
            lines.append("")
    ab_rows = done[done["kind"].isin(["ab", "truth"])]
    if len(ab_rows):
        lines += ["## A/B designs", "",
                  f"Each test: {sweep.ab.pre_days:g} day(s) of pre-period under the uniform policy (CUPED's "
                  f"covariates), then {sweep.ab.days:g} day(s) with the shoppers split by a salted hash of their id. "
                  f"Rates are shares of tests with a 95% Wilson interval: false positives at alpha = {ALPHA} for an "
                  f"A/A design (an honest test shows {AA_TARGET[0]}-{AA_TARGET[1]}), coverage of the true lift by the "
                  f"tests' 95% intervals where truth replays measured it (target >= {COVERAGE_TARGET}), else the "
                  "power (rejections at alpha).", ""]
        for s in ab_summary(ab_rows, sweep):
            design = s["design"]
            lines += [f"### `{design.name}` on `{s['scenario']}`: {design.policies[1]} vs {design.policies[0]}", "",
                      f"{s['tests']:,} tests" + (f", {s['replays']:,} truth replays" if s["replays"] else "") + ".",
                      "", "| metric | mean lift | 95% CI | true lift | 95% CI | rate | share [95% CI] | with the "
                      "target |", "|---|---|---|---|---|---|---|---|"]
            for metric, m in s["metrics"].items():
                truth = (f"{m['truth']:+.4f} | {_signed_interval(*m['truth_interval'])}" if "truth" in m else "- | -")
                lines.append(f"| {metric} | {m['mean_lift']:+.4f} | {_signed_interval(*m['lift_interval'])} | "
                             f"{truth} | {m['rate']} | {_rate(m['hits'])} | {_verdict(m)} |")
            lines.append("")
    if len(failed):
        lines += ["## Failed tasks", "", "Rerun the sweep with `--resume` to try them again.", "",
                  "| task | error |", "|---|---|"]
        lines += [f"| `{r.task_id}` | {str(r.error).replace('|', '/')} |" for r in failed.itertuples()]
        lines.append("")
    lines.append("![the sweep's figures with their intervals](sweep.png)")
    return "\n".join(lines) + "\n"


def _verdict(metric: dict) -> str:
    """Whether the rate's 95% Wilson interval reaches the target band (false positives: AA_TARGET; coverage:
    COVERAGE_TARGET or more): "consistent" is all a few tests can say; "**inconsistent**" is resolved."""
    if metric["rate"] == "power":
        return "-"
    low, high = wilson_interval(int(metric["hits"].sum()), len(metric["hits"]), ALPHA)
    band = AA_TARGET if metric["rate"] == "false positives" else (COVERAGE_TARGET, 1.0)
    return "consistent" if low <= band[1] and high >= band[0] else "**inconsistent**"


def plot(sweep: Sweep, table: pa.Table, path) -> None:
    """sweep.png: per scenario the compare methods' reward per request with across-seed intervals, and the
    A/B designs' rates (false positives or coverage of revenue, clicks and purchases) with Wilson intervals."""
    plt = pyplot()
    frame = table.to_pandas()
    done = frame[frame["status"] == "done"]
    compare = compare_summary(done[done["kind"] == "compare"]) if (done["kind"] == "compare").any() else None
    ab = ab_summary(done[done["kind"].isin(["ab", "truth"])], sweep) if done["kind"].isin(["ab"]).any() else []
    panels = ([] if compare is None else list(compare.groupby("scenario", sort=False))) + ([("A/B", ab)] if ab else [])
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6 * max(1, len(panels)), 4), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        if title == "A/B":
            labels, shares, lows, highs = [], [], [], []
            for s in data:
                for metric in ("revenue", "clicks", "purchases"):
                    m = s["metrics"][metric]
                    low, high = wilson_interval(int(m["hits"].sum()), len(m["hits"]), ALPHA)
                    labels.append(f"{s['design'].name}: {metric} ({m['rate']})")
                    shares.append(m["hits"].mean())
                    lows.append(max(0.0, shares[-1] - low))
                    highs.append(max(0.0, high - shares[-1]))
            ax.errorbar(shares, range(len(labels)), xerr=[lows, highs], fmt="o", capsize=3)
            ax.set_yticks(range(len(labels)), labels, fontsize=7)
            ax.axvline(ALPHA, color="gray", lw=0.8, ls="--")
            ax.axvline(COVERAGE_TARGET, color="gray", lw=0.8, ls=":")
            ax.set_xlabel("share of tests (95% Wilson interval)")
            ax.set_title("A/B designs")
        else:
            ax.errorbar(data["reward_per_request"], range(len(data)),
                        xerr=np.clip([data["reward_per_request"] - data["low"],
                                      data["high"] - data["reward_per_request"]], 0.0, None),
                        fmt="o", capsize=3)
            ax.set_yticks(range(len(data)), data["method"], fontsize=8)
            ax.set_xlabel("reward per request (95% CI across seeds)")
            ax.set_title(f"scenario {title}")
    fig.tight_layout()
    save_figure(fig, path)

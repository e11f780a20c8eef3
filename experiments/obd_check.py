"""``fusionsim obd-check``: a real shop end to end. Fit the click model to the Open Bandit Dataset's uniformly
random logs, simulate its Bernoulli Thompson Sampling (BTS) logging policy in the fitted shop, and set the
simulated click rate beside the real one of the BTS logs and beside the off-policy estimates of the BTS
policy from the random logs.

``--obd`` is the dataset's root as it ships (inside obp 0.5.7's source distribution under
``obp/dataset/obd``, or the Parquet extract in ``benchmarks/data/obd``): ``random/<campaign>/`` and
``bts/<campaign>/`` folders, each in the layout of ``envs.calibration.obd``. For every campaign in both:

1. **The fitted shop** is the position-based click model of the random logs
   (``envs.calibration.position_bias.randomized_pbm``): the click rate of each of the three positions and
   each item's attraction, shrunk toward the average by empirical Bayes. OBD has no sessions, user ids or
   purchases, so this is all of the shopper model the sample identifies.
2. **BTS in the fitted shop**: a log as large as the real BTS log is simulated, its positions as the BTS
   log has them and the item at each drawn from BTS's choice frequencies at that position (estimated from
   the BTS log: the mean of each item's indicator over its rounds, which the logged propensities average
   to), clicks drawn from the fitted model. Its interval is the 2.5-97.5 percentiles over ``bootstrap``
   replicates, each refitting the shop on a resample of the random log and the frequencies on a resample of
   the BTS log: the uncertainty of the fit and the noise of a log of that size.
3. **The real BTS click rate** of the BTS log (bootstrap interval on the same BTS resamples), the difference
   simulated - real (percentiles of the paired replicates), and IPS, SNIPS, DM and DR estimates of the BTS
   policy from the random log (``experiments.ope_run.obd_estimates``).

Writes ``obd.json``, ``report.md`` (the table and a verdict per campaign), ``config.yaml`` and
``complete.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fusionsim.common.io import atomic_write_text, mark_complete
from fusionsim.envs.calibration.obd import OBD_POSITIONS, ObdError, obd_campaigns, read_obd
from fusionsim.envs.calibration.position_bias import PBM, randomized_pbm
from fusionsim.experiments.ope_run import obd_estimates
from fusionsim.experiments.runs import write_config, write_json

LOGGERS = ("random", "bts")
"""The logging policies of the dataset: its root holds one folder of campaigns per logger."""
ESTIMATORS = ("ips", "snips", "dm", "dr")
"""The off-policy estimators set beside the simulation."""


@dataclass(frozen=True)
class ObdCheckConfig:
    """What one ``fusionsim obd-check`` run does; written whole as ``config.yaml``'s ``args``."""

    obd: str
    """the dataset's root: random/<campaign>/ and bts/<campaign>/ folders"""
    campaigns: tuple[str, ...] | None = None
    """the campaigns to check (None: every one under both loggers)"""
    bootstrap: int = 1000
    """bootstrap replicates of every interval"""
    folds: int = 2
    """folds of the cross-fitted reward model of DM and DR"""
    seed: int = 0
    """seed of the resampling and the simulation"""

    def __post_init__(self) -> None:
        for name, value, low in (("--bootstrap", self.bootstrap, 20), ("--folds", self.folds, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ObdError(f"{name} must be an integer >= {low}; got {value!r}")


def choice_frequencies(item: np.ndarray, position: np.ndarray, n_items: int) -> np.ndarray:
    """(n_items, 3): the share of the rounds at each position that showed each item (columns sum to 1; a
    position never logged gets the uniform choice)."""
    counts = np.zeros((n_items, OBD_POSITIONS))
    np.add.at(counts, (item, position), 1.0)
    totals = counts.sum(axis=0)
    return np.where(totals > 0, counts / np.maximum(totals, 1.0), 1.0 / n_items)


def simulate_clicks(model: PBM, frequencies: np.ndarray, position: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Clicks (n,) 0/1 of a policy that shows, at each round's ``position`` (n,) 0-2, an item drawn from
    ``frequencies`` (n_items, 3) at that position, in the shop ``model`` (its unseen items average)."""
    cdf = np.cumsum(frequencies, axis=0)
    cdf /= cdf[-1]
    draws = rng.random(len(position))
    item = np.empty(len(position), dtype=np.int64)
    for k in range(OBD_POSITIONS):  # three positions: one vectorised search each
        at = position == k
        item[at] = np.minimum(np.searchsorted(cdf[:, k], draws[at], side="right"), len(cdf) - 1)
    return (rng.random(len(position)) < model.click_probability(item, position)).astype(np.int64)


def _columns(log: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (log["item_id"].to_numpy(np.int64), log["position"].to_numpy(np.int64) - 1,
            log["click"].to_numpy(np.int64))


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def check_campaign(random_log: pd.DataFrame, bts_log: pd.DataFrame, n_items: int, config: ObdCheckConfig,
                   rng: np.random.Generator) -> dict:
    """The figures of one campaign (module docstring)."""
    r_item, r_position, r_click = _columns(random_log)
    b_item, b_position, b_click = _columns(bts_log)
    model, strength = randomized_pbm(r_item, r_position, r_click, n_items, OBD_POSITIONS)
    frequencies = choice_frequencies(b_item, b_position, n_items)
    simulated, real = np.empty(config.bootstrap), np.empty(config.bootstrap)
    for b in range(config.bootstrap):
        r = rng.integers(0, len(r_item), len(r_item))
        s = rng.integers(0, len(b_item), len(b_item))
        refit, _ = randomized_pbm(r_item[r], r_position[r], r_click[r], n_items, OBD_POSITIONS)
        simulated[b] = simulate_clicks(refit, choice_frequencies(b_item[s], b_position[s], n_items),
                                       b_position[s], rng).mean()
        real[b] = b_click[s].mean()
    items = np.arange(n_items)
    by_position = np.array([frequencies[:, k] @ model.click_probability(items, np.full(n_items, k))
                            for k in range(OBD_POSITIONS)])  # the fitted shop's BTS click rate at each position
    expected = float(by_position[b_position].mean())
    action_dist = np.broadcast_to(frequencies, (len(r_item), n_items, OBD_POSITIONS))
    estimates = obd_estimates(random_log, n_items, np.ascontiguousarray(action_dist), list(ESTIMATORS),
                              config.folds, config.seed, config.bootstrap)
    return {
        "random_rounds": len(r_item), "random_clicks": int(r_click.sum()), "random_ctr": float(r_click.mean()),
        "bts_rounds": len(b_item), "bts_clicks": int(b_click.sum()),
        "fitted": {"ctr_by_position": model.theta.tolist(), "prior_strength": strength,
                   "attraction": [None if np.isnan(g) else float(g) for g in model.gamma]},
        "simulated_bts_ctr": {"expected": expected, "median": float(np.median(simulated)),
                              "ci95": _interval(simulated)},
        "real_bts_ctr": {"value": float(b_click.mean()), "ci95": _interval(real)},
        "simulated_minus_real": {"value": expected - float(b_click.mean()), "ci95": _interval(simulated - real)},
        "ope": estimates,
    }


def verdict(result: dict) -> str:
    """One sentence: does the fitted shop's BTS click rate agree with the real one, and what can the
    intervals tell."""
    low, high = result["simulated_minus_real"]["ci95"]
    real_low, real_high = result["real_bts_ctr"]["ci95"]
    agree = ("the fitted shop's BTS click rate agrees with the real one (the 95% interval of the difference "
             "includes 0)" if low <= 0 <= high else
             "the fitted shop's BTS click rate differs from the real one (the 95% interval of the difference "
             "excludes 0)")
    real = max(result["real_bts_ctr"]["value"], 1e-12)
    return (f"{agree}; with {result['bts_clicks']} real BTS clicks the real rate is known only to "
            f"[{real_low:.4f}, {real_high:.4f}] ({100 * (real_high - real_low) / 2 / real:.0f}% either way), so "
            f"the check can reject only a shop that is off by more than about "
            f"{100 * max(abs(low), abs(high)) / real:.0f}%.")


def render_report(results: dict, root: str) -> str:
    lines = [f"# The Open Bandit Dataset end to end: `{root}`", "",
             "The shop fitted to the uniformly random logs (position-based click model, empirical-Bayes item "
             "attractions), the Bernoulli TS logging policy simulated in it, beside the real BTS click rate "
             "and the off-policy estimates of BTS from the random logs. 95% intervals: bootstrap.", "",
             "| campaign | random CTR (clicks) | simulated BTS CTR | real BTS CTR (clicks) | simulated - real | "
             + " | ".join(f"{e.upper()} from random" for e in ESTIMATORS) + " |",
             "|---|---|---|---|---|" + "---|" * len(ESTIMATORS)]

    def cell(value: float, interval: list[float]) -> str:
        return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"

    for campaign, r in results.items():
        ope = " | ".join(cell(r["ope"][e]["estimate"], [r["ope"][e]["ci_lower"], r["ope"][e]["ci_upper"]])
                         for e in ESTIMATORS)
        lines.append(f"| {campaign} | {r['random_ctr']:.4f} ({r['random_clicks']}) | "
                     f"{cell(r['simulated_bts_ctr']['expected'], r['simulated_bts_ctr']['ci95'])} | "
                     f"{cell(r['real_bts_ctr']['value'], r['real_bts_ctr']['ci95'])} ({r['bts_clicks']}) | "
                     f"{r['simulated_minus_real']['value']:+.4f} [{r['simulated_minus_real']['ci95'][0]:+.4f}, "
                     f"{r['simulated_minus_real']['ci95'][1]:+.4f}] | {ope} |")
    lines += ["", "Verdicts:"] + [f"- {campaign}: {verdict(r)}" for campaign, r in results.items()]
    return "\n".join(lines) + "\n"


def obd_check(config: ObdCheckConfig, out: Path) -> dict:
    """Check every campaign of ``config.obd``; write the files of the module docstring into ``out``."""
    root = Path(config.obd)
    folders = {logger: root / logger for logger in LOGGERS}
    for logger, folder in folders.items():
        if not folder.is_dir():
            raise ObdError(f"--obd {root} has no {logger}/ folder (expected the dataset's root: "
                           f"{', '.join(f'{name}/<campaign>/' for name in LOGGERS)})")
    available = sorted(set.intersection(*({c.name for c in f.iterdir() if c.is_dir() and obd_campaigns(c)}
                                          for f in folders.values())))
    campaigns = list(config.campaigns) if config.campaigns else available
    if not campaigns:
        raise ObdError(f"--obd {root}: no campaign is under both {' and '.join(f'{n}/' for n in LOGGERS)}")
    for campaign in campaigns:
        if campaign not in available:
            raise ObdError(f"--campaign {campaign!r} is not under both random/ and bts/ of --obd {root}; "
                           f"found {available}")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(len(campaigns))]
    results = {}
    for campaign, rng in zip(campaigns, rngs):
        random_log, n_items, _ = read_obd(folders["random"] / campaign, campaign, "--obd random/")
        bts_log, bts_items, _ = read_obd(folders["bts"] / campaign, campaign, "--obd bts/")
        if bts_items != n_items:
            raise ObdError(f"--obd {root}: campaign {campaign!r} has {n_items} items under random/ but "
                           f"{bts_items} under bts/")
        results[campaign] = check_campaign(random_log, bts_log, n_items, config, rng)
    write_config(out, "obd-check", dataclasses.asdict(config))
    write_json(out / "obd.json", {"campaigns": results})
    atomic_write_text(out / "report.md", render_report(results, str(root)))
    mark_complete(out, "obd-check")
    return results

"""``fusionsim obd-check``: a real shop end to end. Fit the click model to the Open Bandit Dataset's uniformly
random logs, simulate its Bernoulli Thompson Sampling (BTS) logging policy in the fitted shop, and set the
simulated click rate beside the real one of the BTS logs and beside the off-policy estimates of the BTS
policy from the random logs.

``--obd`` is the dataset's root as it ships (inside obp 0.5.7's source distribution under
``obp/dataset/obd``, or the Parquet extract in ``benchmarks/data/obd``): ``random/<campaign>/`` and
``bts/<campaign>/`` folders, each in the layout of ``envs.calibration.obd``. For every campaign in both:

1. **The fitted shop** is the position-based click model of the random logs, fitted by maximum likelihood
   (``envs.calibration.position_bias.randomized_pbm`` with prior strength 0): the click rate of each of the
   three positions and each item's multiplier on it. Unshrunk on purpose: BTS's choice frequencies come from
   another log, so the plug-in prediction is unbiased, where empirical-Bayes shrinkage (whose prior strength is
   reported beside) pulls a policy that favours good items toward the random logger's rate. OBD has no
   sessions, user ids or purchases, so this is all of the shopper model the sample identifies.
2. **BTS in the fitted shop**: BTS's choice frequencies at each position are estimated from the BTS log (the
   share of its rounds at that position that showed each item: BTS changed over the sample's days, and these
   are its time-averaged choices); its click rate in the fitted shop is their expectation over the BTS log's
   positions, and a simulated log of ``simulated_rounds`` rounds drawn from them shows it. Its interval is
   the 2.5-97.5 percentiles of that expectation over ``bootstrap`` replicates, each refitting the shop on a
   resample of the random log and the frequencies on a resample of the BTS log.
3. **The real BTS click rate** of the BTS log (bootstrap interval on the same BTS resamples), the difference
   expected - real (percentiles of the paired replicates), and IPS, SNIPS, DM and DR estimates of the BTS
   policy from the random log (``experiments.ope_run.obd_estimates``; their bootstrap keeps the frequencies
   and DM's and DR's reward model fixed, so DM's interval leaves out the model's uncertainty).

Every campaign is read and checked before any is computed: the random log must be uniform (every
propensity 1 / items) and hold every position. Each campaign's draws come from the seed and its name, so
its figures do not depend on which other campaigns are checked.

Writes ``obd.json``, ``report.md`` (the table and a verdict per campaign), ``config.yaml`` and
``complete.json``.
"""

from __future__ import annotations

import dataclasses
import zlib
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
    simulated_rounds: int = 1_000_000
    """rounds of the BTS log simulated in the fitted shop"""
    folds: int = 2
    """folds of the cross-fitted reward model of DM and DR"""
    seed: int = 0
    """seed of the resampling and the simulation"""

    def __post_init__(self) -> None:
        for name, value, low in (("--bootstrap", self.bootstrap, 20), ("--folds", self.folds, 2),
                                 ("--simulated-rounds", self.simulated_rounds, 1)):
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


def expected_ctr(model: PBM, frequencies: np.ndarray, position: np.ndarray) -> float:
    """The click rate that a policy choosing items with ``frequencies`` (n_items, 3) at each of the rounds'
    ``position`` (n,) 0-2 gets in the shop ``model``: what a long simulation of it converges to."""
    items = np.arange(len(frequencies))
    by_position = np.array([frequencies[:, k] @ model.click_probability(items, np.full(len(items), k))
                            for k in range(OBD_POSITIONS)])
    return float(by_position[position].mean())


def check_campaign(random_log: pd.DataFrame, bts_log: pd.DataFrame, n_items: int, config: ObdCheckConfig,
                   rng: np.random.Generator) -> dict:
    """The figures of one campaign (module docstring)."""
    r_item, r_position, r_click = _columns(random_log)
    b_item, b_position, b_click = _columns(bts_log)
    model, _ = randomized_pbm(r_item, r_position, r_click, n_items, OBD_POSITIONS, prior_strength=0.0)
    _, strength = randomized_pbm(r_item, r_position, r_click, n_items, OBD_POSITIONS)
    frequencies = choice_frequencies(b_item, b_position, n_items)
    expected = expected_ctr(model, frequencies, b_position)
    simulated = simulate_clicks(model, frequencies, rng.choice(b_position, config.simulated_rounds), rng).mean()
    replicates, real = np.empty(config.bootstrap), np.empty(config.bootstrap)
    for b in range(config.bootstrap):
        r = rng.integers(0, len(r_item), len(r_item))
        s = rng.integers(0, len(b_item), len(b_item))
        refit, _ = randomized_pbm(r_item[r], r_position[r], r_click[r], n_items, OBD_POSITIONS, prior_strength=0.0)
        replicates[b] = expected_ctr(refit, choice_frequencies(b_item[s], b_position[s], n_items), b_position[s])
        real[b] = b_click[s].mean()
    action_dist = np.broadcast_to(frequencies, (len(r_item), n_items, OBD_POSITIONS))
    estimates = obd_estimates(random_log, n_items, np.ascontiguousarray(action_dist), list(ESTIMATORS),
                              config.folds, config.seed, config.bootstrap)
    return {
        "items": n_items, "random_rounds": len(r_item), "random_clicks": int(r_click.sum()),
        "random_ctr": float(r_click.mean()), "bts_rounds": len(b_item), "bts_clicks": int(b_click.sum()),
        "fitted": {"ctr_by_position": model.theta.tolist(),
                   "attraction": [None if np.isnan(g) else float(g) for g in model.gamma],
                   "empirical_bayes_prior_strength": strength},
        "simulated_bts_ctr": {"expected": expected, "ci95": _interval(replicates),
                              "simulated_log": {"rounds": config.simulated_rounds, "ctr": float(simulated)}},
        "real_bts_ctr": {"value": float(b_click.mean()), "ci95": _interval(real)},
        "simulated_minus_real": {"value": expected - float(b_click.mean()), "ci95": _interval(replicates - real)},
        "ope": estimates,
    }


def verdict(result: dict) -> str:
    """One sentence: is the fitted shop's BTS click rate contradicted by the real one, and what range of
    error the sample leaves open."""
    low, high = result["simulated_minus_real"]["ci95"]
    real = result["real_bts_ctr"]["value"]
    if real <= 0:
        return "the BTS log holds no click: its click rate cannot check the fitted shop."
    found = ("the real BTS click rate does not contradict the fitted shop's (the 95% interval of the difference "
             "includes 0)" if low <= 0 <= high else
             "the fitted shop's BTS click rate differs from the real one (the 95% interval of the difference "
             "excludes 0)")
    return (f"{found}; with {result['bts_clicks']} real BTS clicks and {result['random_clicks']} random ones, the "
            f"fitted shop's error is anywhere from {100 * low / real:+.0f}% to {100 * high / real:+.0f}% of the "
            "real rate.")


def render_report(results: dict, root: str) -> str:
    lines = [f"# The Open Bandit Dataset end to end: `{root}`", "",
             "The shop fitted to the uniformly random logs (position-based click model, maximum likelihood), the "
             "Bernoulli TS logging policy's click rate in it, beside the real BTS click rate and the off-policy "
             "estimates of BTS from the random logs. 95% intervals: bootstrap (the fitted shop's over refits on "
             "resampled random logs and BTS frequencies from resampled BTS logs; DM's keeps its reward model "
             "fixed).", "",
             "| campaign | items | random CTR (clicks) | BTS CTR in the fitted shop | real BTS CTR (clicks) | "
             "fitted - real | "
             + " | ".join(f"{e.upper()} from random" for e in ESTIMATORS) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(ESTIMATORS)]

    def cell(value: float, interval: list[float]) -> str:
        return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"

    for campaign, r in results.items():
        ope = " | ".join(cell(r["ope"][e]["estimate"], [r["ope"][e]["ci_lower"], r["ope"][e]["ci_upper"]])
                         for e in ESTIMATORS)
        lines.append(f"| {campaign} | {r['items']} | {r['random_ctr']:.4f} ({r['random_clicks']}) | "
                     f"{cell(r['simulated_bts_ctr']['expected'], r['simulated_bts_ctr']['ci95'])} | "
                     f"{cell(r['real_bts_ctr']['value'], r['real_bts_ctr']['ci95'])} ({r['bts_clicks']}) | "
                     f"{r['simulated_minus_real']['value']:+.4f} [{r['simulated_minus_real']['ci95'][0]:+.4f}, "
                     f"{r['simulated_minus_real']['ci95'][1]:+.4f}] | {ope} |")
    lines += ["", "A simulated BTS log in each fitted shop: " + "; ".join(
        f"{campaign} {r['simulated_bts_ctr']['simulated_log']['ctr']:.4f} over "
        f"{r['simulated_bts_ctr']['simulated_log']['rounds']:,} rounds" for campaign, r in results.items())
        + ". Empirical-Bayes prior strength of the item attractions (large: the sample cannot tell the items "
        "apart): " + "; ".join(f"{campaign} {r['fitted']['empirical_bayes_prior_strength']:.3g}"
                               for campaign, r in results.items()) + ".", "", "Verdicts:"]
    lines += [f"- {campaign}: {verdict(r)}" for campaign, r in results.items()]
    return "\n".join(lines) + "\n"


def _check_random_logger(log: pd.DataFrame, n_items: int, source: str) -> None:
    """The random logs must come from the uniformly random logger with every position shown."""
    propensity = log["propensity_score"].to_numpy(np.float64)
    bad = np.abs(propensity * n_items - 1.0) > 1e-6
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ObdError(f"{source}: column 'propensity_score' must be 1 / items = {1 / n_items:.6g} in a uniformly "
                       f"random log; got {propensity[row]} at row {row}")
    shown = np.bincount(log["position"].to_numpy(np.int64) - 1, minlength=OBD_POSITIONS)
    if (shown == 0).any():
        raise ObdError(f"{source} has no rounds at position {int(np.flatnonzero(shown == 0)[0]) + 1}: its click "
                       "rate there cannot be fitted")


def obd_check(config: ObdCheckConfig, out: Path) -> dict:
    """Check every campaign of ``config.obd``; write the files of the module docstring into ``out``."""
    root = Path(config.obd)
    if not root.exists():
        raise ObdError(f"--obd {root} does not exist" + ("" if root.is_absolute() else
                                                         f" (a relative path is read from {Path.cwd()})"))
    if not root.is_dir():
        raise ObdError(f"--obd {root} is a file, not the dataset's root folder")
    folders = {logger: root / logger for logger in LOGGERS}
    for logger, folder in folders.items():
        if not folder.is_dir():
            raise ObdError(f"--obd {root} has no {logger}/ folder (expected the dataset's root: "
                           f"{', '.join(f'{name}/<campaign>/' for name in LOGGERS)})")
    held = {logger: sorted(c.name for c in f.iterdir() if c.is_dir() and obd_campaigns(c))
            for logger, f in folders.items()}
    available = sorted(set(held["random"]) & set(held["bts"]))
    if not available:
        raise ObdError(f"--obd {root}: no campaign is under both random/ and bts/ (random/ holds {held['random']}, "
                       f"bts/ holds {held['bts']})")
    campaigns = list(config.campaigns) if config.campaigns else available
    for i, campaign in enumerate(campaigns):
        if campaign not in available:
            raise ObdError(f"--campaign {campaign!r} is not under both random/ and bts/ of --obd {root}; "
                           f"found {available}")
        if campaign in campaigns[:i]:
            raise ObdError(f"--campaign {campaign!r} is given twice")
    logs = {}
    for campaign in campaigns:  # read and check them all before computing any
        random_log, n_items, _ = read_obd(folders["random"] / campaign, campaign, "--obd random/")
        _check_random_logger(random_log, n_items, str(folders["random"] / campaign))
        bts_log, bts_items, _ = read_obd(folders["bts"] / campaign, campaign, "--obd bts/")
        if bts_items != n_items:
            raise ObdError(f"--obd {root}: campaign {campaign!r} has {n_items} items under random/ but "
                           f"{bts_items} under bts/")
        logs[campaign] = random_log, bts_log, n_items
    results = {}
    for campaign, (random_log, bts_log, n_items) in logs.items():
        rng = np.random.default_rng([config.seed, zlib.crc32(campaign.encode())])  # by name, not by place
        results[campaign] = check_campaign(random_log, bts_log, n_items, config, rng)
    write_config(out, "obd-check", dataclasses.asdict(config))
    write_json(out / "obd.json", {"campaigns": results})
    atomic_write_text(out / "report.md", render_report(results, str(root)))
    mark_complete(out, "obd-check")
    return results

"""``fusionsim demo``: the whole product on the default shop, end to end, in a few minutes.

1. log 400,000 requests under the uniform policy over the default arms;
2. train popularity, mf, content and sequence on that log;
3. log 100,000 requests under the uniform policy over the four trained arms (for off-policy evaluation);
4. train LinUCB online (epsilon 0.1, over the arms) for 300,000 requests;
5. compare every fusion method (``fusionsim compare``) on the trained arms for 100,000 requests each;
6. A/B test LinUCB (learning in its bucket) against the best single arm and the best static blend;
7. evaluate the trained LinUCB off-policy on the log of step 3;
and print one summary: every method's reward with its interval, each A/B bucket's measured and true lift,
and one sentence on which fusion pays on this shop and by how much.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.ab_test import ABTestConfig, run_ab_test
from fusionsim.experiments.compare import CompareConfig, compare, verdict
from fusionsim.experiments.evaluation.estimators import ESTIMATORS
from fusionsim.experiments.ope_run import OPEConfig, run_ope
from fusionsim.experiments.runs import prepare_run_folder, write_config
from fusionsim.experiments.simulate import SimulateConfig, run_policy
from fusionsim.experiments.train import TrainConfig, train
from fusionsim.experiments.train_base import TrainBaseConfig, train_base
from fusionsim.common.io import atomic_write_text, mark_complete


def run_demo(out: Path, overwrite: bool = False, scale: float = 1.0) -> dict:
    """Run every step into ``out``/<step>; write ``summary.md`` and return the summary."""
    folder = prepare_run_folder(out, overwrite)
    scenario = load_scenario("default")
    write_config(folder, "demo", {"scale": scale})

    def n(requests: int) -> int:
        return max(2560, int(requests * scale) // 2560 * 2560)

    def per_candidate(requests: int) -> int:
        """Requests per searched blend or cascade (smoke scales: one step of 256)."""
        return max(256, int(requests * scale) // 256 * 256)

    def step(text: str) -> None:
        click.echo(f"[demo] {text}", err=True)

    step("1/7 logging uniform traffic over the default arms")
    run_policy(SimulateConfig(requests=n(400_000), seed=0), scenario, folder / "logs", progress=False)
    step("2/7 training popularity, mf, content and sequence")
    epochs = None if scale >= 0.5 else 2 if scale >= 0.05 else 1  # small scales are smoke runs
    arms = train_base(TrainBaseConfig(logs=str(folder / "logs"), epochs=epochs), scenario, folder / "arms",
                      progress=False)
    step("3/7 logging uniform traffic over the trained arms")
    run_policy(SimulateConfig(requests=n(100_000), seed=1, base=str(folder / "arms")), scenario, folder / "ope_logs",
               progress=False)
    step("4/7 training LinUCB online")
    linucb = train(TrainConfig(agent="linucb", requests=n(300_000), base=str(folder / "arms"), seed=2, actions="arm",
                               epsilon=0.1, log_every=n(300_000) // 10, checkpoint_every=n(300_000) // 10 * 10,
                               oracle_requests=per_candidate(10_000)), scenario, folder / "linucb", progress=False)
    step("5/7 comparing every fusion method")
    comparison = compare(CompareConfig(base=str(folder / "arms"), requests=n(100_000),
                                       search_requests=per_candidate(20_000),
                                       log_requests=n(100_000), seed=4), scenario, folder / "compare", progress=False)
    step("6/7 A/B test: best arm, best static blend, LinUCB")
    ab = run_ab_test(ABTestConfig(policies=("best-arm", "static", "linucb"), split=(1.0, 1.0, 1.0),
                                  days=max(0.02, scale), pre_days=max(0.01, 0.5 * scale), base=str(folder / "arms"),
                                  seed=3, grid_requests=per_candidate(20_000), replays=3 if scale >= 0.5 else 1),
                     scenario, folder / "ab_test")
    step("7/7 off-policy evaluation of LinUCB")
    ope = run_ope(OPEConfig(logs=str(folder / "ope_logs"), policy=str(folder / "linucb"), estimators=tuple(ESTIMATORS)),
                  folder / "ope")
    summary = {"arms_ndcg@10": {m: r["ndcg@10"] for m, r in arms["models"].items()},
               "linucb_reward_per_request_last_20pct": linucb["reward_per_request_last_20pct"],
               "oracle": json.loads((folder / "linucb" / "oracle.json").read_text()),
               "compare": {name: {"reward_per_request": r["reward_per_request"], "ci95": r["ci95"],
                                  "kind": r["kind"]} for name, r in comparison["methods"].items()},
               "verdict": verdict(comparison),
               "ab_test": {label: {"revenue_lift": rows["revenue"]["lift"], "ci": [rows["revenue"]["ci_lower"],
                                                                                 rows["revenue"]["ci_upper"]],
                                   "p_value": rows["revenue"]["p_value"]}
                           for label, rows in ab["comparisons"].items()},
               "ab_true_lift": ab.get("true_lift", {}),
               "ope": {name: r["estimate"] for name, r in ope["estimators"].items()},
               "ope_on_policy_truth": ope.get("on_policy_truth")}
    atomic_write_text(folder / "summary.md", render_summary(summary, folder))
    mark_complete(folder, "demo")
    return summary


def render_summary(s: dict, folder: Path) -> str:
    lines = ["# fusionsim demo", "", "| step | result |", "|---|---|"]
    lines.append("| base recommenders, NDCG@10 | " + ", ".join(f"{m} {v:.4f}" for m, v in s["arms_ndcg@10"].items())
                 + f" ([report]({folder}/arms/report.md)) |")
    oracle = s["oracle"]
    lines.append(f"| LinUCB online (clicks/request, last 20%) | {s['linucb_reward_per_request_last_20pct']:.4f}; "
                 f"best single arm {oracle['best_single_arm']['reward_per_request']:.4f}, best static blend "
                 f"{oracle['best_static_blend']['reward_per_request']:.4f} (grid search) |")
    lines.append(f"| fusion methods, clicks/request over the last 20% [95% CI] ([report]({folder}/compare/report.md)) "
                 "| " + "; ".join(f"{name} {r['reward_per_request']:.4f} [{r['ci95'][0]:.4f}, {r['ci95'][1]:.4f}]"
                                  for name, r in s["compare"].items()) + " |")
    for label, r in s["ab_test"].items():
        truth = s["ab_true_lift"].get(f"{label.split(' (')[0]} vs best-arm", {}).get("revenue")
        lines.append(f"| A/B {label}: revenue/shopper lift | {r['revenue_lift']:+.3f} "
                     f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}], p = {r['p_value']:.3f}"
                     + (f"; true lift {truth:+.3f}" if truth is not None else "") + " |")
    lines.append("| off-policy value of LinUCB | " + ", ".join(f"{k} {v:.4f}" for k, v in s["ope"].items())
                 + (f"; simulated on-policy {s['ope_on_policy_truth']:.4f}" if s["ope_on_policy_truth"] else "")
                 + " |")
    lines += ["", s["verdict"]]
    return "\n".join(lines) + "\n"

"""The ``fusionsim`` command line. Bad input exits with code 2 and one line naming what is wrong."""

from __future__ import annotations

import errno
import math
import sys
import traceback
from pathlib import Path

import click

from fusionsim.envs.scenario import load_scenario
from fusionsim.experiments.compare import METHODS as COMPARE_METHODS
from fusionsim.experiments.compare import PER as COMPARE_PER
from fusionsim.experiments.compare import CompareConfig, compare, method_slug
from fusionsim.experiments.runs import new_run, parse_choices
from fusionsim.experiments.simulate import PPO_STD_SCALE_RANGE, SimulateConfig, run_policy
from fusionsim.experiments.train import AGENTS, PPOConfig, TrainConfig, TrainError, train
from fusionsim.envs.stacking import KINDS as STACKER_KINDS, TARGETS as STACKER_TARGETS
from fusionsim.experiments.train_stacker import TrainStackerConfig, train_stacker
from fusionsim.experiments.train_base import MODELS, TrainBaseConfig, TrainBaseError, parse_models, train_base


class UsageFailure(click.ClickException):
    """A bad argument or input file: printed as one ``Error: ...`` line, exit code 2."""

    exit_code = 2


MAX_REQUESTS = 1_000_000_000
"""Upper bound of ``--requests``: about 19 GB of Parquet log and 2 hours of simulation on 2 cores."""
BYTES_PER_LOGGED_REQUEST = 19
"""Parquet bytes per request of a simulate log (measured: 10M requests, 189 MB)."""


def _expected_failure(exc: BaseException) -> str | None:
    """The one-line message for a failure that bad input or the machine caused (None: a bug, re-raised).

    Errors raised by fusionsim's own checks (a ValueError raised in fusionsim code), a full disk, a path
    that is not a folder, missing permissions and memory exhaustion are expected."""
    if isinstance(exc, MemoryError):
        return ("out of memory: the asked size does not fit in this machine's memory; ask for fewer requests, "
                "slots or items")
    if isinstance(exc, OSError):
        where = f" while writing {exc.filename}" if exc.filename else ""
        if exc.errno == errno.ENOSPC:
            return f"no space left on the device{where}; free some space and rerun (nothing complete was written)"
        if exc.filename:
            return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
        return f"{exc.strerror or exc}"
    if isinstance(exc, ValueError):
        if type(exc).__module__.startswith("fusionsim"):
            return str(exc)
        frames = traceback.extract_tb(exc.__traceback__)
        raised_by_us = frames and _in_package(frames[-1].filename) and (frames[-1].line or "").startswith("raise ")
        return str(exc) if raised_by_us else None
    return None


PACKAGE_FOLDERS = tuple(Path(__file__).resolve().parents[1] / part
                        for part in ("common", "envs", "agents", "recommenders", "experiments"))


def _in_package(filename: str) -> bool:
    """True for a source file of fusionsim itself (a ValueError that fusionsim raises on purpose)."""
    path = Path(filename).resolve()
    return any(path.is_relative_to(folder) for folder in PACKAGE_FOLDERS)


class _Commands(click.Group):
    """The one error boundary: every expected failure of any command becomes one ``Error:`` line, exit 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # a bad option value or name: one line, as every other bad input
            raise UsageFailure(exc.format_message()) from None
        except click.ClickException:
            raise
        except Exception as exc:  # noqa: BLE001 - sorted into expected failures and bugs below
            message = _expected_failure(exc)
            if message is None:
                raise
            raise UsageFailure(message) from None


    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:  # e.g. an unknown command
            raise UsageFailure(exc.format_message()) from None


class FiniteFloat(click.ParamType):
    """A finite float within [low, high] (``min_open``: low excluded); NaN and infinity are refused."""

    name = "float"

    def __init__(self, low: float | None = None, high: float | None = None, min_open: bool = False) -> None:
        self.low, self.high, self.min_open = low, high, min_open

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number{self._allowed()}", param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number{self._allowed()}", param, ctx)
        too_low = self.low is not None and (number <= self.low if self.min_open else number < self.low)
        if too_low or (self.high is not None and number > self.high):
            self.fail(f"{number:g} is not in the range {self._range()}", param, ctx)
        return number

    def _range(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.min_open else '['}{low}, {high}]"

    def _allowed(self) -> str:
        """``; allowed: <range>`` where the option has a bound, else nothing."""
        return "" if self.low is None and self.high is None else f"; allowed: a number in {self._range()}"


REQUESTS = click.IntRange(min=1, max=MAX_REQUESTS)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """fusionsim: simulate a shop, blend its recommenders, and learn how to blend them per context."""


@cli.command()
@click.option("--scenario", default="default", show_default=True,
              help="Shipped scenario name (default, cold_start, search_heavy, drift, long_horizon) or a YAML path.")
@click.option("--policy", default="uniform", show_default=True,
              help="uniform | uniform-grid | uniform-weights | an arm name (popularity, new_arrivals) | "
                   "blend:<w1>,<w2> | run:<train or learn run> (its policy, frozen)")
@click.option("--requests", type=REQUESTS, default=100_000, show_default=True,
              help=f"Requests to simulate (at most {MAX_REQUESTS:,}: about {BYTES_PER_LOGGED_REQUEST} bytes of log "
                   "each).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/simulate"), show_default=True,
              help="Run folder to write (config.yaml, metrics.json, logs/).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--slots", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Concurrent shopper sessions simulated per step.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=500_000, show_default=True,
              help="Rows per Parquet part file.")
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="Folder of trained arms from fusionsim train-base (default: popularity and new arrivals).")
@click.option("--grid-resolution", type=click.IntRange(min=1), default=4, show_default=True,
              help="Resolution of the weight grid that --policy uniform-grid draws from.")
@click.option("--shuffle-slates", is_flag=True,
              help="Show each slate in a random order (a position randomisation experiment, for train-stacker).")
@click.option("--ppo-std-scale", type=FiniteFloat(PPO_STD_SCALE_RANGE[0], PPO_STD_SCALE_RANGE[1]), default=1.0,
              show_default=True, help=f"With --policy run:<PPO run>: the factor on PPO's standard deviation, in "
              f"[{PPO_STD_SCALE_RANGE[0]:g}, {PPO_STD_SCALE_RANGE[1]:g}] (above 1, a wider logger of the policy, for "
              "ope's session estimators).")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def simulate(scenario: str, policy: str, requests: int, out: Path, seed: int, slots: int, chunk_rows: int,
             base: Path | None, grid_resolution: int, shuffle_slates: bool, ppo_std_scale: float,
             overwrite: bool) -> None:
    """Simulate traffic under a static policy; write the Parquet log (with propensities) and metrics."""
    resolved = load_scenario(scenario)
    with new_run(out, overwrite) as folder:
        config = SimulateConfig(scenario=scenario, policy=policy, requests=requests, seed=seed, slots=slots,
                                chunk_rows=chunk_rows, base=None if base is None else str(base),
                                grid_resolution=grid_resolution, shuffle_slates=shuffle_slates,
                                ppo_std_scale=ppo_std_scale)
        summary = run_policy(config, resolved, folder)
    m = summary.metrics
    click.echo(f"requests {m['requests']:,}  CTR {m['ctr']:.4f}  clicks/request {m['clicks_per_request']:.4f}  "
               f"purchases/request {m['purchases_per_request']:.4f}  revenue/request {m['revenue_per_request']:.3f}  "
               f"session length {m['mean_session_length']:.2f}")
    click.echo(f"wrote {folder}/config.yaml, {folder}/metrics.json and {len(summary.log_parts)} log part(s) "
               f"in {folder}/logs/")


@cli.command("train-base")
@click.option("--scenario", default="default", show_default=True, help="The scenario the logs were simulated on.")
@click.option("--logs", type=click.Path(path_type=Path), required=True,
              help="A fusionsim simulate run folder (its logs/ train the arms).")
@click.option("--models", default=",".join(MODELS), show_default=True, help="Comma-separated arms to train.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/arms"), show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Training device for the PyTorch arms (auto: cuda when present).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Cap on training epochs.")
@click.option("--test-fraction", type=FiniteFloat(0.01, 0.9), default=0.2, show_default=True,
              help="Share of the log (by time) held out for testing.")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def train_base_command(scenario: str, logs: Path, models: str, out: Path, device: str, seed: int,
                       epochs: int | None, test_fraction: float, overwrite: bool) -> None:
    """Train base recommenders on a simulated log; write checkpoints, metrics.json and report.md."""
    resolved = load_scenario(scenario)
    names = parse_models(models)
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise TrainBaseError("--device cuda: no CUDA device on this machine; use --device cpu or auto")
    with new_run(out, overwrite) as folder:
        config = TrainBaseConfig(logs=str(logs), models=tuple(names), scenario=scenario, device=device, seed=seed,
                                 epochs=epochs, test_fraction=test_fraction)
        metrics = train_base(config, resolved, folder)
    click.echo(f"{'model':<12}{'NDCG@10':>9}{'Recall@10':>11}")
    for name, result in metrics["models"].items():
        click.echo(f"{name:<12}{result['ndcg@10']:>9.4f}{result['recall@10']:>11.4f}")
    click.echo(f"wrote {folder}/report.md, {folder}/metrics.json, {folder}/arms.json and {folder}/models/")


@cli.command("train-stacker")
@click.option("--logs", type=click.Path(path_type=Path), required=True,
              help="A fusionsim simulate run folder served by the arms to fuse (e.g. simulate --base runs/arms).")
@click.option("--kind", type=click.Choice(list(STACKER_KINDS)), default="mlp", show_default=True)
@click.option("--hidden", type=click.IntRange(1, 1024), default=32, show_default=True,
              help="Units per hidden layer of the mlp.")
@click.option("--target", type=click.Choice([*STACKER_TARGETS, "auto"]), default="auto", show_default=True,
              help="What to predict per impression (auto: from the scenario's reward).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=6, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/stacker"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def train_stacker_command(logs: Path, kind: str, hidden: int, target: str, epochs: int, seed: int, out: Path,
                          overwrite: bool) -> None:
    """Fit a stacking meta-ranker on a simulated log (its impressions, clicks and the arms' signals)."""
    config = TrainStackerConfig(logs=str(logs), kind=kind, hidden=hidden, target=target, epochs=epochs, seed=seed)
    with new_run(out, overwrite) as folder:
        metrics = train_stacker(config, folder)
    click.echo(f"{kind} stacker predicting {metrics['target']}: held-out loss {metrics['validation_loss']:.5f} "
               f"(position only {metrics['baseline_loss']:.5f}, "
               f"{100 * metrics['loss_reduction_vs_position_only']:.2f}% lower)")
    click.echo(f"wrote {folder}/stacker.pt, {folder}/stacker.json, {folder}/metrics.json and {folder}/report.md")


@cli.command("train")
@click.option("--scenario", default="default", show_default=True)
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="Folder of trained arms from fusionsim train-base (default: popularity and new arrivals).")
@click.option("--agent", required=True, help=f"One of {', '.join(AGENTS)}.")
@click.option("--requests", type=REQUESTS, default=500_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/train"), show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--slots", type=click.IntRange(min=1), default=256, show_default=True,
              help="Concurrent sessions; the policy updates after every step of this many requests.")
@click.option("--actions", type=click.Choice(["grid", "arm"]), default="grid", show_default=True,
              help="Choose among weight-grid points or single arms.")
@click.option("--grid-resolution", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=20_000, show_default=True,
              help="Requests between TensorBoard points.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--oracle-requests", type=click.IntRange(min=0, max=MAX_REQUESTS), default=20_000, show_default=True,
              help="Requests simulated per grid blend to find the oracle for the regret curve (0: no oracle).")
@click.option("--discount", type=FiniteFloat(0.0, 1.0, min_open=True), default=1.0, show_default=True,
              help="Per-request forgetting of linucb, lints, joint_linucb and joint_lints (e.g. 0.99999 for a "
                   "window of ~100,000 requests).")
@click.option("--epsilon", type=FiniteFloat(0.0, 1.0), default=0.0, show_default=True,
              help="linucb, joint_linucb: share of uniformly random actions (a stochastic policy, for off-policy "
                   "evaluation).")
@click.option("--ppo-n-steps", type=click.IntRange(min=1), default=PPOConfig.n_steps, show_default=True,
              help="ppo: rollout steps per slot between updates.")
@click.option("--ppo-batch-size", type=click.IntRange(min=2), default=PPOConfig.batch_size, show_default=True)
@click.option("--ppo-epochs", type=click.IntRange(min=1), default=PPOConfig.n_epochs, show_default=True)
@click.option("--ppo-gamma", type=FiniteFloat(0.0, 1.0), default=PPOConfig.gamma, show_default=True)
@click.option("--ppo-learning-rate", type=FiniteFloat(0.0, 1.0, min_open=True), default=PPOConfig.learning_rate,
              show_default=True)
@click.option("--ppo-ent-coef", type=FiniteFloat(0.0, 1.0), default=PPOConfig.ent_coef, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint (same arguments; "
              "--requests may grow).")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def train_command(scenario: str, base: Path | None, agent: str, requests: int, out: Path, seed: int, slots: int,
                  actions: str, grid_resolution: int, log_every: int, checkpoint_every: int, oracle_requests: int,
                  discount: float, epsilon: float, ppo_n_steps: int, ppo_batch_size: int, ppo_epochs: int,
                  ppo_gamma: float, ppo_learning_rate: float, ppo_ent_coef: float, resume: bool,
                  overwrite: bool) -> None:
    """Train a fusion policy online; TensorBoard curves, checkpoints, the policy and metrics.json."""
    if resume and overwrite:
        raise TrainError("--resume and --overwrite exclude each other: continue the run or start it again")
    ppo = PPOConfig(n_steps=ppo_n_steps, batch_size=ppo_batch_size, n_epochs=ppo_epochs, gamma=ppo_gamma,
                    learning_rate=ppo_learning_rate, ent_coef=ppo_ent_coef)
    config = TrainConfig(agent=agent, scenario=scenario, requests=requests, base=None if base is None else str(base),
                         seed=seed, slots=slots, actions=actions, grid_resolution=grid_resolution,
                         log_every=log_every, checkpoint_every=checkpoint_every, oracle_requests=oracle_requests,
                         discount=discount, epsilon=epsilon, ppo=ppo)
    resolved = load_scenario(scenario)
    if resume:
        metrics = train(config, resolved, out, resume=True)
        folder = out
    else:
        with new_run(out, overwrite, resumable=True) as folder:
            metrics = train(config, resolved, folder)
    last = metrics["reward_per_request_last_20pct"]
    click.echo(f"{agent}: reward/request {metrics['reward_per_request']:.4f} overall"
               + (f", {last:.4f} over the last 20%" if last is not None else ""))
    saved = "ppo_policy.pt, ppo.json" if agent == "ppo" else "policy.npz"
    click.echo(f"wrote {folder}/metrics.json, {saved}, checkpoints/ and TensorBoard events in {folder}/tensorboard/")


@cli.command("compare")
@click.option("--scenario", default="default", show_default=True, help="Shipped scenario name or YAML path.")
@click.option("--base", type=click.Path(path_type=Path), default=None,
              help="A fusionsim train-base run folder (default: log traffic and train the four arms first).")
@click.option("--stacker", type=click.Path(path_type=Path), default=None,
              help="A fusionsim train-stacker run folder (default: fit a logistic and an MLP stacker, keep the "
                   "better).")
@click.option("--requests", type=click.IntRange(1, MAX_REQUESTS), default=500_000, show_default=True,
              help="Requests each method is evaluated on.")
@click.option("--search-requests", type=click.IntRange(1, MAX_REQUESTS), default=100_000, show_default=True,
              help="Requests per blend and per cascade in the searches.")
@click.option("--log-requests", type=click.IntRange(1, MAX_REQUESTS), default=400_000, show_default=True,
              help="Requests logged to train the arms, and again the stacker, when they are not given.")
@click.option("--methods", default=None,
              help="Comma-separated methods to run, from " + ",".join(method_slug(m) for m in COMPARE_METHODS)
                   + " [default: all but ppo; with --per session, all].")
@click.option("--cascade-keep", default="20,50", show_default=True, help="Comma-separated N of the cascades searched.")
@click.option("--grid-resolution", type=click.IntRange(1, 20), default=4, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--slots", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--per", type=click.Choice(COMPARE_PER), default="request", show_default=True,
              help="Rank the methods by reward per request or per session.")
@click.option("--policy-run", "policy_runs", type=click.Path(path_type=Path), multiple=True,
              help="A train or learn run over these arms, served frozen as one more method (repeatable).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/compare"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def compare_command(scenario: str, base: Path | None, stacker: Path | None, requests: int, search_requests: int,
                    log_requests: int, methods: str, cascade_keep: str, grid_resolution: int, seed: int, slots: int,
                    per: str, policy_runs: tuple[Path, ...], out: Path, overwrite: bool) -> None:
    """Run every fusion method on one shop and seed; write comparison.json, report.md and a learning curve."""
    resolved = load_scenario(scenario)
    by_slug = {method_slug(m): m for m in COMPARE_METHODS}
    names = None if methods is None else parse_choices(methods, list(by_slug), "--methods", "method", UsageFailure)
    try:
        keeps = tuple(int(v) for v in cascade_keep.split(","))
    except ValueError:
        raise UsageFailure(f"--cascade-keep {cascade_keep!r}: must be comma-separated integers, e.g. 20,50") from None
    config = CompareConfig(scenario=scenario, base=None if base is None else str(base),
                           stacker=None if stacker is None else str(stacker), requests=requests,
                           search_requests=search_requests, log_requests=log_requests,
                           methods=None if names is None else tuple(by_slug[n] for n in names), cascade_keep=keeps,
                           grid_resolution=grid_resolution, seed=seed, slots=slots, per=per,
                           policy_runs=tuple(str(r) for r in policy_runs))
    with new_run(out, overwrite) as folder:
        comparison = compare(config, resolved, folder)
    click.echo(f"{'method':<20}{'reward/' + per:>16}{'95% CI':>22}")
    interval = "ci95" if per == "request" else "session_ci95"
    for name, r in comparison["methods"].items():
        click.echo(f"{name:<20}{r['reward_per_' + per]:>16.4f}   [{r[interval][0]:.4f}, {r[interval][1]:.4f}]")
    click.echo(f"wrote {folder}/comparison.json, {folder}/report.md and {folder}/learning_curve.png")


@cli.command("explain")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--requests", type=click.IntRange(min=1), default=50_000, show_default=True,
              help="Requests replayed (a train run) or held-out requests scored (a train-stacker run).")
def explain_command(run: Path, requests: int) -> None:
    """Show what a method does per context cell: a train run's arm weights, a train-stacker run's reliance
    on each arm, a compare run's cascade choices (table + heat map PNG)."""
    from fusionsim.experiments.explain import explain
    e = explain(run, requests)
    click.echo(f"{'cell':<18}" + "".join(f"{c[:13]:>14}" for c in e.columns))
    for i, cell in enumerate(e.cells):
        click.echo(f"{cell:<18}" + "".join(f"{format(v, e.value_format):>14}" for v in e.values[i]))
    click.echo(f"wrote {run}/explain.md, {run}/explain.json and {run}/explain.png")


@cli.command("calibrate")
@click.option("--logs", type=click.Path(path_type=Path), required=True,
              help="A fusionsim simulate run folder: the log to fit.")
@click.option("--scenario", default="default", show_default=True,
              help="Starting scenario (name or YAML path): what is not fitted comes from it.")
@click.option("--holdout", type=FiniteFloat(0.0, 1.0, min_open=True), default=0.2, show_default=True,
              help="Share of the latest requests held out for the fidelity check.")
@click.option("--seed", type=click.IntRange(min=0), default=7, show_default=True, help="Seed of the simulations.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/calibrate"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def calibrate_command(logs: Path, scenario: str, holdout: float, seed: int, out: Path, overwrite: bool) -> None:
    """Fit position bias, attraction and purchase to a log; write scenario.yaml and a held-out fidelity report."""
    from fusionsim.experiments.calibrate import CalibrateConfig, calibrate

    start = load_scenario(scenario)
    config = CalibrateConfig(logs=str(logs), scenario=scenario, holdout=holdout, seed=seed)
    with new_run(out, overwrite) as folder:
        result = calibrate(config, start, folder)
    click.echo("fitted " + ", ".join(f"{k} {v:.4f}" for k, v in result["fitted"].items()))
    if result["position_bias"]["warning"]:
        click.echo(f"warning: {result['position_bias']['warning']}", err=True)
    click.echo(result["fidelity"]["verdict"])
    click.echo(f"wrote {folder}/scenario.yaml, {folder}/fitted.json and {folder}/fidelity.md")


@cli.command("fidelity")
@click.option("--scenario", default="default", show_default=True, help="Shipped scenario name or YAML path.")
@click.option("--logs", type=click.Path(path_type=Path), required=True,
              help="A fusionsim simulate run folder: the log whose statistics the scenario must reproduce.")
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Seed of the simulation.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/fidelity"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def fidelity_command(scenario: str, logs: Path, seed: int, out: Path, overwrite: bool) -> None:
    """Simulate a log's policy on a scenario and compare the statistics (fidelity.md, fidelity.json, a plot)."""
    from fusionsim.experiments.fidelity import FidelityConfig, fidelity

    resolved = load_scenario(scenario)
    with new_run(out, overwrite) as folder:
        result = fidelity(FidelityConfig(logs=str(logs), scenario=scenario, seed=seed), resolved, folder)
    click.echo(result["verdict"])
    click.echo(f"wrote {folder}/fidelity.md, {folder}/fidelity.json and {folder}/ctr_by_position.png")


@cli.command("obd-check")
@click.option("--obd", type=click.Path(path_type=Path), default=Path("benchmarks/data/obd"), show_default=True,
              help="The Open Bandit Dataset's root: random/<campaign>/ and bts/<campaign>/ folders.")
@click.option("--campaign", "campaigns", multiple=True,
              help="A campaign to check (repeatable; default: every one under both random/ and bts/).")
@click.option("--bootstrap", type=click.IntRange(min=20), default=1000, show_default=True,
              help="Bootstrap replicates of every interval.")
@click.option("--simulated-rounds", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Rounds of the BTS log simulated in each fitted shop.")
@click.option("--folds", type=click.IntRange(min=2), default=2, show_default=True,
              help="Cross-fitting folds of the reward model of DM and DR.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/obd"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def obd_check_command(obd: Path, campaigns: tuple[str, ...], bootstrap: int, simulated_rounds: int, folds: int,
                      seed: int, out: Path, overwrite: bool) -> None:
    """Fit the click model to the Open Bandit Dataset's random logs, simulate its BTS policy there, and set the
    simulated click rate beside the real one and the off-policy estimates (report.md, obd.json)."""
    from fusionsim.experiments.obd_check import ObdCheckConfig, obd_check, verdict

    config = ObdCheckConfig(obd=str(obd), campaigns=campaigns or None, bootstrap=bootstrap,
                            simulated_rounds=simulated_rounds, folds=folds, seed=seed)
    with new_run(out, overwrite) as folder:
        results = obd_check(config, folder)
    for campaign, result in results.items():
        click.echo(f"{campaign}: {verdict(result)}")
    click.echo(f"wrote {folder}/report.md and {folder}/obd.json")


@cli.command("ope")
@click.option("--logs", type=click.Path(path_type=Path), default=None,
              help="A fusionsim simulate (or serve) run folder whose logs hold the traffic with propensities, or a "
                   "shop's impression log (Parquet or CSV, the schema of envs/calibration/schema.py).")
@click.option("--policy", "policy_run", type=click.Path(path_type=Path), default=None,
              help="A fusionsim train or learn run folder (a weight policy), with --logs; with --rerank stacker, "
                   "a train-stacker run.")
@click.option("--rerank", default=None,
              help="With --logs: evaluate a ranking policy, the logged slates re-ranked by this arm or by 'stacker' "
                   "(--policy), with the slate estimators; the log must be position-randomised (simulate "
                   "--shuffle-slates, or an impression log with propensities).")
@click.option("--obd", type=click.Path(path_type=Path), default=None,
              help="Instead of --logs/--policy: a folder in the Open Bandit Dataset layout.")
@click.option("--campaign", default=None, help="With --obd: the campaign csv (default: the only one).")
@click.option("--evaluation", default="uniform", show_default=True, help="With --obd: uniform | best-item.")
@click.option("--estimators", default=None,
              help="Comma-separated names [default: dm,ips,snips,dr,sndr; with --rerank, the slate estimators the "
                   "log's propensities feed].")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/ope"), show_default=True)
@click.option("--folds", type=click.IntRange(min=2), default=2, show_default=True,
              help="Cross-fitting folds of the reward model.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--pscore", default="logged", show_default=True,
              help="With --logs: the logging propensities, logged | estimated (a cross-fitted behaviour model).")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def ope_command(logs: Path | None, policy_run: Path | None, rerank: str | None, obd: Path | None,
                campaign: str | None, evaluation: str, estimators: str | None, out: Path, folds: int, seed: int,
                pscore: str, overwrite: bool) -> None:
    """Off-policy estimates (with bootstrap CIs) of a trained policy on logged traffic."""
    from fusionsim.experiments.evaluation.estimators import OPEInputError
    from fusionsim.experiments.ope_run import OPEConfig, parse_estimators, run_ope
    names = None if estimators is None else tuple(parse_estimators(estimators, slate=rerank is not None))
    if rerank is not None and (logs is None or obd is not None):
        raise OPEInputError("--rerank needs --logs (and no --obd)")
    if (obd is None) == (logs is None or (policy_run is None and rerank is None)):
        raise OPEInputError("give either --logs and --policy (or --rerank), or --obd")
    given = [f"--{name}" for name in ("campaign", "evaluation", "folds", "pscore")
             if click.get_current_context().get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
    unused = [option for option in given if (obd is None and option in ("--campaign", "--evaluation"))
              or (rerank is not None and option in ("--folds", "--pscore"))]
    if unused:
        raise OPEInputError(f"{unused[0]} does not apply here: --campaign and --evaluation go with --obd; the slate "
                            "estimators of --rerank fit no reward model (--folds) and weight by the logged "
                            "propensities (--pscore)")
    config = OPEConfig(logs=None if logs is None else str(logs), policy=None if policy_run is None else str(policy_run),
                       obd=None if obd is None else str(obd), campaign=campaign, evaluation=evaluation,
                       estimators=names, folds=folds, seed=seed, pscore=pscore, rerank=rerank)
    with new_run(out, overwrite) as folder:
        metrics = run_ope(config, folder)
    truth = metrics.get("on_policy_truth")
    if "policy" in metrics:
        click.echo(f"policy: {metrics['policy']}")
    click.echo(f"{'estimator':<11}{'estimate':>10}{'95% CI':>22}{'rel. error':>12}")
    for name, r in metrics["estimators"].items():
        if r["estimate"] is None:  # a self-normalised slate estimate with no weight at a position: 0 / 0
            click.echo(f"{name:<11}{'-':>10}   (no logged slate carries weight at some position)")
            continue
        interval = "-" if r["ci_lower"] is None else f"[{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]"
        error = f"{100 * r['relative_error']:.2f}%" if r.get("relative_error") is not None else "-"
        click.echo(f"{name:<11}{r['estimate']:>10.4f}   {interval:>18}{error:>12}")
    if truth is not None:
        click.echo(f"simulated on-policy value {truth:.4f}")
    if metrics.get("deployed_value") is not None:
        click.echo(f"deployed for whole sessions {metrics['deployed_value']:.4f} (its clicks change later requests, "
                   "which the per-request estimates do not see)")
    if metrics.get("thin_weight"):
        click.echo(f"too little weight to trust (see report.md): {', '.join(metrics['thin_weight'])}")
    if "skipped" in metrics.get("per_session", {}):
        click.echo(f"per session: {metrics['per_session']['skipped']}")
    elif "per_session" in metrics:
        click.echo("per session (whole sessions as the units):")
        for name, r in metrics["per_session"]["estimators"].items():
            click.echo(f"{name:<10}{r['estimate']:>10.4f}   [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]"
                       f"{100 * r['relative_error']:>11.2f}%")
        click.echo(f"simulated reward per ended session {metrics['per_session']['on_policy_truth']:.4f}")
    if "estimated_pscore" in metrics:
        click.echo(f"warning: {metrics['estimated_pscore']['warning']}")
    click.echo(f"wrote {folder}/metrics.json, {folder}/report.md and {folder}/config.yaml")


@cli.command("learn")
@click.option("--logs", type=click.Path(path_type=Path), required=True,
              help="A fusionsim simulate run over arms or the weight grid (its propensities are the weights).")
@click.option("--learner", default="dr", show_default=True, help="ipw | dr: the pseudo-rewards regressed on.")
@click.option("--epsilon", type=FiniteFloat(0.0, 1.0), default=0.05, show_default=True,
              help="Share of uniformly random actions of the learned policy.")
@click.option("--ridge", type=FiniteFloat(0.0, None, min_open=True), default=1.0, show_default=True)
@click.option("--holdout", type=FiniteFloat(0.0, 1.0, min_open=True), default=0.2, show_default=True,
              help="Share of the latest requests held out for the off-policy evaluation.")
@click.option("--truth-requests", type=click.IntRange(min=0), default=100_000, show_default=True,
              help="Requests simulated for the true value of the learned and the logging policy (0: none).")
@click.option("--online", type=click.Path(path_type=Path), default=None,
              help="A fusionsim train run over the same actions, simulated beside (frozen).")
@click.option("--folds", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/learn"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def learn_command(logs: Path, learner: str, epsilon: float, ridge: float, holdout: float, truth_requests: int,
                  online: Path | None, folds: int, seed: int, out: Path, overwrite: bool) -> None:
    """Learn a fusion policy from logged traffic alone; evaluate it off policy and against the simulated truth."""
    from fusionsim.experiments.learn import LearnConfig, learn

    config = LearnConfig(logs=str(logs), learner=learner, ridge=ridge, epsilon=epsilon, holdout=holdout,
                         folds=folds, truth_requests=truth_requests, online=None if online is None else str(online),
                         seed=seed)
    with new_run(out, overwrite) as folder:
        metrics = learn(config, folder)
    for name, r in metrics["learned_off_policy"].items():
        click.echo(f"{name} (held out): {r['estimate']:.4f} [{r['ci_lower']:.4f}, {r['ci_upper']:.4f}]")
    if "truth" in metrics:
        t = metrics["truth"]
        click.echo(f"simulated: learned {t['learned']:.4f}, logging policy {t['logging_policy']:.4f}, difference "
                   f"{t['difference']:+.4f} [{t['difference_ci95'][0]:+.4f}, {t['difference_ci95'][1]:+.4f}]")
        if "online" in t:
            click.echo(f"simulated: trained online {t['online']['value']:.4f}, learned - online "
                       f"{t['online']['learned_minus_online']:+.4f} [{t['online']['ci95'][0]:+.4f}, "
                       f"{t['online']['ci95'][1]:+.4f}]")
    click.echo(f"wrote {folder}/policy.npz, {folder}/metrics.json and {folder}/report.md")


@cli.command("serve")
@click.argument("policy", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="0: any free port.")
@click.option("--log-dir", type=click.Path(path_type=Path), default=None,
              help="Folder of the decision log and snapshots [default: runs/serve-<policy run's name>].")
@click.option("--learn", is_flag=True, help="Bandit policies: update from joined outcomes (else frozen).")
@click.option("--learn-batch", type=click.IntRange(1, 10**9), default=256, show_default=True,
              help="Outcomes per learning update.")
@click.option("--snapshot-every", type=click.IntRange(1, 10**9), default=10_000, show_default=True,
              help="Events between snapshots of the learning policy.")
@click.option("--join-window", type=FiniteFloat(0.0, 86_400.0, min_open=True), default=60.0, show_default=True,
              help="Seconds an event waits for its outcome before it is logged without one.")
@click.option("--flush-seconds", type=FiniteFloat(0.0, 86_400.0, min_open=True), default=2.0, show_default=True,
              help="Seconds between writes of the decision log (what a crash can lose).")
@click.option("--cascade", default=None,
              help="With a train-stacker run: serve the cascade <arm>><N>><arm or stacker>, e.g. mf>50>stacker.")
def serve_command(policy: Path, host: str, port: int, log_dir: Path | None, learn: bool, learn_batch: int,
                  snapshot_every: int, join_window: float, flush_seconds: float, cascade: str | None) -> None:
    """Serve a trained fusion policy over HTTP: POST /rank, POST /reward, GET /health, GET /metrics."""
    from fusionsim.experiments.serve import ServeConfig, serve

    config = ServeConfig(policy=str(policy), learn=learn, learn_batch=learn_batch, snapshot_every=snapshot_every,
                         join_window=join_window, flush_seconds=flush_seconds, cascade=cascade)
    folder = log_dir if log_dir is not None else Path("runs") / f"serve-{policy.resolve().name}"
    serve(config, folder, host, port, announce=lambda line: click.echo(line))


@cli.command("replay")
@click.option("--server", required=True, help="Address of a running fusionsim serve, http://host:port.")
@click.option("--scenario", default="default", show_default=True)
@click.option("--base", type=click.Path(path_type=Path), default=None, help="Folder of trained arms (the policy's).")
@click.option("--requests", type=REQUESTS, default=100_000, show_default=True)
@click.option("--slots", type=click.IntRange(1, 1024), default=256, show_default=True,
              help="Concurrent shopper sessions: requests per /rank call.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--log-every", type=click.IntRange(min=1), default=20_000, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/replay"), show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def replay_command(server: str, scenario: str, base: Path | None, requests: int, slots: int, seed: int,
                   log_every: int, out: Path, overwrite: bool) -> None:
    """Drive a running fusionsim serve with simulated shoppers: rank, show, post the outcome back."""
    from fusionsim.experiments.replay import ReplayConfig, run_replay

    config = ReplayConfig(server=server, scenario=scenario, requests=requests,
                          base=None if base is None else str(base), slots=slots, seed=seed, log_every=log_every)
    with new_run(out, overwrite) as folder:
        metrics = run_replay(config, folder, progress=True)
    lo, hi = metrics["reward_per_request_ci95"]
    click.echo(f"reward per request {metrics['reward_per_request']:.4f} [{lo:.4f}, {hi:.4f}] over "
               f"{metrics['requests']:,} requests; policy version {metrics['final_policy_version']}")
    click.echo(f"wrote {folder}/metrics.json, {folder}/report.md and TensorBoard events in {folder}/tensorboard/")


@cli.command("ab-test")
@click.option("--scenario", default="default", show_default=True)
@click.option("--base", type=click.Path(path_type=Path), default=None, help="Folder of trained arms.")
@click.option("--policies", default="best-arm,static", show_default=True,
              help="Comma-separated: best-arm | static | linucb | ppo:<train run> | run:<train or learn run> "
                   "(frozen) | uniform | an arm name | blend:<w1>,...; the first is the control.")
@click.option("--users", type=click.IntRange(min=10), default=None, help="Shoppers in the test (default: the "
              "scenario's population).")
@click.option("--split", default="50,50", show_default=True, help="Traffic shares of the buckets.")
@click.option("--days", type=FiniteFloat(0.01, 365.0), default=3.0, show_default=True)
@click.option("--pre-days", type=FiniteFloat(0.01, 365.0), default=1.0, show_default=True,
              help="Pre-period under the uniform policy, for CUPED.")
@click.option("--aa", is_flag=True, help="A/A test: every bucket runs the first policy.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/ab"), show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def ab_test_command(scenario: str, base: Path | None, policies: str, users: int | None, split: str, days: float,
                    pre_days: float, aa: bool, out: Path, seed: int, overwrite: bool) -> None:
    """Simulated A/B test of fusion policies: estimates with CIs, CUPED, SRM, MDE, and the true lift."""
    from fusionsim.experiments.ab_test import ABTestConfig, ABTestError, run_ab_test
    overrides = {} if users is None else {"world.n_users": users}
    resolved = load_scenario(scenario, **overrides)
    try:
        shares = [float(x) for x in split.split(",")]
    except ValueError:
        raise ABTestError(f"--split {split!r}: must be comma-separated numbers, e.g. 50,50") from None
    if any(not (math.isfinite(x) and x > 0) for x in shares):
        raise ABTestError(f"--split {split!r}: every share must be a finite number > 0")
    names = [p.strip() for p in policies.split(",") if p.strip()] if not policies.startswith("blend:") \
        else [policies]
    with new_run(out, overwrite) as folder:
        config = ABTestConfig(policies=tuple(names), split=tuple(shares), scenario=scenario, users=users, days=days,
                              pre_days=pre_days, base=None if base is None else str(base), seed=seed, aa=aa)
        result = run_ab_test(config, resolved, folder)
    for label, rows in result["comparisons"].items():
        r = rows["revenue"]
        click.echo(f"{label}: revenue/shopper {r['mean_a']:.3f} -> {r['mean_b']:.3f}, lift {r['lift']:+.3f} "
                   f"[{r['ci_lower']:+.3f}, {r['ci_upper']:+.3f}], p = {r['p_value']:.4f}")
    click.echo(f"sample-ratio mismatch p = {result['srm']['p_value']:.3f}")
    click.echo(f"wrote {folder}/report.md, {folder}/metrics.json, {folder}/users.parquet, {folder}/lift.png and "
               f"{folder}/daily.png")


@cli.command("sweep")
@click.argument("sweep_file", metavar="SWEEP")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run folder to write (default: runs/<the sweep's name>).")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one task at a time in this process; ray: Ray core tasks (pip install -e \".[ray]\").")
@click.option("--address", default=None,
              help="ray: auto or HOST:PORT of a running Ray cluster (default: start Ray on this machine).")
@click.option("--workers", type=click.IntRange(1, 4096), default=None,
              help="ray: tasks at a time, and the CPUs of a Ray started here (default: this machine's CPUs).")
@click.option("--resume", is_flag=True, help="Continue an interrupted or failed sweep in --out: run only the tasks "
              "that are missing or failed (same sweep file and scenarios; the backend may change).")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def sweep_command(sweep_file: str, out: Path | None, backend: str, address: str | None, workers: int | None,
                  resume: bool, overwrite: bool) -> None:
    """Run a sweep file's tasks (scenarios x compare methods x seeds, A/B designs x replicates) locally or on
    Ray: one Parquet row per task, report.md with intervals across seeds, sweep.png."""
    import os

    from fusionsim.experiments.sweep import SweepRunConfig, describe, run_sweep
    from fusionsim.experiments.sweeps.spec import SweepError, load_sweep
    if resume and overwrite:
        raise SweepError("--resume and --overwrite exclude each other: continue the sweep or start it again")
    sweep = load_sweep(sweep_file)
    out = out if out is not None else Path("runs") / sweep.name
    if workers is None:
        workers = (os.cpu_count() or 1) if backend == "ray" else 1
    config = SweepRunConfig(sweep=sweep_file, backend=backend, address=address, workers=workers)
    if resume:
        outcome = run_sweep(config, sweep, out, resume=True)
    else:
        with new_run(out, overwrite, resumable=True) as folder:
            outcome = run_sweep(config, sweep, folder)
    click.echo(describe(outcome, out))
    if outcome.failed:
        raise click.ClickException(f"{len(outcome.failed)} of {outcome.tasks} tasks failed (first: "
                                   f"{outcome.failed[0]}; errors in {out}/report.md); fix the cause and rerun with "
                                   "--resume to run them again")


@cli.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True)
@click.option("--scale", type=FiniteFloat(0.001, 10.0), default=1.0, show_default=True,
              help="Multiplies every request count (0.05 for a quick look).")
@click.option("--overwrite", is_flag=True, help="Empty a folder that already holds a run and write there.")
def demo_command(out: Path, scale: float, overwrite: bool) -> None:
    """The whole product on the default shop: logs, arms, LinUCB, an A/B test and off-policy evaluation."""
    from fusionsim.experiments.demo import run_demo
    run_demo(out, overwrite=overwrite, scale=scale)
    click.echo((out / "summary.md").read_text())
    click.echo(f"wrote {out}/summary.md; every step's folder is under {out}/")


def main() -> None:
    cli(prog_name="fusionsim")


if __name__ == "__main__":
    sys.exit(main())

"""The ``fusionsim`` command line. Bad input exits with code 2 and one line naming what is wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from envs.scenario import ScenarioError, load_scenario
from experiments.runs import RunFolderError, prepare_run_folder
from experiments.simulate import PolicySpecError, run_policy


class UsageFailure(click.ClickException):
    """A bad argument or input file: printed as one ``Error: ...`` line, exit code 2."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """fusionsim: simulate a shop, blend its recommenders, and learn how to blend them per context."""


@cli.command()
@click.option("--scenario", default="default", show_default=True,
              help="Shipped scenario name (default, cold_start, search_heavy, drift, long_horizon) or a YAML path.")
@click.option("--policy", default="uniform", show_default=True,
              help="uniform | an arm name (popularity, new_arrivals) | blend:<w1>,<w2>")
@click.option("--requests", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Requests to simulate.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/simulate"), show_default=True,
              help="Run folder to write (config.yaml, metrics.json, logs/).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--slots", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Concurrent shopper sessions simulated per step.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=500_000, show_default=True,
              help="Rows per Parquet part file.")
@click.option("--overwrite", is_flag=True, help="Allow writing into a folder that already holds a run.")
def simulate(scenario: str, policy: str, requests: int, out: Path, seed: int, slots: int, chunk_rows: int,
             overwrite: bool) -> None:
    """Simulate traffic under a static policy; write the Parquet log (with propensities) and metrics."""
    try:
        resolved = load_scenario(scenario)
        folder = prepare_run_folder(out, overwrite)
        summary = run_policy(resolved, policy, requests, folder, seed=seed, slots=slots, chunk_rows=chunk_rows)
    except (ScenarioError, PolicySpecError, RunFolderError) as exc:
        raise UsageFailure(str(exc)) from None
    m = summary.metrics
    click.echo(f"requests {m['requests']:,}  CTR {m['ctr']:.4f}  clicks/request {m['clicks_per_request']:.4f}  "
               f"purchases/request {m['purchases_per_request']:.4f}  revenue/request {m['revenue_per_request']:.3f}  "
               f"session length {m['mean_session_length']:.2f}")
    click.echo(f"wrote {folder}/config.yaml, {folder}/metrics.json and {len(summary.log_parts)} log part(s) "
               f"in {folder}/logs/")


def main() -> None:
    cli(prog_name="fusionsim")


if __name__ == "__main__":
    sys.exit(main())

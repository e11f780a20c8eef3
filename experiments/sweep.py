"""``fusionsim sweep``: the tasks of a sweep file (scenarios x compare methods x seeds, A/B designs x
replicates), in this process or on Ray, with results identical whichever runs them.

Steps:

1. Shared inputs, once per scenario, in this process (``shared/<scenario>/``): without a ``base`` folder for
   the scenario, the compare methods' arms are trained on a uniform log (as ``compare`` does); a stacker is
   fitted when a method needs one. Every task of the scenario then reads them; none retrains them.
2. The tasks (:mod:`fusionsim.experiments.sweeps.tasks`), each a pure function of its config and its spawned
   seed, run by the backend (:mod:`fusionsim.experiments.sweeps.backends`). Each outcome is written to
   ``checkpoints/`` as it arrives, so an interrupted sweep keeps every finished task, and ``--resume`` runs only
   the tasks that are missing or failed.
3. ``results.parquet`` (one row per task, in plan order), ``report.md`` and ``sweep.png`` from the rows alone
   (:mod:`fusionsim.experiments.sweeps.report`); ``summary.json`` (backend, workers, tasks run and skipped, wall
   time); ``complete.json`` when no task failed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from fusionsim.common.io import (COMPLETE_FILE, atomic_write_json, atomic_write_text, check_complete, clean_json,
                                 mark_complete)
from fusionsim.envs.logs import atomic_write_parquet
from fusionsim.envs.scenario import Scenario, load_scenario, scenario_to_dict
from fusionsim.envs.shop import make_shop
from fusionsim.experiments.compare import (NEEDS_STACKER, CompareConfig, arms_folder, check_cascade_keep, compare_seeds,
                                           fit_stacker)
from fusionsim.experiments.runs import CHECKPOINTS, read_config, write_config
from fusionsim.experiments.simulate import PolicySpecError, make_static_policy
from fusionsim.experiments.sweeps.backends import BACKENDS, Outcome, import_ray, run_local, run_ray
from fusionsim.experiments.sweeps.report import plot, render_report, results_table
from fusionsim.experiments.sweeps.spec import Sweep, SweepError
from fusionsim.experiments.sweeps.tasks import KINDS, ScenarioInputs, clear_caches, plan_tasks, shared_seed

SHARED = "shared"


@dataclass(frozen=True)
class SweepRunConfig:
    """How one ``fusionsim sweep`` run runs its tasks (never what they return); ``config.yaml``'s ``args``."""

    sweep: str = "ab_calibration"
    """shipped sweep name or YAML path"""
    backend: str = "local"
    """``local`` (this process, one task at a time) or ``ray`` (Ray core tasks)"""
    address: str | None = None
    """ray: ``auto`` or ``HOST:PORT`` of a running cluster (None: start Ray on this machine)"""
    workers: int = 1
    """ray: tasks at a time (and the CPUs of a Ray started here); local: must be 1"""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise SweepError(f"--backend {self.backend!r} is not allowed; choose from {', '.join(BACKENDS)}")
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise SweepError(f"--workers must be an integer >= 1; got {self.workers!r}")
        if self.backend == "local" and self.workers != 1:
            raise SweepError(f"--workers {self.workers} needs --backend ray: local runs one task at a time in this "
                             "process")
        if self.backend == "local" and self.address is not None:
            raise SweepError("--address needs --backend ray")


@dataclass
class SweepOutcome:
    """What a sweep run did: its tasks, how many ran now and were skipped (done before), and which failed."""

    tasks: int
    ran: int
    skipped: int
    failed: list[str]
    seconds: float


def source_label(sweep_file: str) -> str:
    """How messages name a sweep file, as :func:`load_sweep` does: ``'x.yaml'`` for a path, ``'name'`` for a
    shipped sweep."""
    path = Path(sweep_file)
    return f"'{path.name}'" if path.suffix in (".yaml", ".yml") or path.exists() else f"'{sweep_file}'"


def resolve_scenarios(sweep: Sweep, source: str) -> list[Scenario]:
    """The sweep's scenarios, loaded; a SweepError naming the first that does not load or a repeated name."""
    scenarios = []
    for i, spec in enumerate(sweep.scenarios):
        try:
            scenarios.append(load_scenario(spec))
        except ValueError as exc:
            raise SweepError(f"sweep {source}: scenarios[{i}]: {exc}") from None
    names = [s.name for s in scenarios]
    repeated = [n for i, n in enumerate(names) if n in names[:i]]
    if repeated:
        raise SweepError(f"sweep {source}: scenarios: two scenarios are named {repeated[0]!r}; each needs its "
                         "own name")
    if sweep.compare is not None:
        for scenario in scenarios:
            try:
                check_cascade_keep(CompareConfig(cascade_keep=tuple(sweep.compare.cascade_keep)), scenario)
            except ValueError as exc:
                raise SweepError(f"sweep {source}: compare.cascade_keep on scenario '{scenario.name}': "
                                 f"{str(exc).replace('--cascade-keep ', '')}") from None
    unknown = [key for key in sweep.base if key not in sweep.scenarios]
    if unknown:
        raise SweepError(f"sweep {source}: base: {unknown[0]!r} is not one of the sweep's scenarios "
                         f"({', '.join(sweep.scenarios)})")
    return scenarios


def run_sweep(config: SweepRunConfig, sweep: Sweep, out: Path, resume: bool = False,
              progress: bool = True) -> SweepOutcome:
    """Run ``sweep`` into the prepared folder ``out`` (or, with ``resume``, continue the sweep in it); see the
    module docstring for what is written."""
    start = time.perf_counter()
    clear_caches()
    if config.backend == "ray":
        import_ray()
    source = source_label(config.sweep)
    scenarios = resolve_scenarios(sweep, source)
    resolved = {"sweep": sweep.model_dump(mode="json"), "scenarios": [scenario_to_dict(s) for s in scenarios]}
    if resume:
        _check_resume(out, resolved)
        (out / COMPLETE_FILE).unlink(missing_ok=True)  # complete again only when every task is done
    write_config(out, "sweep", dataclasses.asdict(config), **resolved)
    inputs = {s.name: _prepare(sweep, source, i, s, out, progress) for i, s in enumerate(scenarios)}
    tasks = plan_tasks(sweep, [s.name for s in scenarios])
    files = {task.task_id: out / CHECKPOINTS / f"{n:06d}.json" for n, task in enumerate(tasks)}
    todo = [task for task in tasks if not _is_done(files[task.task_id], task.task_id)]
    bar = tqdm(total=len(todo), desc=f"sweep {sweep.name}", unit="task", disable=not progress)

    def record(outcome: Outcome) -> None:
        (out / CHECKPOINTS).mkdir(exist_ok=True)
        row = outcome.task.row(sweep.seed)
        if outcome.error is None:
            row.update(status="done", error=None, **outcome.figures)
        else:
            row.update(status="failed", error=outcome.error)
        atomic_write_json(files[outcome.task.task_id], row)
        bar.update(1)

    jobs = [(task, inputs[task.scenario]) for task in todo]
    if config.backend == "local":
        run_local(jobs, sweep, record)
    else:
        run_ray(jobs, sweep, record, config.workers, config.address)
    bar.close()
    rows = [_read_row(files[task.task_id]) for task in tasks]
    table = results_table(rows, [kind for kind in KINDS if any(t.kind == kind for t in tasks)])
    atomic_write_parquet(table, out / "results.parquet")
    atomic_write_text(out / "report.md", render_report(sweep, table))
    plot(sweep, table, out / "sweep.png")
    failed = [row["task_id"] for row in rows if row["status"] != "done"]
    outcome = SweepOutcome(len(tasks), len(todo), len(tasks) - len(todo), failed, time.perf_counter() - start)
    atomic_write_json(out / "summary.json", {"backend": config.backend, "workers": config.workers,
                                             **dataclasses.asdict(outcome)})
    if not failed:
        mark_complete(out, "sweep")
    return outcome


def _is_done(path: Path, task_id: str) -> bool:
    """Whether the checkpoint at ``path`` holds the finished outcome of the task ``task_id``."""
    if not path.is_file():
        return False
    row = _read_row(path)
    return row.get("task_id") == task_id and row.get("status") == "done"


def _read_row(path: Path) -> dict:
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SweepError(f"--resume: {path} is corrupt ({type(exc).__name__}); delete it to rerun its task") from None
    if not isinstance(row, dict) or not {"task_id", "status"} <= set(row):
        raise SweepError(f"--resume: {path} is not a task's outcome; delete it to rerun its task")
    return row


def _check_resume(out: Path, resolved: dict) -> None:
    """A SweepError unless ``out`` holds a sweep of the same sweep file and scenarios (resolved)."""
    stored = read_config(out, "--resume")
    if stored.get("command") != "sweep":
        raise SweepError(f"--resume: {out} holds a fusionsim {stored.get('command')} run, not a sweep")
    for key in ("sweep", "scenarios"):
        where = _first_difference(stored.get(key), clean_json(resolved[key]), key)
        if where is not None:
            raise SweepError(f"--resume: {where} differs from the sweep stored in {out}/config.yaml; resume with "
                             "the same sweep file and scenarios, or start a new sweep")


def _first_difference(old: object, new: object, path: str) -> str | None:
    """The dotted path of the first value that differs between two plain-data trees (None: they are equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*new, *(k for k in old if k not in new)]:
            where = _first_difference(old.get(key), new.get(key), f"{path}.{key}")
            if where is not None:
                return where
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            where = _first_difference(a, b, f"{path}[{i}]")
            if where is not None:
                return where
        return None
    return None if old == new else path


def _prepare(sweep: Sweep, source: str, index: int, scenario: Scenario, out: Path,
             progress: bool) -> ScenarioInputs:
    """The shared inputs of scenario ``index`` (see step 1 of the module docstring), reused when a resumed sweep
    finished them before; the A/B designs' policies are checked against the arms they will blend."""
    spec = sweep.scenarios[index]
    base = sweep.base.get(spec)
    folder = out / SHARED / scenario.name
    if sweep.ab is not None:
        _, arms = make_shop(scenario, base=base)
        names = [a.name for a in arms]
        for j, design in enumerate(sweep.ab.designs):
            for spec_policy in design.policies:
                try:
                    make_static_policy(spec_policy, names, 0)
                except PolicySpecError as exc:
                    raise SweepError(f"sweep {source}: ab.designs[{j}].policies on scenario "
                                     f"'{scenario.name}': {exc}") from None
    compare_arms = stacker = None
    if sweep.compare is not None:
        block = sweep.compare
        config = CompareConfig(scenario=spec, base=base, requests=block.requests,
                               search_requests=block.search_requests, log_requests=block.log_requests,
                               grid_resolution=block.grid_resolution, cascade_keep=tuple(block.cascade_keep),
                               methods=tuple(block.methods), seed=shared_seed(sweep, index), slots=block.slots,
                               per=block.per)
        seeds = compare_seeds(config.seed)
        if base is not None:
            compare_arms = base
        elif _complete(folder / "arms", "train-base"):  # trained by the sweep's earlier start
            compare_arms = str(folder / "arms")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            compare_arms = str(arms_folder(config, scenario, folder, seeds, progress))
        if any(m in NEEDS_STACKER for m in block.methods):
            choice = folder / "stacker.json"
            if not choice.is_file():
                for stale in folder.glob("stacker_*"):
                    shutil.rmtree(stale)
                world, arms = make_shop(scenario, base=compare_arms)
                _, chosen = fit_stacker(config, scenario, world, arms, Path(compare_arms), folder, seeds, progress)
                atomic_write_json(choice, chosen)
            stacker = str(folder / f"stacker_{json.loads(choice.read_text())['kind']}")
    return ScenarioInputs(scenario_to_dict(scenario), compare_arms, base, stacker)


def _complete(folder: Path, command: str) -> bool:
    try:
        check_complete(folder, "--base", (command,))
    except ValueError:
        return False
    return True


def describe(outcome: SweepOutcome, out: Path) -> str:
    """The command's closing lines."""
    return (f"{outcome.tasks} tasks: {outcome.ran} run, {outcome.skipped} done before, {len(outcome.failed)} failed; "
            f"{outcome.seconds:.0f} s\nwrote {out}/results.parquet, {out}/report.md and {out}/sweep.png")


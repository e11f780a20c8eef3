"""Where a sweep's tasks run: in this process (``local``) or as Ray core tasks (``ray``).

Both call the same pure function, :func:`fusionsim.experiments.sweeps.tasks.run_task`, and hand each outcome
to ``on_outcome`` as it arrives (the sweep writes it to disk at once, so an interrupted sweep keeps every task
that finished). A task that raises is tried again, up to :data:`ATTEMPTS` times in all, then reported with its
error; the other tasks go on. On Ray, a worker that dies (killed, out of memory) is retried the same way, and
since a task is a pure function of its inputs the retried task returns what the first try would have.

The Ray backend ships each input folder (arms, stacker) once through the object store as its files' bytes;
each worker unpacks a folder once into a temporary folder of its own, so a cluster needs no shared disk.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from fusionsim.experiments.sweeps.spec import SweepError
from fusionsim.experiments.sweeps.tasks import ScenarioInputs, Task, run_task

BACKENDS = ("local", "ray")
ATTEMPTS = 3
"""Tries of a task before it is reported as failed (the first and two retries)."""
RAY_INSTALL_HINT = "--backend ray needs Ray, which is not installed: pip install -e \".[ray]\""


@dataclass(frozen=True)
class Outcome:
    """What became of one task: its figures, or the error of its last try."""

    task: Task
    figures: dict | None
    error: str | None


def describe_error(exc: BaseException) -> str:
    """One line for a task's exception, the same whichever backend ran it."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def run_local(jobs: Sequence[tuple[Task, ScenarioInputs]], sweep, on_outcome: Callable[[Outcome], None]) -> None:
    """Run the tasks one by one in this process."""
    for task, inputs in jobs:
        error = None
        for _ in range(ATTEMPTS):
            try:
                figures = run_task(task, sweep, inputs)
            except Exception as exc:  # noqa: BLE001 - a failed task is reported, not fatal to the sweep
                error = describe_error(exc)
            else:
                on_outcome(Outcome(task, figures, None))
                break
        else:
            on_outcome(Outcome(task, None, error))


def import_ray():
    """The ``ray`` module, or a SweepError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise SweepError(RAY_INSTALL_HINT) from None
    return ray


def pack_folder(folder: str | Path) -> dict[str, bytes]:
    """Every file under ``folder`` as {path relative to it (POSIX): bytes}."""
    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def unpack_folder(files: dict[str, bytes]) -> str:
    """Write a :func:`pack_folder` result into a new temporary folder; its path."""
    root = Path(tempfile.mkdtemp(prefix="fusionsim-sweep-"))
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return str(root)


_UNPACKED: dict[str, str] = {}
"""The folders this worker process has unpacked, by the hex id of their object in the object store."""


def _run_on_worker(task: Task, sweep, inputs: ScenarioInputs, refs: dict) -> dict:
    """A Ray task: the input folders ({ScenarioInputs field: object ref of pack_folder's result}) unpacked
    once per worker, then :func:`run_task`."""
    import ray

    for ref in refs.values():
        if ref.hex() not in _UNPACKED:
            _UNPACKED[ref.hex()] = unpack_folder(ray.get(ref))
    return run_task(task, sweep, replace(inputs, **{name: _UNPACKED[ref.hex()] for name, ref in refs.items()}))


def _check_resources(ray, resources, address: str | None) -> None:
    """A SweepError when no node of the Ray cluster can hold one task (Ray would wait for it forever)."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    if any(node.get("CPU", 0) >= resources.cpus and node.get("GPU", 0) >= resources.gpus for node in nodes):
        return
    where = f"the Ray cluster at {address}" if address else "the Ray started here (its CPUs: --workers)"
    largest = max(nodes, key=lambda node: (node.get("CPU", 0), node.get("GPU", 0)), default={})
    raise SweepError(f"resources: each task asks for {resources.cpus:g} CPUs and {resources.gpus:g} GPUs, but no node "
                     f"of {where} has them (the largest: {largest.get('CPU', 0):g} CPUs, {largest.get('GPU', 0):g} "
                     "GPUs)")


def run_ray(jobs: Sequence[tuple[Task, ScenarioInputs]], sweep, on_outcome: Callable[[Outcome], None],
            workers: int, address: str | None) -> None:
    """Run the tasks as Ray core tasks, at most ``workers`` at a time, each asking for the sweep's resources.

    Without ``address`` a Ray runtime with ``workers`` CPUs is started on this machine (and stopped at the
    end); with one (``auto`` or ``HOST:PORT``) the sweep joins that cluster. A runtime already started in
    this process (``ray.init`` by the caller) is used as it is."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        options = {"address": address} if address else {"num_cpus": workers}
        ray.init(**options, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        _check_resources(ray, sweep.resources, address)
        remote = ray.remote(max_retries=ATTEMPTS - 1, retry_exceptions=True)(_run_on_worker).options(
            num_cpus=sweep.resources.cpus, num_gpus=sweep.resources.gpus, name="fusionsim_sweep_task")
        shipped: dict[str, object] = {}

        def packed(inputs: ScenarioInputs) -> dict:
            folders = inputs.folders()
            for folder in folders.values():
                if folder not in shipped:
                    shipped[folder] = ray.put(pack_folder(folder))
            return {name: shipped[folder] for name, folder in folders.items()}

        pending = list(jobs)[::-1]
        running: dict = {}
        while pending or running:
            while pending and len(running) < workers:
                task, inputs = pending.pop()
                running[remote.remote(task, sweep, inputs, packed(inputs))] = task
            (done,), _ = ray.wait(list(running), num_returns=1)
            task = running.pop(done)
            try:
                outcome = Outcome(task, ray.get(done), None)
            except ray.exceptions.RayTaskError as exc:
                outcome = Outcome(task, None, describe_error(exc.cause if exc.cause is not None else exc))
            except ray.exceptions.RayError as exc:  # the worker died on every try
                outcome = Outcome(task, None, f"{type(exc).__name__}: the worker running the task died "
                                              f"{ATTEMPTS} times")
            on_outcome(outcome)
    finally:
        if started:
            ray.shutdown()

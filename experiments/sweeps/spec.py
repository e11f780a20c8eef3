"""Sweep files: which scenarios, ``compare`` methods and A/B designs a sweep runs, and on how many seeds.

A sweep is a YAML file (the shipped ones live in ``experiments/configs/``), validated on load like a
scenario: an invalid field fails with :class:`SweepError`, one line naming the file, the field, the bad value
and what is allowed. Example::

    name: my_sweep
    seed: 0                       # the root of every task's seed (numpy.random.SeedSequence.spawn)
    scenarios: [default, search_heavy]
    compare:                      # every method on every scenario, on `seeds` seeds
      methods: [best static blend, oracle, linucb]
      seeds: 5
      requests: 200000
    ab:                           # simulated A/B tests: each design `replicates` times
      days: 1.0
      designs:
        - {name: aa, policies: [popularity, popularity], replicates: 500}
        - {name: new arrivals, policies: [popularity, new_arrivals], replicates: 200, truth_replays: 10}

A task is one method on one scenario and seed, one A/B test of a design, or one replay of the whole population
under each of a design's two policies (the true lift): see :mod:`fusionsim.experiments.sweeps.tasks`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from fusionsim.envs.scenario import Real, StrictModel, read_yaml_mapping, validation_message
from fusionsim.experiments.compare import METHODS, method_slug

CONFIGS_PACKAGE = "fusionsim.experiments.configs"
"""Where the shipped sweep files live (``fusionsim sweep <name>``)."""
MAX_TASKS = 100_000
"""Most tasks one sweep may plan (a typo of a few zeros fails on load instead of running for weeks)."""
MAX_REQUESTS = 1_000_000_000
"""Most requests per method or search candidate (as ``fusionsim compare``'s options)."""
MAX_DAYS = 365.0
"""Most simulated days of an A/B test."""


class SweepError(ValueError):
    """An invalid sweep file or sweep run: the message is one line naming the field or option."""


class Resources(StrictModel):
    """What each task asks of a Ray worker (``num_cpus``, ``num_gpus``); ignored by the local backend."""

    cpus: Real = Field(1.0, gt=0.0, le=1024.0, description="CPU cores per task")
    gpus: Real = Field(0.0, ge=0.0, le=64.0, description="GPUs per task (fractions share one)")


class CompareBlock(StrictModel):
    """Every method on every scenario, each on ``seeds`` seeds. The fields are ``fusionsim compare``'s; the
    methods of one seed share its shoppers and draws (common random numbers), so their paired differences
    are resolved far better than their levels."""

    methods: list[str] = Field(min_length=1)
    seeds: int = Field(1, ge=1, le=MAX_TASKS)
    requests: int = Field(500_000, ge=1, le=MAX_REQUESTS)
    search_requests: int = Field(100_000, ge=1, le=MAX_REQUESTS)
    log_requests: int = Field(400_000, ge=1, le=MAX_REQUESTS)
    grid_resolution: int = Field(4, ge=1, le=64)
    cascade_keep: list[int] = Field([20, 50], min_length=1)
    slots: int = Field(256, ge=1, le=1_000_000)
    per: Literal["request", "session"] = "request"

    @field_validator("methods")
    @classmethod
    def _known_methods(cls, methods: list[str]) -> list[str]:
        """Methods by name (``best static blend``) or by their command-line slug (``best-static-blend``)."""
        by_slug = {method_slug(m): m for m in METHODS}
        names = [m if m in METHODS else by_slug.get(m) for m in methods]
        unknown = [m for m, name in zip(methods, names) if name is None]
        if unknown:
            raise ValueError(f"compare.methods: unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
        repeated = [m for i, m in enumerate(names) if m in names[:i]]
        if repeated:
            raise ValueError(f"compare.methods: {repeated[0]!r} is named twice")
        return names

    @model_validator(mode="after")
    def _enough_requests(self) -> CompareBlock:
        if self.requests < 5 * self.slots:
            raise ValueError(f"compare.requests = {self.requests} must be at least 5 steps of compare.slots "
                             f"{self.slots} ({5 * self.slots}), so the last 20% holds a whole step")
        return self


SWEEP_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _checked_name(name: str, pattern: re.Pattern, field: str, allowed: str) -> str:
    """``name`` if ``pattern`` matches all of it, else a ValueError naming ``field`` and what is ``allowed``."""
    if not pattern.fullmatch(name):
        raise ValueError(f"{field} {name!r} is not allowed: {allowed}")
    return name


DESIGN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,63}")


class Design(StrictModel):
    """One A/B design: a control and a treatment policy (``fusionsim simulate --policy`` specs: ``uniform``,
    an arm name, ``blend:<w1>,...``), tested ``replicates`` times, each test with its own bucketing salt and
    simulation seed. The same policy twice is an A/A design. ``truth_replays`` replays of the whole
    population under each policy (common random numbers) give the true lift that each test's interval should
    cover."""

    name: str
    policies: list[str] = Field(min_length=2, max_length=2)
    split: list[Real] = Field([50.0, 50.0], min_length=2, max_length=2)
    replicates: int = Field(1, ge=1, le=MAX_TASKS)
    truth_replays: int = Field(0, ge=0, le=MAX_TASKS)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        return _checked_name(name, DESIGN_NAME, "ab.designs: name", "1 to 64 letters, digits, spaces, '_', '.' or '-', "
                             "starting with a letter or digit")

    @field_validator("split")
    @classmethod
    def _positive_split(cls, split: list[float]) -> list[float]:
        if min(split) <= 0:
            raise ValueError(f"ab.designs: split {split} is not allowed: both shares must be > 0")
        return split

    @model_validator(mode="after")
    def _truth_needs_two_policies(self) -> Design:
        if self.is_aa and self.truth_replays:
            raise ValueError(f"ab.designs: design {self.name!r} is an A/A design (its true lift is 0 by "
                             "construction); its truth_replays must be 0")
        return self

    @property
    def is_aa(self) -> bool:
        """Whether both buckets run the same policy."""
        return self.policies[0] == self.policies[1]


class ABBlock(StrictModel):
    """Simulated A/B tests, as ``fusionsim ab-test`` runs them: a pre-period under the uniform policy (for
    CUPED), then ``days`` with the shoppers split between the two policies by a salted hash of their id."""

    days: Real = Field(1.0, gt=0.0, le=MAX_DAYS)
    pre_days: Real = Field(0.5, gt=0.0, le=MAX_DAYS)
    designs: list[Design] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> ABBlock:
        slugs = [slug(d.name) for d in self.designs]
        repeated = [d.name for i, d in enumerate(self.designs) if slugs[i] in slugs[:i]]
        if repeated:
            raise ValueError(f"ab.designs: the name {repeated[0]!r} is used twice (names must differ beyond case "
                             "and punctuation)")
        return self


class Sweep(StrictModel):
    """A whole sweep file."""

    name: str
    """also the default run folder, ``runs/<name>``: letters, digits, '_', '.' and '-' only"""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    scenarios: list[str] = Field(["default"], min_length=1)
    base: dict[str, str] = Field(default_factory=dict)
    """folder of trained arms (``fusionsim train-base``) per scenario name; a scenario without one trains its
    arms once for the compare methods (as ``compare`` does) and runs its A/B tests on popularity and new
    arrivals (as ``ab-test`` does)"""
    resources: Resources = Field(default_factory=Resources)
    compare: CompareBlock | None = None
    ab: ABBlock | None = None

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        return _checked_name(name, SWEEP_NAME, "name", "1 to 100 letters, digits, '_', '.' or '-', starting with a "
                             "letter or digit (it names the run folder runs/<name>)")

    @model_validator(mode="after")
    def _something_to_run(self) -> Sweep:
        if self.compare is None and self.ab is None:
            raise ValueError("the sweep runs nothing: give a compare block, an ab block or both")
        repeated = [s for i, s in enumerate(self.scenarios) if s in self.scenarios[:i]]
        if repeated:
            raise ValueError(f"scenarios: {repeated[0]!r} is named twice")
        n_tasks = len(self.scenarios) * ((len(self.compare.methods) * self.compare.seeds if self.compare else 0)
                                         + sum(d.replicates + d.truth_replays for d in (self.ab.designs
                                                                                          if self.ab else [])))
        if n_tasks > MAX_TASKS:
            raise ValueError(f"the sweep plans {n_tasks:,} tasks; at most {MAX_TASKS:,} are allowed")
        return self


def parse_sweep(raw: object, source: str = "<dict>") -> Sweep:
    """Validate a mapping (as read from YAML) into a :class:`Sweep`, or raise :class:`SweepError`."""
    if not isinstance(raw, dict):
        raise SweepError(f"sweep {source}: top level is {type(raw).__name__}, not allowed: must be a mapping")
    try:
        return Sweep.model_validate(raw)
    except ValidationError as exc:
        raise SweepError(validation_message(source, exc, Sweep, "sweep")) from None


def load_sweep(name_or_path: str | Path) -> Sweep:
    """Load a shipped sweep by name (``ab_calibration``) or a YAML file by path, validated."""
    raw, source = read_yaml_mapping(name_or_path, CONFIGS_PACKAGE, "sweep", SweepError, "name: my_sweep")
    return parse_sweep(raw, source)


def slug(name: str) -> str:
    """A name as it appears in task ids and file names: lower case, runs of other characters as one '-'."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


"""The fusion service behind ``fusionsim serve``, apart from HTTP: decide, log with the propensity, join the
delayed outcome, learn, snapshot.

One :class:`FusionService` is driven from one thread (the server's event loop), so event ids are issued in
order and a decision is written once. Its folder (``--log-dir``) holds:

- ``config.yaml``: the serve run (the policy run, the shop, the options); a restart with other inputs is refused;
- ``starts.json``: one entry per start; the start's index is the upper half of every ``event_id`` it issues
  (``event_id = start * 2**32 + n``), so ids stay unique across restarts and a reward for an event of an
  earlier start is recognised as late, never joined to a new one;
- ``decisions/``: the decision log (``decision_log``), one part per flush, written atomically;
- ``snapshots/``: with ``learn``, the learning policy every ``snapshot_every`` events (``policy-VVVVVV.npz``,
  atomic) and ``latest.json`` naming the newest, from which a restart resumes.

What a crash (``kill -9``) loses, and no more: the decisions still waiting for their outcome (at most
``join_window`` seconds of traffic) and those completed since the last flush (at most ``flush_seconds``);
with ``learn``, the updates since the last snapshot (the log keeps their decisions). Files already written are
whole.
"""

from __future__ import annotations

import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fusionsim.agents.base import Policy
from fusionsim.common.io import atomic_write_json, check_complete
from fusionsim.envs.scenario import Scenario, parse_scenario, scenario_to_dict
from fusionsim.envs.shop import world_signature
from fusionsim.envs.stacking.stacker import Stacker, StackerError
from fusionsim.envs.strategies import Cascade, CascadeConfig, Fusion, FusionError, Stacking, WeightedBlend
from fusionsim.experiments.runs import read_config, write_config
from fusionsim.experiments.serving.decision_log import Decision, decisions_table, write_part
from fusionsim.experiments.serving.requests import MAX_BATCH, Outcome, RankBatch, RequestError

EVENT_BITS = 32
"""Low bits of an event_id that count the events of one start."""
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the ``/rank`` latency histogram."""
LOG_SLICE = 128
"""Completed decisions turned into a table of impression rows at a time (about 1.5 ms of the serving thread)."""
REMEMBERED_REWARDS = 1_000_000
"""Joined event ids kept to tell a duplicate reward from a late one."""


class ServeError(ValueError):
    """A policy run or log folder that cannot be served; the message is one line."""


@dataclass(frozen=True)
class ServeConfig:
    """What one ``fusionsim serve`` does; written whole as ``config.yaml``'s ``args``."""

    policy: str
    """a complete train or learn run (a bandit or PPO over blends) or train-stacker run (stacking, or a cascade)"""
    learn: bool = False
    """bandit policies: update from joined outcomes in batches (without it the policy is frozen)"""
    learn_batch: int = 256
    """outcomes per learning update"""
    snapshot_every: int = 10_000
    """events between snapshots of the learning policy"""
    join_window: float = 60.0
    """seconds an event waits for its outcome; then it is logged with no clicks and counts as expired"""
    flush_seconds: float = 2.0
    """seconds between writes of the decision log"""
    cascade: str | None = None
    """with a train-stacker run: serve the fixed cascade ``<arm>><N>><arm or stacker>`` instead of stacking"""

    def __post_init__(self) -> None:
        for name in ("learn_batch", "snapshot_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**9:
                raise ServeError(f"--{name.replace('_', '-')} = {value!r} is not allowed: must be an integer from 1 "
                                 "to 10^9")
        for name in ("join_window", "flush_seconds"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0 < value <= 86_400):
                raise ServeError(f"--{name.replace('_', '-')} = {value!r} is not allowed: must be a number of "
                                 "seconds in (0, 86400]")


@dataclass
class ServedPolicy:
    """What ranks: the run's ``policy`` (None for a stacker, whose only action is 0 with probability 1), the
    ``decoder`` of its actions, the fusion stage, and the shop it was made for."""

    kind: str
    policy: Policy | None
    decoder: object
    fusion: Fusion
    arm_names: list[str]
    scenario: Scenario
    agent: str

    @property
    def continuous(self) -> bool:
        return self.policy is not None and self.policy.action_mode in ("weights", "simplex")

    def decide(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray, object]:
        """Actions, their propensities (B,) and the fusion stage's decisions for ``contexts`` (B, D)."""
        if self.policy is None:
            actions = np.zeros(len(contexts), dtype=np.int64)
            return actions, np.ones(len(contexts)), self.decoder.decide(actions)
        if not self.continuous:  # bandits read float64 contexts (one row takes their fast path); same values
            contexts = contexts.astype(np.float64)
        actions, propensities = self.policy.act(contexts)
        return actions, np.asarray(propensities, dtype=np.float64), self.decoder.decide(actions)


def parse_cascade(spec: str, arm_names: list[str], n_candidates: int, slate_size: int,
                  stacker: Stacker) -> Cascade:
    """The fixed cascade of ``--cascade <arm>><N>><arm or stacker>`` (stage one keeps the top N of the first arm,
    stage two orders them by the second arm or the stacker); a ServeError naming the bad part."""
    try:
        config = CascadeConfig.from_label(spec, arm_names)
    except FusionError as exc:
        raise ServeError(f"--cascade {spec!r} is not allowed: {exc}") from None
    try:
        return Cascade([config], len(arm_names), n_candidates, slate_size, stacker)
    except FusionError as exc:
        raise ServeError(f"--cascade {spec!r}: {exc}") from None


def read_served_policy(folder: str | Path, cascade: str | None = None) -> ServedPolicy:
    """The policy of a complete train, learn or train-stacker run in ``folder`` (with ``cascade``, a train-stacker
    run's fixed cascade, :func:`parse_cascade`); a ServeError naming it."""
    from fusionsim.experiments.train import TrainError, read_trained_run

    folder = Path(folder)
    try:
        record = check_complete(folder, "policy run", ("train", "learn", "train-stacker"))
        stored = read_config(folder, "policy run")
    except ValueError as exc:
        raise ServeError(str(exc)) from None
    if record.get("command") == "train-stacker":
        try:
            scenario = parse_scenario(stored.get("scenario"), f"'{folder / 'config.yaml'}'")
            stacker = Stacker.load(folder, "policy run")
        except (StackerError, ValueError) as exc:
            raise ServeError(str(exc)) from None
        arm_names = list(stacker.spec.arm_names)
        if cascade is not None:
            fused = parse_cascade(cascade, arm_names, scenario.candidates.n_candidates,
                                  scenario.candidates.slate_size, stacker)
            return ServedPolicy("cascade", None, fused, fused, arm_names, scenario, f"cascade {cascade}")
        stacking = Stacking(stacker)
        return ServedPolicy("stacking", None, stacking, stacking, arm_names, scenario, f"{stacker.spec.kind} stacker")
    if cascade is not None:
        raise ServeError(f"--cascade needs a train-stacker run (its shop and stacker); {folder} is a "
                         f"{record.get('command')} run")
    try:
        trained = read_trained_run(folder, "policy run", deterministic=True)
    except TrainError as exc:
        raise ServeError(str(exc)) from None
    return ServedPolicy("blend", trained.policy, trained.mapper, WeightedBlend(), trained.arm_names,
                        trained.scenario, trained.config.agent)


class Metrics:
    """Counters and the ``/rank`` latency histogram, rendered in the Prometheus text format."""

    COUNTERS = {
        "requests": "ranked requests",
        "rank_calls": "calls of /rank answered",
        "errors": "calls answered with an error (4xx or 5xx)",
        "rewards_joined": "outcomes joined to their event",
        "rewards_duplicate": "outcomes for an event already joined (ignored)",
        "rewards_late": "outcomes for an event whose window had closed or of an earlier start (ignored)",
        "events_expired": "events logged without an outcome (the join window closed)",
        "decisions_written": "events written to the decision log",
        "learning_updates": "learning updates of the policy",
    }

    def __init__(self) -> None:
        self.counts = dict.fromkeys(self.COUNTERS, 0)
        self.latency = np.zeros(len(LATENCY_BUCKETS) + 1, dtype=np.int64)
        self.latency_sum = 0.0

    def observe_latency(self, seconds: float) -> None:
        self.latency[np.searchsorted(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def render(self, policy_version: int, pending: int) -> str:
        lines = []
        for name, meaning in self.COUNTERS.items():
            lines += [f"# HELP fusionsim_{name}_total {meaning}", f"# TYPE fusionsim_{name}_total counter",
                      f"fusionsim_{name}_total {self.counts[name]}"]
        lines += ["# HELP fusionsim_rank_latency_seconds time to answer /rank, from the parsed body to the answer",
                  "# TYPE fusionsim_rank_latency_seconds histogram"]
        cumulative = np.cumsum(self.latency)
        for bound, count in zip((*LATENCY_BUCKETS, math.inf), cumulative):
            label = "+Inf" if math.isinf(bound) else f"{bound:g}"
            lines.append(f'fusionsim_rank_latency_seconds_bucket{{le="{label}"}} {count}')
        lines += [f"fusionsim_rank_latency_seconds_sum {self.latency_sum:.6f}",
                  f"fusionsim_rank_latency_seconds_count {cumulative[-1]}",
                  "# HELP fusionsim_policy_version learning updates behind the policy that ranks now",
                  "# TYPE fusionsim_policy_version gauge", f"fusionsim_policy_version {policy_version}",
                  "# HELP fusionsim_events_pending events waiting for their outcome",
                  "# TYPE fusionsim_events_pending gauge", f"fusionsim_events_pending {pending}"]
        return "\n".join(lines) + "\n"


SNAPSHOT_LATEST = "latest.json"


class FusionService:
    """Rank, join, log and learn for one served policy (see the module docstring).

    Args:
        config: the serve options. folder: the log folder. clock: seconds (monotonic) for the join window.
        wall_clock: seconds since 1970 for the log's timestamps.
    """

    def __init__(self, config: ServeConfig, folder: str | Path, clock=time.monotonic, wall_clock=time.time) -> None:
        self.config, self.folder = config, Path(folder)
        self.served = read_served_policy(config.policy, config.cascade)
        if config.learn and (self.served.policy is None or self.served.agent == "ppo"):
            raise ServeError(f"--learn updates bandit policies; {config.policy} holds a {self.served.agent} "
                             "(serve it without --learn)")
        self.clock, self.wall_clock = clock, wall_clock
        scenario = self.served.scenario
        self.n_candidates = scenario.candidates.n_candidates
        self.slate_size = scenario.candidates.slate_size
        self.reward_kind = scenario.reward
        # what a client must match: the arms (in order), the candidate count, the default slate size, the reward
        # the policy learns from and the world it was made for
        self.shop = {"arms": self.served.arm_names, "n_candidates": self.n_candidates, "slate_size": self.slate_size,
                     "reward": self.reward_kind, "world": world_signature(scenario)}
        self.metrics = Metrics()
        self.policy_version = 0
        self._check_or_write_config()
        self.start = self._register_start()
        self._next = 0
        self._pending: OrderedDict[int, Decision] = OrderedDict()
        self._deadline: dict[int, float] = {}
        self._joined_ids: OrderedDict[int, None] = OrderedDict()
        self._completed: list[Decision] = []  # completed, not yet in a table
        self._completed_tables: list[pa.Table] = []  # completed, in tables of LOG_SLICE decisions, not yet written
        self._unwritten = 0  # decisions completed and not yet written
        self._parts = 0
        self._learn_queue: list[Decision] = []
        self._since_snapshot = 0
        # candidate places 0..C-1 per row, for the largest batch: the fusion stage ranks places (the first B rows,
        # a view), which are then read as the request's item ids
        self._places = np.tile(np.arange(self.n_candidates, dtype=np.int32), (MAX_BATCH, 1))
        if config.learn:
            self._resume_snapshot()

    # ------------------------------------------------------------------------------------------ folder
    def _check_or_write_config(self) -> None:
        args = asdict(self.config)
        args["policy"] = str(Path(self.config.policy).resolve())
        decoder = self.served.decoder
        extra = {"arms": self.served.arm_names, "policy_kind": self.served.kind, "agent": self.served.agent,
                 "actions": {"mode": getattr(decoder, "mode", self.served.kind),
                             "n_actions": int(decoder.n_actions)}}
        if (self.folder / "config.yaml").is_file():
            stored = read_config(self.folder, "--log-dir")
            if stored.get("command") != "serve":
                raise ServeError(f"--log-dir {self.folder} holds a {stored.get('command')} run, not a serve log")
            for key in ("policy", "learn", "learn_batch", "cascade"):
                if stored["args"].get(key) != args[key]:
                    raise ServeError(f"--log-dir {self.folder} logs a server with {key} = {stored['args'].get(key)!r}; "
                                     f"this one has {key} = {args[key]!r} (use another --log-dir)")
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise ServeError(f"--log-dir {self.folder} is a folder of other files; give an empty or new folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        write_config(self.folder, "serve", args, scenario=scenario_to_dict(self.served.scenario), **extra)
        (self.folder / "decisions").mkdir(exist_ok=True)

    def _register_start(self) -> int:
        path = self.folder / "starts.json"
        starts = []
        if path.is_file():
            try:
                starts = json.loads(path.read_text())
                assert isinstance(starts, list)
            except (ValueError, AssertionError, OSError):
                raise ServeError(f"--log-dir {path} is corrupt; it lists the server's starts (move the folder "
                                 "aside to start a new log)") from None
        starts.append({"unix_time": self.wall_clock()})
        atomic_write_json(path, starts)
        return len(starts) - 1

    def _resume_snapshot(self) -> None:
        latest = self.folder / "snapshots" / SNAPSHOT_LATEST
        if not latest.is_file():
            return
        try:
            record = json.loads(latest.read_text())
            path = self.folder / "snapshots" / record["file"]
            self.served.policy = type(self.served.policy).load(path)
            self.policy_version = int(record["policy_version"])
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise ServeError(f"--log-dir {latest}: the latest snapshot cannot be read ({exc})") from None

    # ------------------------------------------------------------------------------------------ rank
    def rank(self, batch: RankBatch) -> list[dict]:
        """Rank every request of ``batch``; register each as an event awaiting its outcome."""
        served = self.served
        actions, propensities, decisions = served.decide(batch.contexts)
        slate_index, weights = served.fusion.rank(self._places[:len(batch.contexts)], batch.excluded,
                                                  batch.arm_scores, batch.contexts, decisions, batch.slate_size)
        rows = np.arange(len(slate_index))[:, None]
        items = batch.candidates[rows, slate_index]
        scores = np.stack([s[rows, slate_index] for s in batch.arm_scores], axis=2).astype(np.float64)
        now, stamp = self.clock(), self.wall_clock() / 86_400.0
        deadline = now + self.config.join_window
        results = []
        action_list = actions.tolist()
        propensity_list = propensities.tolist()
        for i in range(len(items)):
            event_id = (self.start << EVENT_BITS) | self._next
            self._next += 1
            decision = Decision(event_id, stamp, batch.contexts[i], items[i], scores[i], action_list[i],
                                propensity_list[i], weights[i], int(batch.user_id[i]), int(batch.session_id[i]),
                                int(batch.segment[i]), int(batch.surface[i]), int(batch.device[i]), batch.query[i],
                                self.policy_version)
            self._pending[event_id] = decision
            self._deadline[event_id] = deadline
            results.append({"event_id": event_id, "slate": items[i].tolist(), "action": action_list[i],
                            "propensity": propensity_list[i],
                            "weights": {a: (None if math.isnan(w) else w)
                                        for a, w in zip(served.arm_names, weights[i].tolist())},
                            "policy_version": self.policy_version})
        self.metrics.counts["requests"] += len(items)
        return results

    # ------------------------------------------------------------------------------------------ reward
    def slate_size_of(self, event_id: int, field: str) -> int:
        """The slate length of a waiting event, -1 for one issued but no longer waiting; a 404 RequestError for
        one never issued."""
        start, n = event_id >> EVENT_BITS, event_id & ((1 << EVENT_BITS) - 1)
        if start > self.start or (start == self.start and n >= self._next):
            raise RequestError(field, f"{field} = {event_id} was never issued by this server", status=404)
        pending = self._pending.get(event_id)
        return len(pending.items) if pending is not None else -1

    def reward(self, outcomes: list[Outcome]) -> list[str]:
        """Join each outcome to its event: "joined", or "duplicate"/"late" (ignored and counted)."""
        statuses = []
        for outcome in outcomes:
            decision = self._pending.pop(outcome.event_id, None)
            if decision is None:
                status = "duplicate" if outcome.event_id in self._joined_ids else "late"
                self.metrics.counts[f"rewards_{status}"] += 1
                statuses.append(status)
                continue
            del self._deadline[outcome.event_id]
            decision.clicks, decision.purchases, decision.revenue = outcome.clicks, outcome.purchases, outcome.revenue
            decision.joined = True
            self._finish(decision)
            self._joined_ids[outcome.event_id] = None
            if len(self._joined_ids) > REMEMBERED_REWARDS:
                self._joined_ids.popitem(last=False)
            self.metrics.counts["rewards_joined"] += 1
            statuses.append("joined")
        return statuses

    def expire(self, everything: bool = False) -> int:
        """Log every event whose window closed (``everything``: every pending event) without an outcome."""
        now, expired = self.clock(), 0
        while self._pending:
            event_id, decision = next(iter(self._pending.items()))
            if not everything and self._deadline[event_id] > now:
                break  # events are pending in the order issued, which is the order of their deadlines
            del self._pending[event_id], self._deadline[event_id]
            k = len(decision.items)
            decision.clicks, decision.purchases = np.zeros(k, np.int8), np.zeros(k, np.int8)
            decision.revenue = np.zeros(k)
            self._finish(decision)
            expired += 1
        self.metrics.counts["events_expired"] += expired
        return expired

    def _finish(self, decision: Decision) -> None:
        kind = self.reward_kind
        decision.reward = float(decision.clicks.sum() if kind == "clicks" else decision.purchases.sum()
                                if kind == "purchases" else decision.revenue.sum())
        self._completed.append(decision)
        self._unwritten += 1
        if len(self._completed) == LOG_SLICE:
            self._completed_tables.append(self.decisions_table(self._completed))
            self._completed = []
        if self.config.learn:
            self._learn_queue.append(decision)
            if len(self._learn_queue) >= self.config.learn_batch:
                self._update()

    # ------------------------------------------------------------------------------------------ learn
    def _update(self) -> None:
        batch, self._learn_queue = self._learn_queue, []
        contexts = np.stack([d.context for d in batch])
        actions = np.array([d.action for d in batch], dtype=np.int64)
        rewards = np.array([d.reward for d in batch], dtype=np.float64)
        self.served.policy.update(contexts, actions, rewards)
        self.policy_version += 1
        self.metrics.counts["learning_updates"] += 1
        self._since_snapshot += len(batch)
        if self._since_snapshot >= self.config.snapshot_every:
            self.snapshot()

    def snapshot(self) -> None:
        """Save the learning policy atomically and point ``latest.json`` at it."""
        if not self.config.learn:
            return
        folder = self.folder / "snapshots"
        name = f"policy-{self.policy_version:06d}.npz"
        self.served.policy.save(folder / name)
        atomic_write_json(folder / SNAPSHOT_LATEST, {"file": name, "policy_version": self.policy_version})
        for old in sorted(folder.glob("policy-*.npz"))[:-2]:  # keep the newest two
            old.unlink(missing_ok=True)
        self._since_snapshot = 0

    # ------------------------------------------------------------------------------------------ log
    def take_completed(self) -> tuple[int, pa.Table | None, int]:
        """The completed decisions not yet written, as one table of impression rows, the part number to write it
        as and the number of decisions (None and 0 when there are none); the caller writes it with
        :meth:`write_table`, possibly on another thread (the write releases the interpreter lock)."""
        if self._completed:
            self._completed_tables.append(self.decisions_table(self._completed))
            self._completed = []
        tables, self._completed_tables = self._completed_tables, []
        n, self._unwritten = self._unwritten, 0
        if not tables:
            return -1, None, 0
        self._parts += 1
        return self._parts - 1, pa.concat_tables(tables), n

    def decisions_table(self, decisions: list[Decision]) -> pa.Table:
        """The impression rows of ``decisions``. Python work (about 7 ms per thousand decisions) that holds the
        interpreter lock, so it is done as decisions complete, LOG_SLICE at a time, on the serving thread:
        built for a whole flush at once, on a worker thread (sharing the lock with the event loop) or on the
        loop, it held up every request for 15-85 ms per flush, which was the tail of ``/rank``'s latency."""
        return decisions_table(decisions, self.served.arm_names, self.served.continuous)

    def write_table(self, part: int, table: pa.Table) -> None:
        write_part(self.folder / "decisions", self.start, part, table)

    def count_written(self, n: int) -> None:
        self.metrics.counts["decisions_written"] += n

    def flush(self) -> None:
        """Write the completed decisions now, on this thread."""
        part, table, n = self.take_completed()
        if n:
            self.write_table(part, table)
            self.count_written(n)

    def close(self) -> None:
        """Log every pending event as expired, write the log and snapshot a learning policy."""
        self.expire(everything=True)
        self.flush()
        self.snapshot()

    @property
    def pending(self) -> int:
        return len(self._pending)

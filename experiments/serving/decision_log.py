"""The decision log of ``fusionsim serve``: every served request, one row per shown item in the impression-log
schema (``envs.calibration.schema``), so ``calibrate``, ``fidelity``, ``ope`` and ``learn`` read it as they read a
shop's log.

A log is a folder of ``part-EEEEE-NNNNNN.parquet`` files (E: the server's start, N: its flushes), each written
whole and atomically (a temporary file renamed into place): a crash never leaves a torn part, and loses at most
the decisions not yet flushed. Columns, beyond the schema's (``request_id`` is the ``event_id``):

| column | type | meaning |
|---|---|---|
| session_id | int64 | as the request sent it; a request sent without one is a session of its own (its event_id) |
| context_<feature> | float32 | the context vector the policy saw (``envs.context.CONTEXT_NAMES``) |
| action | int64 | the policy's discrete action (arm or grid index); absent for continuous actions |
| action_propensity | float64 | its probability under the served policy (absent for continuous actions) |
| action_<arm>, action_density | float32, float64 | continuous actions only: the action and its density |
| weights_<arm> | float32 | the blend weights it mapped to (NaN where a stacker ordered the slate) |
| score_<arm> | float64 | the arm's score of the shown item, as the request sent it |
| reward | float64 | the request's reward under the policy's scenario (clicks, purchases or revenue) |
| joined | bool | whether an outcome arrived within the join window (if not, clicks and purchases are 0) |
| policy_version | int64 | the policy's version when it ranked the request (it grows with each learning update) |
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.logs import SURFACES, atomic_write_parquet
from fusionsim.envs.scenario import DEVICES, SEGMENTS

PART_GLOB = "part-*.parquet"
STRING_COLUMNS = ("surface", "query", "device", "segment")



@dataclass
class Decision:
    """One served request and, once it is joined or expired, its outcome. Arrays are per slot of the slate
    (k,) unless stated: ``items`` int64, ``scores`` (k, A) float64 (each arm's score of the shown item),
    ``context`` (CONTEXT_DIM,) float32, ``action`` an int or (A,) float32, ``weights`` (A,) float32."""

    event_id: int
    timestamp: float
    context: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    action: object
    propensity: float
    weights: np.ndarray
    user_id: int
    session_id: int
    segment: int
    surface: int
    device: int
    query: str
    policy_version: int
    clicks: np.ndarray | None = None
    purchases: np.ndarray | None = None
    revenue: np.ndarray | None = None
    reward: float = 0.0
    joined: bool = False


def decisions_table(decisions: list[Decision], arm_names: list[str], continuous: bool) -> pa.Table:
    """The impression rows of ``decisions`` (each complete: joined or expired), in order.

    Built in one pass over the decisions and then by whole columns (string columns are Arrow ``take``s of their
    few values), so that writing the log on the server's worker thread holds the interpreter lock for about a
    millisecond per thousand decisions rather than tens of milliseconds, which would stall the requests served
    meanwhile."""
    n = len(decisions)
    integers = np.array([(d.event_id, d.user_id, d.session_id if d.session_id >= 0 else d.event_id, d.surface,
                          d.device, d.segment, d.policy_version, len(d.items), 0 if continuous else d.action)
                         for d in decisions], dtype=np.int64).reshape(n, 9)
    reals = np.array([(d.timestamp, d.propensity, d.reward, d.joined) for d in decisions],
                     dtype=np.float64).reshape(n, 4)
    k = integers[:, 7]
    row_of = np.repeat(np.arange(n), k)  # the decision of each impression row
    first_row = np.cumsum(k) - k
    rows = pa.array(row_of)

    def per_item(values: np.ndarray) -> pa.Array:
        return pa.array(values[row_of])

    def strings(values: tuple[str, ...], index: np.ndarray) -> pa.Array:
        return pc.take(pa.array(values, pa.string()), pa.array(index[row_of]))

    contexts = np.concatenate([d.context for d in decisions]).reshape(n, -1)[row_of]  # concatenate: 4x np.stack's speed
    weights = np.concatenate([d.weights for d in decisions]).reshape(n, -1)[row_of]
    scores = np.concatenate([d.scores for d in decisions])
    columns: dict[str, pa.Array] = {
        "request_id": per_item(integers[:, 0]),
        "timestamp": per_item(reals[:, 0]),
        "user_id": per_item(integers[:, 1]),
        "surface": strings(SURFACES, integers[:, 3]),
        "query": pc.take(pa.array([d.query for d in decisions], pa.string()), rows),
        "device": strings(DEVICES, integers[:, 4]),
        "segment": strings(SEGMENTS, integers[:, 5]),
        "position": pa.array(np.arange(len(row_of)) - first_row[row_of]),
        "item_id": pa.array(np.concatenate([d.items for d in decisions]).astype(np.int64)),
        "click": pa.array(np.concatenate([d.clicks for d in decisions]).astype(np.int64)),
        "purchase": pa.array(np.concatenate([d.purchases for d in decisions]).astype(np.int64)),
        "revenue": pa.array(np.concatenate([d.revenue for d in decisions]).astype(np.float64)),
        # a request sent without its session is a session of its own (nothing known ties it to others)
        "session_id": per_item(integers[:, 2]),
    }
    if continuous:
        actions = np.stack([np.asarray(d.action, dtype=np.float32) for d in decisions])[row_of]
        for j, name in enumerate(arm_names):
            columns[f"action_{name}"] = pa.array(actions[:, j])
        columns["action_density"] = per_item(reals[:, 1])
    else:
        columns["action"] = per_item(integers[:, 8])
        columns["action_propensity"] = per_item(reals[:, 1])
    for j, name in enumerate(CONTEXT_NAMES):
        columns[f"context_{name}"] = pa.array(contexts[:, j])
    for j, name in enumerate(arm_names):
        columns[f"weights_{name}"] = pa.array(weights[:, j])
    for j, name in enumerate(arm_names):
        columns[f"score_{name}"] = pa.array(scores[:, j])
    columns["reward"] = per_item(reals[:, 2])
    columns["joined"] = per_item(reals[:, 3].astype(bool))
    columns["policy_version"] = per_item(integers[:, 6])
    return pa.Table.from_arrays(list(columns.values()), names=list(columns))


def write_part(folder: Path, epoch: int, sequence: int, table: pa.Table) -> Path:
    """Write one part of the decision log atomically; its path."""
    path = Path(folder) / f"part-{epoch:05d}-{sequence:06d}.parquet"
    # dictionaries for the string columns only: over the float columns they cost 40% of the write's time
    # (20 to 12 ms per thousand decisions) and made the part larger (499 against 409 KiB)
    atomic_write_parquet(table, path, use_dictionary=[c for c in STRING_COLUMNS if c in table.column_names])
    return path


class DecisionLogError(ValueError):
    """A decision log that cannot be read; the message is one line."""


def read_served_requests(folder: Path, option: str = "--logs") -> pd.DataFrame:
    """The decision log of the serve log folder ``folder`` as one row per request (its first slot's row), in
    event order: ``request_id``, ``session_id``, the ``context_*`` columns, ``action``, ``propensity`` (the
    logged action propensity), ``reward`` and ``joined``. Only parts written whole exist (each is atomic); a
    DecisionLogError names ``option`` for a folder without parts, a corrupt part, or continuous actions."""
    parts = sorted((Path(folder) / "decisions").glob(PART_GLOB))
    if not parts:
        raise DecisionLogError(f"{option} {folder} holds no decisions yet ({folder}/decisions/{PART_GLOB})")
    tables = []
    for part in parts:
        try:
            tables.append(pq.read_table(part))
        except (OSError, pa.ArrowException) as exc:
            raise DecisionLogError(f"{option} {folder}: {part.name} is corrupt or not a Parquet file "
                                   f"({type(exc).__name__})") from None
    frame = pa.concat_tables(tables, promote_options="default").to_pandas()
    if "action" not in frame:
        raise DecisionLogError(f"{option} {folder}: the served policy chose continuous weights; the discrete-action "
                               "estimators need arm or grid actions")
    first = frame[frame["position"] == 0].sort_values("request_id", kind="stable")
    columns = ["request_id", "session_id", *[f"context_{c}" for c in CONTEXT_NAMES], "action", "action_propensity",
               "reward", "joined"]
    return first[columns].rename(columns={"action_propensity": "propensity"}).reset_index(drop=True)

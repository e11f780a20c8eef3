"""Interaction logs: Parquet, one row per request, written in chunks, each file atomically.

A log is a folder of ``part-NNNNN.parquet`` files (readable as one table with ``pandas.read_parquet
(folder)``, polars or duckdb). Columns, in order:

| column | type | meaning |
|---|---|---|
| request_id | int64 | global request counter (0, 1, ...) |
| t | float64 | simulated day of the request |
| session_id | int64 | shopper session |
| session_step | int32 | requests earlier in the session |
| user_id | int32 | shopper |
| segment, surface, device | dictionary<string> | shopper segment, "feed"/"search", device |
| query | list<int32> | [top-category word, leaf word, attribute word], -1 where absent (all -1 on the feed) |
| context_<feature> | float32 | the context vector the policy saw (``envs.context.CONTEXT_NAMES``) |
| action | int64 | arm or grid index; -1 for continuous actions |
| action_<arm> | float32 | only for continuous actions: the action's value for each arm, before the softmax |
| propensity | float64 | probability (density) of the action under the logging policy |
| weights_<arm> | float32 | the arm weights the action mapped to |
| slate | list<int32> | item ids shown, best first |
| zscore_<arm> | list<float32> | each shown item's standardised score under the arm (``envs.stacking.signals``) |
| rank_<arm> | list<int32> | each shown item's place in the arm's own ranking of the candidates (0 = its best) |
| clicks | list<int8> | 1 where the slot was clicked |
| purchased | list<int8> | 1 where the slot was bought |
| purchases | int32 | items bought |
| revenue | float32 | price of the items bought |
| reward | float32 | the scenario's reward |
| terminated, truncated | bool | the shopper left / the session hit its time limit after this request |
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fusionsim.envs.context import CONTEXT_NAMES
from fusionsim.envs.scenario import DEVICES, SEGMENTS
from fusionsim.envs.simulator import StepResult
from fusionsim.envs.stacking.signals import shown_ranks_and_zscores
from fusionsim.common.io import atomic_target, check_complete

SURFACES = ("feed", "search")


def _dictionary(indices: np.ndarray, values: tuple[str, ...]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(indices.astype(np.int8)), pa.array(values))


def _fixed_lists(values: np.ndarray, arrow_type: pa.DataType) -> pa.ListArray:
    n, k = values.shape
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values.reshape(-1), type=arrow_type))


def step_table(result: StepResult, arm_names: list[str]) -> pa.Table:
    """The log rows (one per request) of one step served by :meth:`BatchedSimulator.serve` (which puts the
    policy's actions and propensities in the result)."""
    if result.actions is None or result.propensities is None:
        raise ValueError("a logged step needs the policy's actions and propensities: serve it with "
                         "BatchedSimulator.serve(policy, mapper)")
    req = result.requests
    n = len(req)
    actions, propensities = np.asarray(result.actions), result.propensities
    action = actions.astype(np.int64) if actions.ndim == 1 else np.full(n, -1, dtype=np.int64)
    columns: dict[str, pa.Array] = {
        "request_id": pa.array(result.request_id),
        "t": pa.array(np.full(n, result.day, dtype=np.float64)),
        "session_id": pa.array(result.session_id),
        "session_step": pa.array(req.session_step.astype(np.int32)),
        "user_id": pa.array(req.user_id.astype(np.int32)),
        "segment": _dictionary(req.segment, SEGMENTS),
        "surface": _dictionary(req.surface, SURFACES),
        "device": _dictionary(req.device, DEVICES),
        "query": _fixed_lists(req.query.astype(np.int32), pa.int32()),
    }
    for j, name in enumerate(CONTEXT_NAMES):
        columns[f"context_{name}"] = pa.array(result.contexts[:, j])
    columns["action"] = pa.array(action)
    if actions.ndim == 2:
        for j, name in enumerate(arm_names):
            columns[f"action_{name}"] = pa.array(actions[:, j].astype(np.float32))
    columns["propensity"] = pa.array(np.asarray(propensities, dtype=np.float64))
    for j, name in enumerate(arm_names):
        columns[f"weights_{name}"] = pa.array(result.weights[:, j])
    columns["slate"] = _fixed_lists(result.slate.astype(np.int32), pa.int32())
    positions = (result.candidates[:, None, :] == result.slate[:, :, None]).argmax(axis=2)
    ranks, zscores = shown_ranks_and_zscores(result.arm_scores, positions)
    for j, name in enumerate(arm_names):
        columns[f"zscore_{name}"] = _fixed_lists(zscores[j], pa.float32())
        columns[f"rank_{name}"] = _fixed_lists(ranks[j], pa.int32())
    columns["clicks"] = _fixed_lists(result.clicks.astype(np.int8), pa.int8())
    columns["purchased"] = _fixed_lists(result.purchased.astype(np.int8), pa.int8())
    columns["purchases"] = pa.array(result.purchased.sum(axis=1).astype(np.int32))
    columns["revenue"] = pa.array(result.revenue)
    columns["reward"] = pa.array(result.reward)
    columns["terminated"] = pa.array(result.terminated)
    columns["truncated"] = pa.array(result.truncated)
    return pa.table(columns)


def atomic_write_parquet(table: pa.Table, path: Path, use_dictionary: bool | list[str] = True) -> None:
    """Write ``table`` atomically (readers skip the hidden temporary file); ``use_dictionary``: dictionary-encode
    every column, none, or the named ones."""
    with atomic_target(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", use_dictionary=use_dictionary)


class InteractionLogWriter:
    """Buffers step tables and writes ``part-NNNNN.parquet`` files of about ``chunk_rows`` rows.

    Memory stays bounded by one chunk whatever the number of requests.
    """

    def __init__(self, folder: str | Path, arm_names: list[str], chunk_rows: int = 500_000) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1; got {chunk_rows}")
        self.folder = Path(folder)
        self.arm_names = list(arm_names)
        self.chunk_rows = chunk_rows
        self.parts: list[Path] = []
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def append(self, result: StepResult, limit: int | None = None) -> None:
        """Buffer the rows of one served step (only the first ``limit`` requests when given)."""
        table = step_table(result, self.arm_names)
        if limit is not None:
            table = table.slice(0, limit)
        self._buffer.append(table)
        self._buffered += table.num_rows
        if self._buffered >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        path = self.folder / f"part-{len(self.parts):05d}.parquet"
        atomic_write_parquet(pa.concat_tables(self._buffer), path)
        self.parts.append(path)
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self.flush()


REQUIRED_COLUMNS = ("request_id", "t", "user_id", "segment", "surface", "action", "propensity", "slate", "clicks",
                    "purchases", "revenue", "reward")
"""Columns every reader of a log relies on."""


class LogReadError(ValueError):
    """A log folder that cannot be read: incomplete, corrupt, or missing a column."""


def list_column(log: pd.DataFrame, column: str, dtype: type) -> np.ndarray:
    """A per-slot list column of a log read by :func:`read_interaction_log` (``slate``, ``clicks``,
    ``rank_<arm>``, ...) as one (n, k) array of ``dtype``."""
    return np.stack(log[column].to_numpy()).astype(dtype, copy=False)


def read_interaction_log(folder: str | Path, option: str, accept_partial: bool = False) -> pd.DataFrame:
    """The log of the complete ``fusionsim simulate`` run in ``folder`` as one table; a
    :class:`LogReadError` naming ``option``, the part file and the problem when a part is corrupt, empty,
    not Parquet or lacks a column. ``accept_partial`` reads the parts of an interrupted run too."""
    folder = Path(folder)
    if not accept_partial:
        try:
            check_complete(folder, option, ("simulate",), subfolder="logs")
        except ValueError as exc:
            raise LogReadError(str(exc)) from None
    parts = sorted((folder / "logs").glob("part-*.parquet"))
    if not parts:
        raise LogReadError(f"{option} {folder} holds no interaction log (expected {folder}/logs/part-*.parquet from "
                           "fusionsim simulate)")
    tables = []
    for part in parts:
        try:
            table = pq.read_table(part)
        except (OSError, pa.ArrowException) as exc:
            raise LogReadError(f"{option} {folder}: {part.name} is corrupt or not a Parquet file "
                               f"({type(exc).__name__})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise LogReadError(f"{option} {folder}: {part.name} has no column '{missing[0]}'; not a fusionsim log")
        if tables and table.schema != tables[0].schema:
            raise LogReadError(f"{option} {folder}: {part.name} has other columns than {parts[0].name}; "
                               "the parts come from different runs")
        tables.append(table)
    log = pa.concat_tables(tables).to_pandas()
    if len(log) == 0:
        raise LogReadError(f"{option} {folder}: the log holds no rows")
    propensity = log["propensity"].to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(propensity) & (propensity > 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise LogReadError(f"{option} {folder}: propensity must be finite and > 0; got {propensity[row]} at row {row}")
    return log

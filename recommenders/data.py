"""From interaction logs to what the arms train and are evaluated on.

A simulated log (``envs/logs.py``: one row per request with its slate and clicks) becomes

* an *interaction table* (``INTERACTION_COLUMNS``: one row per click), for fitting;
* *evaluation requests*: the requests of a time window that got at least one click, each with what the
  shop knew at the time (a :class:`RequestBatch`, whose recent items are rebuilt from earlier
  interactions) and the items clicked (the targets).

Everything here is vectorised over rows; nothing loops per shopper or per item.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fusionsim.recommenders.base import (QUERY_WORDS, RECENT_ITEMS, InteractionTableError, RequestBatch,
                                         check_interactions)

LOG_COLUMNS = ("user_id", "t", "segment", "surface", "device", "query", "session_step", "slate", "clicks",
               "purchased")
"""Columns of a request log that training and evaluation read."""

def check_log(log: pd.DataFrame) -> None:
    """Raise :class:`InteractionTableError` naming the first missing column of a request log."""
    if len(log) == 0:
        raise InteractionTableError("request log is empty: nothing to train on")
    for column in LOG_COLUMNS:
        if column not in log.columns:
            raise InteractionTableError(f"request log has no column '{column}'; columns are {list(log.columns)}")


def _flat(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A list column as (values, row index of each value)."""
    lengths = column.map(len).to_numpy()
    values = np.concatenate(column.to_numpy()) if len(column) else np.zeros(0)
    return values, np.repeat(np.arange(len(column)), lengths)


def clicks_from_log(log: pd.DataFrame) -> pd.DataFrame:
    """The interaction table of a request log: one row per clicked slot, ``purchase`` where it was bought."""
    check_log(log)
    slate, row = _flat(log["slate"])
    clicked, _ = _flat(log["clicks"])
    bought, _ = _flat(log["purchased"])
    keep = clicked.astype(bool)
    return pd.DataFrame({"user_id": log["user_id"].to_numpy()[row[keep]].astype(np.int64),
                         "item_id": slate[keep].astype(np.int64),
                         "t": log["t"].to_numpy()[row[keep]].astype(np.float64),
                         "purchase": bought[keep].astype(bool)})


def _codes(column: pd.Series, names: tuple[str, ...]) -> np.ndarray:
    values = column.astype(str).to_numpy()
    lookup = {name: i for i, name in enumerate(names)}
    codes = np.array([lookup.get(v, -1) for v in np.unique(values)])  # per distinct value, not per row
    return codes[np.searchsorted(np.unique(values), values)].astype(np.int8)


def recent_items_before(interactions: pd.DataFrame, user_id: np.ndarray, t: np.ndarray,
                        n: int = RECENT_ITEMS) -> np.ndarray:
    """For each (user, time) the user's ``n`` latest interacted items strictly before that time,
    most recent first, -1 where there are fewer: (len(user_id), n) int32."""
    table = check_interactions(interactions)
    users, times, items = (table[c].to_numpy() for c in ("user_id", "t", "item_id"))
    order = np.lexsort((times, users))
    users, times, items = users[order], times[order], items[order]
    t0 = min(times.min(), t.min()) - 1.0
    span = max(times.max(), t.max()) - t0 + 1.0
    event_key = users * span + (times - t0)
    request_key = user_id.astype(np.float64) * span + (t - t0)
    end = np.searchsorted(event_key, request_key, side="left")  # events strictly before
    start = np.searchsorted(users, user_id, side="left")  # the user's first event
    out = np.full((len(user_id), n), -1, dtype=np.int32)
    for j in range(n):  # n columns, each vectorised over all requests
        pos = end - 1 - j
        ok = pos >= start
        out[ok, j] = items[pos[ok]]
    return out


@dataclass
class EvalRequests:
    """Requests to rank for, with what was clicked: ``requests`` (B); ``targets`` (B, T) int32 item ids
    (-1 padding); ``segment``/``surface`` (B,) int8 codes for per-group metrics."""

    requests: RequestBatch
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, rows: np.ndarray) -> "EvalRequests":
        r = self.requests
        return EvalRequests(RequestBatch(**{f: getattr(r, f)[rows] for f in r.__dataclass_fields__}),
                            self.targets[rows])


def eval_requests_from_log(log: pd.DataFrame, history: pd.DataFrame, segments: tuple[str, ...],
                           surfaces: tuple[str, ...], devices: tuple[str, ...]) -> EvalRequests:
    """The requests of ``log`` that got a click, with recent items rebuilt from ``history`` (every
    interaction known, any time; only those before each request are used)."""
    check_log(log)
    clicked = log["clicks"].map(lambda c: int(np.sum(c)) > 0).to_numpy()
    log = log[clicked]
    slate, row = _flat(log["slate"])
    hit, _ = _flat(log["clicks"])
    keep = hit.astype(bool)
    counts = np.bincount(row[keep], minlength=len(log))
    targets = np.full((len(log), max(int(counts.max(initial=0)), 1)), -1, dtype=np.int32)
    rank = np.arange(keep.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    targets[row[keep], rank] = slate[keep]
    query = np.stack(log["query"].to_numpy()).astype(np.int32).reshape(len(log), QUERY_WORDS)
    user = log["user_id"].to_numpy().astype(np.int32)
    t = log["t"].to_numpy().astype(np.float64)
    requests = RequestBatch(user_id=user, segment=_codes(log["segment"], segments),
                            surface=_codes(log["surface"], surfaces), device=_codes(log["device"], devices),
                            query=query, recent_items=recent_items_before(history, user, t),
                            t=t.astype(np.float32), session_step=log["session_step"].to_numpy().astype(np.int32))
    return EvalRequests(requests, targets)

"""The context vector a fusion policy observes for one request: defined here, once, feature by feature.

Only what a real shop knows when the request arrives goes in (no hidden taste, intent or fatigue).
"""

from __future__ import annotations

import math

import numpy as np

from fusionsim.envs.scenario import DEVICES, SEGMENTS

CONTEXT_FEATURES: tuple[tuple[str, float, float, str], ...] = (
    ("bias", 0.0, 1.0, "always 1 (intercept for linear policies)"),
    ("segment_new", 0.0, 1.0, "1 if the shopper's segment is 'new'"),
    ("segment_casual", 0.0, 1.0, "1 if 'casual'"),
    ("segment_loyal", 0.0, 1.0, "1 if 'loyal'"),
    ("segment_bargain", 0.0, 1.0, "1 if 'bargain' (bargain hunter)"),
    ("surface_search", 0.0, 1.0, "1 on the search surface, 0 on the home feed"),
    ("device_mobile", 0.0, 1.0, "1 on the mobile web"),
    ("device_app", 0.0, 1.0, "1 in the app (desktop when both device features are 0)"),
    ("hour_sin", -1.0, 1.0, "sin(2 pi hour / 24), hour of the simulated day"),
    ("hour_cos", -1.0, 1.0, "cos(2 pi hour / 24)"),
    ("session_step", 0.0, 1.0, "min(requests earlier in this session, 20) / 20"),
    ("history_length", 0.0, 1.0, "min(log1p(past purchases) / log1p(50), 1)"),
    ("session_clicks", 0.0, 1.0, "min(clicks earlier in this session, 10) / 10"),
    ("query_names_leaf", 0.0, 1.0, "1 if the search query names a leaf category"),
)
"""(name, low, high, meaning) of every context feature, in vector order."""

CONTEXT_NAMES: tuple[str, ...] = tuple(f[0] for f in CONTEXT_FEATURES)
CONTEXT_LOW = np.array([f[1] for f in CONTEXT_FEATURES], dtype=np.float32)
CONTEXT_HIGH = np.array([f[2] for f in CONTEXT_FEATURES], dtype=np.float32)
CONTEXT_DIM = len(CONTEXT_FEATURES)



def observation_table(indent: str = "    ") -> str:
    """A markdown table of :data:`CONTEXT_FEATURES` (index, feature, range, meaning), each line prefixed
    with ``indent``: the Observation Space table of the env docstrings, generated so it cannot drift."""
    rows = [("index", "feature", "range", "meaning")]
    rows += [(str(i), name, f"[{low:g}, {high:g}]", meaning)
             for i, (name, low, high, meaning) in enumerate(CONTEXT_FEATURES)]
    widths = [max(len(row[j]) for row in rows) for j in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return indent + "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    rule = indent + "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), rule] + [line(row) for row in rows[1:]])


_SEGMENT0 = CONTEXT_NAMES.index("segment_new")
_LOG_HISTORY_CAP = np.log1p(50.0)


def _static_rows() -> np.ndarray:
    """Context columns 0-7 for every (segment, device) pair: (n_segments, n_devices, CONTEXT_DIM)."""
    rows = np.zeros((len(SEGMENTS), len(DEVICES), CONTEXT_DIM), dtype=np.float32)
    for s in range(len(SEGMENTS)):
        for d, device in enumerate(DEVICES):
            row = rows[s, d]
            row[0] = 1.0
            row[_SEGMENT0 + s] = 1.0
            row[6] = device == "mobile"
            row[7] = device == "app"
    return rows


_STATIC_ROWS = _static_rows()
# Features of counts, as tables indexed by the count (np.take with mode="clip" caps the count).
_STEP_FEATURE = (np.arange(21) / 20).astype(np.float32)
_CLICKS_FEATURE = (np.arange(11) / 10).astype(np.float32)
_HISTORY_FEATURE = np.minimum(np.log1p(np.arange(51)) / _LOG_HISTORY_CAP, 1.0).astype(np.float32)


def static_context(segment: np.ndarray, device: np.ndarray) -> np.ndarray:
    """The columns that stay fixed during a session (bias, segment, device): (B, CONTEXT_DIM) float32,
    the other columns zero. ``segment`` and ``device`` are (B,) indices."""
    return _STATIC_ROWS[segment, device]


def build_contexts(static: np.ndarray, is_search: np.ndarray, day: float, session_step: np.ndarray,
                   n_purchases: np.ndarray, session_clicks: np.ndarray, query_names_leaf: np.ndarray) -> np.ndarray:
    """Context vectors (B, CONTEXT_DIM) float32 for B requests at simulated ``day``: ``static`` (B, D) from
    :func:`static_context`, the rest (B,) arrays."""
    out = static.copy()
    out[:, 5] = is_search
    angle = 2.0 * math.pi * (day % 1.0)
    out[:, 8:10] = (math.sin(angle), math.cos(angle))
    # ndarray.take (not np.take, whose Python wrapper costs as much as the lookup for a few requests),
    # straight into the column
    _STEP_FEATURE.take(session_step, mode="clip", out=out[:, 10])
    _HISTORY_FEATURE.take(n_purchases, mode="clip", out=out[:, 11])
    _CLICKS_FEATURE.take(session_clicks, mode="clip", out=out[:, 12])
    out[:, 13] = query_names_leaf
    return out


CONTEXT_FIELDS: tuple[tuple[str, str], ...] = (
    ("segment", f"one of {', '.join(SEGMENTS)}"),
    ("surface", "feed or search"),
    ("device", f"one of {', '.join(DEVICES)}"),
    ("hour", "hour of the day, a number in [0, 24)"),
    ("session_step", "requests earlier in this session, an integer >= 0"),
    ("history_length", "the shopper's past purchases, an integer >= 0"),
    ("session_clicks", "clicks earlier in this session, an integer >= 0"),
    ("query_names_leaf", "true if the search query names a leaf category"),
)
"""(name, allowed) of the fields a request's context vector is built from (what a shop sends to ``serve``)."""


def contexts_from_fields(segment: np.ndarray, surface_search: np.ndarray, device: np.ndarray, hour: np.ndarray,
                         session_step: np.ndarray, history_length: np.ndarray, session_clicks: np.ndarray,
                         query_names_leaf: np.ndarray) -> np.ndarray:
    """Context vectors (B, CONTEXT_DIM) float32 from per-request fields, each (B,): segment and device indices
    (into SEGMENTS, DEVICES), surface_search and query_names_leaf booleans, hour of the day in [0, 24), and
    the counts. The same vectors :func:`build_contexts` gives the simulator's requests, with the hour per
    request instead of one simulated day."""
    out = build_contexts(static_context(segment, device), surface_search, 0.0, session_step, history_length,
                         session_clicks, query_names_leaf)
    angle = 2.0 * np.pi * (np.asarray(hour, dtype=np.float64) / 24.0)
    out[:, 8], out[:, 9] = np.sin(angle), np.cos(angle)
    return out


def fields_of_contexts(contexts: np.ndarray) -> dict[str, np.ndarray]:
    """The fields of :data:`CONTEXT_FIELDS` (each (B,)) that give back ``contexts`` (B, CONTEXT_DIM) through
    :func:`contexts_from_fields`, up to float32 rounding of the hour: segment and device indices, booleans,
    the hour and the counts (capped where the feature caps them)."""
    contexts = np.asarray(contexts, dtype=np.float64)
    hour = np.mod(np.arctan2(contexts[:, 8], contexts[:, 9]) * (24.0 / (2.0 * np.pi)), 24.0)
    return {
        "segment": np.argmax(contexts[:, _SEGMENT0:_SEGMENT0 + len(SEGMENTS)], axis=1),
        "surface_search": contexts[:, 5] > 0.5,
        "device": np.where(contexts[:, 7] > 0.5, 2, np.where(contexts[:, 6] > 0.5, 1, 0)),
        "hour": np.where(hour >= 24.0, 0.0, hour),
        "session_step": np.rint(contexts[:, 10] * 20).astype(np.int64),
        "history_length": np.rint(np.expm1(contexts[:, 11] * _LOG_HISTORY_CAP)).astype(np.int64),
        "session_clicks": np.rint(contexts[:, 12] * 10).astype(np.int64),
        "query_names_leaf": contexts[:, 13] > 0.5,
    }


assert CONTEXT_NAMES[_SEGMENT0:_SEGMENT0 + len(SEGMENTS)] == tuple(f"segment_{s}" for s in SEGMENTS)
assert CONTEXT_NAMES[5:8] == ("surface_search", "device_mobile", "device_app")
assert DEVICES == ("desktop", "mobile", "app")


HISTORY_BUCKETS = (0.0, np.log1p(1) / _LOG_HISTORY_CAP, np.log1p(6) / _LOG_HISTORY_CAP)
"""history_length feature thresholds of the context cells: no purchase, 1-5, 6 or more."""
N_CELLS = len(SEGMENTS) * 2 * len(HISTORY_BUCKETS)
CELL_NAMES: tuple[str, ...] = tuple(f"{segment}/{surface}/{history}" for segment in SEGMENTS
                                    for surface in ("feed", "search") for history in ("0", "1-5", "6+"))
"""Context cells (segment x surface x purchase-history length), the unit of the oracle and of `explain`."""


def context_cell(contexts: np.ndarray) -> np.ndarray:
    """The cell (index into CELL_NAMES) of each context row (B, CONTEXT_DIM): (B,) int64."""
    segment = np.argmax(contexts[:, _SEGMENT0:_SEGMENT0 + len(SEGMENTS)], axis=1)
    surface = (contexts[:, 5] > 0.5).astype(np.int64)
    history = np.searchsorted(np.asarray(HISTORY_BUCKETS[1:]) - 1e-6, contexts[:, 11], side="right")
    return (segment * 2 + surface) * len(HISTORY_BUCKETS) + history

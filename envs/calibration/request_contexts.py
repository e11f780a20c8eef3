"""The requests of an impression log (``envs.calibration.schema``), one row each, with the context vector a
fusion policy would have seen (``envs.context``), derived from what the log holds.

A shop's impression log carries no fusionsim context columns, so each feature is rebuilt from the request's
rows and the log's history before it:

| feature | from |
|---|---|
| segment_* | ``segment`` when it is one of fusionsim's four (new, casual, loyal, bargain); else all 0 |
| surface_search | ``surface == "search"`` |
| device_* | ``device`` ``mobile`` or ``app``; any other device, or none, counts as desktop |
| hour_sin, hour_cos | the hour of ``timestamp`` (days: its fraction of a day) |
| session_step | the session's earlier requests in the log (``session_id``; 0 without it) |
| history_length | the shopper's purchases earlier in the log (``purchase``, ``user_id`` >= 0; else 0) |
| session_clicks | clicks earlier in the session in the log (0 without ``session_id``) |
| query_names_leaf | 0: a shop's free-text queries are not mapped to categories |

``history_length`` counts the log's own history, not what the shopper bought before the log began.

So a policy evaluated on such a log acts on these contexts; where a feature is 0 for want of data, it acts as
for a shopper without that feature.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fusionsim.envs.calibration.schema import PER_REQUEST
from fusionsim.envs.context import CONTEXT_NAMES, contexts_from_fields
from fusionsim.envs.scenario import DEVICES, SEGMENTS

_SEGMENT_COLUMNS = slice(CONTEXT_NAMES.index(f"segment_{SEGMENTS[0]}"),
                         CONTEXT_NAMES.index(f"segment_{SEGMENTS[-1]}") + 1)


def requests_of_impressions(table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per request of a validated impression log (``schema.read_impression_log``, which checks that
    its per-request columns hold one value per request), in (timestamp, request_id) order: its
    ``request_id``, ``timestamp``, ``user_id``, ``surface``, the totals ``clicks``, ``purchases`` and
    ``revenue`` (0 where the log has none), its ``session_id``, ``segment``, ``device``, ``action`` and
    ``action_propensity`` where the log has them; and the context vectors (n, CONTEXT_DIM) float32 (see the
    module docstring)."""
    order = table.sort_values(["timestamp", "request_id", "position"], kind="stable")
    grouped = order.groupby("request_id", sort=False)
    requests = grouped[[name for name in ("request_id", *PER_REQUEST) if name in order.columns]].first()
    requests = requests.reset_index(drop=True)
    requests["clicks"] = grouped["click"].sum().to_numpy(np.float64)
    requests["purchases"] = grouped["purchase"].sum().to_numpy(np.float64) if "purchase" in order else 0.0
    requests["revenue"] = grouped["revenue"].sum().to_numpy(np.float64) if "revenue" in order else 0.0
    n = len(requests)
    segment = pd.Index(SEGMENTS).get_indexer(requests["segment"].astype(str) if "segment" in requests
                                             else np.full(n, "")).astype(np.int64)  # -1: none of the four
    device = pd.Index(DEVICES).get_indexer(requests["device"].astype(str) if "device" in requests
                                           else np.full(n, "desktop")).astype(np.int64)
    device[device < 0] = DEVICES.index("desktop")
    hour = np.mod(requests["timestamp"].to_numpy(np.float64), 1.0) * 24.0
    step = np.zeros(n, dtype=np.int64)
    session_clicks = np.zeros(n, dtype=np.int64)
    if "session_id" in requests:
        sessions = requests.groupby("session_id", sort=False)
        step = sessions.cumcount().to_numpy(np.int64)
        session_clicks = (sessions["clicks"].cumsum() - requests["clicks"]).to_numpy().astype(np.int64)
    history = np.zeros(n, dtype=np.int64)
    known_user = requests["user_id"].to_numpy() >= 0
    if known_user.any():
        users = requests[known_user].groupby("user_id", sort=False)["purchases"]
        earlier = users.cumsum() - requests.loc[known_user, "purchases"]
        history[known_user] = earlier.to_numpy().astype(np.int64)
    search = requests["surface"].astype(str).to_numpy() == "search"
    contexts = contexts_from_fields(np.maximum(segment, 0), search, device, np.where(hour >= 24.0, 0.0, hour), step,
                                    history, session_clicks, np.zeros(n, dtype=bool))
    contexts[segment < 0, _SEGMENT_COLUMNS] = 0.0
    return requests, contexts

"""The arrival mix of an impression log, in the scenario's terms: which device each session comes from
(``traffic.device_shares``) and how often a request of each segment is a search
(``world.segments.<segment>.search_share``). Both are shares the log shows directly, so they are fitted in
closed form, each with its standard error (``statistics.ratio_estimate``: sessions as the units of the
device shares, shoppers (else sessions, else requests) as the units of the search shares).

A log whose devices, segments or surfaces are named otherwise than the scenario's (``envs.scenario``:
``DEVICES``, ``SEGMENTS``; surfaces ``feed`` and ``search``) is not forced into them: the shares it cannot
name are left as the starting scenario has them, and :func:`arrival_mix` says why.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fusionsim.envs.logs import SURFACES  # a search share needs the log's surfaces named as the shop's
from fusionsim.envs.calibration.statistics import Estimate, independent_units, ratio_estimate
from fusionsim.envs.scenario import DEVICES, SEGMENTS


@dataclass
class ArrivalMix:
    """``device_shares`` device -> share of sessions (None: not fitted), ``search_shares`` segment -> share of
    its requests that are searches (the segments it could fit), and ``not_fitted``: one line per share left
    as the starting scenario has it, saying why."""

    device_shares: dict[str, Estimate] | None
    search_shares: dict[str, Estimate]
    not_fitted: list[str] = field(default_factory=list)


def arrival_mix(impressions: pd.DataFrame) -> ArrivalMix:
    """The arrival mix of an impression log (``envs.calibration.schema``; one row per shown item)."""
    requests = impressions.drop_duplicates("request_id")
    not_fitted: list[str] = []
    device_shares = None
    if "device" not in requests:
        not_fitted.append("traffic.device_shares: the log has no device column")
    elif not set(requests["device"].astype(str)) <= set(DEVICES):
        unknown = sorted(set(requests["device"].astype(str)) - set(DEVICES))
        not_fitted.append(f"traffic.device_shares: the log's devices {unknown} are not the scenario's "
                          f"{list(DEVICES)}")
    else:
        # a session keeps its device: sessions are the units (requests where the log has no sessions)
        first = requests.drop_duplicates("session_id") if "session_id" in requests else requests
        device = first["device"].astype(str).to_numpy()
        device_shares = {d: ratio_estimate((device == d).astype(np.float64), np.ones(len(device))) for d in DEVICES}
    search_shares: dict[str, Estimate] = {}
    surfaces = set(requests["surface"].astype(str))
    if not surfaces <= set(SURFACES):
        not_fitted.append(f"world.segments.*.search_share: the log's surfaces {sorted(surfaces - set(SURFACES))} "
                          f"are not the scenario's {list(SURFACES)}")
    elif "segment" not in requests:
        not_fitted.append("world.segments.*.search_share: the log has no segment column")
    else:
        unit = independent_units(requests)
        n = unit.max() + 1
        search = (requests["surface"].astype(str) == "search").to_numpy(np.float64)
        segment = requests["segment"].astype(str).to_numpy()
        for name in SEGMENTS:
            mine = (segment == name).astype(np.float64)
            if mine.sum() == 0:
                not_fitted.append(f"world.segments.{name}.search_share: the log has no request of segment {name!r}")
                continue
            search_shares[name] = ratio_estimate(np.bincount(unit, weights=search * mine, minlength=n),
                                                 np.bincount(unit, weights=mine, minlength=n))
        unknown = sorted(set(segment) - set(SEGMENTS))
        if unknown:
            not_fitted.append(f"the log's segments {unknown} are not the scenario's {list(SEGMENTS)}: their requests "
                              "fit no segment's search share")
    return ArrivalMix(device_shares, search_shares, not_fitted)

"""Traffic metrics accumulated over simulator steps (CTR, conversion, revenue, session length)."""

from __future__ import annotations

import numpy as np

from fusionsim.envs.logs import SURFACES
from fusionsim.envs.scenario import SEGMENTS
from fusionsim.envs.simulator import StepResult


class TrafficMetrics:
    """Running totals over served requests, overall, per slate position, per segment and per surface.

    ``update(result, limit)`` adds the first ``limit`` requests of a step (all when None);
    ``summary()`` returns plain floats for ``metrics.json``.
    """

    def __init__(self, slate_size: int) -> None:
        self.slate_size = slate_size
        self.requests = 0
        self.clicks_by_position = np.zeros(slate_size, dtype=np.int64)
        self.purchases = 0
        self.revenue = 0.0
        self.reward = 0.0
        self.sessions_ended = 0
        self.session_requests = 0
        # rows: segment (len SEGMENTS) then surface (len SURFACES); columns: requests, clicks, purchases, revenue
        self.by_group = np.zeros((len(SEGMENTS) + len(SURFACES), 4), dtype=np.float64)

    def update(self, result: StepResult, limit: int | None = None) -> None:
        n = len(result.reward) if limit is None else limit
        clicks, purchased = result.clicks[:n], result.purchased[:n]
        self.requests += n
        self.clicks_by_position += clicks.sum(axis=0)
        n_clicks = clicks.sum(axis=1)
        n_bought = purchased.sum(axis=1)
        revenue = result.revenue[:n].astype(np.float64)
        self.purchases += int(n_bought.sum())
        self.revenue += float(revenue.sum())
        self.reward += float(result.reward[:n].sum(dtype=np.float64))
        done = result.terminated[:n] | result.truncated[:n]
        self.sessions_ended += int(done.sum())
        self.session_requests += int((result.requests.session_step[:n][done] + 1).sum())
        values = np.stack([np.ones(n), n_clicks, n_bought, revenue], axis=1)
        for offset, group, size in ((0, result.requests.segment[:n], len(SEGMENTS)),
                                    (len(SEGMENTS), result.requests.surface[:n], len(SURFACES))):
            for j in range(values.shape[1]):
                self.by_group[offset:offset + size, j] += np.bincount(group, weights=values[:, j], minlength=size)

    @staticmethod
    def _rates(requests: float, clicks: float, purchases: float, revenue: float, slate_size: int) -> dict:
        r = max(requests, 1.0)
        return {"requests": int(requests), "ctr": clicks / (r * slate_size), "clicks_per_request": clicks / r,
                "purchases_per_request": purchases / r, "purchases_per_click": purchases / max(clicks, 1.0),
                "revenue_per_request": revenue / r}

    def summary(self) -> dict:
        k = self.slate_size
        clicks = float(self.clicks_by_position.sum())
        out = self._rates(self.requests, clicks, self.purchases, self.revenue, k)
        out["ctr_by_position"] = (self.clicks_by_position / max(self.requests, 1)).tolist()
        out["reward_per_request"] = self.reward / max(self.requests, 1)
        out["sessions_ended"] = self.sessions_ended
        out["mean_session_length"] = self.session_requests / max(self.sessions_ended, 1)
        out["by_segment"] = {s: self._rates(*self.by_group[i], k) for i, s in enumerate(SEGMENTS)}
        out["by_surface"] = {s: self._rates(*self.by_group[len(SEGMENTS) + i], k) for i, s in enumerate(SURFACES)}
        return out

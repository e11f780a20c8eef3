"""The fusion stage done by a running ``fusionsim serve``: the simulator's request path with the policy and
the ranking behind HTTP, for ``fusionsim replay``.

:class:`RemoteFusion` is a fusion strategy (``envs.strategies``) whose ``rank`` sends each request's context
fields, candidates and every arm's scores to ``/rank`` in one batch call and returns the slates the service
chose; it keeps the answers' event ids, actions and propensities so the replay can log them and post each
request's outcome to ``/reward`` with :meth:`RemoteFusion.post_outcomes`.
"""

from __future__ import annotations

import numpy as np

from fusionsim.envs.context import fields_of_contexts
from fusionsim.envs.logs import SURFACES
from fusionsim.envs.scenario import DEVICES, SEGMENTS
from fusionsim.envs.strategies import Fusion
from fusionsim.experiments.serving.client import FusionClient


class RemoteFusion(Fusion):
    """Rank through the service at ``client``; ``simulator`` (set with :meth:`attach`) gives each request's
    shopper, session and hour."""

    name = "served"

    def __init__(self, client: FusionClient, arm_names: list[str]) -> None:
        self.client, self.arm_names = client, list(arm_names)
        self.simulator = None
        self.event_ids = np.zeros(0, dtype=np.int64)
        self.actions: list = []
        self.propensities = np.zeros(0)
        self.policy_version = 0

    def attach(self, simulator) -> None:
        self.simulator = simulator

    def decide(self, actions: np.ndarray) -> None:
        """The service decides: the simulator's own decisions are not used."""
        return None

    def rank(self, candidates, excluded, arm_scores, contexts, decisions, slate_size):
        sim = self.simulator
        fields = fields_of_contexts(contexts)
        hour = float(sim.day % 1.0) * 24.0
        req = sim.requests
        user_id, session_id = req.user_id.tolist(), sim.session_id.tolist()
        words = req.query.tolist()
        candidate_lists = candidates.tolist()
        scores = [s.astype(np.float64).tolist() for s in arm_scores]
        excluded_rows = excluded.any(axis=1).tolist()
        requests = []
        for i in range(len(candidates)):
            request = {
                "context": {"segment": SEGMENTS[fields["segment"][i]],
                            "surface": SURFACES[int(fields["surface_search"][i])],
                            "device": DEVICES[fields["device"][i]], "hour": min(hour, 23.999999),
                            "session_step": int(fields["session_step"][i]),
                            "history_length": int(fields["history_length"][i]),
                            "session_clicks": int(fields["session_clicks"][i]),
                            "query_names_leaf": bool(fields["query_names_leaf"][i])},
                "candidates": candidate_lists[i],
                "scores": {name: scores[a][i] for a, name in enumerate(self.arm_names)},
                "user_id": user_id[i], "session_id": session_id[i],
                "query": " ".join(str(w) for w in words[i] if w >= 0),
            }
            if excluded_rows[i]:
                request["excluded"] = np.flatnonzero(excluded[i]).tolist()
            requests.append(request)
        answers = self.client.rank(requests, slate_size=slate_size)
        self.event_ids = np.array([a["event_id"] for a in answers], dtype=np.int64)
        self.actions = [a["action"] for a in answers]
        self.propensities = np.array([a["propensity"] for a in answers], dtype=np.float64)
        self.policy_version = answers[-1]["policy_version"]
        slate = np.array([a["slate"] for a in answers], dtype=candidates.dtype)
        weights = np.array([[np.nan if a["weights"][n] is None else a["weights"][n] for n in self.arm_names]
                            for a in answers], dtype=np.float32)
        return slate, weights

    def post_outcomes(self, clicks: np.ndarray, purchased: np.ndarray, revenue_per_slot: np.ndarray) -> list[str]:
        """Post the outcome of every request of the last :meth:`rank`: clicks and purchases (B, k) 0/1 and the
        revenue of each slot (B, k); the statuses the service answered."""
        outcomes = [{"event_id": e, "clicks": c, "purchases": p, "revenue": r}
                    for e, c, p, r in zip(self.event_ids.tolist(), clicks.astype(np.int64).tolist(),
                                          purchased.astype(np.int64).tolist(),
                                          revenue_per_slot.astype(np.float64).tolist())]
        return self.client.reward(outcomes)

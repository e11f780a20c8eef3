"""The batched shop simulator: N shopper sessions step together, one request each per step, in numpy.

Each of the N *slots* holds one shopper session. A step serves one request per slot: candidates ->
arm scores -> blend with the given weights -> slate -> shopper response -> session update. A slot whose
shopper left (``terminated``) or hit ``traffic.max_session_steps`` (``truncated``) gets a newly arrived
shopper at once, so every step serves N requests. Simulated time advances by N / requests_per_day
days per step, so the clock depends on requests served, not on N.

Randomness: one ``numpy.random.Generator`` made by :meth:`BatchedSimulator.reset` from its seed. A
seeded reset also restores the world's mutable state (tastes, histories, trending counts), so the same
seed gives the same trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusionsim.envs.allocator import reuse_freed_memory
from fusionsim.envs.candidates import CandidateStage
from fusionsim.envs.context import CONTEXT_DIM, build_contexts, static_context
from fusionsim.envs.fusion import blend, select_slate
from fusionsim.envs.response import ShopperModel
from fusionsim.envs.scenario import DEVICES, SEGMENTS, Scenario
from fusionsim.envs.world import World
from fusionsim.recommenders.base import Recommender, RequestBatch
from fusionsim.recommenders.data import QUERY_WORDS



@dataclass
class StepResult:
    """Everything about the N requests a step served (first axis N), for rewards, ``info`` and logs.

    ``requests``: what the shop knew; ``contexts`` (N, D) float32: what the policy saw; ``request_id``
    (N,) int64; ``session_id`` (N,) int64; ``day`` float (simulated day of these requests); ``candidates``
    (N, C) int32; ``excluded`` (N, C) bool (candidates never shown, see ``envs.candidates``);
    ``arm_scores`` list of A arrays (N, C) float32; ``weights`` (N, A) float32; ``slate`` (N, k) int32;
    ``clicks``, ``purchased`` (N, k) bool; ``revenue`` (N,) float32 (price of what was bought); ``reward``
    (N,) float32; ``terminated`` (N,) bool (shopper left); ``truncated`` (N,) bool (session time limit);
    ``final_contexts`` (N, D): the context the ended sessions would have shown next.
    """

    requests: RequestBatch
    contexts: np.ndarray
    request_id: np.ndarray
    session_id: np.ndarray
    day: float
    candidates: np.ndarray
    excluded: np.ndarray
    arm_scores: list[np.ndarray]
    weights: np.ndarray
    slate: np.ndarray
    clicks: np.ndarray
    purchased: np.ndarray
    revenue: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_contexts: np.ndarray


class BatchedSimulator:
    """N concurrent shopper sessions in one simulated shop.

    Args:
        world: catalog, population and history (from :func:`envs.world.build_world`).
        arms: fitted recommenders; their order is the order of the weights.
        n_slots: concurrent sessions N (requests per step).
        shoppers: optional (n_users,) bool mask: only these shoppers arrive (an A/B bucket's own shop
            front, with its own share of the traffic).
    """

    def __init__(self, world: World, arms: list[Recommender], n_slots: int = 1,
                 shoppers: np.ndarray | None = None) -> None:
        if n_slots < 1:
            raise ValueError(f"n_slots must be >= 1; got {n_slots}")
        if not arms:
            raise ValueError("arms must hold at least one fitted recommender")
        self.world = world
        self.scenario: Scenario = world.scenario
        self.arms = list(arms)
        self.n_slots = n_slots
        self.catalog = world.catalog
        self.model = ShopperModel(self.scenario.behaviour, world.catalog)
        self.candidate_stage = CandidateStage(self.scenario, world.catalog)
        self.slate_size = self.scenario.candidates.slate_size
        segs = [self.scenario.world.segments[s] for s in SEGMENTS]
        self._leave_bias = np.array([s.leave_bias for s in segs], dtype=np.float32)
        self._search_share = np.array([s.search_share for s in segs], dtype=np.float32)
        self._device_cdf = np.cumsum([self.scenario.traffic.device_shares[d] for d in DEVICES])
        activity = world.population.activity if shoppers is None else world.population.activity * shoppers
        if not activity.any():
            raise ValueError("shoppers selects nobody: at least one shopper must be able to arrive")
        self._activity_cdf = np.cumsum(activity, dtype=np.float64)
        self._trend_shifts = self._plan_trend_shifts()
        self.rng: np.random.Generator | None = None
        reuse_freed_memory()

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    def _plan_trend_shifts(self) -> list[tuple[float, np.ndarray, float]]:
        """(day, leaves, strength) of each trend_shift event; leaves drawn from the scenario seed."""
        out = []
        for i, event in enumerate(self.scenario.events):
            if event.kind == "trend_shift":
                rng = np.random.default_rng([self.scenario.seed, 0x7E4D, i])
                n = min(event.n_leaves, self.catalog.n_leaves)
                out.append((event.day, rng.choice(self.catalog.n_leaves, n, replace=False), event.strength))
        return sorted(out, key=lambda e: e[0])

    # ----------------------------------------------------------------------------------------- reset
    def reset(self, seed: int | None = None, rng: np.random.Generator | None = None) -> np.ndarray:
        """Restart the shop at day 0 with fresh sessions; returns the first contexts (N, D).

        Pass ``rng`` (used as is) or ``seed`` (a new Generator). Restores the world's mutable state.
        """
        self.rng = rng if rng is not None else np.random.default_rng(seed)
        for arm in self.arms:
            arm.reset_state()
        pop = self.world.population
        self.taste = pop.taste.copy()
        self.n_purchases = pop.n_purchases.copy()
        self.recent_items = pop.recent_items.copy()
        self.requests_served = 0
        self.next_session_id = 0
        self.trend = np.zeros(self.catalog.n_leaves, dtype=np.float32)
        self._next_shift = 0
        self._next_event_day = 0.0
        hist = self.world.history
        recent = hist["t"].to_numpy() >= -7.0
        counts = np.bincount(hist["item_id"].to_numpy()[recent], minlength=self.catalog.n_items)
        self.candidate_stage.reset(self.rng, counts.astype(np.float64), day=0.0)

        n, n_leaves = self.n_slots, self.catalog.n_leaves
        self.user = np.zeros(n, dtype=np.int32)
        self.segment = np.zeros(n, dtype=np.int8)
        self.device = np.zeros(n, dtype=np.int8)
        self.intent = np.zeros(n, dtype=np.int32)
        self.step_in_session = np.zeros(n, dtype=np.int32)
        self.session_clicks = np.zeros(n, dtype=np.int32)
        self.session_id = np.zeros(n, dtype=np.int64)
        self.satiation = np.zeros((n, n_leaves), dtype=np.float32)
        self.fatigue = np.zeros(n, dtype=np.float32)
        # per-session constants, set when a session starts
        self.static_context = np.zeros((n, CONTEXT_DIM), dtype=np.float32)
        traffic = self.scenario.traffic
        self.query_thresholds = np.tile(np.array([0.0, traffic.query_leaf_word, traffic.query_noise],
                                                 dtype=np.float32), (n, 1))  # column 0: the segment's search share
        self.query_words = np.zeros((n, QUERY_WORDS), dtype=np.int32)  # the session's top and leaf words
        self.leave_bias = np.zeros(n, dtype=np.float32)
        self.coefficients = np.zeros((n, self.catalog.latent.shape[1] + 2, 2), dtype=np.float32)
        self.intent_top = np.zeros(n, dtype=np.int32)
        self.last_leaf = np.zeros(n, dtype=np.int32)  # leaf of the shopper's latest click, -1 = none
        self.shopper_leaf = np.zeros(n, dtype=np.int32)  # a leaf of the shopper's history, -1 = none
        self.start_sessions(np.arange(n))
        return self.prepare_requests()

    @property
    def day(self) -> float:
        """Simulated day of the next request."""
        return self.requests_served / self.scenario.traffic.requests_per_day

    def start_sessions(self, rows: np.ndarray) -> None:
        """Replace the sessions in ``rows`` by newly arrived shoppers (the old sessions are dropped)."""
        m = len(rows)
        if m == 0:
            return
        rng = self.rng
        # Copy on write: the arrays a served RequestBatch refers to are never changed in place.
        self.user, self.segment, self.device = self.user.copy(), self.segment.copy(), self.device.copy()
        self.step_in_session = self.step_in_session.copy()
        u = rng.random((m, 2))
        user = np.searchsorted(self._activity_cdf, u[:, 0] * self._activity_cdf[-1], side="right")
        user = np.minimum(user, len(self._activity_cdf) - 1).astype(np.int32)
        self.user[rows] = user
        segment = self.world.population.segment[user]
        device = np.searchsorted(self._device_cdf, u[:, 1] * self._device_cdf[-1], side="right")
        self.segment[rows], self.device[rows] = segment, device
        self.static_context[rows] = static_context(segment, device)
        self.query_thresholds[rows, 0] = self._search_share[segment]
        self.leave_bias[rows] = self._leave_bias[segment]
        self.coefficients[rows] = self.model.shopper_coefficients(
            self.taste[user], self.world.population.price_sensitivity[user])
        # Session intent: a leaf drawn with probability ~ exp(1.5 * taste match + trend) (Gumbel-max).
        affinity = self.taste[user] @ self.catalog.leaf_centroid.T * self.model.inv_sqrt_d
        gumbel = -np.log(-np.log(rng.random(affinity.shape, dtype=np.float32) + 1e-12) + 1e-12)
        intent = np.argmax(1.5 * affinity + self.trend + gumbel, axis=1)
        self.intent[rows] = intent
        self.intent_top[rows] = intent // self.scenario.world.n_leaf_per_top
        self.query_words[rows, 0] = self.intent_top[rows]
        self.query_words[rows, 1] = self.catalog.vocab.leaf_offset + intent
        # The shop's view of the shopper's history: the latest click's leaf and, for the session, the
        # leaf of a random recent item (recent_items are compact: valid items first).
        recent = self.recent_items[user]
        n_valid = (recent >= 0).sum(axis=1)
        leaf = self.catalog.leaf
        self.last_leaf[rows] = np.where(n_valid > 0, leaf[recent[:, 0]], -1)
        picked = recent[np.arange(m), (rng.random(m) * n_valid).astype(np.int64)]
        self.shopper_leaf[rows] = np.where(n_valid > 0, leaf[picked], -1)
        self.step_in_session[rows] = 0
        self.session_clicks[rows] = 0
        self.session_id[rows] = self.next_session_id + np.arange(m)
        self.next_session_id += m
        self.satiation[rows] = 0.0
        self.fatigue[rows] = 0.0

    # ----------------------------------------------------------------------------------------- requests
    def prepare_requests(self) -> np.ndarray:
        """Draw the next request of every slot (surface, query, recall leaves); returns contexts (N, D)."""
        c, vocab = self.catalog, self.catalog.vocab
        n = self.n_slots
        u = self.rng.random((n, 5), dtype=np.float32)
        # flags: is a search / the query names the leaf / the query carries a random attribute word
        flags = u[:, :3] < self.query_thresholds
        flags[:, 1:] &= flags[:, :1]
        is_search, names_leaf = flags[:, 0], flags[:, 1]
        self.query_words[:, 2] = vocab.attribute_offset + (u[:, 3] * vocab.n_attributes).astype(np.int32)
        query = np.where(flags, self.query_words, np.int32(-1))

        # Recall leaves: the query's leaf (or a guess within its top category) on search, the latest
        # click's leaf (or a random leaf) on the feed; the shopper leaf was drawn at session start.
        leaf_per_top = self.scenario.world.n_leaf_per_top
        guess = np.where(is_search, self.intent_top * leaf_per_top + (u[:, 4] * leaf_per_top).astype(np.int32),
                         (u[:, 4] * c.n_leaves).astype(np.int32))
        self.context_leaf = np.where(is_search, np.where(names_leaf, self.intent, guess),
                                     np.where(self.last_leaf >= 0, self.last_leaf, guess))

        day = self.day
        self.requests = RequestBatch(user_id=self.user, segment=self.segment, surface=is_search.view(np.int8),
                                     device=self.device, query=query, recent_items=self.recent_items[self.user],
                                     t=np.full(n, day, dtype=np.float32), session_step=self.step_in_session)
        self.contexts = build_contexts(self.static_context, is_search, day, self.step_in_session,
                                       self.n_purchases[self.user], self.session_clicks, names_leaf)
        return self.contexts

    # ----------------------------------------------------------------------------------------- step
    def _apply_events(self, day: float) -> None:
        """Apply the trend shifts due by ``day`` and rebuild the recall index when it is due."""
        while self._next_shift < len(self._trend_shifts) and self._trend_shifts[self._next_shift][0] <= day:
            _, leaves, strength = self._trend_shifts[self._next_shift]
            self.trend[:] = 0.0
            self.trend[leaves] = strength
            self._next_shift += 1
        self.candidate_stage.maybe_rebuild(self.rng, day)
        next_shift = self._trend_shifts[self._next_shift][0] if self._next_shift < len(self._trend_shifts) else np.inf
        self._next_event_day = min(next_shift, self.candidate_stage.next_rebuild_day)

    def step(self, weights: np.ndarray) -> StepResult:
        """Serve the pending request of every slot with arm ``weights`` (N, A) (rows on the simplex)."""
        if self.rng is None:
            raise RuntimeError("call reset() before step()")
        weights = np.asarray(weights, dtype=np.float32)
        if weights.shape != (self.n_slots, self.n_arms):
            raise ValueError(f"weights must have shape ({self.n_slots}, {self.n_arms}); got {weights.shape}")
        rng, req, c = self.rng, self.requests, self.catalog
        day = self.day
        if day >= self._next_event_day:
            self._apply_events(day)
        candidates, excluded = self.candidate_stage.generate(rng, self.context_leaf, self.shopper_leaf)
        arm_scores = [arm.score(req, candidates) for arm in self.arms]
        slate = select_slate(candidates, blend(arm_scores, weights), self.slate_size, excluded)

        is_search = req.surface.astype(bool)
        utility = self.model.utility(slate, self.coefficients, self.intent, is_search, req.query, self.satiation,
                                     self.trend)
        clicks, purchased = self.model.respond(rng, utility, self.device)
        revenue = np.add.reduce(c.price[slate] * purchased, axis=1)
        n_clicks = np.add.reduce(clicks, axis=1, dtype=np.int32)
        n_bought = np.add.reduce(purchased, axis=1, dtype=np.int32)
        clicked, bought = n_clicks > 0, n_bought > 0
        left = self.model.update_session(rng, utility, self.satiation, self.fatigue, self.leave_bias, clicked, bought)
        self._update_shoppers(slate, clicks, purchased, clicked, n_bought)

        reward_kind = self.scenario.reward
        reward = (n_clicks if reward_kind == "clicks" else n_bought if reward_kind == "purchases" else revenue
                  ).astype(np.float32)
        self.step_in_session = self.step_in_session + 1
        self.session_clicks += n_clicks
        terminated = left
        truncated = ~left & (self.step_in_session >= self.scenario.traffic.max_session_steps)
        request_id = np.arange(self.requests_served, self.requests_served + self.n_slots, dtype=np.int64)
        session_id = self.session_id.copy()
        served_contexts = self.contexts
        self.requests_served += self.n_slots

        done = np.nonzero(terminated | truncated)[0]
        final_contexts = served_contexts  # contexts arrays are never changed in place once served
        if len(done):
            final_contexts = served_contexts.copy()
            final_contexts[done] = build_contexts(
                self.static_context[done], is_search[done], self.day, self.step_in_session[done],
                self.n_purchases[self.user[done]], self.session_clicks[done], served_contexts[done, 13])
        self.start_sessions(done)
        self.prepare_requests()
        return StepResult(requests=req, contexts=served_contexts, request_id=request_id, session_id=session_id,
                          day=day, candidates=candidates, excluded=excluded, arm_scores=arm_scores,
                          weights=weights, slate=slate, clicks=clicks, purchased=purchased, revenue=revenue,
                          reward=reward, terminated=terminated, truncated=truncated, final_contexts=final_contexts)

    def _update_shoppers(self, slate: np.ndarray, clicks: np.ndarray, purchased: np.ndarray,
                         clicked: np.ndarray, n_bought: np.ndarray) -> None:
        """Recent items, purchase counts, taste drift toward purchases, trending counts."""
        rows = np.nonzero(clicked)[0]
        if len(rows) == 0:
            return
        users = self.user[rows]
        clicked_items = np.where(clicks[rows], slate[rows], -1)
        merged = np.concatenate([clicked_items, self.recent_items[users]], axis=1)
        order = np.argsort(merged < 0, axis=1, kind="stable")[:, :self.recent_items.shape[1]]
        latest = merged.reshape(-1)[order + (np.arange(len(rows)) * merged.shape[1])[:, None]]
        self.recent_items[users] = latest
        self.last_leaf[rows] = self.catalog.leaf[latest[:, 0]]
        self.candidate_stage.record_clicks(slate[clicks])
        buy_rows = np.nonzero(n_bought)[0]
        if len(buy_rows):
            buyers = self.user[buy_rows]
            self.n_purchases[buyers] += n_bought[buy_rows]
            mask = purchased[buy_rows][:, :, None]
            mean_latent = (self.catalog.latent[slate[buy_rows]] * mask).sum(axis=1) / n_bought[buy_rows, None]
            drift = self.scenario.behaviour.taste_drift
            self.taste[buyers] += drift * (mean_latent - self.taste[buyers])
            self.coefficients[buy_rows] = self.model.shopper_coefficients(
                self.taste[buyers], self.world.population.price_sensitivity[buyers])

"""The batched shop simulator: N shopper sessions step together, one request each per step, in numpy.

Each of the N *slots* holds one shopper session. A step serves one request per slot: candidates ->
arm scores -> the fusion stage (``envs.strategies``: a weighted blend by default) -> slate -> shopper
response -> session update. A slot whose
shopper left (``terminated``) or hit ``traffic.max_session_steps`` (``truncated``) gets a newly arrived
shopper at once, so every step serves N requests. Simulated time advances by N / requests_per_day
days per step, so the clock depends on requests served, not on N.

Randomness: one ``numpy.random.Generator`` made by :meth:`BatchedSimulator.reset` from its seed. A
seeded reset also restores the world's mutable state (tastes, histories, trending counts), so the same
seed gives the same trajectory.

Checkpoints: :meth:`BatchedSimulator.state_dict` returns everything that changes while the shop runs
as named numpy arrays (numbers, booleans and unicode only, so ``np.savez`` / ``np.load(allow_pickle=False)``
round-trip it); :meth:`BatchedSimulator.load_state_dict` on a simulator built from the same world and
arms with the same ``n_slots`` continues bit for bit. The world itself is never changed by stepping:
the simulator keeps its own copies of what moves (tastes, purchase counts, recent items), the candidate
stage its own click counts, and events only read the world (trend shifts are planned from the scenario
seed, new-item waves are launch days already in the catalog).

Size: ``n_slots`` is bounded by :data:`MAX_SLOTS`; :func:`slot_bytes` estimates the memory of one slot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fusionsim.envs.allocator import reuse_freed_memory
from fusionsim.envs.candidates import CandidateStage
from fusionsim.envs.context import CONTEXT_DIM, build_contexts, static_context
from fusionsim.envs.response import ShopperModel
from fusionsim.envs.scenario import DEVICES, SEGMENTS, Scenario
from fusionsim.envs.strategies import Fusion, WeightedBlend
from fusionsim.envs.world import World
from fusionsim.recommenders.base import ArmScorer, Recommender, RequestBatch
from fusionsim.recommenders.data import QUERY_WORDS

MAX_SLOTS = 1_048_576
"""Largest number of concurrent sessions (``n_slots``, ``n_envs``, ``num_envs``). A step of the default
scenario with its two arms peaks at about 8.5 KB per slot (tracemalloc over steps of 1,024 and 8,192
slots; :func:`slot_bytes`), so this bound is about 9 GB: more than that does not fit a 16-32 GiB machine,
and asking for it would be killed by the kernel rather than refused."""

STATE_FORMAT = "fusionsim.BatchedSimulator/1"
"""Written under ``format`` in :meth:`BatchedSimulator.state_dict`; a state of another format is refused."""


def slot_bytes(scenario: Scenario, n_arms: int) -> int:
    """Rough peak memory of one slot during a step, in bytes: the per-slot state (satiation over the
    leaves, shopper coefficients, contexts, about 800 B + 4 B per leaf) plus the step's temporaries per
    candidate (ids, positions, masks, keys: 22 B; one score and one blend term per arm: 8 B each).
    Fitted to tracemalloc peaks of 100-200 candidates and 2-4 arms within 1%."""
    n_leaves = scenario.world.n_top_categories * scenario.world.n_leaf_per_top
    return 800 + 4 * n_leaves + scenario.candidates.n_candidates * (22 + 8 * n_arms)


def _format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    raise AssertionError("unreachable")


def check_slots(name: str, value: int, scenario: Scenario, n_arms: int) -> int:
    """Refuse a number of concurrent sessions outside [1, MAX_SLOTS]; ``name`` is the argument's name in
    the message. Returns ``value`` as an int."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int; got {value!r}")
    value = int(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}")
    if value > MAX_SLOTS:
        per_slot = slot_bytes(scenario, n_arms)
        raise ValueError(f"{name} = {value} is above the bound MAX_SLOTS = {MAX_SLOTS}: {value} sessions would take "
                         f"about {_format_bytes(value * per_slot)} of memory ({per_slot} bytes each)")
    return value


@dataclass
class StepResult:
    """Everything about the N requests a step served (first axis N), for rewards, ``info`` and logs.

    ``requests``: what the shop knew; ``contexts`` (N, D) float32: what the policy saw; ``request_id``
    (N,) int64; ``session_id`` (N,) int64; ``day`` float (simulated day of these requests); ``candidates``
    (N, C) int32; ``excluded`` (N, C) bool (candidates never shown, see ``envs.candidates``);
    ``arm_scores`` list of A arrays (N, C) float32; ``weights`` (N, A) float32 (the blend that ordered the slate;
    NaN rows where a stacker did); ``slate`` (N, k) int32;
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
    actions: np.ndarray | None = None
    """the policy's actions when :meth:`BatchedSimulator.serve` served the step: (N,) int64 arm or grid
    indices, or (N, A) float32 continuous actions; None for a step given weights directly"""
    propensities: np.ndarray | None = None
    """(N,) float64: the probability (density) with which the policy chose each action, with ``actions``"""


class BatchedSimulator:
    """N concurrent shopper sessions in one simulated shop.

    Args:
        world: catalog, population and history (from :func:`envs.world.build_world`).
        arms: fitted recommenders; their order is the order of the weights.
        n_slots: concurrent sessions N (requests per step), 1 to :data:`MAX_SLOTS`.
        shoppers: optional (n_users,) bool mask: only these shoppers arrive (an A/B bucket's own shop
            front, with its own share of the traffic).
        fusion: the fusion stage (``envs.strategies``); None: the weighted blend.
    """

    def __init__(self, world: World, arms: list[Recommender], n_slots: int = 1,
                 shoppers: np.ndarray | None = None, fusion: Fusion | None = None) -> None:
        if not arms:
            raise ValueError("arms must hold at least one fitted recommender")
        n_slots = check_slots("n_slots", n_slots, world.scenario, len(arms))
        self.world = world
        self.scenario: Scenario = world.scenario
        self.arms = list(arms)
        self.fusion: Fusion = fusion if fusion is not None else WeightedBlend()
        self._scorer = ArmScorer(self.arms)
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
        # Constants of the hot path, as 0-d arrays of the dtype they meet (the same numbers as Python
        # scalars, about half the cost per operation when N is small).
        vocab, traffic = self.catalog.vocab, self.scenario.traffic
        # prepare_requests scales uniform columns 3, 4, 4 into an attribute word, a leaf within the intent's
        # top category (search) and a random leaf (feed)
        self._draw_columns = np.array([3, 4, 4], dtype=np.int64)
        self._draw_scale = np.array([[vocab.n_attributes, self.scenario.world.n_leaf_per_top, self.catalog.n_leaves]],
                                    dtype=np.float32)  # (1, 3), as wide as what it scales (see CandidateStage)
        self._leaf_per_top = np.array(self.scenario.world.n_leaf_per_top, dtype=np.int32)
        self._leaf_per_top_i64 = np.array(self.scenario.world.n_leaf_per_top, dtype=np.int64)
        self._attribute_offset = np.array(vocab.attribute_offset, dtype=np.int32)
        self._leaf_offset = np.array(vocab.leaf_offset, dtype=np.int64)
        self._zero, self._one = np.array(0, dtype=np.int32), np.array(1, dtype=np.int32)
        self._minus_one_intp, self._zero_intp = np.array(-1, dtype=np.intp), np.array(0, dtype=np.intp)
        self._last_user = np.array(len(self._activity_cdf) - 1, dtype=np.int64)
        self._activity_total, self._device_total = np.array(self._activity_cdf[-1]), np.array(self._device_cdf[-1])
        self._segment_of_user = world.population.segment.astype(np.intp)
        self._no_query = np.full((n_slots, QUERY_WORDS), -1, dtype=np.int32)
        # the leaf of each item, and -1 at index -1: the leaf of a recent-items entry, -1 for none
        self._leaf_or_none = np.append(self.catalog.leaf, np.int32(-1)).astype(np.intp)
        self._max_session_steps = np.array(traffic.max_session_steps, dtype=np.int32)
        self._requests_per_day = float(traffic.requests_per_day)
        self._reward_kind = self.scenario.reward
        self._is_search = np.zeros(n_slots, dtype=bool)
        self._centroids_t = self.catalog.leaf_centroid.T
        self._tiny, self._intent_temperature = np.array(1e-12, dtype=np.float32), np.array(1.5, dtype=np.float32)
        self._inv_sqrt_d = np.array(self.model.inv_sqrt_d, dtype=np.float32)
        self._row_starts_by_width: dict[int, np.ndarray] = {}
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

    def _slot_layout(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """Shape and dtype of every per-slot array (first axis N = n_slots), as :meth:`reset` allocates them.

        ``user`` shopper id; ``segment``, ``device`` indices; ``intent`` the session's intent leaf and
        ``intent_top`` its top category; ``step_in_session``, ``session_clicks`` counts; ``session_id``;
        ``satiation`` (N, n_leaves) and ``fatigue`` (N,) of the session; per-session constants
        ``static_context`` (N, D), ``query_thresholds`` (N, 3) (search share, leaf word, noise word
        probabilities), ``query_words`` (N, 3), ``leave_bias``, ``coefficients`` (N, d + 2, 2); the shop's
        view ``last_leaf`` (leaf of the latest click) and ``shopper_leaf`` (-1 = none); and the pending
        request's ``context_leaf`` and ``contexts`` (N, D).
        """
        n, n_leaves, d = self.n_slots, self.catalog.n_leaves, self.catalog.latent.shape[1]
        return {"user": ((n,), np.int32), "segment": ((n,), np.int8), "device": ((n,), np.int8),
                "intent": ((n,), np.int32), "step_in_session": ((n,), np.int32), "session_clicks": ((n,), np.int32),
                "session_id": ((n,), np.int64), "satiation": ((n, n_leaves), np.float32),
                "fatigue": ((n,), np.float32), "static_context": ((n, CONTEXT_DIM), np.float32),
                "query_thresholds": ((n, 3), np.float32), "query_words": ((n, QUERY_WORDS), np.int32),
                "leave_bias": ((n,), np.float32), "coefficients": ((n, d + 2, 2), np.float32),
                "intent_top": ((n,), np.int32), "last_leaf": ((n,), np.int32), "shopper_leaf": ((n,), np.int32),
                "context_leaf": ((n,), np.int32), "contexts": ((n, CONTEXT_DIM), np.float32)}

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

        for name, (shape, dtype) in self._slot_layout().items():
            setattr(self, name, np.zeros(shape, dtype=dtype))
        # user and device again as intp, the dtype NumPy indexes with (an int32 or int8 index is cast at
        # every gather); start_sessions and load_state_dict keep them equal to user and device
        self._user_index, self._device_index = np.zeros(self.n_slots, np.intp), np.zeros(self.n_slots, np.intp)
        traffic = self.scenario.traffic
        # query_thresholds column 0 is the segment's search share (set when a session starts)
        self.query_thresholds[:, 1:] = np.array([traffic.query_leaf_word, traffic.query_noise], dtype=np.float32)
        self.start_sessions(np.arange(self.n_slots))
        return self.prepare_requests()

    @property
    def day(self) -> float:
        """Simulated day of the next request."""
        return self.requests_served / self._requests_per_day

    def start_sessions(self, rows: np.ndarray) -> None:
        """Replace the sessions in ``rows`` (distinct slot indices) by newly arrived shoppers (the old
        sessions are dropped)."""
        m = len(rows)
        if m == 0:
            return
        if m == self.n_slots:  # every slot (often so with one slot): assign through a slice, not a scatter
            rows = slice(None)
        rng = self.rng
        # Copy on write: the arrays a served RequestBatch refers to are never changed in place.
        self.user, self.segment, self.device = self.user.copy(), self.segment.copy(), self.device.copy()
        self.step_in_session = self.step_in_session.copy()
        u = rng.random((m, 2))
        user = np.minimum(self._activity_cdf.searchsorted(u[:, 0] * self._activity_total, side="right"),
                          self._last_user)
        self.user[rows] = self._user_index[rows] = user
        segment = self._segment_of_user[user]
        device = self._device_cdf.searchsorted(u[:, 1] * self._device_total, side="right")
        self.segment[rows] = segment
        self.device[rows] = self._device_index[rows] = device
        self.static_context[rows] = static_context(segment, device)
        self.query_thresholds[rows, 0] = self._search_share[segment]
        self.leave_bias[rows] = self._leave_bias[segment]
        taste = self.taste.take(user, axis=0)
        self.coefficients[rows] = self.model.shopper_coefficients(taste, self.world.population.price_sensitivity[user])
        # Session intent: a leaf drawn with probability ~ exp(1.5 * taste match + trend) (Gumbel-max), as
        # argmax(1.5 * affinity + trend + gumbel) with gumbel = -log(-log(r + tiny) + tiny), the negations
        # folded into subtractions (x + (-y) is exactly x - y in IEEE)
        affinity = taste @ self._centroids_t
        affinity *= self._inv_sqrt_d
        tiny = self._tiny
        r = rng.random(affinity.shape, dtype=np.float32)
        r += tiny
        log_r = np.log(r, out=r)
        score = self._intent_temperature * affinity
        score += self.trend
        score -= np.log(np.subtract(tiny, log_r, out=log_r), out=log_r)
        intent = score.argmax(axis=1)
        self.intent[rows] = intent
        intent_top = intent // self._leaf_per_top_i64
        self.intent_top[rows] = intent_top
        self.query_words[rows, 0] = intent_top
        self.query_words[rows, 1] = self._leaf_offset + intent
        # The shop's view of the shopper's history: the latest click's leaf and, for the session, the
        # leaf of a random recent item (recent_items are compact: valid items first, so an empty history
        # starts with -1, whose leaf is -1).
        recent = self.recent_items.take(user, axis=0)
        n_valid = np.add.reduce(recent >= self._zero, axis=1, dtype=np.float64)  # float: it scales a draw
        recent = recent.astype(np.intp)
        self.last_leaf[rows] = self._leaf_or_none[recent[:, 0]]
        picked = (rng.random(m) * n_valid).astype(np.intp) + self._row_starts(m, recent.shape[1])[:, 0]
        self.shopper_leaf[rows] = self._leaf_or_none[recent.ravel()[picked]]
        self.step_in_session[rows] = 0
        self.session_clicks[rows] = 0
        self.session_id[rows] = np.arange(self.next_session_id, self.next_session_id + m)
        self.next_session_id += m
        self.satiation[rows] = 0.0
        self.fatigue[rows] = 0.0

    # ----------------------------------------------------------------------------------------- checkpoints
    _REQUEST_FIELDS = ("user_id", "segment", "surface", "device", "query", "recent_items", "t", "session_step")

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything a simulator built anew from the same world and arms (same ``n_slots``) needs to
        continue bit for bit, as named arrays (numbers, booleans, unicode; no objects):

        ``format``, ``n_slots``, ``arm_names`` (A,); ``rng``: the Generator's ``bit_generator.state`` as
        JSON (0-d unicode); 0-d scalars ``requests_served``, ``next_session_id``, ``next_shift`` (trend
        shifts applied), ``next_event_day``; ``trend`` (n_leaves,) float32; the shoppers' moving state
        ``shopper/taste`` (n_users, d), ``shopper/n_purchases`` (n_users,), ``shopper/recent_items``
        (n_users, R); every per-slot array ``slot/<name>`` (see :meth:`_slot_layout`); the pending
        request ``request/<field>`` (the :class:`RequestBatch` fields); the candidate stage's
        ``candidates/<name>`` (:meth:`CandidateStage.state_dict`); each arm's serving state
        ``arm<i>/<name>`` (:meth:`Recommender.serving_state`). The arrays are copies.
        """
        if self.rng is None:
            raise RuntimeError("call reset() before state_dict(): a simulator that never started has no state")
        out: dict[str, np.ndarray] = {
            "format": np.array(STATE_FORMAT), "n_slots": np.array(self.n_slots, dtype=np.int64),
            "arm_names": np.array([arm.name for arm in self.arms], dtype=str),
            "rng": np.array(json.dumps(self.rng.bit_generator.state)),
            "requests_served": np.array(self.requests_served, dtype=np.int64),
            "next_session_id": np.array(self.next_session_id, dtype=np.int64),
            "next_shift": np.array(self._next_shift, dtype=np.int64),
            "next_event_day": np.array(self._next_event_day, dtype=np.float64),
            "trend": self.trend.copy(), "shopper/taste": self.taste.copy(),
            "shopper/n_purchases": self.n_purchases.copy(), "shopper/recent_items": self.recent_items.copy()}
        for name in self._slot_layout():
            out[f"slot/{name}"] = getattr(self, name).copy()
        for name in self._REQUEST_FIELDS:
            out[f"request/{name}"] = np.array(getattr(self.requests, name), copy=True)
        for name, value in self.candidate_stage.state_dict().items():
            out[f"candidates/{name}"] = value
        for i, arm in enumerate(self.arms):
            for name, value in arm.serving_state().items():
                out[f"arm{i}/{name}"] = np.array(value, copy=True)
        return out

    def _state_layout(self) -> dict[str, tuple[tuple[int, ...] | None, type]]:
        """Shape (None = any) and dtype of every key of :meth:`state_dict` but the arms'."""
        n, pop = self.n_slots, self.world.population
        layout: dict[str, tuple[tuple[int, ...] | None, type]] = {
            "format": ((), np.str_), "n_slots": ((), np.int64), "arm_names": ((self.n_arms,), np.str_),
            "rng": ((), np.str_), "requests_served": ((), np.int64), "next_session_id": ((), np.int64),
            "next_shift": ((), np.int64), "next_event_day": ((), np.float64),
            "trend": ((self.catalog.n_leaves,), np.float32), "shopper/taste": (pop.taste.shape, np.float32),
            "shopper/n_purchases": (pop.n_purchases.shape, np.int32),
            "shopper/recent_items": (pop.recent_items.shape, np.int32)}
        for name, (shape, dtype) in self._slot_layout().items():
            layout[f"slot/{name}"] = (shape, dtype)
        request = {"user_id": ((n,), np.int32), "segment": ((n,), np.int8), "surface": ((n,), np.int8),
                   "device": ((n,), np.int8), "query": ((n, QUERY_WORDS), np.int32),
                   "recent_items": ((n, pop.recent_items.shape[1]), np.int32), "t": ((n,), np.float32),
                   "session_step": ((n,), np.int32)}
        for name, spec in request.items():
            layout[f"request/{name}"] = spec
        for name, spec in self.candidate_stage.state_layout().items():
            layout[f"candidates/{name}"] = spec
        return layout

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Continue from ``state`` (from :meth:`state_dict` of a simulator of the same world, arms and
        ``n_slots``; e.g. read back with ``np.load(path, allow_pickle=False)``). Every key is checked
        before anything changes: a missing, unexpected or misshapen array raises ValueError naming the
        key, what it holds and what fits. The arrays are copied. If the simulator has a Generator (an
        env's ``np_random``), its state is set in place, so the env and the simulator keep sharing it."""
        state = dict(state)
        layout = self._state_layout()
        if "format" in state and str(state["format"]) != STATE_FORMAT:
            raise ValueError(f"state['format'] is {str(state['format'])!r}; this simulator reads {STATE_FORMAT!r}")
        if "n_slots" in state and np.ndim(state["n_slots"]) == 0 and int(state["n_slots"]) != self.n_slots:
            raise ValueError(f"state['n_slots'] is {int(state['n_slots'])}; this simulator has n_slots = "
                             f"{self.n_slots} (build it with n_slots={int(state['n_slots'])})")
        arm_keys = {k for k in state if k.startswith("arm") and "/" in k}
        missing = sorted(set(layout) - set(state))
        if missing:
            raise ValueError(f"state has no key {missing[0]!r}: a simulator state holds {sorted(layout)}")
        unknown = sorted(set(state) - set(layout) - arm_keys)
        if unknown:
            raise ValueError(f"state key {unknown[0]!r} is not a simulator state key: allowed are {sorted(layout)} "
                             f"and arm<i>/<name> for arms 0..{self.n_arms - 1}")
        for key, (shape, dtype) in layout.items():
            value = np.asarray(state[key])
            fits_shape = value.ndim == len(shape) and all(w is None or w == g for w, g in zip(shape, value.shape))
            if not fits_shape or value.dtype.type is not np.dtype(dtype).type:
                dims = ", ".join("any" if w is None else str(w) for w in shape)
                want = f"({dims},)" if len(shape) == 1 else f"({dims})"
                raise ValueError(f"state[{key!r}] has shape {value.shape} and dtype {value.dtype}; this simulator "
                                 f"(n_slots = {self.n_slots}) needs shape {want} and dtype {np.dtype(dtype).name}")
        names = [str(x) for x in state["arm_names"]]
        if names != [arm.name for arm in self.arms]:
            raise ValueError(f"state['arm_names'] is {names}; this simulator's arms are {[a.name for a in self.arms]}")
        per_arm: list[dict[str, np.ndarray]] = [{} for _ in self.arms]
        for key in arm_keys:
            head, name = key.split("/", 1)
            index = head[3:]
            if not index.isdigit() or int(index) >= self.n_arms:
                raise ValueError(f"state key {key!r} names no arm: this simulator has arms 0..{self.n_arms - 1}")
            per_arm[int(index)][name] = np.array(state[key], copy=True)
        for i, (arm, arm_state) in enumerate(zip(self.arms, per_arm)):
            missing_arm = sorted(set(arm.serving_state()) - set(arm_state))
            if missing_arm:
                raise ValueError(f"state has no key 'arm{i}/{missing_arm[0]}': arm {i} ('{arm.name}') keeps serving "
                                 f"state {sorted(arm.serving_state())}")
        rng_state = json.loads(str(state["rng"]))
        name = rng_state.get("bit_generator") if isinstance(rng_state, dict) else None
        bit_generator = getattr(np.random, str(name), None)
        if not (isinstance(bit_generator, type) and issubclass(bit_generator, np.random.BitGenerator)):
            raise ValueError(f"state['rng'] names bit generator {name!r}, not one of numpy's (PCG64, PCG64DXSM, "
                             "MT19937, Philox, SFC64)")
        for arm, arm_state in zip(self.arms, per_arm):
            arm.load_serving_state(arm_state)
        if self.rng is None or type(self.rng.bit_generator) is not bit_generator:
            self.rng = np.random.Generator(bit_generator())
        self.rng.bit_generator.state = rng_state

        self.requests_served = int(state["requests_served"])
        self.next_session_id = int(state["next_session_id"])
        self._next_shift = int(state["next_shift"])
        self._next_event_day = float(state["next_event_day"])
        self.trend = np.array(state["trend"], copy=True)
        self.taste = np.array(state["shopper/taste"], copy=True)
        self.n_purchases = np.array(state["shopper/n_purchases"], copy=True)
        self.recent_items = np.array(state["shopper/recent_items"], copy=True)
        for name in self._slot_layout():
            setattr(self, name, np.array(state[f"slot/{name}"], copy=True))
        self._user_index, self._device_index = self.user.astype(np.intp), self.device.astype(np.intp)
        self.requests = RequestBatch(**{name: np.array(state[f"request/{name}"], copy=True)
                                        for name in self._REQUEST_FIELDS})
        self._is_search = self.requests.surface.astype(bool)
        self.candidate_stage.load_state_dict({name[len("candidates/"):]: value for name, value in state.items()
                                              if name.startswith("candidates/")})

    # ----------------------------------------------------------------------------------------- requests
    def prepare_requests(self) -> np.ndarray:
        """Draw the next request of every slot (surface, query, recall leaves); returns contexts (N, D)."""
        n = self.n_slots
        u = self.rng.random((n, 5), dtype=np.float32)
        # flags: is a search / the query names the leaf / the query carries a random attribute word
        flags = u[:, :3] < self.query_thresholds
        flags[:, 1:] &= flags[:, :1]
        is_search, names_leaf = flags[:, 0], flags[:, 1]
        drawn = (u.take(self._draw_columns, axis=1) * self._draw_scale).astype(np.int32)  # see _draw_columns
        self.query_words[:, 2] = self._attribute_offset + drawn[:, 0]
        query = self._no_query.copy()
        np.copyto(query, self.query_words, where=flags)

        # Recall leaves: the query's leaf (or a guess within its top category) on search, the latest
        # click's leaf (or a random leaf) on the feed; the shopper leaf was drawn at session start.
        # (A query names a leaf only on search.) Each choice overwrites the one before where it applies.
        context_leaf = drawn[:, 2].copy()
        np.copyto(context_leaf, self.last_leaf, where=self.last_leaf >= self._zero)
        np.copyto(context_leaf, self.intent_top * self._leaf_per_top + drawn[:, 1], where=is_search)
        np.copyto(context_leaf, self.intent, where=names_leaf)
        self.context_leaf = context_leaf

        day = self.requests_served / self._requests_per_day
        t = np.empty(n, dtype=np.float32)
        t.fill(day)
        self._is_search = is_search
        user = self._user_index
        self.requests = RequestBatch(user_id=self.user, segment=self.segment, surface=is_search.view(np.int8),
                                     device=self.device, query=query, recent_items=self.recent_items.take(user, axis=0),
                                     t=t, session_step=self.step_in_session)
        self.contexts = build_contexts(self.static_context, is_search, day, self.step_in_session,
                                       self.n_purchases[user], self.session_clicks, names_leaf)
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

    def serve(self, policy, decoder) -> StepResult:
        """The one request path of every loop driven by a policy (simulate, train, compare, the oracle,
        ab-test, explain): ``policy.act`` on the next contexts gives actions and their propensities,
        ``decoder.decide`` turns the actions into the fusion stage's decisions (an
        :class:`envs.fusion.ActionMapper` for the weighted blend; a stacking or cascade strategy decodes its
        own, see ``envs.strategies``), and :meth:`step` serves them. The result carries the actions and
        propensities, which is all the log writer needs."""
        actions, propensities = policy.act(self.contexts)
        result = self.step(decoder.decide(actions))
        result.actions, result.propensities = actions, propensities
        return result

    def step(self, decisions: np.ndarray, truncate: np.ndarray | None = None) -> StepResult:
        """Serve the pending request of every slot with the fusion stage's ``decisions``: for the weighted
        blend (the default) arm weights (N, A) (rows on the simplex); for another strategy what its
        ``decide`` returns (see ``envs.strategies``).

        ``truncate``: optional (N,) bool, sessions to end after this request whatever their length (an
        outer time limit, e.g. a vector env's ``max_episode_steps``); they count as ``truncated`` unless
        the shopper left, and are replaced by new arrivals like any ended session.
        """
        rng = self.rng
        if rng is None:
            raise RuntimeError("call reset() before step()")
        req, c = self.requests, self.catalog
        day = self.requests_served / self._requests_per_day
        if day >= self._next_event_day:
            self._apply_events(day)
        candidates, excluded = self.candidate_stage.generate(rng, self.context_leaf, self.shopper_leaf)
        arm_scores = self._scorer.score(req, candidates)
        slate, weights = self.fusion.rank(candidates, excluded, arm_scores, self.contexts, decisions, self.slate_size)

        is_search = self._is_search
        utility = self.model.utility(slate, self.coefficients, self.intent, is_search, req.query, self.satiation,
                                     self.trend)
        outcome = self.model.respond(rng, utility, self._device_index)  # (2, N, k): clicks, purchases
        clicks, purchased = outcome[0], outcome[1]  # (indexing, not unpacking: an array's iterator is slow)
        counts = np.add.reduce(outcome, axis=2, dtype=np.int32)
        n_clicks, n_bought = counts[0], counts[1]
        any_counts = counts > self._zero
        clicked, bought = any_counts[0], any_counts[1]
        if np.count_nonzero(n_bought):
            revenue = np.add.reduce(c.price[slate] * purchased, axis=1)
        else:  # nothing bought: the sum of price * 0 is 0 (prices are finite)
            revenue = np.zeros(self.n_slots, dtype=np.float32)
        left = self.model.update_session(rng, utility, self.satiation, self.fatigue, self.leave_bias, clicked, bought)
        if np.count_nonzero(n_clicks):
            self._update_shoppers(slate, clicks, purchased, clicked, n_bought)

        reward_kind = self._reward_kind
        reward = (n_clicks if reward_kind == "clicks" else n_bought if reward_kind == "purchases" else revenue
                  ).astype(np.float32)
        # new arrays rather than in place: the served RequestBatch refers to step_in_session, and an
        # in-place operation on a one-element array costs twice a new one
        self.step_in_session = self.step_in_session + self._one
        self.session_clicks = self.session_clicks + n_clicks
        terminated = left
        truncated = np.greater(self.step_in_session >= self._max_session_steps, left)  # at the limit and not left
        if truncate is not None:
            truncated |= ~left & np.asarray(truncate, dtype=bool)
        request_id = np.arange(self.requests_served, self.requests_served + self.n_slots, dtype=np.int64)
        session_id = self.session_id.copy()
        served_contexts = self.contexts
        self.requests_served += self.n_slots

        done = (terminated | truncated).nonzero()[0]
        final_contexts = served_contexts  # contexts arrays are never changed in place once served
        if len(done) == self.n_slots:  # every session ended (often so with one slot): no row selection
            final_contexts = build_contexts(self.static_context, is_search, self.day, self.step_in_session,
                                            self.n_purchases[self._user_index], self.session_clicks,
                                            served_contexts[:, 13])
            self.start_sessions(done)
        elif len(done):
            final_contexts = served_contexts.copy()
            final_contexts[done] = build_contexts(
                self.static_context[done], is_search[done], self.day, self.step_in_session[done],
                self.n_purchases[self._user_index[done]], self.session_clicks[done], served_contexts[done, 13])
            self.start_sessions(done)
        self.prepare_requests()
        return StepResult(requests=req, contexts=served_contexts, request_id=request_id, session_id=session_id,
                          day=day, candidates=candidates, excluded=excluded, arm_scores=arm_scores,
                          weights=weights, slate=slate, clicks=clicks, purchased=purchased, revenue=revenue,
                          reward=reward, terminated=terminated, truncated=truncated, final_contexts=final_contexts)

    def _row_starts(self, m: int, width: int) -> np.ndarray:
        """(m, 1) int64 start of each row in a flattened (m, width) array, m <= n_slots (cached per width)."""
        starts = self._row_starts_by_width.get(width)
        if starts is None:
            starts = self._row_starts_by_width[width] = (np.arange(self.n_slots, dtype=np.int64) * width)[:, None]
        return starts[:m]

    def _update_shoppers(self, slate: np.ndarray, clicks: np.ndarray, purchased: np.ndarray,
                         clicked: np.ndarray, n_bought: np.ndarray) -> None:
        """Recent items, purchase counts, taste drift toward purchases, trending counts (some request clicked)."""
        rows = clicked.nonzero()[0]
        m = len(rows)
        if m < self.n_slots:
            users, slate_rows, clicks_rows = self._user_index[rows], slate[rows], clicks[rows]
        else:  # every request had a click (often so with one slot): no row selection
            rows, users, slate_rows, clicks_rows = slice(None), self._user_index, slate, clicks
        k, n_recent = slate.shape[1], self.recent_items.shape[1]
        # this slate's clicked items, then the old recent items; -1 entries sorted last, the rest in order
        merged = np.empty((m, k + n_recent), dtype=np.intp)
        merged[:, :k] = self._minus_one_intp
        np.copyto(merged[:, :k], slate_rows, where=clicks_rows)
        merged[:, k:] = self.recent_items.take(users, axis=0)
        order = (merged < self._zero_intp).argsort(axis=1, kind="stable")[:, :n_recent]
        order += self._row_starts(m, k + n_recent)
        latest = merged.ravel()[order]
        self.recent_items[users] = latest
        self.last_leaf[rows] = self._leaf_or_none[latest[:, 0]]
        self.candidate_stage.record_clicks(slate[clicks])
        buy_rows = n_bought.nonzero()[0]
        if len(buy_rows):
            buyers = self.user[buy_rows]
            self.n_purchases[buyers] += n_bought[buy_rows]
            mask = purchased[buy_rows][:, :, None]
            mean_latent = (self.catalog.latent[slate[buy_rows]] * mask).sum(axis=1) / n_bought[buy_rows, None]
            drift = self.scenario.behaviour.taste_drift
            self.taste[buyers] += drift * (mean_latent - self.taste[buyers])
            self.coefficients[buy_rows] = self.model.shopper_coefficients(
                self.taste[buyers], self.world.population.price_sensitivity[buyers])

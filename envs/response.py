"""The shopper response model: examination, clicks, purchases, satiation, fatigue and leaving.

All functions act on B requests at once; a slate is (B, k) item ids, best first.

Utility of slate item i for request b (``behaviour`` parameters in brackets)::

    u = [taste_weight] * taste_b . latent_i / sqrt(d)
      + [quality_weight] * quality_i
      + [intent_weight] * 1{leaf_i == session intent}
      + trend[leaf_i]                                          (scheduled trend shifts)
      - [price_weight] * sensitivity_b * log(price_i / median price of leaf_i)
      - [satiation_weight] * satiation_b[leaf_i]
      + on search only: [query_weight] * relevance(query_b, i) - [search_offtopic_penalty] * 1{relevance == 0}

where relevance is the fraction of the query's words found among the item's words. Attraction is
``sigmoid([attraction_bias] + u)``.

Examination: position-based model, P(examine slot k) = [examination_first] / log2(k + 1) ** decay with
decay = [examination_decay] (+ [mobile_extra_decay] on mobile); a click needs examination and
attraction, drawn independently (Richardson et al. 2007). Or the cascade model (Craswell et al. 2008):
the shopper examines slot 1 with [examination_first], scans down, clicks the first attractive item and
stops, and abandons the scan after each slot with [cascade_abandon].

Purchase given click: ``sigmoid([purchase_bias] + 0.5 * (taste match + quality + intent)
- [purchase_price_weight] * sensitivity * log relative price)``; revenue is the price of what is bought.

Session: satiation_b[leaf] <- [satiation_decay] * satiation_b[leaf] + (share of the slate in leaf);
fatigue_b += [fatigue_step] + [fatigue_repeat] * (mean satiation of the slate's leaves before the
update); the shopper leaves with ``sigmoid(leave_bias[segment] + [fatigue_weight] * fatigue
- [click_engagement] * 1{clicked})``, and after a purchase also with [leave_after_purchase].
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fusionsim.envs.scenario import DEVICES, BehaviourParams
from fusionsim.envs.world import Catalog

MOBILE = DEVICES.index("mobile")


_ONE = np.array(1.0, dtype=np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed in float32: (same shape) float32."""
    return _sigmoid_of_negated(-x)


def _sigmoid_of_negated(minus_x: np.ndarray) -> np.ndarray:
    """:func:`sigmoid` of x given ``minus_x`` = -x (float32 or float64, as x): a new float32 array. The hot
    path negates x for free inside an earlier subtraction, (-a) - b being exactly -(a + b) in IEEE. (New
    arrays throughout: NumPy's in-place operations are slower on one-element arrays.)"""
    return _ONE / (_ONE + np.exp(minus_x.astype(np.float32, copy=False)))


def _typed(value: float, dtype: type) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``: the same numbers as the Python scalar (NumPy casts a Python
    float to the dtype of the array it meets), at about half the cost per operation on a few rows."""
    return np.array(value, dtype=dtype)


@dataclass
class SlateUtility:
    """Per-slot terms for B requests x k slots: ``attraction`` (B, k) float32 in (0, 1), ``satiation``
    (B, k) float32, the shopper's satiation with each slot's leaf before this request, ``satiation_index``
    (B, k) int64, where that leaf's satiation sits in the flattened (B, n_leaves) satiation array, and
    the parts of :attr:`purchase_logit`: ``purchase_terms`` (B, k) float32 (taste, quality and price),
    ``intent`` (B, k) float64 (1 for an item of the session's intent leaf, else 0), and the 0-d float64
    ``purchase_intent_weight`` (0.5) and ``purchase_bias``."""

    attraction: np.ndarray
    satiation: np.ndarray
    satiation_index: np.ndarray
    purchase_terms: np.ndarray
    intent: np.ndarray
    purchase_intent_weight: np.ndarray
    purchase_bias: np.ndarray

    @functools.cached_property
    def purchase_logit(self) -> np.ndarray:
        """(B, k) float64: the logit of buying if clicked, computed on first use (only clicked slates need it)."""
        logit = self.intent * self.purchase_intent_weight
        logit += self.purchase_terms
        logit += self.purchase_bias
        return logit


class ShopperModel:
    """Vectorised response of shoppers to slates; holds the behaviour parameters and the catalog."""

    def __init__(self, params: BehaviourParams, catalog: Catalog) -> None:
        self.params = params
        self.catalog = catalog
        self.inv_sqrt_d = np.float32(1.0 / np.sqrt(catalog.latent.shape[1]))
        # per item: [latent / sqrt(d), quality, log relative price], the inputs of shopper_coefficients
        self._item_features = np.concatenate([catalog.latent * self.inv_sqrt_d, catalog.quality[:, None],
                                              catalog.log_relative_price[:, None]], axis=1).astype(np.float32)
        self._examination: dict[int, np.ndarray] = {}
        # the item's words that a query word can match, in query order: top, leaf, attribute
        self._query_tokens = np.ascontiguousarray(catalog.tokens[:, [0, 1, 3]])
        # utility on search by (words in the query, words matched): query_weight * relevance - off-topic penalty
        n_words, hits = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
        relevance = hits / np.maximum(n_words, 1)
        self._search_bonus = (params.query_weight * relevance
                              - params.search_offtopic_penalty * (hits == 0)).astype(np.float32)
        self._leaf = catalog.leaf.astype(np.int64)  # int64: the dtype of the indices it becomes
        self._row_offsets: dict[tuple[int, int, int], np.ndarray] = {}
        self._repeat_per_slot: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._click_draws: dict[int, int] = {}
        # Parameters as 0-d arrays of the dtype each meets: float64 where it multiplies a bool array (NumPy
        # makes bool * Python float float64) or joins a float64 sum, float32 against float32 arrays.
        p = params
        self._intent_weight, self._half = _typed(p.intent_weight, np.float64), _typed(0.5, np.float64)
        self._satiation_weight = _typed(p.satiation_weight, np.float32)
        self._purchase_bias, self._minus_attraction_bias = _typed(p.purchase_bias, np.float64), _typed(
            -p.attraction_bias, np.float64)
        self._fatigue_step, self._satiation_decay = _typed(p.fatigue_step, np.float32), _typed(
            p.satiation_decay, np.float32)
        self._fatigue_weight, self._click_engagement = _typed(p.fatigue_weight, np.float32), _typed(
            p.click_engagement, np.float64)
        self._leave_after_purchase = _typed(p.leave_after_purchase, np.float32)
        # (attraction, purchase) weights of shopper_coefficients: of each taste dimension, the quality and the price
        d = catalog.latent.shape[1]
        self._coefficient_weights = np.array([[p.taste_weight, 0.5]] * d + [[p.quality_weight, 0.5]]
                                             + [[-p.price_weight, -p.purchase_price_weight]], dtype=np.float32)
        self._zero = np.array(0, dtype=np.int32)

    def examination(self, device: np.ndarray, k: int) -> np.ndarray:
        """P(examine slot) (B, k) float32 under the position-based model."""
        table = self._examination.get(k)
        if table is None:
            p = self.params
            decay = p.examination_decay + p.mobile_extra_decay * (np.arange(len(DEVICES)) == MOBILE)
            base = np.log2(np.arange(2, k + 2, dtype=np.float64))
            table = self._examination[k] = (p.examination_first * base[None, :] ** -decay[:, None]).astype(np.float32)
        return table.take(device, axis=0)

    def shopper_coefficients(self, taste: np.ndarray, sensitivity: np.ndarray) -> np.ndarray:
        """Per-shopper weights (B, d + 2, 2) float32 that turn an item's [latent / sqrt(d), quality, log
        relative price] into its (attraction, purchase) terms of taste, quality and price in one matmul,
        for shoppers with ``taste`` (B, d) and price ``sensitivity`` (B,), both float32."""
        b, d = taste.shape
        # [taste, 1, sensitivity] (B, d + 2) times the (d + 2, 2) weights of each: one product (weight * 1
        # is the weight exactly)
        shopper = np.empty((b, d + 2), dtype=np.float32)
        shopper[:, :d] = taste
        shopper[:, d] = _ONE
        shopper[:, d + 1] = sensitivity
        return shopper[:, :, None] * self._coefficient_weights

    def utility(self, slate: np.ndarray, coefficients: np.ndarray, intent_leaf: np.ndarray, is_search: np.ndarray,
                query: np.ndarray, satiation: np.ndarray, trend: np.ndarray) -> SlateUtility:
        """Attraction and purchase logits of ``slate`` (B, k) for shoppers with ``coefficients`` (B, d + 2, 2)
        from :meth:`shopper_coefficients`, session ``intent_leaf`` (B,), ``is_search`` (B,) bool, ``query``
        (B, 3) word ids (-1 = none), ``satiation`` (B, n_leaves) and the leaves' ``trend`` (n_leaves,)."""
        b, k = slate.shape
        items = slate.astype(np.intp)  # gathers with intp indices skip a cast
        leaf = self._leaf[items]
        # (2, B, k): the attraction and purchase terms of taste, quality and price, each plane contiguous
        terms = np.matmul(self._item_features.take(items, axis=0), coefficients).transpose(2, 0, 1).copy()
        intent = (leaf == intent_leaf[:, None]).astype(np.float64)  # 0/1, as NumPy would cast the bools
        satiation_index = leaf + self._offsets(b, k, satiation.shape[1])
        sat = satiation.ravel()[satiation_index]
        # u = terms[0] + trend[leaf] + intent_weight * intent - satiation_weight * sat, term by term in the
        # same dtypes and order (float32 sums, float64 from the intent term on)
        item_terms = trend[leaf]
        item_terms += terms[0]
        u = intent * self._intent_weight
        u += item_terms
        u -= sat * self._satiation_weight
        search = is_search.nonzero()[0]
        if len(search) == b:  # every request is a search (often so with one slot): no row selection
            hits, n_words = self._query_hits(query, items)
            u += self._search_bonus[n_words[:, None], hits]
        elif len(search):
            hits, n_words = self._query_hits(query[search], items[search])
            u[search] += self._search_bonus[n_words[:, None], hits]
        attraction = _sigmoid_of_negated(np.subtract(self._minus_attraction_bias, u, out=u))  # sigmoid(bias + u)
        return SlateUtility(attraction=attraction, satiation=sat, satiation_index=satiation_index,
                            purchase_terms=terms[1], intent=intent, purchase_intent_weight=self._half,
                            purchase_bias=self._purchase_bias)

    def _offsets(self, b: int, k: int, width: int) -> np.ndarray:
        """(b, k) int64 start of each row in a flattened (b, width) array, repeated k times (an operand of the
        shape it meets takes NumPy's fast path)."""
        offsets = self._row_offsets.get((b, k, width))
        if offsets is None:
            offsets = self._row_offsets[(b, k, width)] = np.repeat((np.arange(b) * width)[:, None], k, axis=1)
        return offsets

    def relevance(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fraction of the query's words (B, 3) = [top word, leaf word, attribute word] (-1 = absent) found
        among the words of each item (B, k): (B, k) float32; 0 for an empty query."""
        hits, n_words = self._query_hits(query, items)
        return (hits / np.maximum(n_words, 1)[:, None]).astype(np.float32)

    def _query_hits(self, query: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matching words per item (B, k) int and words per query (B,) int."""
        hits = np.add.reduce(self._query_tokens.take(items, axis=0) == query[:, None, :], axis=2)
        return hits, np.add.reduce(query >= self._zero, axis=1)

    def click_draws(self, k: int) -> int:
        """Uniform draws per request that sampling clicks on k slots takes."""
        n = self._click_draws.get(k)
        if n is None:
            n = self._click_draws[k] = k if self.params.click_model == "pbm" else 2 * k + 1
        return n

    def clicks(self, rng: np.random.Generator, attraction: np.ndarray, device: np.ndarray) -> np.ndarray:
        """Sampled clicks (B, k) bool under the scenario's click model."""
        b, k = attraction.shape
        clicks = np.empty((b, k), dtype=bool)
        self._clicks(rng.random((b, self.click_draws(k)), dtype=np.float32), attraction, device, clicks)
        return clicks

    def purchases(self, rng: np.random.Generator, clicks: np.ndarray, purchase_logit: np.ndarray) -> np.ndarray:
        """Sampled purchases (B, k) bool: only clicked items can be bought."""
        return clicks & (rng.random(clicks.shape, dtype=np.float32) < sigmoid(purchase_logit))

    def respond(self, rng: np.random.Generator, utility: SlateUtility, device: np.ndarray) -> np.ndarray:
        """Clicks and purchases for a slate, as one (2, B, k) bool array: [0] the clicks, [1] the purchases
        (as :meth:`clicks` then :meth:`purchases`, from one block of uniform draws)."""
        b, k = utility.attraction.shape
        n_click = self.click_draws(k)
        draws = rng.random((b, n_click + k), dtype=np.float32)
        outcome = np.zeros((2, b, k), dtype=bool)
        clicks = outcome[0]
        self._clicks(draws[:, :n_click], utility.attraction, device, clicks)
        if np.count_nonzero(clicks):  # only a clicked item can be bought: without a click there is nothing to do
            purchases = outcome[1]
            np.less(draws[:, n_click:], sigmoid(utility.purchase_logit), out=purchases)
            purchases &= clicks
        return outcome

    def _clicks(self, draws: np.ndarray, attraction: np.ndarray, device: np.ndarray, out: np.ndarray) -> None:
        """Write the clicks (B, k) bool of ``draws`` (B, click_draws(k)) into ``out``."""
        b, k = attraction.shape
        if self.params.click_model == "pbm":
            examined_and_attracted = self.examination(device, k)
            examined_and_attracted *= attraction
            np.less(draws, examined_and_attracted, out=out)
            return
        attractive = draws[:, :k] < attraction
        go_on = ~attractive & (draws[:, k:2 * k] >= self.params.cascade_abandon)
        reached = np.empty((b, k), dtype=bool)
        reached[:, 0] = draws[:, 2 * k] < self.params.examination_first
        reached[:, 1:] = reached[:, :1] & np.logical_and.accumulate(go_on[:, :-1], axis=1)
        np.logical_and(reached, attractive, out=out)

    def update_session(self, rng: np.random.Generator, utility: SlateUtility, satiation: np.ndarray,
                       fatigue: np.ndarray, leave_bias: np.ndarray, clicked: np.ndarray,
                       bought: np.ndarray) -> np.ndarray:
        """Update ``satiation`` (B, n_leaves) and ``fatigue`` (B,) in place after showing the slate that
        ``utility`` describes; return who leaves (B,) bool. ``leave_bias`` (B,) is the segment's;
        ``clicked``/``bought`` (B,) bool say whether the request had a click/purchase."""
        k = utility.satiation.shape[1]
        per_slot = self._repeat_per_slot.get(k)
        if per_slot is None:
            per_slot = self._repeat_per_slot[k] = (_typed(self.params.fatigue_repeat / k, np.float32),
                                                   _typed(1.0 / k, np.float32))
        repeat, share = per_slot
        # fatigue += ..., written as a copy: an in-place operation on a one-element array costs more
        fatigue[...] = fatigue + (self._fatigue_step + repeat * np.add.reduce(utility.satiation, axis=1))
        satiation *= self._satiation_decay
        np.add.at(satiation.ravel(), utility.satiation_index.ravel(), share)
        # leave_p = sigmoid(leave_bias + fatigue_weight * fatigue - click_engagement * clicked)
        leave_p = _sigmoid_of_negated(self._click_engagement * clicked - (leave_bias + self._fatigue_weight * fatigue))
        draws = rng.random((len(fatigue), 2), dtype=np.float32)
        left = draws[:, 0] < leave_p
        if np.count_nonzero(bought):  # only a purchase can add a reason to leave
            left |= bought & (draws[:, 1] < self._leave_after_purchase)
        return left

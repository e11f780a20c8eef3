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

from dataclasses import dataclass

import numpy as np

from fusionsim.envs.scenario import DEVICES, BehaviourParams
from fusionsim.envs.world import Catalog

MOBILE = DEVICES.index("mobile")


_ONE = np.array(1.0, dtype=np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), computed in float32: (same shape) float32."""
    return _ONE / (_ONE + np.exp(-x, dtype=np.float32))


def _typed(value: float, dtype: type) -> np.ndarray:
    """``value`` as a 0-d array of ``dtype``: the same numbers as the Python scalar (NumPy casts a Python
    float to the dtype of the array it meets), at about half the cost per operation on a few rows."""
    return np.array(value, dtype=dtype)


@dataclass
class SlateUtility:
    """Per-slot terms for B requests x k slots: ``attraction`` (B, k) float32 in (0, 1), ``purchase_logit``
    (B, k) float32 (the logit of buying if clicked), ``satiation`` (B, k) float32, the shopper's satiation
    with each slot's leaf before this request, and ``satiation_index`` (B, k) int64, where that leaf's
    satiation sits in the flattened (B, n_leaves) satiation array."""

    attraction: np.ndarray
    purchase_logit: np.ndarray
    satiation: np.ndarray
    satiation_index: np.ndarray


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
        self._leaf = catalog.leaf
        self._row_offsets: dict[tuple[int, int], np.ndarray] = {}
        self._repeat_per_slot: dict[int, np.ndarray] = {}
        # Parameters as 0-d arrays of the dtype each meets: float64 where it multiplies a bool array (NumPy
        # makes bool * Python float float64) or joins a float64 sum, float32 against float32 arrays.
        p = params
        self._intent_weight, self._half = _typed(p.intent_weight, np.float64), _typed(0.5, np.float64)
        self._satiation_weight = _typed(p.satiation_weight, np.float32)
        self._purchase_bias, self._attraction_bias = _typed(p.purchase_bias, np.float64), _typed(
            p.attraction_bias, np.float64)
        self._fatigue_step, self._satiation_decay = _typed(p.fatigue_step, np.float32), _typed(
            p.satiation_decay, np.float32)
        self._fatigue_weight, self._click_engagement = _typed(p.fatigue_weight, np.float32), _typed(
            p.click_engagement, np.float64)
        self._leave_after_purchase = _typed(p.leave_after_purchase, np.float32)
        self._zero = np.array(0, dtype=np.int32)

    def examination(self, device: np.ndarray, k: int) -> np.ndarray:
        """P(examine slot) (B, k) float32 under the position-based model."""
        table = self._examination.get(k)
        if table is None:
            p = self.params
            decay = p.examination_decay + p.mobile_extra_decay * (np.arange(len(DEVICES)) == MOBILE)
            base = np.log2(np.arange(2, k + 2, dtype=np.float64))
            table = self._examination[k] = (p.examination_first * base[None, :] ** -decay[:, None]).astype(np.float32)
        return table[device]

    def shopper_coefficients(self, taste: np.ndarray, sensitivity: np.ndarray) -> np.ndarray:
        """Per-shopper weights (B, d + 2, 2) float32 that turn an item's [latent / sqrt(d), quality, log
        relative price] into its (attraction, purchase) terms of taste, quality and price in one matmul."""
        p = self.params
        b, d = taste.shape
        coef = np.empty((b, d + 2, 2), dtype=np.float32)
        coef[:, :d, 0] = p.taste_weight * taste
        coef[:, :d, 1] = 0.5 * taste
        coef[:, d, 0] = p.quality_weight
        coef[:, d, 1] = 0.5
        coef[:, d + 1, 0] = -p.price_weight * sensitivity
        coef[:, d + 1, 1] = -p.purchase_price_weight * sensitivity
        return coef

    def utility(self, slate: np.ndarray, coefficients: np.ndarray, intent_leaf: np.ndarray, is_search: np.ndarray,
                query: np.ndarray, satiation: np.ndarray, trend: np.ndarray) -> SlateUtility:
        """Attraction and purchase logits of ``slate`` (B, k) for shoppers with ``coefficients`` (B, d + 2, 2)
        from :meth:`shopper_coefficients`, session ``intent_leaf`` (B,), ``is_search`` (B,) bool, ``query``
        (B, 3) word ids (-1 = none), ``satiation`` (B, n_leaves) and the leaves' ``trend`` (n_leaves,)."""
        leaf = self._leaf[slate]
        terms = np.matmul(self._item_features[slate], coefficients)  # (B, k, 2)
        intent = leaf == intent_leaf[:, None]
        satiation_index = leaf + self._offsets(len(leaf), satiation.shape[1])
        sat = satiation.ravel()[satiation_index]
        u = terms[:, :, 0] + trend[leaf] + self._intent_weight * intent - self._satiation_weight * sat
        search = is_search.nonzero()[0]
        if len(search) == len(slate):  # every request is a search (often so with one slot): no row selection
            hits, n_words = self._query_hits(query, slate)
            u += self._search_bonus[n_words[:, None], hits]
        elif len(search):
            hits, n_words = self._query_hits(query[search], slate[search])
            u[search] += self._search_bonus[n_words[:, None], hits]
        purchase_logit = terms[:, :, 1] + self._half * intent + self._purchase_bias
        return SlateUtility(attraction=sigmoid(self._attraction_bias + u), purchase_logit=purchase_logit, satiation=sat,
                            satiation_index=satiation_index)

    def _offsets(self, b: int, width: int) -> np.ndarray:
        """(b, 1) int64 start of each row in a flattened (b, width) array."""
        offsets = self._row_offsets.get((b, width))
        if offsets is None:
            offsets = self._row_offsets[(b, width)] = (np.arange(b) * width)[:, None]
        return offsets

    def relevance(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Fraction of the query's words (B, 3) = [top word, leaf word, attribute word] (-1 = absent) found
        among the words of each item (B, k): (B, k) float32; 0 for an empty query."""
        hits, n_words = self._query_hits(query, items)
        return (hits / np.maximum(n_words, 1)[:, None]).astype(np.float32)

    def _query_hits(self, query: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Matching words per item (B, k) int and words per query (B,) int."""
        hits = np.add.reduce(self._query_tokens[items] == query[:, None, :], axis=2)
        return hits, np.add.reduce(query >= self._zero, axis=1)

    def click_draws(self, k: int) -> int:
        """Uniform draws per request that sampling clicks on k slots takes."""
        return k if self.params.click_model == "pbm" else 2 * k + 1

    def clicks(self, rng: np.random.Generator, attraction: np.ndarray, device: np.ndarray) -> np.ndarray:
        """Sampled clicks (B, k) bool under the scenario's click model."""
        b, k = attraction.shape
        return self._clicks(rng.random((b, self.click_draws(k)), dtype=np.float32), attraction, device)

    def purchases(self, rng: np.random.Generator, clicks: np.ndarray, purchase_logit: np.ndarray) -> np.ndarray:
        """Sampled purchases (B, k) bool: only clicked items can be bought."""
        return clicks & (rng.random(clicks.shape, dtype=np.float32) < sigmoid(purchase_logit))

    def respond(self, rng: np.random.Generator, utility: SlateUtility, device: np.ndarray,
                ) -> tuple[np.ndarray, np.ndarray]:
        """Clicks and purchases (B, k) bool for a slate (as :meth:`clicks` then :meth:`purchases`, from one
        block of uniform draws)."""
        b, k = utility.attraction.shape
        n_click = self.click_draws(k)
        draws = rng.random((b, n_click + k), dtype=np.float32)
        clicks = self._clicks(draws[:, :n_click], utility.attraction, device)
        return clicks, clicks & (draws[:, n_click:] < sigmoid(utility.purchase_logit))

    def _clicks(self, draws: np.ndarray, attraction: np.ndarray, device: np.ndarray) -> np.ndarray:
        b, k = attraction.shape
        if self.params.click_model == "pbm":
            return draws < self.examination(device, k) * attraction
        attractive = draws[:, :k] < attraction
        go_on = ~attractive & (draws[:, k:2 * k] >= self.params.cascade_abandon)
        reached = np.empty((b, k), dtype=bool)
        reached[:, 0] = draws[:, 2 * k] < self.params.examination_first
        reached[:, 1:] = reached[:, :1] & np.logical_and.accumulate(go_on[:, :-1], axis=1)
        return reached & attractive

    def update_session(self, rng: np.random.Generator, utility: SlateUtility, satiation: np.ndarray,
                       fatigue: np.ndarray, leave_bias: np.ndarray, clicked: np.ndarray,
                       bought: np.ndarray) -> np.ndarray:
        """Update ``satiation`` (B, n_leaves) and ``fatigue`` (B,) in place after showing the slate that
        ``utility`` describes; return who leaves (B,) bool. ``leave_bias`` (B,) is the segment's;
        ``clicked``/``bought`` (B,) bool say whether the request had a click/purchase."""
        k = utility.satiation.shape[1]
        repeat = self._repeat_per_slot.get(k)
        if repeat is None:
            repeat = self._repeat_per_slot[k] = _typed(self.params.fatigue_repeat / k, np.float32)
        fatigue += self._fatigue_step + repeat * np.add.reduce(utility.satiation, axis=1)
        satiation *= self._satiation_decay
        np.add.at(satiation.ravel(), utility.satiation_index.ravel(), np.float32(1.0 / k))
        leave_p = sigmoid(leave_bias + self._fatigue_weight * fatigue - self._click_engagement * clicked)
        draws = rng.random((len(fatigue), 2), dtype=np.float32)
        return (draws[:, 0] < leave_p) | (bought & (draws[:, 1] < self._leave_after_purchase))

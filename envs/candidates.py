"""The candidate stage (recall layer): C candidate items per request, with no Python loop per request.

Each request's C candidates come in four blocks, in this order:

1. *context*: items of the query's leaf category on search, of the last clicked item's leaf on the feed;
2. *shopper*: items of a leaf from the shopper's history (always a different leaf than block 1);
3. *trending*: items from the trending list (top items by decayed click count);
4. *random*: items from the rest of the catalog.

Every block is a window of consecutive entries of a random permutation of its pool, stored twice in a
row so a window never wraps; so items within a block are distinct, blocks 1 and 2 are disjoint (different
leaves), and blocks 3 and 4 are disjoint. Items of blocks 3 and 4 that belong to the leaf of block 1 or
2 are marked ``excluded`` (those leaves are already covered), so the valid candidates of a request are
all distinct. The pools are rebuilt every ``candidates.refresh_days`` (new launches enter then).
"""

from __future__ import annotations

import numpy as np

from fusionsim.envs.scenario import Scenario
from fusionsim.envs.world import Catalog

N_PERMUTATIONS = 4
"""Random orders kept per pool; each request picks one per block."""


def _doubled_permutations(rng: np.random.Generator, items: np.ndarray, group: np.ndarray, n_groups: int,
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """N_PERMUTATIONS random orders of ``items`` within each group, each group's order written twice.

    ``items`` (n,) must be sorted by ``group`` (n,). Returns ``pool`` (N_PERMUTATIONS * 2n,) int32,
    ``base`` (n_groups, N_PERMUTATIONS) int64 where group g's r-th doubled order starts, and the group
    sizes (n_groups,) int64.
    """
    n = len(items)
    sizes = np.bincount(group, minlength=n_groups).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    pos_group = np.repeat(np.arange(n_groups), 2 * sizes)
    within = np.arange(2 * n, dtype=np.int64) - 2 * offsets[pos_group]
    src = offsets[pos_group] + within % np.maximum(sizes[pos_group], 1)
    pools = []
    for _ in range(N_PERMUTATIONS):
        order = np.lexsort((rng.random(n), group))
        pools.append(items[order][src])
    base = (2 * offsets)[:, None] + (2 * n) * np.arange(N_PERMUTATIONS, dtype=np.int64)[None, :]
    return np.concatenate(pools).astype(np.int32), base, sizes


class CandidateStage:
    """Recall layer of the simulated shop; state: decayed click counts and the pools built from them.

    Args:
        scenario: block sizes, trending list size and half-life, refresh period.
        catalog: the items (sorted by leaf, then launch day).
    """

    def __init__(self, scenario: Scenario, catalog: Catalog) -> None:
        self.catalog = catalog
        self.params = scenario.candidates
        self.block_sizes = np.array([scenario.context_block, scenario.shopper_block,
                                     scenario.trending_block, scenario.random_block], dtype=np.int64)
        self.n_candidates = int(self.block_sizes.sum())
        self._within = np.concatenate([np.arange(m) for m in self.block_sizes]).astype(np.int64)
        self.click_counts = np.zeros(catalog.n_items, dtype=np.float64)
        self.built_day = -np.inf

    def reset(self, rng: np.random.Generator, initial_counts: np.ndarray, day: float) -> None:
        """Start over with ``initial_counts`` (n_items,) decayed click counts and build the pools."""
        self.click_counts = initial_counts.astype(np.float64, copy=True)
        self.built_day = day
        self._build(rng, day)

    def record_clicks(self, items: np.ndarray) -> None:
        """Count clicked item ids (m,) toward the trending list of the next rebuild."""
        np.add.at(self.click_counts, items, 1.0)

    @property
    def next_rebuild_day(self) -> float:
        return self.built_day + self.params.refresh_days

    def maybe_rebuild(self, rng: np.random.Generator, day: float) -> bool:
        """Rebuild the pools if ``refresh_days`` have passed since the last build; True if rebuilt."""
        if day < self.next_rebuild_day:
            return False
        self.click_counts *= 0.5 ** ((day - self.built_day) / self.params.trending_half_life_days)
        self.built_day = day
        self._build(rng, day)
        return True

    def _build(self, rng: np.random.Generator, day: float) -> None:
        catalog = self.catalog
        on_sale = np.flatnonzero(catalog.launch_day <= day).astype(np.int32)
        leaf_pool, leaf_base, leaf_sizes = _doubled_permutations(rng, on_sale, catalog.leaf[on_sale],
                                                                 catalog.n_leaves)

        size = self.params.trending_size
        jitter = rng.random(len(on_sale)) * 1e-9  # random order among equal counts
        top = np.argpartition(-(self.click_counts[on_sale] + jitter), size - 1)[:size]
        is_trending = np.zeros(len(on_sale), dtype=bool)
        is_trending[top] = True
        group = (~is_trending).astype(np.int64)  # 0 = trending, 1 = the rest
        order = np.argsort(group, kind="stable")
        rest_pool, rest_base, rest_sizes = _doubled_permutations(rng, on_sale[order], group[order], 2)
        self.trending_list = on_sale[is_trending]
        self.pool = np.concatenate([leaf_pool, rest_pool])
        # One table for all blocks: rows 0..L-1 are the leaves, row L the trending list, row L+1 the rest.
        self.segment_base = np.concatenate([leaf_base, rest_base + len(leaf_pool)])
        self.segment_size = np.concatenate([leaf_sizes, rest_sizes])

    def generate(self, rng: np.random.Generator, context_leaf: np.ndarray, shopper_leaf: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates for B requests with the given context and shopper leaves (B,) int: item ids (B, C)
        int32 and ``excluded`` (B, C) bool (blocks 3-4 items of the block 1-2 leaves; never shown).

        Where ``shopper_leaf`` equals ``context_leaf`` (or is -1), a random other leaf is used instead.
        """
        n_leaves = self.catalog.n_leaves
        b = len(context_leaf)
        u = rng.random((b, 9))
        other = (context_leaf + 1 + (u[:, 8] * (n_leaves - 1)).astype(np.int32)) % n_leaves
        segment = np.empty((b, 4), dtype=np.int64)
        segment[:, 0] = context_leaf
        segment[:, 1] = np.where((shopper_leaf == context_leaf) | (shopper_leaf < 0), other, shopper_leaf)
        segment[:, 2] = n_leaves
        segment[:, 3] = n_leaves + 1
        perm = (u[:, 4:8] * N_PERMUTATIONS).astype(np.int64)
        starts = self.segment_base[segment, perm] + (u[:, :4] * self.segment_size[segment]).astype(np.int64)
        positions = np.repeat(starts, self.block_sizes, axis=1)
        positions += self._within
        items = self.pool[positions]
        excluded = np.zeros(items.shape, dtype=bool)
        head = int(self.block_sizes[0] + self.block_sizes[1])
        tail_leaf = self.catalog.leaf[items[:, head:]]
        if self.block_sizes[0]:
            excluded[:, head:] |= tail_leaf == segment[:, :1]
        if self.block_sizes[1]:
            excluded[:, head:] |= tail_leaf == segment[:, 1:2]
        return items, excluded

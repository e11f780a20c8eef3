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
        # per-candidate constants as (1, C) rows: an operand of the same number of dimensions as the
        # (B, C) arrays it meets takes NumPy's fast path when B = 1 (a (C,) one broadcasts)
        self._within = np.concatenate([np.arange(m) for m in self.block_sizes]).astype(np.int64)[None, :]
        self.click_counts = np.zeros(catalog.n_items, dtype=np.float64)
        self.built_day = -np.inf
        # constants of generate(), typed as the arrays they meet (0-d arrays: cheaper than Python scalars)
        self._zero = np.array(0, dtype=np.int32)
        # (leaf + offset) -> (leaf + 1 + offset) % n_leaves for offsets in [0, n_leaves - 2]: a random other leaf
        self._next_leaf = (np.arange(2 * catalog.n_leaves - 2) + 1) % catalog.n_leaves
        # scales of the uniform draws in columns 4-8: a permutation per block, the offset of the other leaf
        self._pick_scale = np.array([[N_PERMUTATIONS] * 4 + [catalog.n_leaves - 1]], dtype=np.float64)
        self._head = int(self.block_sizes[0] + self.block_sizes[1])
        self._head_blocks = (bool(self.block_sizes[0]), bool(self.block_sizes[1]))
        self._segments: dict[int, np.ndarray] = {}

    def reset(self, rng: np.random.Generator, initial_counts: np.ndarray, day: float) -> None:
        """Start over with ``initial_counts`` (n_items,) decayed click counts and build the pools."""
        self.click_counts = initial_counts.astype(np.float64, copy=True)
        self.built_day = day
        self._build(rng, day)

    def record_clicks(self, items: np.ndarray) -> None:
        """Count clicked item ids (m,) toward the trending list of the next rebuild."""
        np.add.at(self.click_counts, items, 1.0)

    def state_dict(self) -> dict[str, np.ndarray]:
        """The stage's mutable state as arrays (copies): ``click_counts`` (n_items,) float64 decayed click
        counts, ``built_day`` 0-d float64, and the pools of the last build: ``pool`` (P,) int32,
        ``segment_base`` (n_leaves + 2, N_PERMUTATIONS) int64, ``segment_size`` (n_leaves + 2,) int64,
        ``trending_list`` (trending_size,) int32."""
        return {"click_counts": self.click_counts.copy(), "built_day": np.array(self.built_day, dtype=np.float64),
                "pool": self.pool.copy(), "segment_base": self.segment_base.copy(),
                "segment_size": self.segment_size.copy(), "trending_list": self.trending_list.copy()}

    def state_layout(self) -> dict[str, tuple[tuple[int | None, ...], type]]:
        """Shape (None = any length) and dtype of each array of :meth:`state_dict`."""
        groups = self.catalog.n_leaves + 2
        return {"click_counts": ((self.catalog.n_items,), np.float64), "built_day": ((), np.float64),
                "pool": ((None,), np.int32), "segment_base": ((groups, N_PERMUTATIONS), np.int64),
                "segment_size": ((groups,), np.int64), "trending_list": ((None,), np.int32)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state_dict` (shapes are checked by the caller, see ``BatchedSimulator``)."""
        self.click_counts = np.array(state["click_counts"], dtype=np.float64, copy=True)
        self.built_day = float(state["built_day"])
        self._set_pools(np.array(state["pool"], copy=True), np.array(state["segment_base"], copy=True),
                        np.array(state["segment_size"], copy=True), np.array(state["trending_list"], copy=True))

    def _set_pools(self, pool: np.ndarray, segment_base: np.ndarray, segment_size: np.ndarray,
                   trending_list: np.ndarray) -> None:
        """Install the pools of a build, and the tables generate() derives from them: the leaf of each pool
        entry (P,) int64 and the segment sizes as float64 (the dtype of the draws they scale)."""
        self.pool, self.segment_base, self.segment_size, self.trending_list = pool, segment_base, segment_size, \
            trending_list
        self._pool_leaf = self.catalog.leaf[pool].astype(np.int64)  # compared with int64 segment rows
        self._segment_size_f64 = segment_size.astype(np.float64)

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
        # One table for all blocks: rows 0..L-1 are the leaves, row L the trending list, row L+1 the rest.
        self._set_pools(np.concatenate([leaf_pool, rest_pool]), np.concatenate([leaf_base, rest_base + len(leaf_pool)]),
                        np.concatenate([leaf_sizes, rest_sizes]), on_sale[is_trending])

    def generate(self, rng: np.random.Generator, context_leaf: np.ndarray, shopper_leaf: np.ndarray,
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates for B requests with the given context and shopper leaves (B,) int: item ids (B, C)
        int32 and ``excluded`` (B, C) bool (blocks 3-4 items of the block 1-2 leaves; never shown).

        Where ``shopper_leaf`` equals ``context_leaf`` (or is -1), a random other leaf is used instead.
        """
        b = len(context_leaf)
        u = rng.random((b, 9))
        picks = (u[:, 4:] * self._pick_scale).astype(np.int64)  # (B, 5): permutation per block, other-leaf offset
        other = self._next_leaf[picks[:, 4] + context_leaf]
        segment = self._segment_buffer(b)  # columns 2 and 3 hold the trending and rest rows already
        segment[:, 0] = context_leaf
        shopper = segment[:, 1]
        shopper[:] = shopper_leaf
        np.copyto(shopper, other, where=(shopper_leaf == context_leaf) | (shopper_leaf < self._zero))
        starts = self.segment_base[segment, picks[:, :4]]
        starts += (u[:, :4] * self._segment_size_f64[segment]).astype(np.int64)
        positions = starts.repeat(self.block_sizes, axis=1)
        positions += self._within
        items = self.pool[positions]
        # blocks 3-4 items of the block 1-2 leaves (the leaves of blocks 1 and 2 are the first two segments)
        excluded = np.zeros(items.shape, dtype=bool)
        tail_leaf = self._pool_leaf[positions[:, self._head:]]
        context_block, shopper_block = self._head_blocks
        if context_block and shopper_block:
            np.logical_or(tail_leaf == segment[:, :1], tail_leaf == segment[:, 1:2], out=excluded[:, self._head:])
        elif context_block or shopper_block:
            np.equal(tail_leaf, segment[:, :1] if context_block else segment[:, 1:2], out=excluded[:, self._head:])
        return items, excluded

    def _segment_buffer(self, b: int) -> np.ndarray:
        """A (b, 4) int64 work array whose columns 2 and 3 are the trending and rest rows (n_leaves, n_leaves + 1)."""
        buffer = self._segments.get(b)
        if buffer is None:
            buffer = self._segments[b] = np.empty((b, 4), dtype=np.int64)
            buffer[:, 2] = self.catalog.n_leaves
            buffer[:, 3] = self.catalog.n_leaves + 1
        return buffer

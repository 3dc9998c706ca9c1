"""Social recommenders: what the user's friends consumed."""

from __future__ import annotations

import numpy as np

from policies.base import NO_ITEM, Feedback, RecommendRequest
from policies.learning import ItemStats, consumed
from policies.registry import register
from policies.selection import available_ids, first_distinct, recent_of, top_global
from policies.slate_policy import SlatePolicy, check_range
from simenv.arrays import ring_push


@register("social")
class SocialPolicy(SlatePolicy):
    """Items the user's friends consumed recently, back-filled by popularity.

    Observes: which item each user consumed and when, and the social graph of the request
    (``request.social``; without one the policy is plain popularity). Learns: each user's last
    ``memory`` consumptions with their ticks, and a consumption count per item. An item's
    social score for a user is the sum over friends who consumed it of
    ``recency ** (ticks since they consumed it)``; items friends consumed more than ``horizon``
    ticks ago do not count. Ties are broken by popularity, then by the tie-break.
    """

    def __init__(
        self,
        memory: int = 10,
        recency: float = 0.9,
        horizon: int = 50,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.memory = int(check_range("memory", memory, 1))
        self.recency = check_range("recency", recency, 0.0, 1.0)
        self.horizon = int(check_range("horizon", horizon, 0))

    def _init_state(self) -> None:
        s = self.spec
        self.hist = np.full((s.n_users, self.memory), NO_ITEM, dtype=np.int64)
        self.hist_tick = np.zeros((s.n_users, self.memory), dtype=np.int64)
        self.hist_ptr = np.zeros(s.n_users, dtype=np.int64)
        self.stats = ItemStats(s.n_items)

    def _learn(self, feedback: Feedback) -> None:
        users, items, _ = consumed(feedback)
        if items.size == 0:
            return
        self.stats.add(items, np.ones(items.size), feedback.tick)
        ticks = np.full(items.size, feedback.tick, dtype=np.int64)
        ring_push(self.hist, self.hist_ptr, users, items, (self.hist_tick, ticks))

    def _friend_items(self, request: RecommendRequest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, item, weight) of every recent consumption by a friend of each request row."""
        graph = request.social
        empty = np.zeros(0, dtype=np.int64)
        if graph is None or request.n == 0:
            return empty, empty, np.zeros(0)
        users = np.asarray(request.users, dtype=np.int64)
        indptr = np.asarray(graph.indptr, dtype=np.int64)
        starts, ends = indptr[users], indptr[users + 1]
        degree = ends - starts
        total = int(degree.sum())
        if total == 0:
            return empty, empty, np.zeros(0)
        row = np.repeat(np.arange(request.n), degree)
        offset = np.arange(total) - np.repeat(np.cumsum(degree) - degree, degree)
        friends = np.asarray(graph.indices, dtype=np.int64)[np.repeat(starts, degree) + offset]
        items = self.hist[friends]  # (total, memory)
        age = request.tick - self.hist_tick[friends]
        ok = (items >= 0) & (age <= self.horizon) & (age >= 0)
        ok &= request.available[np.where(items >= 0, items, 0)]
        weight = self.recency ** age.astype(np.float64)
        row_b = np.broadcast_to(row[:, None], items.shape)
        return row_b[ok], items[ok], weight[ok]

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        avail = available_ids(request.available)
        recent = recent_of(request)
        ties = self._ties(avail.size, request.n)
        popular = top_global(self.stats.pulls, avail, recent, n, ties)
        row, item, weight = self._friend_items(request)
        if item.size == 0:
            return popular
        m = self.spec.n_items
        key, inv = np.unique(row * m + item, return_inverse=True)
        score = np.bincount(inv, weights=weight, minlength=key.size)
        row, item = key // m, key % m
        pop = self.stats.pulls[item]
        tie = ties.key(row, np.searchsorted(avail, item))
        order = np.lexsort((tie, -pop, -score, row))
        row, item = row[order], item[order]
        starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
        rank = np.arange(row.size) - np.repeat(starts, np.diff(np.r_[starts, row.size]))
        width = n + recent.shape[1]
        keep = rank < width
        social = np.full((request.n, width), NO_ITEM, dtype=np.int64)
        social[row[keep], rank[keep]] = item[keep]
        out = first_distinct(np.concatenate([social, popular], 1), n, recent)
        short = (out < 0).any(1)
        if short.any():  # only recent items left: popularity's own fallback order
            out[short] = popular[short]
        return out

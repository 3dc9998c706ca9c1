"""Classic recommenders: random, popularity, matrix factorisation, item-kNN, content-based."""

from __future__ import annotations

import numpy as np

from policies.base import NO_ITEM, Feedback, RecommendRequest
from policies.learning import REWARDS, ItemStats, consumed, feedback_features, impression_rewards
from policies.registry import register
from policies.selection import available_ids, lookup, positions, recent_of
from policies.slate_policy import SlatePolicy, check_choice, check_range
from simenv.arrays import ring_push, unit_rows

#: Weight of the popularity back-fill added to personalised scores: small enough never to
#: override a real similarity, large enough to order items that have none (cold users).
_BACKFILL = 1e-9


def _popularity_prior(counts: np.ndarray, items: np.ndarray) -> np.ndarray:
    c = counts[items]
    return _BACKFILL * c / (c.max() + 1.0) if c.size else c


@register("random")
class RandomPolicy(SlatePolicy):
    """Uniformly random distinct available items per user.

    Observes: nothing (only ``available`` and ``recent`` of each request). Learns: nothing.
    """

    def __init__(self) -> None:
        super().__init__()

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        return self.rank_sampled(request, n, None)


@register("popularity")
class PopularityPolicy(SlatePolicy):
    """Most consumed items first, the same ranking for everybody.

    Observes: which item each user consumed. Learns: a consumption count per item, multiplied by
    ``decay`` per tick (``decay=1`` counts all time). Items never consumed (cold items) have
    count 0 and are ordered among themselves by the tie-break only.
    """

    def __init__(
        self, decay: float = 1.0, retrain_every: int = 0, train_ticks: int | None = None
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.decay = check_range("decay", decay, 0.0, 1.0)

    def _init_state(self) -> None:
        self.stats = ItemStats(self.spec.n_items, self.decay)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        return self.rank_global(request, n, self.stats.pulls)

    def _learn(self, feedback: Feedback) -> None:
        _, items, _ = consumed(feedback)
        self.stats.add(items, np.ones(items.size), feedback.tick)


@register("mf")
class MatrixFactorization(SlatePolicy):
    """Online matrix factorisation of implicit feedback, scored per user in chunks.

    Observes: served slates, clicks (and ratings with ``reward="rating"``). Learns: user and item
    factors and an item bias by one Adagrad step per feedback batch on the squared error of
    ``p_u . q_i + b_i`` against the target (1 or rating/5 for the consumed item, 0 for the other
    items of the slate, the implicit negatives, weighted ``neg_weight``). Adagrad keeps the step
    stable when an item is shown to many users in one batch. Unseen items keep their small
    random factors and zero bias.
    """

    def __init__(
        self,
        factors: int = 16,
        lr: float = 0.1,
        reg: float = 0.01,
        neg_weight: float = 0.3,
        init_scale: float = 0.1,
        reward: str = "click",
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.factors = int(check_range("factors", factors, 1))
        self.lr = check_range("lr", lr, 0.0)
        self.reg = check_range("reg", reg, 0.0)
        self.neg_weight = check_range("neg_weight", neg_weight, 0.0)
        self.init_scale = check_range("init_scale", init_scale, 0.0)
        self.reward = check_choice("reward", reward, REWARDS)

    def _init_state(self) -> None:
        s, scale, d = self.spec, self.init_scale, self.factors
        self.user_f = (scale * self.rng.standard_normal((s.n_users, d))).astype(np.float32)
        self.item_f = (scale * self.rng.standard_normal((s.n_items, d))).astype(np.float32)
        self.item_b = np.zeros(s.n_items, dtype=np.float32)
        self.user_g2 = np.zeros((s.n_users, d), dtype=np.float32)
        self.item_g2 = np.zeros((s.n_items, d), dtype=np.float32)
        self.bias_g2 = np.zeros(s.n_items, dtype=np.float32)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        users = np.asarray(request.users, dtype=np.int64)
        cache: dict[str, np.ndarray] = {}

        def score(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            if "q" not in cache:
                cache["q"] = self.item_f[items].T.copy()
                cache["b"] = self.item_b[items]
            return self.user_f[users[rows]] @ cache["q"] + cache["b"]

        return self.rank_personal(request, n, score)

    def _learn(self, feedback: Feedback) -> None:
        slates = np.asarray(feedback.slates, dtype=np.int64)
        if slates.size == 0:
            return
        users = np.asarray(feedback.users, dtype=np.int64)
        n, k = slates.shape
        _, r = impression_rewards(feedback, self.reward)
        valid = slates >= 0
        target = np.zeros((n, k))
        target[valid] = r
        clicked = np.zeros((n, k), dtype=bool)
        pos = np.asarray(feedback.chosen_pos, dtype=np.int64)
        rows = np.flatnonzero((pos >= 0) & (pos < k))
        clicked[rows, pos[rows]] = True
        weight = np.where(clicked, 1.0, self.neg_weight) * valid
        items = np.where(valid, slates, 0)

        pu = self.user_f[users].astype(np.float64)  # (n, d)
        qi = self.item_f[items].astype(np.float64)  # (n, k, d)
        pred = np.einsum("nd,nkd->nk", pu, qi) + self.item_b[items]
        err = weight * (target - pred)
        grad_u = np.einsum("nk,nkd->nd", err, qi) - self.reg * pu
        grad_q = err[..., None] * pu[:, None, :] - self.reg * qi * valid[..., None]

        uniq_u, inv_u = np.unique(users, return_inverse=True)
        g_u = np.zeros((uniq_u.size, self.factors))
        np.add.at(g_u, inv_u, grad_u)
        self._step(self.user_f, self.user_g2, uniq_u, g_u)
        uniq_i, inv_i = np.unique(items[valid], return_inverse=True)
        g_q = np.zeros((uniq_i.size, self.factors))
        np.add.at(g_q, inv_i, grad_q[valid])
        self._step(self.item_f, self.item_g2, uniq_i, g_q)
        g_b = np.bincount(inv_i, weights=err[valid], minlength=uniq_i.size)
        self._step(self.item_b, self.bias_g2, uniq_i, g_b)

    def _step(self, param: np.ndarray, g2: np.ndarray, idx: np.ndarray, grad: np.ndarray) -> None:
        """Adagrad ascent step on rows ``idx``: a batch's summed gradient is normalised by its
        history, so an item shown to thousands of users in one tick still takes a stable step."""
        acc = g2[idx] + grad * grad
        g2[idx] = acc
        param[idx] += (self.lr * grad / np.sqrt(acc + 1e-8)).astype(param.dtype)


@register("item_knn")
class ItemKNN(SlatePolicy):
    """Item-item collaborative filtering on co-consumption.

    Observes: which item each user consumed. Learns: for every pair of items consumed by the same
    user within ``memory`` distinct consumptions of each other, a co-consumption count
    ``c_ij`` (re-consuming an item still in that window adds nothing); the similarity is the
    cosine ``c_ij / sqrt(n_i n_j)`` of the binary consumption vectors (``n_i``: users who
    consumed i), and each item keeps its ``neighbors`` most similar items. A user's score for
    item j is the sum of the similarities of j to the user's ``recent`` items (the policy's own
    record of the user's consumption if the request has no history), back-filled by popularity.
    """

    def __init__(
        self,
        neighbors: int = 50,
        memory: int = 20,
        retrain_every: int = 0,
        train_ticks: int | None = None,
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.neighbors = int(check_range("neighbors", neighbors, 1))
        self.memory = int(check_range("memory", memory, 1))

    def _init_state(self) -> None:
        s = self.spec
        self.hist = np.full((s.n_users, self.memory), NO_ITEM, dtype=np.int64)
        self.hist_ptr = np.zeros(s.n_users, dtype=np.int64)
        self.item_n = np.zeros(s.n_items, dtype=np.float64)
        self.pair_keys: np.ndarray = np.zeros(0, dtype=np.int64)
        self.pair_counts: np.ndarray = np.zeros(0, dtype=np.float64)
        self._pending: list[np.ndarray] = []
        self.nb_ids = np.full((s.n_items, self.neighbors), NO_ITEM, dtype=np.int64)
        self.nb_sim = np.zeros((s.n_items, self.neighbors), dtype=np.float64)

    def _learn(self, feedback: Feedback) -> None:
        users, items, _ = consumed(feedback)
        if items.size == 0:
            return
        m = self.spec.n_items
        past = self.hist[users]  # (c, memory) before this batch
        fresh = ~(past == items[:, None]).any(1)  # a re-consumption adds no evidence
        users, items, past = users[fresh], items[fresh], past[fresh]
        ok = past >= 0
        i = np.broadcast_to(items[:, None], past.shape)[ok]
        j = past[ok]
        self._pending.append(np.concatenate([i * m + j, j * m + i]))
        self.item_n += np.bincount(items, minlength=m)[:m]
        ring_push(self.hist, self.hist_ptr, users, items)

    def _refresh(self) -> None:
        """Fold pending pairs into the counts and recompute the neighbour table."""
        if not self._pending:
            return
        m = self.spec.n_items
        new = np.concatenate(self._pending)
        self._pending = []
        keys, inv = np.unique(np.concatenate([self.pair_keys, new]), return_inverse=True)
        weights = np.concatenate([self.pair_counts, np.ones(new.size)])
        self.pair_keys = keys
        self.pair_counts = np.bincount(inv, weights=weights, minlength=keys.size)
        i, j = keys // m, keys % m
        sim = self.pair_counts / np.sqrt(self.item_n[i] * self.item_n[j])
        order = np.lexsort((j, -sim, i))
        i, j, sim = i[order], j[order], sim[order]
        starts = np.r_[0, np.flatnonzero(np.diff(i)) + 1]
        rank = np.arange(i.size) - np.repeat(starts, np.diff(np.r_[starts, i.size]))
        keep = rank < self.neighbors
        self.nb_ids.fill(NO_ITEM)
        self.nb_sim.fill(0.0)
        self.nb_ids[i[keep], rank[keep]] = j[keep]
        self.nb_sim[i[keep], rank[keep]] = sim[keep]

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        self._refresh()
        m = self.spec.n_items
        users = np.asarray(request.users, dtype=np.int64)
        recent = recent_of(request)
        if recent.shape[1] == 0:
            recent = self.hist[users]
        ok = (recent >= 0) & (recent < m)
        has_neighbors = self.nb_ids[:, 0] >= 0
        cold = np.asarray(~(ok & has_neighbors[np.where(ok, recent, 0)]).any(1))
        pos = positions(available_ids(request.available), m)

        def score(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            rec, c, n_cols = recent[rows], rows.size, items.size
            valid = (rec >= 0) & (rec < m)
            safe = np.where(valid, rec, 0)
            nb = lookup(pos, self.nb_ids[safe])  # (c, h, K) columns of available neighbours
            keep = (nb >= 0) & valid[..., None]
            local = np.broadcast_to(np.arange(c)[:, None, None], nb.shape)[keep]
            w = self.nb_sim[safe][keep]
            out = np.bincount(local * n_cols + nb[keep], weights=w, minlength=c * n_cols)
            out = out.reshape(c, n_cols)
            out += _popularity_prior(self.item_n, items)
            return out

        return self.rank_personal(request, n, score, cold, self.item_n)


@register("content")
class ContentBased(SlatePolicy):
    """Content-based filtering on the public item features.

    Observes: which item each user consumed (and its rating with ``use_rating``). Learns: a
    per-user profile, the mean ``item_features`` of the consumed items (rating-weighted with
    ``use_rating``). Score: cosine between the profile and each item's features, back-filled by
    popularity (a user with no history gets the most consumed items).
    """

    def __init__(
        self, use_rating: bool = False, retrain_every: int = 0, train_ticks: int | None = None
    ) -> None:
        super().__init__(retrain_every=retrain_every, train_ticks=train_ticks)
        self.use_rating = bool(use_rating)

    def _init_state(self) -> None:
        s = self.spec
        self.profile = np.zeros((s.n_users, s.n_features), dtype=np.float32)
        self.n_consumed = np.zeros(s.n_users, dtype=np.float64)
        self.item_n = np.zeros(s.n_items, dtype=np.float64)
        self._features: np.ndarray | None = None

    def _learn(self, feedback: Feedback) -> None:
        users, items, ratings = consumed(feedback)
        if items.size == 0:
            return
        m = self.spec.n_items
        self.item_n += np.bincount(items, minlength=m)[:m]
        features = feedback_features(feedback, self._features)
        if features is None:
            return
        w = np.where(np.isfinite(ratings), ratings / 5.0, 0.6) if self.use_rating else 1.0
        contrib = np.asarray(features[items], dtype=np.float64) * np.reshape(w, (-1, 1))
        np.add.at(self.profile, users, contrib.astype(np.float32))
        np.add.at(self.n_consumed, users, 1.0)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        self._features = request.item_features
        users = np.asarray(request.users, dtype=np.int64)
        cache: dict[str, np.ndarray] = {}

        def score(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            if "f" not in cache:
                cache["f"] = unit_rows(request.item_features[items]).T.astype(np.float64)
                cache["prior"] = _popularity_prior(self.item_n, items)
            out = unit_rows(self.profile[users[rows]]).astype(np.float64) @ cache["f"]
            out += cache["prior"]
            return out

        cold = np.asarray(self.n_consumed[users] == 0)
        return self.rank_personal(request, n, score, cold, self.item_n)

"""Observations built from what a platform can observe, batched over users.

`ObservationBuilder` reads only `RecommendRequest` and `Feedback` (``policies.base``) and keeps
per-user statistics of what it was shown, so a recommender adapter (which also sees nothing
else) can build exactly the observation an environment gives its agent. It never looks at a
persona, the world or the decider: the test suite checks that this module imports nothing but
numpy, ``policies.base``, ``simenv.arrays`` and ``simenv.kernels`` (numpy and numba only) and
(lazily, for :meth:`ObservationBuilder.space`) gymnasium.

Keys of :meth:`ObservationBuilder.observe` (``n`` users in the request, ``d`` item features):

``user`` (n, 9) float32 in [0, 1]
    0 clicked on the last slate, 1 its rating ((r − 1) / 4, 0 without a click), 2 clicks in a
    row (/ 10, capped), 3 position in the session (step / max_steps, capped), 4 ticks since the
    last visit (/ ``visit_cap``, capped; 1 for a user never seen), 5 never seen before, 6 the
    user's click-through rate (with one pseudo-impression), 7 filled share of the recent-items
    history, 8 repetition: mean pairwise cosine of the recent items (0 with fewer than two).
``profile`` (n, d) float32 in [-1, 1]
    unit-length sum of the features of the user's recent items (zeros without history).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from policies.base import NO_ITEM, Feedback, PlatformSpec, RecommendRequest
from simenv.arrays import nan_to, one_user_kernels, unit_rows_clipped
from simenv.kernels import observe_one

if TYPE_CHECKING:
    from gymnasium import spaces

USER_FEATURES = (
    "last_click",
    "last_rating",
    "click_streak",
    "session_pos",
    "ticks_since_visit",
    "new_user",
    "ctr",
    "history_fill",
    "repetition",
)

_STREAK_CAP = 10.0


def recent_stats(
    request: RecommendRequest, item_unit: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile (n, d) unit, history fill (n,), repetition (n,)) from ``request.recent``.

    ``item_unit``: `unit_rows_clipped` of every item's features, if the caller keeps it
    (`ItemStore.unit_clipped`); the same numbers, without normalising each step's rows again.
    """
    recent = request.recent
    valid = recent != NO_ITEM
    rows = np.where(valid, recent, 0)
    unit = unit_rows_clipped(request.item_features) if item_unit is None else item_unit
    unit = unit[rows]  # (n, H, d)
    unit *= valid[:, :, None]
    return _stats(unit.sum(axis=1), valid, recent.shape[1])


def recent_stats_padded(
    recent: np.ndarray, padded_unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`recent_stats` from ``recent`` (n, H) and ``padded_unit``: the items' unit features
    with one row of zeros appended, which ``NO_ITEM`` (-1) indexes (`padded_rows`). The same
    numbers without masking the gathered rows; for many rows without an (n, H, d) array: the
    history columns are added one after the other, in the order ``sum(axis=1)`` adds them."""
    n, width = recent.shape
    if n < 64 or width == 0:  # a few rows: one gather is fewer calls
        total = padded_unit[recent].sum(axis=1)
    else:
        columns = np.ascontiguousarray(recent.T)
        total = np.take(padded_unit, columns[0], axis=0)
        for column in columns[1:]:
            total += np.take(padded_unit, column, axis=0)
    return _stats(total, recent != NO_ITEM, width)


def padded_rows(unit: np.ndarray) -> np.ndarray:
    """``unit`` with a row of zeros appended (what index -1, ``NO_ITEM``, then reads)."""
    return np.concatenate([unit, np.zeros((1, unit.shape[1]), dtype=unit.dtype)])


def _stats(
    total: np.ndarray, valid: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`recent_stats` from the (n, d) sum of the recent items' unit features."""
    m = valid.sum(axis=1).astype(np.float32)
    pair = np.einsum("nd,nd->n", total, total) - m  # sum over ordered pairs i != j of cos
    denom = m * (m - 1)
    repetition = np.divide(pair, denom, out=np.zeros_like(m), where=denom > 0)
    fill = m / max(width, 1)
    return unit_rows_clipped(total), fill, np.clip(repetition, -1.0, 1.0).astype(np.float32)


class ObservationBuilder:
    """Per-user observable statistics, updated from `Feedback`, turned into observations.

    ``update(feedback)`` after every served batch; ``observe(request, step)`` before choosing
    the next slates. ``step`` is the slate number within the current session (an int or an (n,)
    array), which a platform knows because it counts the slates it served.
    """

    def __init__(self, spec: PlatformSpec, max_steps: int, visit_cap: int = 10) -> None:
        if max_steps <= 0 or visit_cap <= 0:
            raise ValueError("max_steps and visit_cap must be positive")
        self.spec = spec
        self.max_steps = int(max_steps)
        self.visit_cap = int(visit_cap)
        n, m = spec.n_users, spec.n_items
        self.last_click = np.zeros(n, dtype=np.float32)
        self.last_rating = np.zeros(n, dtype=np.float32)
        self.streak = np.zeros(n, dtype=np.float32)
        self.last_tick = np.full(n, -1, dtype=np.int64)
        self.impressions = np.zeros(n, dtype=np.float32)  # slates seen
        self.clicks = np.zeros(n, dtype=np.float32)
        self.item_consumed = np.zeros(m, dtype=np.float64)
        self.log_consumed = np.zeros(m, dtype=np.float64)  # log1p(item_consumed), kept in step
        self.top_consumed = 0.0  # item_consumed.max()
        self.popularity = np.zeros(m, dtype=np.float32)  # what `item_popularity` reads
        self._pad_source: np.ndarray | None = None
        self._pad = np.zeros((1, spec.n_features), dtype=np.float32)

    # ------------------------------------------------------------------ learning
    def update(self, feedback: Feedback) -> None:
        """Record what happened to one batch of slates."""
        u = np.asarray(feedback.users, dtype=np.int64)
        if u.size == 0:
            return
        if u.size == 1:
            self._update_one(feedback, int(u[0]))
        else:
            self._update_rows(feedback, u)

    def _update_rows(self, feedback: Feedback, u: np.ndarray) -> None:
        """`update` as arrays over the users ``u`` of ``feedback``."""
        clicked = np.asarray(feedback.chosen_pos) >= 0
        rating = np.asarray(feedback.rating, dtype=np.float32)
        self.last_click[u] = clicked
        self.last_rating[u] = np.where(clicked, (nan_to(rating, 1.0) - 1.0) / 4.0, 0.0)
        self.streak[u] = np.where(clicked, self.streak[u] + 1.0, 0.0)
        self.last_tick[u] = feedback.tick
        self.impressions[u] += 1.0
        self.clicks[u] += clicked
        items = np.asarray(feedback.chosen_item)[clicked]
        if items.size:
            np.add.at(self.item_consumed, items, 1.0)
            self._counts_grew(items)

    def _update_one(self, feedback: Feedback, u: int) -> None:
        """`update` of one user's slate (a single env's step), with float32 scalars."""
        f32 = np.float32
        clicked = int(feedback.chosen_pos[0]) >= 0
        self.last_click[u] = clicked
        if clicked:
            rating = f32(feedback.rating[0])
            stars = f32(1.0) if np.isnan(rating) else rating
            self.last_rating[u] = (stars - f32(1.0)) / f32(4.0)
            self.streak[u] += f32(1.0)
            self.clicks[u] += f32(1.0)
            self._count_grew_one(int(feedback.chosen_item[0]))
        else:
            self.last_rating[u] = 0.0
            self.streak[u] = 0.0
        self.last_tick[u] = feedback.tick
        self.impressions[u] += f32(1.0)

    # ------------------------------------------------------------------ observing
    def observe(
        self,
        request: RecommendRequest,
        step: int | np.ndarray = 0,
        item_unit: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Observation of every user in ``request``: a dict of arrays with a leading (n,)
        (``item_unit`` as in `recent_stats`)."""
        u = np.asarray(request.users, dtype=np.int64)
        if u.size == 1 and item_unit is not None and np.size(step) == 1:
            pos = np.float32(np.ravel(step)[0])
            return self._observe_one(request, int(u[0]), pos, item_unit)
        return self._observe_rows(request, u, step, item_unit)

    def _observe_rows(
        self,
        request: RecommendRequest,
        u: np.ndarray,
        step: int | np.ndarray,
        item_unit: np.ndarray | None,
    ) -> dict[str, np.ndarray]:
        """`observe` as arrays over the users ``u`` of ``request``."""
        n = u.size
        if item_unit is None:
            profile, fill, repetition = recent_stats(request)
        else:
            profile, fill, repetition = recent_stats_padded(request.recent, self._padded(item_unit))
        last = self.last_tick[u]
        seen = last >= 0
        gap = np.where(seen, np.minimum(request.tick - last, self.visit_cap), self.visit_cap)
        pos = np.broadcast_to(np.asarray(step, dtype=np.float32), (n,))
        user = np.stack(
            [
                self.last_click[u],
                self.last_rating[u],
                np.minimum(self.streak[u], _STREAK_CAP) / _STREAK_CAP,
                np.minimum(pos / self.max_steps, 1.0),
                gap.astype(np.float32) / self.visit_cap,
                (~seen).astype(np.float32),
                self.clicks[u] / (self.impressions[u] + 1.0),
                fill,
                np.clip(repetition, 0.0, 1.0),
            ],
            axis=1,
        ).astype(np.float32)
        return {"user": user, "profile": profile.astype(np.float32)}

    def _observe_one(
        self, request: RecommendRequest, u: int, pos: np.float32, item_unit: np.ndarray
    ) -> dict[str, np.ndarray]:
        """`observe` of one user (a single env's step): the same float32 operations on
        scalars instead of (1,) arrays; one compiled pass (`simenv.kernels.observe_one`) when
        the one-user kernels hold (`simenv.arrays.one_user_kernels`) and items have two
        features or more (numpy sums a single feature's history pairwise)."""
        f32 = np.float32
        if item_unit.shape[1] > 1 and one_user_kernels(item_unit):
            d = item_unit.shape[1]
            user = np.empty((1, len(USER_FEATURES)), dtype=np.float32)
            profile = np.empty((1, d), dtype=np.float32)
            observe_one(
                self._padded(item_unit), request.recent[0], u, self.last_click,
                self.last_rating, self.streak, self.clicks, self.impressions, self.last_tick,
                int(request.tick), pos, self.max_steps, self.visit_cap, f32(_STREAK_CAP),
                user[0], profile[0],
            )  # fmt: skip
            return {"user": user, "profile": profile}
        recent = request.recent[0]
        total = self._padded(item_unit)[recent].sum(axis=0)[None]  # = (1, H, d).sum(1)
        width = recent.size
        m = f32(width - recent.tolist().count(NO_ITEM))
        pair = np.einsum("nd,nd->n", total, total)[0] - m  # as `_stats`, on scalars
        denom = m * (m - f32(1.0))
        repetition = min(max(pair / denom if denom > 0 else f32(0.0), f32(-1.0)), f32(1.0))
        fill = m / max(width, 1)
        last = int(self.last_tick[u])
        cap = self.visit_cap
        gap = min(request.tick - last, cap) if last >= 0 else cap
        user = np.array(
            [
                [
                    self.last_click[u],
                    self.last_rating[u],
                    min(self.streak[u], f32(_STREAK_CAP)) / f32(_STREAK_CAP),
                    min(pos / f32(self.max_steps), f32(1.0)),
                    f32(gap) / f32(cap),
                    f32(last < 0),
                    self.clicks[u] / (self.impressions[u] + f32(1.0)),
                    fill,
                    max(repetition, f32(0.0)),
                ]
            ],
            dtype=np.float32,
        )
        return {"user": user, "profile": unit_rows_clipped(total)}

    def _padded(self, item_unit: np.ndarray) -> np.ndarray:
        """`padded_rows` of ``item_unit``, kept while the caller hands the same array (the
        world's `ItemStore.unit_clipped` changes only when items are published)."""
        if self._pad_source is not item_unit:
            self._pad_source, self._pad = item_unit, padded_rows(item_unit)
        return self._pad

    def item_popularity(self, items: np.ndarray) -> np.ndarray:
        """Observed popularity in [0, 1] of ``items``: log consumptions over the maximum."""
        return self.popularity.take(items)  # = np.take, without its wrapper

    def _count_grew_one(self, i: int) -> None:
        """One more consumption of item ``i``, then `_counts_grew` of it: the same float64
        ufuncs on numpy scalars, the same float32 rounding."""
        self.item_consumed[i] += 1.0
        count = self.item_consumed[i]
        log = np.log1p(count)
        self.log_consumed[i] = log
        top_consumed = max(self.top_consumed, float(count))
        top = np.log1p(top_consumed)
        if top_consumed != self.top_consumed:
            self.top_consumed = top_consumed
            self.popularity = (self.log_consumed / top).astype(np.float32)
        else:
            self.popularity[i] = np.float32(log / top)

    def _counts_grew(self, items: np.ndarray) -> None:
        """Bring `log_consumed` and `popularity` (log consumptions over the log maximum) up to
        date after the counts of ``items`` grew: those items, or every item when the maximum
        grew (counts only grow: the maximum is kept, not searched for)."""
        counts = self.item_consumed[items]
        self.log_consumed[items] = np.log1p(counts)
        top_consumed = max(self.top_consumed, float(counts.max()))
        top = np.log1p(top_consumed)
        if top_consumed != self.top_consumed:
            self.top_consumed = top_consumed
            self.popularity = (self.log_consumed / top).astype(np.float32)
        else:
            self.popularity[items] = (self.log_consumed[items] / top).astype(np.float32)

    def space(self) -> spaces.Dict:
        """The gymnasium space of one user's observation (no batch dimension)."""
        from gymnasium import spaces

        d = self.spec.n_features
        return spaces.Dict(
            {
                "user": spaces.Box(0.0, 1.0, (len(USER_FEATURES),), np.float32),
                "profile": spaces.Box(-1.0, 1.0, (d,), np.float32),
            }
        )


def item_age_feature(age: np.ndarray, scale: float = 10.0) -> np.ndarray:
    """Item age (ticks) squashed into [0, 1): ``age / (age + scale)``; unpublished items are 0."""
    a = np.maximum(np.asarray(age, dtype=np.float32), 0.0)
    return (a / (a + scale)).astype(np.float32)

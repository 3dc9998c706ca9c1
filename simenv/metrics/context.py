"""Everything a per-tick metric may read, gathered by the world at the end of a tick.

Row arrays (``imp_*``) hold one row per slate served during the tick (a user in a session of
several slates has several rows). Population arrays are indexed by user id, item arrays by item id.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class MetricContext:
    tick: int
    n_users: int
    present: np.ndarray  # (n_users,) bool, on the platform at the end of the tick
    active: np.ndarray  # (n_active,) int64 ids of users who had a session this tick
    session_length: np.ndarray  # (n_active,) int64 slates viewed in that session
    churned: np.ndarray  # (n_churned,) int64 ids who left the platform this tick
    returned: np.ndarray  # (n_returned,) int64 ids who came back this tick
    imp_users: np.ndarray  # (R,) int64 user of each served slate
    slates: np.ndarray  # (R, k) int64 item ids served
    chosen_item: np.ndarray  # (R,) int64 consumed item, -1 for no choice
    rating: np.ndarray  # (R,) float32 rating 1..5, nan for no choice
    item_features: np.ndarray  # (n_items, d) float32 rows are topic profiles (non-negative)
    available: np.ndarray  # (n_items,) bool
    exposure_total: np.ndarray  # (n_items,) int64 impressions so far, this tick included
    consumption_total: np.ndarray  # (n_items,) int64 consumptions so far, this tick included
    genre_history: np.ndarray  # (n_users, d) float32 topic mass consumed so far per user
    recent: np.ndarray  # (n_users, H) int64 recently consumed item ids, -1 padded
    taste: np.ndarray  # (n_users, d) float32 current taste vectors
    taste_initial: np.ndarray  # (n_users, d) float32 taste vectors at tick 0
    rng: np.random.Generator  # for metrics that sample (e.g. user pairs)

    @property
    def clicked(self) -> np.ndarray:
        return self.chosen_item >= 0

    @cached_property
    def tick_exposures(self) -> np.ndarray:
        """(n_items,) int64 impressions of each item this tick (entries of ``slates``; the
        item ids of served slates are valid ids). Computed once per context for the metrics
        that share it (coverage, avg_rec_popularity): one pass over the slates."""
        return np.bincount(self.slates.ravel(), minlength=self.available.shape[0])

    @cached_property
    def genre_shares(self) -> tuple[np.ndarray, np.ndarray]:
        """(shares, total): each user's genre_history row in float64 divided by its sum
        (``total``, (n_users,) float64); a row whose sum is not positive is left as it is (all
        zeros: topic mass is non-negative). Computed once per context for the metrics that
        share it (user_genre_entropy, calibration_kl)."""
        h = self.genre_history.astype(np.float64)
        total = h.sum(axis=1)
        return np.divide(h, total[:, None], out=h, where=total[:, None] > 0), total

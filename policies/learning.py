"""What the policies learn from: rewards and consumption read from `Feedback`, and `ItemStats`.

Rewards: a served slate position earns 1 for a click (``reward="click"``) or ``rating / 5``
(``reward="rating"``), 0 when it was not chosen.
"""

from __future__ import annotations

import numpy as np

from policies.base import Feedback

REWARDS = ("click", "rating")


def impression_rewards(feedback: Feedback, reward: str = "click") -> tuple[np.ndarray, np.ndarray]:
    """Flattened (items, rewards) of every served slate position.

    A position's reward is 1 if it was clicked (``reward="click"``) or ``rating / 5``
    (``reward="rating"``, 0.6 when a click has no rating), and 0 if it was not chosen.
    Padding entries (``NO_ITEM``) are dropped.
    """
    slates = np.asarray(feedback.slates, dtype=np.int64)
    if slates.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    n, k = slates.shape
    r = np.zeros((n, k), dtype=np.float64)
    chosen = np.asarray(feedback.chosen_pos, dtype=np.int64)
    rows = np.flatnonzero((chosen >= 0) & (chosen < k))
    if reward == "rating":
        rating = np.asarray(feedback.rating, dtype=np.float64)[rows]
        r[rows, chosen[rows]] = np.where(np.isfinite(rating), rating / 5.0, 0.6)
    else:
        r[rows, chosen[rows]] = 1.0
    ok = slates >= 0
    return slates[ok], r[ok]


def consumed(feedback: Feedback) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, ratings) of the rows where something was consumed."""
    items = np.asarray(feedback.chosen_item, dtype=np.int64)
    ok = items >= 0
    return (
        np.asarray(feedback.users, dtype=np.int64)[ok],
        items[ok],
        np.asarray(feedback.rating, dtype=np.float64)[ok],
    )


def feedback_features(feedback: Feedback, last_seen: np.ndarray | None) -> np.ndarray | None:
    """The item features to learn from: the feedback's own if it carries them, else the ones
    seen in the last request (``None`` if neither exists)."""
    f = feedback.item_features
    if f is not None and f.ndim == 2 and f.shape[0] > 0:
        return f
    return last_seen


class ItemStats:
    """Per-item impression counts and reward sums, optionally decayed per tick.

    With ``decay < 1`` both are multiplied by ``decay ** (tick - last_tick)`` before a new
    batch is added, so old evidence fades (useful when tastes drift).
    """

    def __init__(self, n_items: int, decay: float = 1.0) -> None:
        self.pulls = np.zeros(n_items, dtype=np.float64)
        self.rewards = np.zeros(n_items, dtype=np.float64)
        self.decay = decay
        self.last_tick: int | None = None

    def add(self, items: np.ndarray, rewards: np.ndarray, tick: int) -> None:
        if self.decay < 1.0 and self.last_tick is not None and tick > self.last_tick:
            f = self.decay ** (tick - self.last_tick)
            self.pulls *= f
            self.rewards *= f
        self.last_tick = tick if self.last_tick is None else max(self.last_tick, tick)
        if items.size == 1:  # one consumption (a session env's step): no pass over every item
            i = int(items[0])
            self.pulls[i] += 1.0
            self.rewards[i] += float(rewards[0])
        elif items.size:
            n = self.pulls.size
            self.pulls += np.bincount(items, minlength=n)[:n]
            self.rewards += np.bincount(items, weights=rewards, minlength=n)[:n]

    def mean(self, initial: float, prior_n: float) -> np.ndarray:
        """Smoothed mean reward: ``(rewards + initial * prior_n) / (pulls + prior_n)``; with
        ``prior_n == 0`` unseen items get ``initial``."""
        if prior_n > 0:
            return (self.rewards + initial * prior_n) / (self.pulls + prior_n)
        return np.divide(
            self.rewards, self.pulls, out=np.full_like(self.rewards, initial), where=self.pulls > 0
        )

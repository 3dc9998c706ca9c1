"""The recommender protocol and the observable data that crosses it.

A policy sees only what a real platform could see: user and item ids, public item features
(genre/topic profiles), item ages, which items are available, the slates it served, what was
clicked and how it was rated, and the social graph's edges. It never sees a persona's taste,
emotion or traits. `policies` therefore imports nothing from `agents` or from the world.

All arrays are numpy; item ids index rows of ``item_features`` (the catalog's capacity, so items
that will be published later already have a row that is not yet ``available``).

The one exception is the ``oracle`` yardstick (`policies.oracle`): a policy whose
``needs_true_utilities`` is true is handed the users' true utilities by the world
(`RecommendRequest.true_utility`). No real platform has them, so such a policy is marked not
deployable and only a `World` running it as its own policy serves it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

NO_ITEM = -1

#: ``true_utility(rows, items)``: the (len(rows), len(items)) float64 deterministic utilities
#: of ``items`` (item ids) for the request's users ``users[rows]`` (rows index the request).
TrueUtility = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PlatformSpec:
    """Sizes a policy needs to allocate its state, given once before the first request."""

    n_users: int
    n_items: int  # catalog capacity: every item that can ever exist has an id below this
    n_features: int
    k: int  # slate size
    history: int  # length of ``RecommendRequest.recent`` rows
    max_steps: int | None = None  # slates per session at most (None: not told)


@dataclass(frozen=True)
class SocialGraph:
    """Friendship edges as CSR arrays: friends of user u are ``indices[indptr[u]:indptr[u+1]]``."""

    indptr: np.ndarray
    indices: np.ndarray

    def friends(self, user: int) -> np.ndarray:
        return self.indices[self.indptr[user] : self.indptr[user + 1]]


@dataclass(frozen=True)
class RecommendRequest:
    """One batch of slate requests: one row per user that is in a session right now."""

    tick: int
    users: np.ndarray  # (n,) int64 user ids
    k: int
    item_features: np.ndarray  # (n_items, n_features) float32, public content features
    available: np.ndarray  # (n_items,) bool, published and not retired
    item_age: np.ndarray  # (n_items,) int32 ticks since publication, -1 if not yet published
    recent: np.ndarray  # (n, history) int64 recently consumed item ids per user, NO_ITEM padded
    social: SocialGraph | None = None
    # Filled by the world only for a policy that needs true utilities (the oracle), else None:
    # the users' utilities of any items as if each were shown first in a slate, from the
    # decider's utility model, computed without drawing random numbers. Valid during this
    # request only (it reads the users' current state).
    true_utility: TrueUtility | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        return int(self.users.shape[0])


@dataclass(frozen=True)
class Feedback:
    """What happened to the slates of one request: one row per user of that request."""

    tick: int
    users: np.ndarray  # (n,) int64
    slates: np.ndarray  # (n, k) int64 item ids as served
    chosen_pos: np.ndarray  # (n,) int64 slate position consumed, -1 for no choice
    chosen_item: np.ndarray  # (n,) int64 item id consumed, NO_ITEM for no choice
    rating: np.ndarray  # (n,) float32 rating 1..5, nan where nothing was consumed
    ended_session: np.ndarray  # (n,) bool: the user closed the app after this slate
    item_features: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    @property
    def clicked(self) -> np.ndarray:
        """(n,) bool: the rows that consumed an item, computed once (the world, the users
        and a session env each read it for every slate; kept in the instance's dict by hand:
        Python 3.11's `functools.cached_property` takes a lock, which costs more than the
        comparison)."""
        clicked = self.__dict__.get("_clicked")
        if clicked is None:
            clicked = self.chosen_pos >= 0
            object.__setattr__(self, "_clicked", clicked)  # frozen: set past __setattr__
        return clicked


@runtime_checkable
class Recommender(Protocol):
    """What the world calls. ``reset`` once per run, then ``recommend``/``update`` alternate."""

    name: str

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None: ...

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        """Return an (n, k) int64 array of distinct available item ids per row."""
        ...

    def update(self, feedback: Feedback) -> None: ...

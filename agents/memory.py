"""Bounded, structured user memory with retrieval by recency, importance and relevance.

Each user has ``capacity`` slots. A record says what happened (``kind``), to which item, when,
the rating given and how it felt (``valence`` in [-1, 1]); its ``importance`` in [0, 1] is set
by the writer (a strong feeling or a friend's recommendation matters more than a skipped slate).
When a user's slots are full the oldest record is overwritten, so memory stays bounded for runs
of any length; reflections (a later, LLM-written summary) are records like any other.

Retrieval scores every slot of every requested user at once (Park et al., 2023, "Generative
Agents"): ``w_recency * decay**age + w_importance * importance + w_relevance * cosine(query,
item features)`` and returns the best ``top`` slots per user.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

from simenv.arrays import ring_slots


class MemoryKind(IntEnum):
    EMPTY = 0
    CONSUMED = 1  # chose an item from a slate and rated it
    SKIPPED = 2  # saw a slate and chose nothing (item = the slate's first item)
    SHARED = 3  # a friend shared this item
    REFLECTION = 4  # a written summary (text kept by the LLM layer, keyed by slot)
    LEFT = 5  # left the platform
    RETURNED = 6  # came back


@dataclass(frozen=True)
class MemoryRecord:
    kind: MemoryKind
    item: int
    tick: int
    rating: float
    valence: float
    importance: float


class MemoryStore:
    """Struct-of-arrays memory for ``n_users`` users with ``capacity`` slots each."""

    def __init__(self, n_users: int, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"memory capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        shape = (n_users, capacity)
        self.kind = np.zeros(shape, dtype=np.int8)
        self.item = np.full(shape, -1, dtype=np.int64)
        self.tick = np.full(shape, -1, dtype=np.int32)
        self.rating = np.full(shape, np.nan, dtype=np.float32)
        self.valence = np.zeros(shape, dtype=np.float32)
        self.importance = np.zeros(shape, dtype=np.float32)
        self.ptr = np.zeros(n_users, dtype=np.int64)

    def record(
        self,
        users: np.ndarray,
        kind: MemoryKind,
        item: np.ndarray | int,
        tick: int,
        *,
        rating: np.ndarray | None = None,
        valence: np.ndarray | float = 0.0,
        importance: np.ndarray | float = 0.5,
    ) -> np.ndarray:
        """Write one record per entry of ``users``; returns the slots written."""
        users = np.asarray(users, dtype=np.int64)
        if users.size == 0:  # e.g. nobody skipped in a one-user step: nothing to write
            return np.zeros(0, dtype=np.int64)
        if users.size == 1:  # one user (a single env's step): scalar writes, no index arrays
            return self.record_one(int(users[0]), kind, item, tick, rating, valence, importance)
        slots = ring_slots(self.ptr, users, self.capacity)
        at = (users, slots, users * self.capacity + slots)
        _put(self.kind, at, kind)
        _put(self.item, at, item)
        _put(self.tick, at, tick)
        _put(self.rating, at, np.nan if rating is None else rating)
        _put(self.valence, at, valence)
        _put(self.importance, at, importance)
        return slots

    def record_one(
        self,
        u: int,
        kind: MemoryKind,
        item: np.ndarray | int,
        tick: int,
        rating: np.ndarray | float | None,
        valence: np.ndarray | float,
        importance: np.ndarray | float,
    ) -> np.ndarray:
        """`record` of one user ``u`` (what it calls for one entry; a single env's step calls
        it directly, with scalars): the same slot (`ring_slots`) and the same values cast to
        the fields' dtypes by item assignment."""
        slot = int(self.ptr[u]) % self.capacity
        self.ptr[u] = (slot + 1) % self.capacity
        self.kind[u, slot] = kind
        self.item[u, slot] = _first(item)
        self.tick[u, slot] = tick
        self.rating[u, slot] = np.nan if rating is None else _first(rating)
        self.valence[u, slot] = _first(valence)
        self.importance[u, slot] = _first(importance)
        return np.array([slot], dtype=np.int64)

    def retrieve(
        self,
        users: np.ndarray,
        query: np.ndarray,
        item_features: np.ndarray,
        now: int,
        *,
        top: int = 5,
        decay: float = 0.9,
        weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ) -> np.ndarray:
        """Best ``top`` slots per user for ``query`` (n, d) features; -1 where memory is empty."""
        users = np.asarray(users, dtype=np.int64)
        kind = self.kind[users]
        filled = kind != MemoryKind.EMPTY
        age = np.maximum(now - self.tick[users], 0)
        recency = np.power(decay, age, dtype=np.float32)
        items = self.item[users]
        feats = item_features[np.maximum(items, 0)]  # (n, M, d)
        relevance = _cosine_rows(feats, query)
        relevance = np.where(items >= 0, relevance, 0.0)
        w_rec, w_imp, w_rel = weights
        score = w_rec * recency + w_imp * self.importance[users] + w_rel * relevance
        score = np.where(filled, score, -np.inf)
        top = min(top, self.capacity)
        best = np.argsort(-score, axis=1, kind="stable")[:, :top]
        return np.where(np.take_along_axis(filled, best, axis=1), best, -1)

    def records(self, user: int) -> list[MemoryRecord]:
        """All filled records of one user, oldest first (for interviews and inspection)."""
        filled = np.flatnonzero(self.kind[user] != MemoryKind.EMPTY)
        order = filled[np.argsort(self.tick[user, filled], kind="stable")]
        return [
            MemoryRecord(
                kind=MemoryKind(int(self.kind[user, s])),
                item=int(self.item[user, s]),
                tick=int(self.tick[user, s]),
                rating=float(self.rating[user, s]),
                valence=float(self.valence[user, s]),
                importance=float(self.importance[user, s]),
            )
            for s in order
        ]


def _put(field: np.ndarray, at: tuple[np.ndarray, np.ndarray, np.ndarray], value: object) -> None:
    """``field[users, slots] = value`` with ``at = (users, slots, flat)``: through the flat
    index ``users * capacity + slots`` when the field is C-contiguous (one index computation
    for all six fields instead of one per field)."""
    users, slots, flat = at
    if field.flags.c_contiguous:
        field.reshape(-1)[flat] = value
    else:
        field[users, slots] = value


def _cosine_rows(feats: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Cosine between each of feats[i, j] (n, M, d) and query[i] (n, d)."""
    num = np.einsum("nmd,nd->nm", feats, query)
    den = np.linalg.norm(feats, axis=2) * np.linalg.norm(query, axis=1, keepdims=True)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _first(value: np.ndarray | float) -> Any:
    """A value given for one record: an array's first entry (cast by the field's item
    assignment as the array would be), anything else as it is."""
    return value.reshape(-1)[0] if isinstance(value, np.ndarray) else value

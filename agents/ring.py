"""Fixed-size per-user ring buffers, written for many users at once.

Every bounded per-user record in recloop (recent consumption, the social inbox, memory slots)
is a row of a 2-D array plus a write pointer per row. `ring_slots` turns a batch of writes, in
which one user may appear several times, into distinct slots, so a batch write is one fancy-index
assignment and the last writes of a user win, in order.
"""

from __future__ import annotations

import numpy as np


def ring_slots(ptr: np.ndarray, users: np.ndarray, width: int) -> np.ndarray:
    """Slots to write for each of ``users`` (in order) and advance ``ptr`` in place.

    A user appearing m times in ``users`` gets m consecutive slots after its pointer (mod width).
    """
    users = np.asarray(users, dtype=np.int64)
    if users.size == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(users, kind="stable")
    sorted_users = users[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_users)) + 1]
    counts = np.diff(np.r_[starts, sorted_users.size])
    rank_sorted = np.arange(sorted_users.size) - np.repeat(starts, counts)
    rank = np.empty_like(rank_sorted)
    rank[order] = rank_sorted
    slots = (ptr[users] + rank) % width
    uniq = sorted_users[starts]
    ptr[uniq] = (ptr[uniq] + counts) % width
    return slots


def ring_push(buffer: np.ndarray, ptr: np.ndarray, users: np.ndarray, values: np.ndarray) -> None:
    """Append ``values[i]`` to row ``users[i]`` of ``buffer`` (oldest entry overwritten)."""
    slots = ring_slots(ptr, users, buffer.shape[1])
    buffer[users, slots] = values

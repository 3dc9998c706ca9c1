"""Compiled (numba) loops for the hot paths where numpy needs several full-size passes.

Each kernel is a small ``@njit(cache=True)`` function whose result is exactly what the numpy
code it replaces computes (integer selection and comparison, or float sums in the same order),
so using it changes no result of any run; `tests/test_kernels.py` compares each with a plain
numpy reference on random inputs and edge cases. ``cache=True`` keeps the compiled code next
to this file (``__pycache__``), so only the first run after an install pays for compiling.

A leaf module: it imports numpy and numba only, so the world, the agents, the metrics and the
policies can all use it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# world tick ---------------------------------------------------------------------------------


@njit(cache=True)
def rotated_top(
    head: np.ndarray,
    group: np.ndarray,
    shift: np.ndarray,
    n_cand: int,
    recent: np.ndarray,
    length: int,
) -> np.ndarray:
    """(rows, length) int64: per row, the first ``length`` of its candidates that are not in
    its row of ``recent`` (-1 padded item ids), in order, -1 where a row runs out.

    A row's candidates are ``head`` followed by ``group`` rotated left by the row's ``shift``
    (in [0, len(group))), cut at ``n_cand`` entries; they must be distinct non-negative ids.
    One pass per row: its recent items are stamped with the row's number in a table over item
    ids, its candidates walked until ``length`` are kept.
    """
    rows, width = recent.shape
    g0, size = head.size, group.size
    top = 0
    for i in range(g0):
        top = max(top, head[i] + 1)
    for i in range(size):
        top = max(top, group[i] + 1)
    stamp = np.full(top, -1, dtype=np.int64)
    out = np.full((rows, length), -1, dtype=np.int64)
    for r in range(rows):
        for h in range(width):
            item = recent[r, h]
            if 0 <= item < top:
                stamp[item] = r
        kept = 0
        at = shift[r]
        for c in range(n_cand):
            if kept == length:
                break
            if c < g0:
                item = head[c]
            else:
                item = group[at]
                at += 1
                if at == size:
                    at = 0
            if stamp[item] != r:
                out[r, kept] = item
                kept += 1
    return out


@njit(cache=True)
def holds_any(slates: np.ndarray, lists: np.ndarray, rows: np.ndarray, n_ids: int) -> np.ndarray:
    """(n, k) bool: whether ``slates[i, j]`` is in row ``rows[i]`` of ``lists``, whose entries
    are item ids below ``n_ids`` (negative ones are padding and hold nothing; larger ones are
    ignored). One pass per row: the row's items are stamped with its number in a table over
    item ids, its slate looked up."""
    n, k = slates.shape
    width = lists.shape[1]
    stamp = np.full(n_ids, -1, dtype=np.int64)
    out = np.empty((n, k), dtype=np.bool_)
    for i in range(n):
        row = rows[i]
        for h in range(width):
            item = lists[row, h]
            if 0 <= item < n_ids:
                stamp[item] = i
        for j in range(k):
            item = slates[i, j]
            out[i, j] = 0 <= item < n_ids and stamp[item] == i
    return out

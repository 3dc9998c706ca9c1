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


@njit(cache=True)
def slate_sum(table: np.ndarray, slates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(len(rows), d) float64: Σ_j ``table[slates[rows[i], j]]`` for each i, the slate
    positions added in order from 0.0 (what adding one position's gathered rows at a time to a
    float64 array of zeros gives, without the (rows, k, d) or (rows, d) temporaries)."""
    n, k, d = rows.size, slates.shape[1], table.shape[1]
    out = np.zeros((n, d), dtype=np.float64)
    for i in range(n):
        r = rows[i]
        for j in range(k):
            item = slates[r, j]
            for c in range(d):
                out[i, c] += table[item, c]
    return out


@njit(cache=True)
def calibration_ratio(
    p: np.ndarray, q: np.ndarray, q_total: np.ndarray, alpha: float
) -> np.ndarray:
    """(R, d) float64 ``p / q̃`` where ``p > 0``, else 1, with ``q̃ = (1 − alpha) · q / q_total
    + alpha · p`` (``q / q_total`` is 0 in a row whose ``q_total`` is not > 0): the ratio inside
    ``calibration_kl``'s logarithm, in one pass instead of five array operations."""
    n, d = p.shape
    keep = 1.0 - alpha
    out = np.empty((n, d), dtype=np.float64)
    for i in range(n):
        total = q_total[i]
        for c in range(d):
            share = q[i, c] / total if total > 0 else 0.0
            mix = keep * share + alpha * p[i, c]
            out[i, c] = p[i, c] / mix if p[i, c] > 0 else 1.0
    return out


@njit(cache=True)
def any_nonnegative(lists: np.ndarray) -> np.ndarray:
    """(n,) bool: whether row i of ``lists`` (-1 padded ids) holds any id >= 0."""
    n, width = lists.shape
    out = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        for h in range(width):
            if lists[i, h] >= 0:
                out[i] = True
                break
    return out

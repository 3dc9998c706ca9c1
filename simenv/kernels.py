"""Compiled (numba) loops for the hot paths where numpy needs several full-size passes or many
small calls.

Each kernel is a small ``@njit(cache=True)`` function whose result is exactly what the numpy
code it replaces computes (integer selection and comparison), so using it changes no result of
any run; `tests/test_kernels.py` compares each with a plain numpy reference. ``cache=True``
keeps the compiled code next to this file (``__pycache__``), so only the first run after an
install pays for compiling.

A leaf module: it imports numpy and numba only, so the world, the agents, the metrics and the
policies can all use it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# one-user step ------------------------------------------------------------------------------

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True)
def _tie_key(col: int, mode: int, perm: np.ndarray, salt: np.uint64) -> np.int64:
    """The tie key of column ``col``: ``mode`` 0 the column, 1 ``perm[col]``, 2 the col-th
    SplitMix64 output of ``salt`` viewed as int64 (`policies.selection.splitmix64`)."""
    if mode == 0:
        return np.int64(col)
    if mode == 1:
        return perm[col]
    z = (np.uint64(col) + np.uint64(1)) * _GAMMA + salt
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    return np.int64(z)


@njit(cache=True)
def negated_scores(scores: np.ndarray, avail: np.ndarray, big: float) -> np.ndarray:
    """(len(avail),) float64 minus the available items' scores (``scores`` per item id, or
    per ``avail`` entry when it has as many), NaN and -inf scored ``-big``, +inf ``big``:
    ``-policies.selection._available_scores(scores, avail)`` in one pass."""
    m = avail.size
    out = np.empty(m, dtype=np.float64)
    per_item = scores.size != m
    for j in range(m):
        v = float(scores[avail[j]] if per_item else scores[j])
        if np.isnan(v):
            v = -big
        elif np.isinf(v):
            v = big if v > 0 else -big
        out[j] = -v
    return out


@njit(cache=True)
def global_head(
    neg: np.ndarray,
    cut: float,
    n_cand: int,
    mode: int,
    perm: np.ndarray,
    salt: np.uint64,
    offset: int,
) -> tuple[np.ndarray, int]:
    """The column order of one row's candidates in a global ranking (a single env's step):
    the columns whose ``neg`` (minus the scores, `negated_scores`) is below ``cut``, its
    ``n_cand``-th smallest value (numpy's introselect finds it faster than numba's
    `np.partition` or `select` on a cold catalog's many equal values), by
    (neg, key), then ``n_cand`` minus as many of the columns equal to ``cut`` (the tie group)
    in key order, rotated to begin at ``offset`` modulo the group's size (no rotation if
    ``offset`` < 0). Keys as `_tie_key`. Returns the (n_cand,) columns and the tie group's
    size. What `policies.selection._head_order` and a rotation of its tie group select, with
    two passes over the catalog, and the keys computed and ranked for the tie group only
    (`rank_window`: one pass and a sort of the window's neighbourhood, no sort of the
    group)."""
    m = neg.size
    n_above, size = 0, 0
    for i in range(m):
        if neg[i] < cut:
            n_above += 1
        elif neg[i] == cut:
            size += 1
    above = np.empty(n_above, dtype=np.int64)
    tied = np.empty(size, dtype=np.int64)
    a, t = 0, 0
    for i in range(m):
        if neg[i] < cut:
            above[a] = i
            a += 1
        elif neg[i] == cut:
            tied[t] = i
            t += 1
    out = np.empty(n_cand, dtype=np.int64)
    if n_above:
        keys = np.empty(n_above, dtype=np.int64)
        for j in range(n_above):
            keys[j] = _tie_key(above[j], mode, perm, salt)
        by_key = np.argsort(keys)  # keys are distinct, so any sort gives this order
        vals = np.empty(n_above, dtype=neg.dtype)
        for j in range(n_above):
            vals[j] = neg[above[by_key[j]]]
        by_neg = np.argsort(vals, kind="mergesort")  # stable: ties stay in key order
        for j in range(n_above):
            out[j] = above[by_key[by_neg[j]]]
    width = n_cand - n_above
    start = offset % size if offset >= 0 and size > 1 else 0
    keys = np.empty(size, dtype=np.int64)
    for j in range(size):
        keys[j] = _tie_key(tied[j], mode, perm, salt)
    end = start + width
    if size <= 64 or size <= 2 * width:  # small: sorting it all is cheaper
        order = np.argsort(keys)
        for j in range(width):
            out[n_above + j] = tied[order[(start + j) % size]]
        return out, size
    # the window of ranks [start, end), wrapping past the group's end to [0, end - size)
    kmin, kmax = keys.min(), keys.max()
    if end <= size:
        rank_window(tied, keys, start, end, kmin, kmax, out, n_above)
    else:
        rank_window(tied, keys, start, size, kmin, kmax, out, n_above)
        rank_window(tied, keys, 0, end - size, kmin, kmax, out, n_above + size - start)
    return out, size


@njit(cache=True)
def rank_window(
    tied: np.ndarray,
    keys: np.ndarray,
    r0: int,
    r1: int,
    kmin: np.int64,
    kmax: np.int64,
    out: np.ndarray,
    at: int,
) -> None:
    """Write the entries of ``tied`` whose (distinct) ``keys`` rank ``r0`` .. ``r1 - 1``, in
    key order, into ``out[at:]``. One pass: keys spread evenly between ``kmin`` and ``kmax``
    (hash outputs) put those ranks near the matching quantiles, so the entries between two
    guessed bounds (4 standard deviations wide) are collected and sorted, and the count below
    the lower bound says which of them hold the ranks; when the guess misses (keys that are not
    spread evenly), `select` finds the bounding keys exactly. Same entries either way."""
    size = keys.size
    span = float(kmax) - float(kmin)
    margin = 4.0 * np.sqrt(size) + 16.0
    t_lo = float(kmin) + span * max(r0 - margin, 0.0) / size
    t_hi = float(kmin) + span * min(r1 + margin, size) / size
    below, n = 0, 0
    for j in range(size):
        f = float(keys[j])  # monotone in the key: "below" is a prefix of the key order
        if f < t_lo:
            below += 1
        elif f <= t_hi:
            n += 1
    if below <= r0 and r1 <= below + n:
        picked = np.empty(n, dtype=np.int64)
        picked_keys = np.empty(n, dtype=np.int64)
        i = 0
        for j in range(size):
            f = float(keys[j])
            if t_lo <= f <= t_hi:
                picked[i] = tied[j]
                picked_keys[i] = keys[j]
                i += 1
        order = np.argsort(picked_keys)
        for j in range(r1 - r0):
            out[at + j] = picked[order[r0 - below + j]]
        return
    scratch = keys.copy()
    _keys_between(tied, keys, select(scratch, r0), select(scratch, r1 - 1), out, at)


@njit(cache=True)
def select(a: np.ndarray, k: int) -> np.int64:
    """The ``k``-th smallest entry of ``a`` (``np.partition(a, k)[k]``), reordering ``a`` in
    place: Hoare's quickselect with the middle entry as pivot, O(size) expected on keys in
    random order (numba's own `np.partition` was 13x slower than numpy's at 100k entries)."""
    lo, hi = 0, a.size - 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return a[k]
    return a[k]


@njit(cache=True)
def _keys_between(
    tied: np.ndarray, keys: np.ndarray, low: np.int64, high: np.int64, out: np.ndarray, at: int
) -> None:
    """Write the entries of ``tied`` whose key is in [low, high] into ``out[at:]``, by key."""
    n = 0
    for j in range(keys.size):
        if low <= keys[j] <= high:
            n += 1
    picked = np.empty(n, dtype=np.int64)
    picked_keys = np.empty(n, dtype=np.int64)
    n = 0
    for j in range(keys.size):
        if low <= keys[j] <= high:
            picked[n] = tied[j]
            picked_keys[n] = keys[j]
            n += 1
    order = np.argsort(picked_keys)
    for j in range(n):
        out[at + j] = picked[order[j]]

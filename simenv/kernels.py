"""Compiled (numba) loops for the hot paths where numpy needs several full-size passes or many
small calls.

Each kernel is a small ``@njit(cache=True)`` function whose result is exactly what the numpy
code it replaces computes (integer selection and comparison, or float sums in the same order),
so using it changes no result of any run; `tests/test_kernels.py` (world tick) and
`tests/test_kernels_one_user.py` (one-user step) compare each with a plain numpy reference on
random inputs and edge cases. ``cache=True`` keeps the compiled code next to this file
(``__pycache__``), so only the first run after an install pays for compiling.

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
def slate_faults(slates: np.ndarray, available: np.ndarray) -> tuple[bool, bool, bool]:
    """(outside, unavailable, repeated): whether any entry of ``slates`` is outside [0,
    len(available)), whether any entry inside it is not ``available``, whether any row holds
    an item twice (among its entries inside the range). One pass, a table over item ids."""
    n, k = slates.shape
    m = available.size
    stamp = np.full(m, -1, dtype=np.int64)
    outside = unavailable = repeated = False
    for i in range(n):
        for j in range(k):
            item = slates[i, j]
            if item < 0 or item >= m:
                outside = True
                continue
            if not available[item]:
                unavailable = True
            if stamp[item] == i:
                repeated = True
            stamp[item] = i
    return outside, unavailable, repeated


@njit(cache=True)
def ring_slots(ptr: np.ndarray, users: np.ndarray, width: int) -> np.ndarray:
    """(len(users),) int64 ring-buffer slots, one per entry of ``users`` in order: each user's
    next slot after its pointer (mod ``width``), its pointer advanced in place. A user that
    appears m times gets m consecutive slots."""
    out = np.empty(users.size, dtype=np.int64)
    for i in range(users.size):
        u = users[i]
        slot = ptr[u] % width
        out[i] = slot
        ptr[u] = (slot + 1) % width
    return out


#: Longest sum `pairwise_sum` adds (numpy's PW_BLOCKSIZE: longer sums split in halves).
PAIRWISE_BLOCK = 128


@njit(cache=True)
def pairwise_sum(a: np.ndarray, lo: int, n: int):  # type: ignore[no-untyped-def]
    """Σ a[lo : lo + n] (1-D, 1 <= n <= `PAIRWISE_BLOCK`) in a's dtype, added in the order
    of numpy's pairwise summation (what ``np.add.reduce`` does along a contiguous axis):
    fewer than 8 terms one after the other, else 8 interleaved partial sums combined as a
    tree, then the remainder. Equal to numpy's sum bit for bit (tests/test_kernels.py), except
    that a sum of -0.0 terms alone is -0.0 here (numpy starts from +0.0): callers sum squares.
    Not recursive (numba's cache cannot load recursive functions), hence the bound on n."""
    if n < 8:
        res = a[lo]
        for i in range(1, n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True)
def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of the 2-D float ``x`` (at most `PAIRWISE_BLOCK` columns) scaled to unit L2 norm,
    all-zero (or NaN-norm) rows zero, computed in x's dtype exactly as ``x /
    sqrt(np.add.reduce(x * x, axis=-1))`` is (the squares summed in numpy's pairwise order,
    `pairwise_sum`), in one pass over the rows."""
    n, d = x.shape
    out = np.zeros_like(x)
    if d == 0:
        return out
    squares = np.empty(d, dtype=x.dtype)
    for i in range(n):
        for c in range(d):
            squares[c] = x[i, c] * x[i, c]
        norm = np.sqrt(pairwise_sum(squares, 0, d))
        if norm > 0:
            for c in range(d):
                out[i, c] = x[i, c] / norm
    return out


@njit(cache=True)
def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n,) float64 L2 distance between the rows of the 2-D ``a`` and ``b`` (at most
    `PAIRWISE_BLOCK` columns), computed in float64 exactly as ``np.linalg.norm(a.astype(
    float64) - b.astype(float64), axis=1)`` is (the squares summed in numpy's pairwise order),
    without the (n, d) difference and square arrays."""
    n, d = a.shape
    out = np.zeros(n, dtype=np.float64)
    if d == 0:
        return out
    squares = np.empty(d, dtype=np.float64)
    for i in range(n):
        for c in range(d):
            diff = np.float64(a[i, c]) - np.float64(b[i, c])
            squares[c] = diff * diff
        out[i] = np.sqrt(pairwise_sum(squares, 0, d))
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


@njit(cache=True)
def fill_features(
    f: np.ndarray,
    match: np.ndarray,
    similarity: np.ndarray,
    repeat: np.ndarray,
    shared: np.ndarray,
    slates: np.ndarray,
    users: np.ndarray,
    quality: np.ndarray,
    popularity: np.ndarray,
    conformity: np.ndarray,
    curiosity: np.ndarray,
    boredom: np.ndarray,
    fatigue: np.ndarray,
    position: np.ndarray,
) -> None:
    """Write the (F >= 10, n, k + 1) float32 utility-feature block ``f`` of
    `agents.deciders.utility_features` in one pass (every entry; rows 10.. are zeros), from
    float32 inputs, rounding every intermediate to float32 as numpy's float32 arithmetic does
    (an operation on two float32 values computed in float64 and rounded once is the float32
    result). Column k is the no-choice option. ``position`` is the (k,) float32 position term.
    """
    n_feat, n, width = f.shape
    k = width - 1
    f32 = np.float32
    for i in range(n):
        u = users[i]
        for j in range(k):
            item = slates[i, j]
            sim = similarity[i, j]
            f[0, i, j] = match[i, j]
            f[1, i, j] = f32(quality[item] - 0.5)
            f[2, i, j] = conformity[u] * popularity[item]
            f[3, i, j] = curiosity[u] * f32(1.0 - sim)
            f[4, i, j] = -(boredom[u] * sim)
            f[5, i, j] = f32(1.0) if shared[i, j] else f32(0.0)
            f[6, i, j] = f32(-1.0) if repeat[i, j] else -f32(0.0)
            f[7, i, j] = position[j]
            for r in range(8, n_feat):
                f[r, i, j] = 0.0
        for r in range(n_feat):
            f[r, i, k] = 0.0
        f[8, i, k] = 1.0
        f[9, i, k] = fatigue[u]


@njit(cache=True)
def noisy_argmax(utility: np.ndarray, noise: float, draws: np.ndarray) -> np.ndarray:
    """(n,) int64 ``argmax(utility + noise * draws, axis=1)`` (the sum in float64; the first
    maximum, or the first NaN, as numpy's argmax picks) without the (n, m) sum array."""
    n = utility.shape[0]
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        out[i] = noisy_argmax_row(utility[i], noise, draws[i])
    return out


@njit(cache=True)
def noisy_argmax_row(utility: np.ndarray, noise: float, draws: np.ndarray) -> int:
    """`noisy_argmax` of one row (m,): the position as an int (a single env's step: a kernel
    that returns no array costs less to call)."""
    best = np.float64(utility[0]) + noise * draws[0]
    at = 0
    if not np.isnan(best):
        for j in range(1, utility.size):
            v = np.float64(utility[j]) + noise * draws[j]
            if not v <= best:  # larger, or NaN (numpy stops at the first NaN)
                best, at = v, j
                if np.isnan(v):
                    break
    return at


@njit(cache=True)
def consume(
    users: np.ndarray,
    chosen: np.ndarray,
    recent: np.ndarray,
    recent_ptr: np.ndarray,
    recent_profile: np.ndarray,
    genre_history: np.ndarray,
    taste: np.ndarray,
    features: np.ndarray,
    unit: np.ndarray,
    keep: np.float32,
    drift: np.float32,
    do_drift: bool,
) -> bool:
    """Each of ``users`` (distinct) consumed ``chosen[i]``, in place, exactly as the numpy
    code of `simenv.users.UserState._consume` computes it for float32 arrays: the item goes
    to the next slot of the user's ``recent`` ring (`ring_slots`), ``recent_profile`` gains
    its features minus the evicted item's (``p + (added - old)``), ``genre_history`` gains
    its features, and, with ``do_drift`` (the scenario's drift > 0), ``taste`` becomes the
    unit row (`unit_rows`) of ``keep · taste + drift · unit[item]`` (``keep`` = 1 − drift,
    both rounded to float32 as numpy rounds a Python float meeting a float32 array). One pass
    over the users and no (users, d) gathers. Returns False, changing nothing, when a user
    appears twice (the caller keeps numpy's semantics for that)."""
    n = users.size
    seen = np.zeros(recent.shape[0], dtype=np.bool_)
    for i in range(n):
        if seen[users[i]]:
            return False
        seen[users[i]] = True
    width, d = recent.shape[1], features.shape[1]
    moved = np.empty((n, d), dtype=np.float32)
    zero = np.float32(0.0)
    for i in range(n):
        u, item = users[i], chosen[i]
        slot = recent_ptr[u] % width
        recent_ptr[u] = (slot + 1) % width
        evicted = recent[u, slot]
        for c in range(d):
            added = features[item, c]
            old = features[evicted, c] if evicted >= 0 else zero
            recent_profile[u, c] = recent_profile[u, c] + (added - old)
            genre_history[u, c] = genre_history[u, c] + added
            if do_drift:
                moved[i, c] = keep * taste[u, c] + drift * unit[item, c]
        recent[u, slot] = item
    if do_drift:
        moved = unit_rows(moved)
        for i in range(n):
            for c in range(d):
                taste[users[i], c] = moved[i, c]
    return True


# one-user step ------------------------------------------------------------------------------

_MAX_INT64 = np.int64(np.iinfo(np.int64).max)
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
    above_all = np.empty(m, dtype=np.int64)  # one pass, into room for every column
    tied_all = np.empty(m, dtype=np.int64)
    n_above, size = 0, 0
    for i in range(m):
        if neg[i] < cut:
            above_all[n_above] = i
            n_above += 1
        elif neg[i] == cut:
            tied_all[size] = i
            size += 1
    above, tied = above_all[:n_above], tied_all[:size]
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
    kmin, kmax = _MAX_INT64, -_MAX_INT64 - 1
    for j in range(size):
        key = _tie_key(tied[j], mode, perm, salt)
        keys[j] = key
        kmin, kmax = min(kmin, key), max(kmax, key)
    end = start + width
    if size <= 64 or size <= 2 * width:  # small: sorting it all is cheaper
        order = np.argsort(keys)
        for j in range(width):
            out[n_above + j] = tied[order[(start + j) % size]]
        return out, size
    # the window of ranks [start, end), wrapping past the group's end to [0, end - size)
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
    the lower bound says which of them hold the ranks (their bounding keys found by `select`,
    then only the window sorted); when the guess misses (keys that are not
    spread evenly), `select` finds the bounding keys among all keys. Same entries either
    way."""
    size = keys.size
    span = float(kmax) - float(kmin)
    margin = 4.0 * np.sqrt(size) + 16.0
    t_lo = float(kmin) + span * max(r0 - margin, 0.0) / size
    t_hi = float(kmin) + span * min(r1 + margin, size) / size
    below, n = 0, 0
    room = min(size, int(1.5 * (r1 - r0 + 2 * margin)) + 64)  # enough unless the guess misses
    picked = np.empty(room, dtype=np.int64)
    picked_keys = np.empty(room, dtype=np.int64)
    for j in range(size):
        f = float(keys[j])  # monotone in the key: "below" is a prefix of the key order
        if f < t_lo:
            below += 1
        elif f <= t_hi:
            if n < room:
                picked[n] = tied[j]
                picked_keys[n] = keys[j]
            n += 1
    if below <= r0 and r1 <= below + n and n <= room:
        picked, picked_keys = picked[:n], picked_keys[:n]
        # the ranks r0 - below .. r1 - below - 1 among them: their bounding keys by `select`
        # (linear), then only the window sorted (not the whole neighbourhood)
        scratch = picked_keys.copy()
        low = select(scratch, r0 - below)
        high = select(scratch, r1 - 1 - below)
        _keys_between(picked, picked_keys, low, high, out, at)
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


# The single env's step, one kernel per piece (`agents.deciders.UtilityDecider._decide_one`,
# `simenv.envs.observation.ObservationBuilder._observe_one`, `simenv.users.UserState`'s one-user
# consumption): the numpy calls of one user's row folded into one compiled pass each. Float32
# all through, every operation rounded to float32 as numpy's float32 arithmetic rounds it.

#: Lanes of numpy's float32 einsum reduction (`einsum_dot`); `einsum_order_holds` checks it.
EINSUM_LANES = 4


@njit(cache=True)
def einsum_dot(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Σ a[i]·b[i] of two contiguous float32 vectors added in the order numpy's einsum adds a
    float32 ``"nd,nd->n"`` (``"nkd,nd->nk"``) row with its baseline SIMD loop (4 lanes, no
    FMA): blocks of 16 products, each lane adding its 4 products from the last to the first
    into its running sum, then blocks of 4 (zero-padded at the end), lanes summed as (0 + 1) +
    (2 + 3). `einsum_order_holds` checks this against the numpy in use (a numpy built for
    other SIMD lanes adds in another order: the callers then keep numpy's einsum)."""
    d = a.size
    zero = np.float32(0.0)
    l0 = l1 = l2 = l3 = zero
    i = 0
    while d - i >= 16:
        l0 = a[i] * b[i] + (
            a[i + 4] * b[i + 4] + (a[i + 8] * b[i + 8] + (a[i + 12] * b[i + 12] + l0))
        )
        l1 = a[i + 1] * b[i + 1] + (
            a[i + 5] * b[i + 5] + (a[i + 9] * b[i + 9] + (a[i + 13] * b[i + 13] + l1))
        )
        l2 = a[i + 2] * b[i + 2] + (
            a[i + 6] * b[i + 6] + (a[i + 10] * b[i + 10] + (a[i + 14] * b[i + 14] + l2))
        )
        l3 = a[i + 3] * b[i + 3] + (
            a[i + 7] * b[i + 7] + (a[i + 11] * b[i + 11] + (a[i + 15] * b[i + 15] + l3))
        )
        i += 16
    while i < d:
        l0 = a[i] * b[i] + l0
        l1 = (a[i + 1] * b[i + 1] if i + 1 < d else zero) + l1
        l2 = (a[i + 2] * b[i + 2] if i + 2 < d else zero) + l2
        l3 = (a[i + 3] * b[i + 3] if i + 3 < d else zero) + l3
        i += 4
    return (l0 + l1) + (l2 + l3)  # fmt: skip


@njit(cache=True)
def unit_row_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out`` = `unit_rows` of the one float32 row ``x`` (zeros for an all-zero row)."""
    d = x.size
    squares = np.empty(d, dtype=x.dtype)
    for c in range(d):
        squares[c] = x[c] * x[c]
    norm = np.sqrt(pairwise_sum(squares, 0, d)) if d else x.dtype.type(0.0)
    for c in range(d):
        out[c] = x[c] / norm if norm > 0 else x.dtype.type(0.0)


@njit(cache=True)
def slate_features_one(
    f: np.ndarray,
    match: np.ndarray,
    slate: np.ndarray,
    u: int,
    item_unit: np.ndarray,
    taste: np.ndarray,
    recent_profile: np.ndarray,
    recent: np.ndarray,
    inbox: np.ndarray,
    quality: np.ndarray,
    popularity: np.ndarray,
    conformity: np.ndarray,
    curiosity: np.ndarray,
    boredom: np.ndarray,
    fatigue: np.ndarray,
    position: np.ndarray,
) -> None:
    """One user's slate terms (`agents.deciders.slate_terms`: the taste match and the
    similarity to the unit recent profile by `einsum_dot`, repeat and shared by a scan of the
    user's rows of ``recent`` and ``inbox``) written into ``match`` (k,) and the (F, 1, k + 1)
    feature block ``f`` as `fill_features` writes it. Float32 inputs."""
    k = slate.size
    d = item_unit.shape[1]
    profile = np.empty(d, dtype=np.float32)
    unit_row_into(recent_profile[u], profile)
    similarity = np.empty(k, dtype=np.float32)
    repeat = np.zeros((1, k), dtype=np.bool_)
    shared = np.zeros((1, k), dtype=np.bool_)
    for j in range(k):
        item = slate[j]
        match[j] = einsum_dot(item_unit[item], taste[u])
        similarity[j] = einsum_dot(item_unit[item], profile)
        if item >= 0:
            for h in range(recent.shape[1]):
                if recent[u, h] == item:
                    repeat[0, j] = True
            for h in range(inbox.shape[1]):
                if inbox[u, h] == item:
                    shared[0, j] = True
    users = np.full(1, u, dtype=np.int64)
    fill_features(
        f, match.reshape(1, k), similarity.reshape(1, k), repeat, shared, slate.reshape(1, k),
        users, quality, popularity, conformity, curiosity, boredom, fatigue, position,
    )  # fmt: skip


@njit(cache=True)
def observe_one(
    padded: np.ndarray,
    recent: np.ndarray,
    u: int,
    last_click: np.ndarray,
    last_rating: np.ndarray,
    streak: np.ndarray,
    clicks: np.ndarray,
    impressions: np.ndarray,
    last_tick: np.ndarray,
    tick: int,
    pos: np.float32,
    max_steps: int,
    visit_cap: int,
    streak_cap: np.float32,
    user: np.ndarray,
    profile: np.ndarray,
) -> None:
    """One user's observation (`simenv.envs.observation.ObservationBuilder._observe_rows` of
    one row) written into ``user`` (9,) and ``profile`` (d,): the recent items' rows of
    ``padded`` (the unit features and a zero row that -1 reads) summed one after the other (a
    reduction over axis 0, as numpy adds rows of two or more features), their repetition from
    `einsum_dot`, the profile by `unit_rows`
    clipped to [-1, 1]; the user's statistics are read from the builder's per-user arrays
    (``last_tick`` int64, the others float32)."""
    f32 = np.float32
    width = recent.size
    d = padded.shape[1]
    total = np.zeros(d, dtype=np.float32)
    if width:
        row = recent[0] if recent[0] >= 0 else padded.shape[0] - 1
        for c in range(d):
            total[c] = padded[row, c]
        for h in range(1, width):
            row = recent[h] if recent[h] >= 0 else padded.shape[0] - 1
            for c in range(d):
                total[c] = total[c] + padded[row, c]
    n_empty = 0
    for h in range(width):
        if recent[h] == -1:
            n_empty += 1
    m = f32(width - n_empty)
    pair = einsum_dot(total, total) - m
    denom = m * (m - f32(1.0))
    rep = pair / denom if denom > 0 else f32(0.0)
    rep = min(max(rep, f32(-1.0)), f32(1.0))
    last = last_tick[u]
    gap = min(tick - last, visit_cap) if last >= 0 else visit_cap
    user[0] = last_click[u]
    user[1] = last_rating[u]
    user[2] = min(streak[u], streak_cap) / streak_cap
    user[3] = min(pos / f32(max_steps), f32(1.0))
    user[4] = f32(gap) / f32(visit_cap)
    user[5] = f32(1.0) if last < 0 else f32(0.0)
    user[6] = clicks[u] / (impressions[u] + f32(1.0))
    user[7] = f32(m / f32(max(width, 1)))
    user[8] = max(rep, f32(0.0))
    unit_row_into(total, profile)
    for c in range(d):
        profile[c] = min(max(profile[c], f32(-1.0)), f32(1.0))


@njit(cache=True)
def cosine_one(a: np.ndarray, b: np.ndarray) -> np.float32:
    """Cosine of two float32 rows as ``einsum("nd,nd->n", unit_rows(a), unit_rows(b))``
    computes it for one row (`simenv.users`' similarity of a consumed item to the profile)."""
    unit_a = np.empty(a.size, dtype=np.float32)
    unit_b = np.empty(b.size, dtype=np.float32)
    unit_row_into(a, unit_a)
    unit_row_into(b, unit_b)
    return einsum_dot(unit_a, unit_b)


@njit(cache=True)
def consume_one(
    u: int,
    item: int,
    recent: np.ndarray,
    recent_ptr: np.ndarray,
    recent_profile: np.ndarray,
    genre_history: np.ndarray,
    taste: np.ndarray,
    features: np.ndarray,
    unit: np.ndarray,
    drift: float,
) -> None:
    """One consumption of ``item`` by ``u`` (`simenv.users.UserState._consume` of one row):
    the recent-items ring (the slot after the pointer; the evicted item's features leave the
    profile sum), the genre history, and with ``drift`` > 0 the taste moved that share of the
    way toward the item and made unit length again. Float32, each operation rounded as numpy
    rounds the array expression (a Python float times a float32 array: the float in float32)."""
    f32 = np.float32
    width = recent.shape[1]
    d = features.shape[1]
    slot = recent_ptr[u] % width
    recent_ptr[u] = (slot + 1) % width
    evicted = recent[u, slot]
    for c in range(d):
        old = features[evicted, c] if evicted >= 0 else f32(0.0)
        added = features[item, c]
        recent_profile[u, c] = recent_profile[u, c] + (added - old)
        genre_history[u, c] = genre_history[u, c] + added
    recent[u, slot] = item
    if drift > 0:
        keep, toward = f32(1 - drift), f32(drift)
        moved = np.empty(d, dtype=np.float32)
        for c in range(d):
            moved[c] = keep * taste[u, c] + toward * unit[item, c]
        unit_row_into(moved, taste[u])


@njit(cache=True)
def top_global_one(
    scores: np.ndarray,
    avail: np.ndarray,
    recent: np.ndarray,
    length: int,
    n_cand: int,
    big: float,
    mode: int,
    perm: np.ndarray,
    salt: np.uint64,
    offset: int,
    out: np.ndarray,
) -> bool:
    """One row of a global ranking (`policies.selection._top_global_row`) in one call: the
    scores negated (`negated_scores`), the ``n_cand``-th smallest found (`kth_smallest`, one
    pass, no copy), the head and the rotated window of the tie group ordered
    (`global_head`), then the first ``length`` of those items not in ``recent``; with too
    few, the recent ones follow in order. Writes the items into ``out`` (length,) and returns
    whether they are final: False when a rotated tie group (``offset`` >= 0, more than one
    tied item) ran out, which needs the whole ranking (the items found so far, then -1s)."""
    neg = negated_scores(scores, avail, big)
    cut = kth_smallest(neg, n_cand - 1)
    cols, size = global_head(neg, cut, n_cand, mode, perm, salt, offset)
    kept = 0
    for c in range(n_cand):
        if kept == length:
            break
        item = avail[cols[c]]
        masked = False
        for h in range(recent.size):
            if recent[h] == item:
                masked = True
                break
        if not masked:
            out[kept] = item
            kept += 1
    if kept == length:
        return True
    if offset >= 0 and size > 1:
        out[kept:] = -1
        return False
    for c in range(n_cand):
        if kept == length:
            break
        item = avail[cols[c]]
        for h in range(recent.size):
            if recent[h] == item:
                out[kept] = item
                kept += 1
                break
    return True


@njit(cache=True)
def kth_smallest(a: np.ndarray, k: int) -> float:
    """The ``k``-th smallest entry of ``a`` (``np.partition(a, k)[k]``; no NaN) in one pass,
    ``a`` untouched: a max-heap of the ``k + 1`` smallest entries seen so far, whose top an
    entry replaces only when smaller. The many equal scores of a cold catalog cost one
    comparison each (what `select` on a copy swaps around)."""
    size = k + 1
    heap = np.empty(size, dtype=np.float64)
    for i in range(size):  # sift each of the first size entries up
        v = a[i]
        j = i
        while j > 0:
            parent = (j - 1) // 2
            if heap[parent] >= v:
                break
            heap[j] = heap[parent]
            j = parent
        heap[j] = v
    for i in range(size, a.size):
        v = a[i]
        if v >= heap[0]:
            continue
        j = 0  # the new entry replaces the top and sinks
        while True:
            child = 2 * j + 1
            if child >= size:
                break
            if child + 1 < size and heap[child + 1] > heap[child]:
                child += 1
            if heap[child] <= v:
                break
            heap[j] = heap[child]
            j = child
        heap[j] = v
    return heap[0]


@njit(cache=True)
def recent_profile_one(unit: np.ndarray, recent: np.ndarray, out: np.ndarray) -> None:
    """``out`` (d,) = the unit profile of one user's recent items (-1 entries add a zero row),
    clipped to [-1, 1]: the profile of `simenv.envs.observation.recent_stats` for one row, the
    rows added one after the other as numpy reduces over the history axis (two features or
    more)."""
    f32 = np.float32
    d = unit.shape[1]
    total = np.zeros(d, dtype=np.float32)
    for h in range(recent.size):
        item = recent[h]
        for c in range(d):
            total[c] = total[c] + (unit[item, c] if item >= 0 else f32(0.0))
    unit_row_into(total, out)
    for c in range(d):
        out[c] = min(max(out[c], f32(-1.0)), f32(1.0))


@njit(cache=True)
def explore_one(
    sims: np.ndarray,
    ids: np.ndarray,
    slate: np.ndarray,
    recent: np.ndarray,
    draws: np.ndarray,
    m: int,
) -> None:
    """Write ``m`` novel items into the last slots of ``slate`` (a single env's exploration,
    `simenv.envs.core._explore_one`): the available items ``ids`` whose similarity ``sims`` to
    the user's profile is at most the median's (the lower one of an even count, `select`), not
    in the slate nor in ``recent``, ranked by their ``draws`` (uniform, one per available
    item); the ``m`` smallest draws in increasing order (fewer if fewer are novel), found by
    `select` without sorting the other novel items' draws."""
    n, k = ids.size, slate.size
    kth = (n - 1) // 2
    median = select(sims.copy(), kth)
    novel = np.empty(n, dtype=np.bool_)
    for j in range(n):
        novel[j] = sims[j] <= median
    for j in range(k):
        at = np.searchsorted(ids, slate[j])  # the slate's items are available
        novel[at] = False
    for h in range(recent.size):
        item = recent[h]
        if item >= 0:
            at = min(np.searchsorted(ids, item), n - 1)
            if ids[at] == item:
                novel[at] = False
    count = 0
    for j in range(n):
        if novel[j]:
            count += 1
    m = min(m, count, k)
    if m == 0:
        return
    keys = np.empty(count, dtype=np.float64)
    i = 0
    for j in range(n):
        if novel[j]:
            keys[i] = draws[j]
            i += 1
    # the m smallest keys (distinct draws): bounded by `select`, then only they are sorted
    top = select(keys.copy(), m - 1)
    small = np.empty(m, dtype=np.float64)
    cols = np.empty(m, dtype=np.int64)
    i = 0
    for j in range(n):
        if novel[j] and draws[j] <= top and i < m:
            small[i] = draws[j]
            cols[i] = j
            i += 1
    order = np.argsort(small[:i])
    for j in range(i):
        slate[k - m + j] = ids[cols[order[j]]]

"""The top-k selection engine every policy ranks with, and the check of the slate contract.

A policy only says how good each item is (one global score vector, per-user scores for a chunk
of users, or sampling weights); the functions here turn that into slates that obey the
contract of :meth:`policies.base.Recommender.recommend`:

* only ``available`` items, distinct within a row;
* the user's ``recent`` items are left out while enough other items are available, and come
  last otherwise;
* ties are broken by the policy's own generator (``tie_break="random"``) or by item id
  (``tie_break="id"``), never by global random state;
* fewer available items than slate positions raises :class:`NotEnoughItemsError`.

`check_slates` (and `valid_slates`, which the world calls on whatever a recommender returned)
checks that contract.

Scale: a request may hold 100k users against 10k items, so nothing here builds a dense
(users x items) matrix for all users at once. User-independent scores are ranked once and the
top ``n + history`` candidates are filtered per row; personalised scores are computed and
selected in chunks of rows whose size keeps a chunk near ``CHUNK_BUDGET`` cells.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policies.base import NO_ITEM, RecommendRequest
from simenv import kernels

#: Upper bound on the cells (rows x items) of one chunk of personalised scores.
CHUNK_BUDGET = 1 << 21
#: Upper bound on the rows of one chunk.
MAX_CHUNK_ROWS = 1024

TIE_BREAKS = ("random", "id")


#: ``score_fn(rows, items) -> (len(rows), len(items))`` scores of the request rows ``rows``
#: (an index array) for the item ids ``items``, returned as a new array.
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

_BIG = float(np.finfo(np.float64).max)
_MAX_KEY = np.iinfo(np.int64).max


class NotEnoughItemsError(ValueError):
    """Raised when fewer items are available than a slate (or ranking) needs."""


# --------------------------------------------------------------------------------------------
# tie keys
# --------------------------------------------------------------------------------------------


class TieKeys:
    """Tie-breaking keys for ``m`` candidate columns: smaller key wins a tie.

    ``"id"``: the column index (candidates are sorted by item id, so this is the item id order).
    ``"random"``: random keys, rotated by a random offset per row, so tied rows do not all get
    the same items. By default the keys are a random permutation of the columns drawn from
    ``rng`` (O(m); what the personal rankings key every (row, column) pair with). ``hashed``
    (the global rankings): only a random 64-bit salt is drawn, and a column's key is the
    column-th output of the SplitMix64 generator seeded with it (`splitmix64`), computed for
    the columns that need one: a global ranking keys only the items at or above its cut, so
    its cost does not grow with the catalog. Both are random orders of the columns.
    """

    def __init__(
        self, m: int, n_rows: int, tie_break: str, rng: np.random.Generator, hashed: bool = False
    ) -> None:
        self.m = m
        self.per_row = tie_break == "random"
        self.salt: int | None = None
        self._perm: np.ndarray | None = None
        if tie_break == "random":
            if hashed:
                self.salt = int(rng.integers(0, _MAX_KEY, dtype=np.int64))
            else:
                self._perm = rng.permutation(m).astype(np.int64, copy=False)
            if n_rows == 1:  # the scalar call draws the same number, in a quarter of the time
                self.offset = np.array([rng.integers(0, max(m, 1), dtype=np.int64)])
            else:
                self.offset = rng.integers(0, max(m, 1), size=n_rows, dtype=np.int64)
        elif tie_break == "id":
            self.offset = np.zeros(n_rows, dtype=np.int64)
        else:
            raise ValueError(f"tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        self._inv_perm: np.ndarray | None = None

    @property
    def perm(self) -> np.ndarray:
        """(m,) the key of every column (hashed keys are not a permutation of 0..m-1 but are
        distinct all the same)."""
        if self._perm is None:
            self._perm = self.keys(np.arange(self.m, dtype=np.int64))
        return self._perm

    def keys(self, cols: np.ndarray) -> np.ndarray:
        """(len(cols),) distinct int64 keys of the columns ``cols``, without touching others."""
        if self._perm is not None:
            return self._perm[cols]
        if self.salt is None:  # "id"
            return np.asarray(cols, dtype=np.int64)
        return splitmix64(self.salt, cols)

    @property
    def inv_perm(self) -> np.ndarray:
        """The columns in increasing key order, computed on first use."""
        if self._inv_perm is None:
            perm = self.perm
            if self.salt is None:  # a permutation of 0..m-1
                self._inv_perm = np.empty(self.m, dtype=np.int64)
                self._inv_perm[perm] = np.arange(self.m, dtype=np.int64)
            else:
                self._inv_perm = np.argsort(perm)
        return self._inv_perm

    def subset(self, rows: np.ndarray) -> TieKeys:
        """The same keys for the request rows ``rows`` only (renumbered 0..len(rows)-1)."""
        sub = object.__new__(TieKeys)
        sub.m, sub.per_row, sub.salt = self.m, self.per_row, self.salt
        sub._perm, sub._inv_perm = self._perm, self._inv_perm
        sub.offset = self.offset[rows]
        return sub

    def kernel_keys(self) -> tuple[int, np.ndarray, np.uint64]:
        """How `simenv.kernels` computes these keys: (mode, perm, salt), mode 0 the column
        ("id"), 1 ``perm[column]``, 2 SplitMix64 of ``salt`` (`splitmix64`)."""
        if self._perm is not None:
            return 1, self._perm, np.uint64(0)
        if self.salt is None:
            return 0, _NO_PERM, np.uint64(0)
        return 2, _NO_PERM, np.uint64(self.salt)

    def global_key(self) -> np.ndarray:
        """(m,) keys shared by all rows (used for one global ranking)."""
        return self.perm

    def key(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Keys of (row, column) pairs; ``rows`` are absolute request rows, broadcast (the
        personal rankings' rotation of the permutation; not for ``hashed`` keys)."""
        return (self.perm[cols] + self.offset[rows]) % max(self.m, 1)


_NO_PERM = np.zeros(0, dtype=np.int64)
_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1, _MIX2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(salt: int, cols: np.ndarray) -> np.ndarray:
    """The ``cols``-th outputs (0-based) of the SplitMix64 generator seeded with ``salt``
    (Steele et al. 2014), as int64: distinct for distinct ``cols`` (its output function is a
    bijection of its state, and the states differ), each computed by itself."""
    z = np.asarray(cols, dtype=np.uint64) + np.uint64(1)
    z *= _GOLDEN_GAMMA
    z += np.uint64(salt)
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return z.view(np.int64)


# --------------------------------------------------------------------------------------------
# low-level row helpers
# --------------------------------------------------------------------------------------------


def available_ids(available: np.ndarray) -> np.ndarray:
    """Sorted ids of the available items."""
    # = np.flatnonzero, without its ravel wrapper (the mask is 1-D)
    return np.asarray(available, dtype=bool).reshape(-1).nonzero()[0].astype(np.int64, copy=False)


def recent_of(request: RecommendRequest) -> np.ndarray:
    """The request's ``recent`` as an (n, history) int64 array (history may be 0)."""
    recent = np.asarray(request.recent, dtype=np.int64)
    if recent.ndim != 2 or recent.shape[0] != request.n:
        width = recent.size // request.n if request.n else 0
        recent = recent.reshape(request.n, width)
    return recent


def check_enough(n_available: int, length: int) -> None:
    """Raise :class:`NotEnoughItemsError` unless ``length`` distinct items can be served."""
    if length > n_available:
        raise NotEnoughItemsError(
            f"cannot fill {length} distinct slate positions: only {n_available} items are available"
        )


def positions(ids: np.ndarray, n_items: int) -> np.ndarray:
    """Lookup table ``pos[item] = index of item in ids`` (``-1`` if absent), of size n_items."""
    pos = np.full(n_items, -1, dtype=np.int64)
    pos[ids] = np.arange(ids.size, dtype=np.int64)
    return pos


def lookup(pos: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``pos[items]`` that tolerates ``NO_ITEM`` and out-of-range ids (mapped to ``-1``)."""
    items = np.asarray(items, dtype=np.int64)
    ok = (items >= 0) & (items < pos.size)
    return np.where(ok, pos[np.where(ok, items, 0)], -1)


def first_distinct(cands: np.ndarray, length: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per row, the first ``length`` entries of ``cands`` that are valid (``>= 0``), not in that
    row of ``exclude`` and not repeats of an earlier entry; ``NO_ITEM`` where a row runs out.

    Vectorised by one stable sort per row: (rows, n_exclude + n_cands) work.
    """
    cands = np.asarray(cands, dtype=np.int64)
    rows, n_c = cands.shape
    if rows == 1:  # one user (a session env step): a Python walk beats the sorts
        return _first_distinct_row(cands[0], length, None if exclude is None else exclude[0])
    n_e = 0 if exclude is None else exclude.shape[1]
    full = cands if exclude is None else np.concatenate([exclude.astype(np.int64), cands], 1)
    order = np.argsort(full, axis=1, kind="stable")
    srt = np.take_along_axis(full, order, 1)
    dup_sorted = np.zeros(full.shape, dtype=bool)
    dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
    dup = np.empty_like(dup_sorted)
    np.put_along_axis(dup, order, dup_sorted, 1)
    ok = ~dup[:, n_e:] & (cands >= 0)
    pick = np.argsort(~ok, axis=1, kind="stable")[:, :length]
    out = np.take_along_axis(cands, pick, 1)
    out[~np.take_along_axis(ok, pick, 1)] = NO_ITEM
    if out.shape[1] < length:
        out = np.concatenate([out, np.full((rows, length - n_c), NO_ITEM, np.int64)], 1)
    return out


def _first_distinct_row(cands: np.ndarray, length: int, exclude: np.ndarray | None) -> np.ndarray:
    """`first_distinct` of one row, as a (1, length) array."""
    seen = set() if exclude is None else set(exclude.tolist())
    out: list[int] = []
    for c in cands.tolist():
        if len(out) == length:
            break
        if c >= 0 and c not in seen:
            out.append(c)
        seen.add(c)
    out += [NO_ITEM] * (length - len(out))
    return np.array([out], dtype=np.int64)


def _complete(out: np.ndarray, fallback: np.ndarray, recent: np.ndarray, length: int) -> np.ndarray:
    """Fill ``NO_ITEM`` holes of ``out`` from the (m,) ``fallback`` order: first without the
    row's ``recent`` items, then with them. ``fallback`` must hold >= ``length`` distinct ids."""
    holes = np.flatnonzero((out < 0).any(1))
    if holes.size == 0:
        return out
    head = fallback[: length + recent.shape[1]]
    cands = np.concatenate([out[holes], np.broadcast_to(head, (holes.size, head.size))], 1)
    fixed = first_distinct(cands, length, recent[holes])
    still = (fixed < 0).any(1)
    if still.any():
        cands = np.concatenate(
            [fixed[still], np.broadcast_to(fallback, (int(still.sum()), fallback.size))], 1
        )
        fixed[still] = first_distinct(cands, length)
    out[holes] = fixed
    return out


# --------------------------------------------------------------------------------------------
# the three selection strategies
# --------------------------------------------------------------------------------------------


def _head_order(
    neg: np.ndarray, keys: Callable[[np.ndarray], np.ndarray], n: int
) -> tuple[np.ndarray, int]:
    """The first entries of ``np.lexsort((keys(all), neg))`` (keys distinct) down to the end of
    the group of entries equal to the ``n``-th smallest ``neg``, and the start of that group.

    The same as sorting everything and cutting at the group's end, in O(m + head log head),
    with keys computed for the head only (``keys(cols)``: `TieKeys.keys`).
    """
    cut = np.partition(neg, n - 1)[n - 1]
    above = np.flatnonzero(neg < cut)
    tied = np.flatnonzero(neg == cut)
    above = above[np.lexsort((keys(above), neg[above]))]
    tied = tied[np.argsort(keys(tied))]
    return np.concatenate([above, tied]), int(above.size)


def _rotated_top(
    items: np.ndarray, g0: int, n_cand: int, offset: np.ndarray, recent: np.ndarray, length: int
) -> np.ndarray:
    """`first_distinct` of each row's candidates ``items[:g0]`` followed by the tie group
    ``items[g0:]`` rotated by the row's ``offset``, cut at ``n_cand``, without each row's
    ``recent`` items (``NO_ITEM`` where a row runs out).

    The candidates of a row are distinct (the head and the group are disjoint, a rotation
    repeats nothing within ``n_cand``), so only the recent items need masking: one compiled
    pass per row (`simenv.kernels.rotated_top`), O(rows · (length + history)), no per-row sort.
    """
    items = np.asarray(items, dtype=np.int64)
    shift = np.asarray(offset, dtype=np.int64) % (items.size - g0)  # (rows,) in [0, size)
    return kernels.rotated_top(items[:g0], items[g0:], shift, n_cand, recent, length)


def first_unmasked(
    cands: np.ndarray, masked: np.ndarray, length: int, then_masked: bool = False
) -> np.ndarray:
    """Per row, the first ``length`` entries of ``cands`` whose ``masked`` is false, in order;
    where a row has fewer, ``NO_ITEM`` (or, ``then_masked``, its masked entries in order).
    What ``cands`` ordered by a stable argsort of ``masked`` gives, without the per-row sort
    when every row has enough: a row-major boolean selection; else a scatter by the running
    count (or the sort)."""
    rows = cands.shape[0]
    keep = ~masked
    count = np.cumsum(keep, axis=1, dtype=np.int32)
    take = keep & (count <= length)
    if rows == 0 or (count[:, -1] >= length).all():
        return cands[take].reshape(rows, length)
    if then_masked:
        pick = np.argsort(masked, axis=1, kind="stable")[:, :length]
        return np.take_along_axis(cands, pick, 1)
    out = np.full((rows, length), NO_ITEM, dtype=np.int64)
    r, c = np.nonzero(take)
    out[r, count[r, c] - 1] = cands[r, c]
    return out


def top_global(
    scores: np.ndarray,
    avail: np.ndarray,
    recent: np.ndarray,
    length: int,
    ties: TieKeys,
) -> np.ndarray:
    """Top ``length`` items of one user-independent score vector for every row.

    ``scores`` has one entry per item id (or per ``avail`` entry); ``avail`` are the sorted
    available ids; ``recent`` is (rows, history). Work is O(m log m + rows * (length +
    history)).
    """
    m = avail.size
    check_enough(m, length)
    rows = recent.shape[0]
    if length == 0 or rows == 0:
        return np.zeros((rows, length), dtype=np.int64)
    n_cand = min(m, length + recent.shape[1])
    if rows == 1:  # the scores are read by the kernel, once
        return _top_global_row(np.asarray(scores), avail, recent, length, ties, n_cand)
    s = _available_scores(scores, avail)
    order, g0 = _head_order(-s, ties.keys, n_cand)
    g1 = order.size
    if ties.per_row and g1 - g0 > 1:
        # the tie group at the cut-off: each row gets it rotated by its own offset, so tied
        # items (cold items, unseen bandit arms) are spread over the users
        out = _rotated_top(avail[order], g0, n_cand, ties.offset, recent, length)
        if (out < 0).any():  # rows that ran out: the whole ranking is needed
            out = _complete(out, _full_ranking(s, avail, ties), recent, length)
        return out
    cand = avail[order[:n_cand]]
    # one compiled pass per row over the same candidates for every row (no tie group)
    out = kernels.rotated_top(cand, cand[:0], np.zeros(rows, np.int64), n_cand, recent, length)
    if (out < 0).any():  # rows that ran out (fewer than length + history items available)
        return _top_recent_last(cand, recent, length)
    return out


def _top_recent_last(cand: np.ndarray, recent: np.ndarray, length: int) -> np.ndarray:
    """Per row, the first ``length`` of the shared candidates ``cand`` that are not in its row
    of ``recent``, then its recent ones, in candidate order (`first_unmasked` with
    ``then_masked``): what `top_global` gives when a row has too few other items."""
    rows, n_cand = recent.shape[0], cand.size
    pos = positions(cand, int(cand.max()) + 1)
    p = lookup(pos, recent)
    masked = np.zeros((rows, n_cand), dtype=bool)
    rr, cc = np.nonzero(p >= 0)
    masked[rr, p[rr, cc]] = True
    return first_unmasked(np.broadcast_to(cand, (rows, n_cand)), masked, length, True)


def _available_scores(scores: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """The scores of the available items as float64 (``scores`` per item id or per ``avail``
    entry), NaN and -inf as the lowest finite value, +inf as the highest."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size != avail.size:
        s = s[avail]
    if not np.isfinite(s).all():
        s = np.nan_to_num(s, nan=-_BIG, posinf=_BIG, neginf=-_BIG)
    return s


def _full_ranking(s: np.ndarray, avail: np.ndarray, ties: TieKeys) -> np.ndarray:
    """Every available id by decreasing score, ties by key (what a row that ran out needs)."""
    return avail[np.lexsort((ties.global_key(), -s))]


def _top_global_row(
    s: np.ndarray, avail: np.ndarray, recent: np.ndarray, length: int, ties: TieKeys, n_cand: int
) -> np.ndarray:
    """`top_global` of one row (a single env's step), (1, length), from the raw ``s``
    (scores per item id or per available item): the same slate, with the scores read, the
    cut-off found, the head and the row's rotated window of the cut-off's tie group selected
    and the recent items skipped in one compiled call (`simenv.kernels.top_global_one`;
    `global_head`: tie keys for the tie group only, no sort of it; a cold catalog is one big
    tie group)."""
    mode, perm, salt = ties.kernel_keys()
    offset = int(ties.offset[0]) if ties.per_row else -1
    row = np.empty(length, dtype=np.int64)
    final = kernels.top_global_one(
        s, avail, recent[0], length, n_cand, _BIG, mode, perm, salt, offset, row
    )
    if final:
        return row[None]
    # as `first_distinct`: the row ran out of a rotated tie group, the whole ranking is needed
    ranking = _full_ranking(_available_scores(s, avail), avail, ties)
    return _complete(row[None], ranking, recent, length)


KeyFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
WalkFn = Callable[[np.ndarray, int], np.ndarray]


def _top_exact(s: np.ndarray, length: int, key: KeyFn, walk: WalkFn | None = None) -> np.ndarray:
    """Column indices of the top ``length`` of each row of ``s`` (c, w), best first; ties go to
    the smaller ``key(local_rows, cols)``. ``walk(local_rows, width)`` may list each row's first
    ``width`` columns in increasing key order, which resolves a big tie group (a cold user whose
    scores are all equal) without sorting all keys."""
    c, w = s.shape
    ar = np.arange(c)
    kth = w - length
    part = np.argpartition(s, kth, axis=1)
    thr = s[ar, part[:, kth]]
    gt = s > thr[:, None]
    eq = s == thr[:, None]
    need = length - gt.sum(1)
    sel = gt | eq
    tied = np.flatnonzero(eq.sum(1) > need)
    if tied.size:
        sel[tied] = gt[tied]
        todo = tied
        if walk is not None:
            width = min(w, max(64, 4 * int(need[tied].max())))
            cols = walk(tied, width)
            hit = np.take_along_axis(eq[tied], cols, 1)
            csum = np.cumsum(hit, 1)
            done = csum[:, -1] >= need[tied]
            rr, cc = np.nonzero(hit & (csum <= need[tied][:, None]) & done[:, None])
            sel[tied[rr], cols[rr, cc]] = True
            todo = tied[~done]
        if todo.size:
            keys = np.where(eq[todo], key(todo[:, None], np.arange(w)[None, :]), _MAX_KEY)
            width = int(need[todo].max())
            small = np.argpartition(keys, width - 1, axis=1)[:, :width]
            small = np.take_along_axis(small, np.argsort(np.take_along_axis(keys, small, 1), 1), 1)
            keep = np.arange(width)[None, :] < need[todo][:, None]
            sel[todo[np.nonzero(keep)[0]], small[keep]] = True
    cols = np.nonzero(sel)[1].reshape(c, length)
    order = np.lexsort((key(ar[:, None], cols), -np.take_along_axis(s, cols, 1)), axis=-1)
    return np.take_along_axis(cols, order, 1)


def _block_size(m: int, length: int) -> int:
    """Block width for the block-maximum pre-selection (0: not worth it)."""
    if m < 256:
        return 0
    bs = max(4, int(np.sqrt(m / max(length, 1))))
    return bs if -(-m // bs) > 2 * length else 0


def _topn_rows(s: np.ndarray, length: int, ties: TieKeys, abs_rows: np.ndarray) -> np.ndarray:
    """Column indices of the top ``length`` of each row of ``s`` (c, m), best first, ties by
    ``ties`` keys; ``abs_rows`` are the request rows of the rows of ``s``.

    Pre-selection by block maxima: with the row cut into blocks of ``bs`` columns, if exactly
    ``length`` blocks have a maximum >= the ``length``-th largest block maximum, every item of
    the top ``length`` lies in those blocks, so only ``length * bs`` candidates are ranked.
    Rows where block maxima tie at that cut go through the exact full-row selection.
    """
    c, m = s.shape

    def walk_of(rows_abs: np.ndarray) -> WalkFn:
        def walk(ri: np.ndarray, width: int) -> np.ndarray:
            steps = np.arange(width)[None, :] - ties.offset[rows_abs[ri]][:, None]
            return ties.inv_perm[steps % m]

        return walk

    bs = _block_size(m, length)
    if not bs:
        return _top_exact(s, length, lambda ri, cj: ties.key(abs_rows[ri], cj), walk_of(abs_rows))
    starts = np.arange(0, m, bs)
    block_max = np.maximum.reduceat(s, starts, axis=1)
    kth = starts.size - length
    bpart = np.argpartition(block_max, kth, axis=1)
    v = block_max[np.arange(c), bpart[:, kth]]
    clean = (block_max >= v[:, None]).sum(1) == length
    out = np.empty((c, length), dtype=np.int64)
    slow = np.flatnonzero(~clean)
    if slow.size:
        rs = abs_rows[slow]
        out[slow] = _top_exact(s[slow], length, lambda ri, cj: ties.key(rs[ri], cj), walk_of(rs))
    fast = np.flatnonzero(clean)
    if fast.size:
        rf = abs_rows[fast]
        blocks = starts[bpart[fast, kth:]]  # (f, length) first columns of the chosen blocks
        cols = (blocks[:, :, None] + np.arange(bs)).reshape(fast.size, length * bs)
        over = cols >= m  # the last block may be short
        cols = np.minimum(cols, m - 1)
        sub = s[fast[:, None], cols]
        sub[over] = -np.inf  # never selected: these rows' top items are all > their v > -inf
        local = _top_exact(sub, length, lambda ri, cj: ties.key(rf[ri], cols[ri, cj]))
        out[fast] = np.take_along_axis(cols, local, 1)
    return out


def chunk_size(n_cols: int, budget: int = CHUNK_BUDGET) -> int:
    """Rows per chunk so that a chunk holds about ``budget`` cells (1..MAX_CHUNK_ROWS)."""
    return int(max(1, min(MAX_CHUNK_ROWS, budget // max(n_cols, 1))))


def top_personal(
    score_fn: ScoreFn,
    avail: np.ndarray,
    recent: np.ndarray,
    length: int,
    ties: TieKeys,
    n_items: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Top ``length`` items per row from personalised scores, computed chunk by chunk.

    ``score_fn(rows, avail)`` returns the (len(rows), len(avail)) scores of the request rows
    ``rows`` (an index array) as a new array (it is edited in place); NaN scores rank below
    every finite one, and the row's ``recent`` items below everything. ``rows`` restricts the
    work to those request rows (default: all); the result has one row per selected row.
    """
    m = avail.size
    check_enough(m, length)
    rows = np.arange(recent.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((rows.size, length), dtype=np.int64)
    if length == 0 or rows.size == 0:
        return out
    pos = positions(avail, n_items)
    step = chunk_size(m)
    for start in range(0, rows.size, step):
        chunk = rows[start : start + step]
        s = np.asarray(score_fn(chunk, avail), dtype=np.float64)
        if not s.flags.writeable:
            s = s.copy()
        if s.shape != (chunk.size, m):
            raise ValueError(f"score_fn returned shape {s.shape}, expected {(chunk.size, m)}")
        if not np.isfinite(s).all():
            np.nan_to_num(s, copy=False, nan=-_BIG, posinf=_BIG, neginf=-_BIG)
        p = lookup(pos, recent[chunk])
        rr, cc = np.nonzero(p >= 0)
        s[rr, p[rr, cc]] = -np.inf
        out[start : start + chunk.size] = avail[_topn_rows(s, length, ties, chunk)]
    return out


def sample_distinct(
    weights: np.ndarray | None,
    avail: np.ndarray,
    recent: np.ndarray,
    length: int,
    rng: np.random.Generator,
    fallback: np.ndarray | None = None,
    attempts: int = 4,
) -> np.ndarray:
    """Sample ``length`` distinct items per row without replacement, proportionally to
    ``weights`` over ``avail`` (uniform when ``None``), leaving out the row's ``recent`` items.

    Successive sampling without replacement equals keeping the first distinct draws of an
    i.i.d. sequence, so each attempt draws i.i.d. batches and keeps new distinct items. Rows
    still short after ``attempts`` (very peaked weights, tiny catalog) are completed from the
    ``fallback`` order of available ids (default: ``avail`` sorted by decreasing weight).
    """
    m = avail.size
    check_enough(m, length)
    n_rows = recent.shape[0]
    out = np.full((n_rows, length), NO_ITEM, dtype=np.int64)
    if n_rows == 0 or length == 0:
        return out
    cdf = None
    if weights is not None:
        w = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=0.0, posinf=0.0)
        w = np.clip(w, 0.0, None)
        total = w.sum()
        if total > 0 and np.isfinite(total):
            cdf = np.cumsum(w / total)
    todo = np.arange(n_rows)
    n_draws = 2 * length + recent.shape[1]
    for _ in range(attempts):
        if todo.size == 0:
            break
        if cdf is None:
            draws = rng.integers(0, m, size=(todo.size, n_draws))
        else:
            u = rng.random((todo.size, n_draws))
            draws = np.minimum(np.searchsorted(cdf, u, side="right"), m - 1)
        cands = np.concatenate([out[todo], avail[draws]], 1)
        out[todo] = first_distinct(cands, length, recent[todo])
        todo = todo[(out[todo] < 0).any(1)]
        n_draws *= 2
    if todo.size:
        if fallback is None:
            if weights is None:
                fallback = avail[rng.permutation(m)]
            else:
                fallback = avail[np.argsort(-np.asarray(weights, np.float64), kind="stable")]
        out[todo] = _complete(out[todo], fallback, recent[todo], length)
    return out


def mix_slates(primary: np.ndarray, secondary: np.ndarray, use_secondary: np.ndarray) -> np.ndarray:
    """Per row, fill the positions where ``use_secondary`` is false with ``primary``'s items in
    order and the others with ``secondary``'s first items not already used (then with the rest
    of ``primary``). All of (rows, k); rows of ``primary`` must hold k distinct items."""
    k = primary.shape[1]
    n_sec = use_secondary.sum(1)
    used = np.arange(k)[None, :] < (k - n_sec)[:, None]
    taken = np.where(used, primary, NO_ITEM)
    extra = first_distinct(np.concatenate([secondary, primary], 1), k, taken)
    take_extra = np.arange(k)[None, :] < n_sec[:, None]
    out = np.empty_like(primary)
    out[~use_secondary] = primary[used]
    out[use_secondary] = extra[take_extra]
    return out


# --------------------------------------------------------------------------------------------
# the slate contract
# --------------------------------------------------------------------------------------------


class InvalidSlatesError(ValueError):
    """Slates that break the contract of :meth:`policies.base.Recommender.recommend`."""


def valid_slates(
    slates: np.ndarray,
    available: np.ndarray,
    shape: tuple[int, int],
    who: str = "the policy",
    any_integer: bool = False,
) -> np.ndarray:
    """``slates`` as int64 if they have ``shape`` and each row holds distinct ``available``
    items, else :class:`InvalidSlatesError` with a message that begins with ``who``.

    ``any_integer``: accept any array-like of integers (converted to int64); otherwise only an
    int64 ndarray passes, as the contract asks.
    """
    arr = np.asarray(slates)
    if any_integer:
        typed = arr.dtype.kind in "iu"  # = np.issubdtype(dtype, np.integer), cheaper
    else:
        typed = isinstance(slates, np.ndarray) and arr.dtype == np.int64
    if arr.shape != shape or not typed:
        kind = arr.dtype if any_integer or isinstance(slates, np.ndarray) else type(slates).__name__
        expected = "integer item ids" if any_integer else "an int64 ndarray"
        raise InvalidSlatesError(
            f"{who} returned {kind} slates of shape {arr.shape}, "
            f"expected {expected} of shape {shape}"
        )
    arr = arr.astype(np.int64, copy=False)
    if shape[0] == 1 and shape[1]:  # one slate (a single env's step): checked as a list
        row = arr[0].tolist()
        if min(row) < 0 or max(row) >= available.size:
            raise InvalidSlatesError(f"{who} returned item ids outside [0, {available.size})")
        if not available[arr].all():
            raise InvalidSlatesError(f"{who} recommended items that are not available")
        if len(set(row)) < len(row):
            raise InvalidSlatesError(f"{who} recommended an item twice in one slate")
        return arr
    outside, unavailable, repeated = kernels.slate_faults(arr, available)
    if outside:
        raise InvalidSlatesError(f"{who} returned item ids outside [0, {available.size})")
    if unavailable:
        raise InvalidSlatesError(f"{who} recommended items that are not available")
    if repeated:
        raise InvalidSlatesError(f"{who} recommended an item twice in one slate")
    return arr


def check_slates(slates: np.ndarray, request: RecommendRequest, length: int | None = None) -> None:
    """Raise :class:`InvalidSlatesError` (a ``ValueError``) unless ``slates`` is an
    (n, length) int64 array of distinct available items per row (``length`` defaults to
    ``request.k``)."""
    length = request.k if length is None else length
    valid_slates(slates, request.available, (request.n, length))

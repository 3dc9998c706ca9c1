"""The one-user step's numba kernels (`simenv.kernels`, "one-user step") against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from policies.selection import TieKeys, splitmix64
from simenv import kernels


def _reference(
    neg: np.ndarray, n_cand: int, keys: np.ndarray, offset: int
) -> tuple[np.ndarray, int]:
    """`kernels.global_head` by a full sort: every column by (neg, key), the head down to the
    cut's tie group, the group rotated by ``offset`` (none if < 0)."""
    order = np.lexsort((keys, neg))
    cut = neg[order[n_cand - 1]]
    g0, size = int((neg < cut).sum()), int((neg == cut).sum())
    group = order[g0 : g0 + size]
    start = offset % size if offset >= 0 and size > 1 else 0
    window = group[(start + np.arange(n_cand - g0)) % size]
    return np.concatenate([order[:g0], window]), size


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_global_head_equals_a_full_sort(mode: int) -> None:
    rng = np.random.default_rng(mode)
    for trial in range(300):
        m = int(rng.choice([5, 40, 300, 3000]))
        neg = -rng.integers(0, int(rng.choice([2, 4, 50])), m).astype(np.float64)
        if trial % 5 == 0:
            neg[:] = -0.0  # a cold catalog: one tie group
        n_cand = int(rng.integers(1, min(m, 40) + 1))
        perm = rng.permutation(m).astype(np.int64)
        salt = int(rng.integers(0, 2**63 - 1))
        keys = [np.arange(m), perm, splitmix64(salt, np.arange(m))][mode]
        offset = int(rng.integers(-1, m))
        cut = np.partition(neg, n_cand - 1)[n_cand - 1]
        no_perm = np.zeros(0, np.int64)
        got, size = kernels.global_head(
            neg, cut, n_cand, mode, perm if mode == 1 else no_perm, np.uint64(salt), offset
        )
        ref, ref_size = _reference(neg, n_cand, keys, offset)
        np.testing.assert_array_equal(got, ref, err_msg=f"trial {trial}")
        assert size == ref_size


def test_tie_keys_in_the_kernel_are_the_numpy_keys() -> None:
    rng = np.random.default_rng(9)
    for hashed in (True, False):
        ties = TieKeys(500, 1, "random", rng, hashed=hashed)
        mode, perm, salt = ties.kernel_keys()
        cols = np.arange(500)
        got = [kernels._tie_key(int(c), mode, perm, salt) for c in cols]
        np.testing.assert_array_equal(got, ties.keys(cols))


def test_select_is_numpy_partition() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        a = rng.integers(-5, int(rng.choice([3, 10**9])), int(rng.integers(1, 400)))
        k = int(rng.integers(0, a.size))
        work = a.copy()
        assert kernels.select(work, k) == np.partition(a, k)[k]
        np.testing.assert_array_equal(np.sort(work), np.sort(a))  # reordered, not changed


def test_rank_window_is_a_slice_of_the_sorted_keys() -> None:
    """Evenly spread keys (the one-pass guess) and skewed ones (the guess misses: `select`)."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        size = int(rng.integers(1, 3000))
        if trial % 2:
            keys = splitmix64(int(rng.integers(0, 2**62)), np.arange(size))
        else:  # most keys bunched near the bottom, a few huge
            keys = rng.choice(10 * size, size, replace=False).astype(np.int64)
            keys[rng.random(size) < 0.05] += 2**60
        tied = rng.permutation(size).astype(np.int64) + 7
        r0 = int(rng.integers(0, size))
        r1 = int(rng.integers(r0 + 1, size + 1))
        out = np.full(r1 - r0 + 3, -1, dtype=np.int64)
        kernels.rank_window(tied, keys, r0, r1, keys.min(), keys.max(), out, 2)
        np.testing.assert_array_equal(out[2 : 2 + r1 - r0], tied[np.argsort(keys)][r0:r1])
        assert out[0] == out[1] == out[-1] == -1


def test_negated_scores_are_minus_the_cleaned_available_scores() -> None:
    from policies.selection import _BIG, _available_scores

    rng = np.random.default_rng(8)
    for _ in range(100):
        n = int(rng.integers(1, 200))
        scores = rng.normal(size=n)
        scores[rng.random(n) < 0.1] = np.nan
        scores[rng.random(n) < 0.05] = np.inf
        scores[rng.random(n) < 0.05] = -np.inf
        scores[rng.random(n) < 0.2] = 0.0
        avail = np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False))
        for s in (scores, scores[avail]):  # per item id, per available item
            ref = -_available_scores(s, avail)
            got = kernels.negated_scores(s, avail, _BIG)
            assert got.tobytes() == ref.tobytes()  # the same bits, signed zeros included


def test_select_on_many_equal_floats() -> None:
    rng = np.random.default_rng(10)
    for _ in range(100):
        a = -rng.integers(0, 3, int(rng.integers(1, 5000))).astype(np.float64)
        k = int(rng.integers(0, a.size))
        assert kernels.select(a.copy(), k) == np.partition(a, k)[k]

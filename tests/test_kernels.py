"""Each compiled kernel of `simenv.kernels` gives exactly what a plain numpy reference gives,
on random inputs and on the edge cases (no rows, empty lists, padding, rows that run out)."""

from __future__ import annotations

import numpy as np
import pytest

from simenv import kernels

# world tick ---------------------------------------------------------------------------------


def _rotated_top_reference(
    head: np.ndarray,
    group: np.ndarray,
    shift: np.ndarray,
    n_cand: int,
    recent: np.ndarray,
    length: int,
) -> np.ndarray:
    out = np.full((recent.shape[0], length), -1, dtype=np.int64)
    for r in range(recent.shape[0]):
        cands = np.concatenate([head, np.roll(group, -int(shift[r]))])[:n_cand]
        kept = cands[~np.isin(cands, recent[r])][:length]
        out[r, : kept.size] = kept
    return out


@pytest.mark.parametrize("seed", range(6))
def test_rotated_top_is_the_first_candidates_not_recent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(12, 60))
    items = rng.permutation(n_items).astype(np.int64)
    g0 = int(rng.integers(0, 6))
    length = int(rng.integers(1, 6))
    width = int(rng.integers(0, 12))
    n_cand = min(n_items, g0 + int(rng.integers(1, length + width + 2)))
    rows = int(rng.integers(0, 40))
    head, group = items[:g0], items[g0:]
    shift = rng.integers(0, group.size, size=rows).astype(np.int64)
    recent = rng.integers(-1, n_items + 5, size=(rows, width))  # padding and unknown ids too
    recent[: rows // 3] = items[:width]  # rows that lose the head (and may run out)
    got = kernels.rotated_top(head, group, shift, n_cand, recent, length)
    expected = _rotated_top_reference(head, group, shift, n_cand, recent, length)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64 and got.shape == (rows, length)


def test_rotated_top_of_a_row_that_runs_out_pads_with_minus_one() -> None:
    items = np.arange(4, dtype=np.int64)
    recent = np.array([[0, 1, 2], [-1, -1, -1]])
    got = kernels.rotated_top(items[:1], items[1:], np.array([1, 2]), 4, recent, 3)
    np.testing.assert_array_equal(got, [[3, -1, -1], [0, 3, 1]])


def _holds_any_reference(slates: np.ndarray, lists: np.ndarray, rows: np.ndarray) -> np.ndarray:
    held = lists[rows]
    return ((slates[:, :, None] == held[:, None, :]) & (held[:, None, :] >= 0)).any(axis=2)


@pytest.mark.parametrize("seed", range(6))
def test_holds_any_is_membership_in_the_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ids = int(rng.integers(1, 40))
    n, k, width = int(rng.integers(0, 50)), int(rng.integers(1, 8)), int(rng.integers(0, 10))
    lists = rng.integers(-1, n_ids + 3, size=(int(rng.integers(1, 60)), width))  # ids >= n_ids
    rows = rng.integers(0, lists.shape[0], size=n)  # rows repeat and are out of order
    slates = rng.integers(-1, n_ids, size=(n, k))
    got = kernels.holds_any(slates, lists, rows, n_ids)
    np.testing.assert_array_equal(got, _holds_any_reference(slates, lists, rows))
    assert got.dtype == np.bool_ and got.shape == (n, k)

"""Vectorised numeric helpers shared by the metric definitions (no Python loops over rows)."""

from __future__ import annotations

from typing import SupportsFloat

import numpy as np

from simenv import kernels

NAN = float("nan")


def safe_ratio(num: SupportsFloat, den: SupportsFloat) -> float:
    """``num / den``, or ``nan`` when ``den`` is zero."""
    d = float(den)
    return float(num) / d if d else NAN


def safe_mean(x: np.ndarray) -> float:
    """Mean as float64, or ``nan`` for an empty array."""
    return float(np.mean(x, dtype=np.float64)) if x.size else NAN


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values: 0 when all equal, (n-1)/n when one holds all.

    G = 2·Σᵢ i·x₍ᵢ₎ / (n·Σx) − (n+1)/n over the ascending order statistics x₍₁₎..x₍ₙ₎
    (equal to Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² mean)); ``nan`` when n = 0 or Σx = 0.
    """
    v = np.sort(np.asarray(x, dtype=np.float64).ravel())
    n = v.size
    total = v.sum()
    if n == 0 or total <= 0:
        return NAN
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float(2.0 * (ranks @ v) / (n * total) - (n + 1) / n)


def entropy_bits(p: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each row of a row-normalised array (0·log 0 = 0)."""
    p = np.asarray(p, dtype=np.float64)
    logs = np.log2(p, out=np.zeros_like(p), where=p > 0)
    logs *= p
    return np.asarray(-logs.sum(axis=-1))


def slate_sum(table: np.ndarray, slates: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Σ over slate positions of ``table[item]``: (R, d) float64 from an (n_items, d) table,
    for the slates ``slates[rows]`` (all of them by default).

    The positions are added in order (`simenv.kernels.slate_sum`), one pass over the slates:
    no (R, k, d) gather, memory O(R·d).
    """
    if rows is None:
        rows = np.arange(slates.shape[0])
    return kernels.slate_sum(table, slates, np.asarray(rows, dtype=np.int64))


def mean_pairwise_cosine(sum_vec: np.ndarray, sum_sq: np.ndarray, m: int) -> np.ndarray:
    """Mean cosine similarity over the unordered pairs of a group of m unit (or zero) vectors.

    Takes the group's vector sum ``sum_vec`` (..., d) and sum of squared norms ``sum_sq`` (...)
    and uses Σ_{i<j} uᵢ·uⱼ = (‖Σuᵢ‖² − Σ‖uᵢ‖²)/2, so the cost is O(m·d) per group instead of
    O(m²·d). A zero vector has similarity 0 with everything. Needs m ≥ 2.
    """
    return np.asarray(((sum_vec * sum_vec).sum(axis=-1) - sum_sq) / (m * (m - 1)))

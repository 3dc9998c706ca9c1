"""Taste metrics of one tick: how far tastes drifted from the start and how far apart they are."""

from __future__ import annotations

import numpy as np

from simenv import kernels
from simenv.arrays import unit_rows
from simenv.metrics._math import NAN, mean_pairwise_cosine, safe_mean
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register


@register("taste_drift", higher_is_better=None, inputs=("taste", "taste_initial"), heavy=True)
def taste_drift(ctx: MetricContext) -> float:
    """Mean over all users of the L2 distance ‖taste − taste_initial‖₂ between the current
    and the tick-0 taste vectors; nan when n_users = 0."""
    if ctx.taste.shape[1] > kernels.PAIRWISE_BLOCK:
        diff = ctx.taste.astype(np.float64) - ctx.taste_initial.astype(np.float64)
        return safe_mean(np.linalg.norm(diff, axis=1))
    return safe_mean(kernels.distances(ctx.taste, ctx.taste_initial))  # the same norms


@register("polarization", higher_is_better=None, inputs=("taste", "present"), heavy=True)
def polarization(ctx: MetricContext) -> float:
    """Mean pairwise cosine distance between the taste vectors of the present users:
    mean over unordered pairs i<j of (1 − cos(tasteᵢ, tasteⱼ)), computed exactly in O(n·d) as
    1 − (‖Σuᵢ‖² − Σ‖uᵢ‖²) / (n(n−1)) with uᵢ = tasteᵢ/‖tasteᵢ‖ (a zero taste is at distance 1
    from everyone). 0 when all tastes point the same way; 1 for orthogonal tastes (the maximum
    for non-negative tastes); up to 2 for opposite ones. nan with fewer than 2 present users."""
    u = unit_rows(ctx.taste[ctx.present], np.float64)
    n = u.shape[0]
    if n < 2:
        return NAN
    sim = mean_pairwise_cosine(u.sum(axis=0), (u * u).sum(), n)
    return float(1.0 - sim)

"""Population metrics of one tick: activity, presence, churn, return, taste dynamics."""

from __future__ import annotations

import numpy as np

from simenv.arrays import unit_rows
from simenv.metrics._math import NAN, mean_pairwise_cosine, safe_mean, safe_ratio
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register


def _mask(n: int, ids: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[ids] = True
    return m


@register("active_users", higher_is_better=True, inputs=("active",))
def active_users(ctx: MetricContext) -> float:
    """Number of users who had a session this tick (len(active)); 0 on an idle tick."""
    return float(ctx.active.size)


@register("present_users", higher_is_better=True, inputs=("present", "n_users"))
def present_users(ctx: MetricContext) -> float:
    """Share of the population on the platform at the end of the tick: Σ present / n_users.
    In [0, 1]; nan when n_users = 0."""
    return safe_ratio(np.count_nonzero(ctx.present), ctx.n_users)


@register("churn_rate", higher_is_better=False, inputs=("present", "churned"))
def churn_rate(ctx: MetricContext) -> float:
    """Share of the users on the platform during the tick who left during it:
    #churned / #(present at the end ∪ churned). In [0, 1]; nan when nobody was on the
    platform."""
    on_platform = ctx.present.copy()
    on_platform[ctx.churned] = True
    return safe_ratio(np.unique(ctx.churned).size, np.count_nonzero(on_platform))


@register("return_rate", higher_is_better=True, inputs=("present", "churned", "returned"))
def return_rate(ctx: MetricContext) -> float:
    """Share of the users absent at the start of the tick who came back during it:
    #returned / #absent-at-start, where absent-at-start = (not present at the end, minus the
    churned, who were there) plus the returned (a user who came back and left again in the same
    tick counts as returned). In [0, 1]; nan when everyone was present at the start."""
    absent_at_start = ~ctx.present
    absent_at_start[ctx.churned] = False
    absent_at_start[ctx.returned] = True
    return safe_ratio(np.unique(ctx.returned).size, np.count_nonzero(absent_at_start))


@register("taste_drift", higher_is_better=None, inputs=("taste", "taste_initial"))
def taste_drift(ctx: MetricContext) -> float:
    """Mean over all users of the L2 distance ‖taste − taste_initial‖₂ between the current
    and the tick-0 taste vectors; nan when n_users = 0."""
    diff = ctx.taste.astype(np.float64) - ctx.taste_initial.astype(np.float64)
    return safe_mean(np.linalg.norm(diff, axis=1))


@register("polarization", higher_is_better=None, inputs=("taste", "present"))
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

"""Retention metrics of one tick: who was active, who is still on the platform, who left and
who came back."""

from __future__ import annotations

import numpy as np

from simenv.metrics._math import safe_ratio
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register


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

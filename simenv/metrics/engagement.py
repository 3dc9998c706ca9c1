"""Engagement metrics of one tick: clicks, consumption, ratings, session length."""

from __future__ import annotations

import numpy as np

from simenv.metrics._math import NAN, safe_mean, safe_ratio
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register


@register("ctr", higher_is_better=True, inputs=("chosen_item",))
def ctr(ctx: MetricContext) -> float:
    """Click-through rate: share of the slates served this tick that led to a consumption,
    #{r : chosen_item[r] ≥ 0} / R over the R served slates. In [0, 1]; nan when R = 0."""
    return safe_mean(ctx.chosen_item >= 0)


@register("consumption", higher_is_better=True, inputs=("chosen_item", "active"))
def consumption(ctx: MetricContext) -> float:
    """Consumptions per active user: #{r : chosen_item[r] ≥ 0} / #active users this tick.
    ≥ 0 (can exceed 1 with multi-slate sessions); nan when nobody was active."""
    return safe_ratio(np.count_nonzero(ctx.chosen_item >= 0), ctx.active.size)


@register("mean_rating", higher_is_better=True, inputs=("chosen_item", "rating"))
def mean_rating(ctx: MetricContext) -> float:
    """Mean rating (1..5) of the items consumed this tick: mean of rating[r] over the slates
    with chosen_item[r] ≥ 0 (nan ratings there are skipped); nan when nothing was consumed."""
    r = ctx.rating[ctx.chosen_item >= 0].astype(np.float64)
    r = r[~np.isnan(r)]
    return float(r.mean()) if r.size else NAN


@register("session_length", higher_is_better=True, inputs=("session_length",))
def session_length(ctx: MetricContext) -> float:
    """Mean number of slates viewed per session this tick: mean of session_length over the
    active users; nan when nobody was active."""
    return safe_mean(ctx.session_length)

"""Exposure and popularity metrics: concentration, coverage, popularity bias, novelty."""

from __future__ import annotations

import numpy as np

from simenv.metrics._math import NAN, gini, safe_ratio
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register


@register("exposure_gini", higher_is_better=False, inputs=("exposure_total", "available"))
def exposure_gini(ctx: MetricContext) -> float:
    """Gini coefficient of the cumulative impressions (exposure_total) over the available
    items: Σᵢ Σⱼ |xᵢ − xⱼ| / (2 n² x̄). 0 when exposure is equal, → 1 (at most (n−1)/n) when one
    item gets it all; nan when no available item has been shown yet."""
    return gini(ctx.exposure_total[ctx.available])


@register("consumption_gini", higher_is_better=False, inputs=("consumption_total", "available"))
def consumption_gini(ctx: MetricContext) -> float:
    """Gini coefficient of the cumulative consumptions (consumption_total) over the available
    items, as exposure_gini: 0 equal, → 1 concentrated; nan when no available item has been
    consumed yet."""
    return gini(ctx.consumption_total[ctx.available])


@register("coverage", higher_is_better=True, inputs=("slates", "available"))
def coverage(ctx: MetricContext) -> float:
    """Share of the available items recommended at least once this tick:
    #(available ∩ items in any slate) / #available. In [0, 1]; nan when no slate was served or
    no item is available."""
    if ctx.slates.size == 0:
        return NAN
    shown = ctx.tick_exposures > 0
    return safe_ratio(np.count_nonzero(shown & ctx.available), np.count_nonzero(ctx.available))


@register("avg_rec_popularity", higher_is_better=False, inputs=("slates", "consumption_total"))
def avg_rec_popularity(ctx: MetricContext) -> float:
    """Popularity bias of the recommendations: mean over all served slate entries (R·k, with
    repeats) of the item's consumption share consumption_total[i] / Σⱼ consumption_total[j]
    (sum over all items). In [0, 1]; nan when no slate was served or nothing was ever
    consumed."""
    total = ctx.consumption_total.sum()
    if ctx.slates.size == 0 or total <= 0:
        return NAN
    # Σ over the served entries as Σ_i impressions_i · consumption_total_i: integers, exact
    # (and so equal to the float64 sum of the entries) while below 2⁵³
    counts = ctx.consumption_total
    if counts.dtype.kind in "iu" and int(counts.max()) * ctx.slates.size < _EXACT:
        summed = int(np.dot(ctx.tick_exposures, counts))
        return float(np.float64(summed) / ctx.slates.size / total)
    served = ctx.consumption_total[ctx.slates.ravel()]
    return float(served.mean(dtype=np.float64) / total)


#: Integers up to this size are exact in float64 (and their sums, while below it).
_EXACT = 2**53


@register(
    "novelty",
    higher_is_better=True,
    inputs=("chosen_item", "consumption_total", "available"),
)
def novelty(ctx: MetricContext) -> float:
    """Mean self-information (bits) of the items consumed this tick: mean of −log₂ pᵢ over
    the consumptions, with the add-one (Laplace) smoothed popularity
    pᵢ = (consumption_totalᵢ + 1) / (Σⱼ consumption_totalⱼ + #available) (sum over all items),
    so that never-consumed items have a finite novelty. ≥ 0; nan when nothing was consumed."""
    items = ctx.chosen_item[ctx.chosen_item >= 0]
    if items.size == 0:
        return NAN
    denom = float(ctx.consumption_total.sum()) + float(np.count_nonzero(ctx.available))
    p = (ctx.consumption_total[items].astype(np.float64) + 1.0) / denom
    return float(np.mean(-np.log2(p)))

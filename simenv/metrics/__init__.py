"""Per-tick ecosystem metrics: a registry of named, self-describing metrics.

Usage::

    from simenv.metrics import available, compute, get

    available()                # sorted metric names
    defaults()                 # the ones every world records unless its scenario says otherwise
    get("ctr").description     # the definition, formula included
    compute(ctx)               # {name: float} for every registered metric
    compute(ctx, ["ctr"])      # only the named ones
    heavy()                    # the costly ones, computed every ``metrics_every`` ticks

Each metric reads a :class:`MetricContext` (filled by the world at the end of a tick), declares
the fields it reads and whether higher is better, and returns ``nan`` when the tick has no data
for it.
"""

from __future__ import annotations

# Importing the definition modules registers their metrics.
from simenv.metrics import (  # noqa: F401
    diversity,
    engagement,
    exposure,
    groups,
    retention,
    tastes,
)
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import (
    CONTEXT_FIELDS,
    IMPRESSION_FIELDS,
    Metric,
    UnknownMetricError,
    available,
    compute,
    defaults,
    due,
    get,
    heavy,
    recorded,
    register,
)

__all__ = [
    "CONTEXT_FIELDS",
    "IMPRESSION_FIELDS",
    "Metric",
    "MetricContext",
    "UnknownMetricError",
    "available",
    "compute",
    "defaults",
    "due",
    "get",
    "heavy",
    "recorded",
    "register",
]

"""Who pays: outcomes of user groups against the rest of the population.

The groups come from the users' *initial* tastes (``taste_initial``), so they are fixed for a
whole run and do not depend on what the recommender did:

- **niche users**: the quarter of users (``ceil(n/4)``) whose initial taste is least similar
  (cosine) to the population's mean taste direction, the mean of the unit taste vectors
  (ties: lower user id first);
- **minority groups**: users grouped by the topic their initial taste weighs most (ties: the
  lower topic); the smallest groups (ascending size, ties: the lower topic) are taken whole
  while together they hold at most a quarter of the users, and at least the smallest group.

A gap is the group's value minus the rest's: negative means the group gets less. These
metrics are recorded only when a scenario asks for them (``extra_metrics``); the
``popularity_bias`` scenario does.
"""

from __future__ import annotations

import numpy as np

from simenv.arrays import unit_rows
from simenv.metrics._math import NAN
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register

#: Share of the users in the niche group, and the most the minority groups may hold.
GROUP_SHARE = 0.25


def niche_users(taste_initial: np.ndarray) -> np.ndarray:
    """(n,) bool: the ``ceil(GROUP_SHARE · n)`` users whose initial taste has the lowest
    cosine to the mean of the unit initial tastes (stable order: lower id first on ties)."""
    n = taste_initial.shape[0]
    unit = unit_rows(taste_initial, np.float64)
    similarity = unit @ unit.mean(axis=0) if n else np.zeros(0)
    # round before ordering so that float noise does not decide between equal users
    order = np.argsort(np.round(similarity, 12), kind="stable")
    out = np.zeros(n, dtype=bool)
    out[order[: int(np.ceil(GROUP_SHARE * n))]] = True
    return out


def minority_users(taste_initial: np.ndarray) -> np.ndarray:
    """(n,) bool: the users of the smallest main-topic groups that together hold at most
    ``GROUP_SHARE · n`` users, and at least the smallest group."""
    n, d = taste_initial.shape
    group = np.argmax(taste_initial, axis=1) if n else np.zeros(0, dtype=np.int64)
    size = np.bincount(group, minlength=d)
    present = np.flatnonzero(size > 0)
    order = present[np.argsort(size[present], kind="stable")]
    fits = np.cumsum(size[order]) <= GROUP_SHARE * n
    fits[:1] = True
    return np.isin(group, order[fits])


def _gap(values: np.ndarray, in_group: np.ndarray) -> float:
    """mean(values[in_group]) − mean(values[~in_group]); nan if either side is empty."""
    if not in_group.any() or in_group.all():
        return NAN
    return float(values[in_group].mean(dtype=np.float64) - values[~in_group].mean(dtype=np.float64))


def _ctr_gap(ctx: MetricContext, group: np.ndarray) -> float:
    if ctx.imp_users.size == 0:
        return NAN
    return _gap((ctx.chosen_item >= 0).astype(np.float64), group[ctx.imp_users])


@register(
    "niche_ctr_gap",
    higher_is_better=None,
    inputs=("imp_users", "chosen_item", "taste_initial"),
    by_default=False,
    heavy=True,
)
def niche_ctr_gap(ctx: MetricContext) -> float:
    """Click-through of the niche users minus that of the other users this tick: the share of
    the slates served to the niche quarter (the ceil(n/4) users whose initial taste has the
    lowest cosine to the mean unit initial taste) that led to a consumption, minus the same
    share for everybody else. In [−1, 1]; negative when niche users are served worse; nan
    when either group was served no slate."""
    return _ctr_gap(ctx, niche_users(ctx.taste_initial))


@register(
    "niche_rating_gap",
    higher_is_better=None,
    inputs=("imp_users", "chosen_item", "rating", "taste_initial"),
    by_default=False,
    heavy=True,
)
def niche_rating_gap(ctx: MetricContext) -> float:
    """Mean rating (1..5) the niche users gave what they consumed this tick minus the mean
    rating of the other users' consumptions (niche users as in niche_ctr_gap; nan ratings
    skipped). In [−4, 4]; negative when niche users like what they get less; nan when
    either group consumed nothing rated."""
    if ctx.imp_users.size == 0:
        return NAN
    rated = (ctx.chosen_item >= 0) & np.isfinite(ctx.rating)
    group = niche_users(ctx.taste_initial)[ctx.imp_users[rated]]
    return _gap(ctx.rating[rated].astype(np.float64), group)


@register(
    "minority_ctr_gap",
    higher_is_better=None,
    inputs=("imp_users", "chosen_item", "taste_initial"),
    by_default=False,
    heavy=True,
)
def minority_ctr_gap(ctx: MetricContext) -> float:
    """Click-through of the minority-taste users minus that of the others this tick. Users
    are grouped by the topic their initial taste weighs most; the minority is the smallest
    groups, taken whole in ascending size while together they hold at most a quarter of the
    users (at least the smallest group). In [−1, 1]; negative when minority tastes are served
    worse; nan when everybody is in one group or either side was served no slate."""
    return _ctr_gap(ctx, minority_users(ctx.taste_initial))

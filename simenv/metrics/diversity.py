"""Diversity metrics: within slates, within and across users' consumption, and calibration."""

from __future__ import annotations

import numpy as np

from simenv import kernels
from simenv.arrays import unit_rows
from simenv.metrics._math import NAN, entropy_bits, mean_pairwise_cosine, safe_mean, slate_sum
from simenv.metrics.context import MetricContext
from simenv.metrics.registry import register

#: Number of user pairs sampled by ``homogenization`` when there are many users.
HOMOGENIZATION_PAIRS = 2000
#: Up to this many users with history, ``homogenization`` is exact over all pairs.
HOMOGENIZATION_EXACT_MAX_USERS = 64
#: Steck (2018) mixing weight α of the slate distribution with the user's in ``calibration_kl``.
CALIBRATION_ALPHA = 0.01


@register(
    "intra_list_diversity", higher_is_better=True, inputs=("slates", "item_features"), heavy=True
)
def intra_list_diversity(ctx: MetricContext) -> float:
    """Mean over the served slates of the mean pairwise cosine distance of their items:
    mean_r [ 2/(k(k−1)) Σ_{i<j in slate r} (1 − cos(fᵢ, fⱼ)) ] with f = item_features rows
    (an all-zero feature row has similarity 0 with everything). 0 when every slate holds items
    of one topic profile; 1 for orthogonal profiles. nan when no slate was served or k < 2."""
    r, k = ctx.slates.shape
    if r == 0 or k < 2:
        return NAN
    unit = unit_rows(ctx.item_features, np.float64)
    nonzero = (unit != 0).any(axis=1, keepdims=True).astype(np.float64)  # ‖uᵢ‖² ∈ {0, 1}
    sim = mean_pairwise_cosine(slate_sum(unit, ctx.slates), slate_sum(nonzero, ctx.slates)[:, 0], k)
    return float(np.mean(1.0 - sim))


@register("user_genre_entropy", higher_is_better=True, inputs=("genre_history",), heavy=True)
def user_genre_entropy(ctx: MetricContext) -> float:
    """Mean over the users with any history of the Shannon entropy (bits) of their
    normalised genre_history row: mean_u −Σ_g p_ug log₂ p_ug, p_ug = h_ug / Σ_g h_ug.
    In [0, log₂ d]; nan when no user has consumed anything."""
    shares, total = ctx.genre_shares
    return safe_mean(entropy_bits(shares)[total > 0])


@register("aggregate_genre_entropy", higher_is_better=True, inputs=("genre_history",), heavy=True)
def aggregate_genre_entropy(ctx: MetricContext) -> float:
    """Shannon entropy (bits) of the population's consumption over topics: −Σ_g P_g log₂ P_g
    with P_g = Σ_u h_ug / Σ_ug h_ug (h = genre_history). In [0, log₂ d]; nan when nothing was
    consumed."""
    s = ctx.genre_history.sum(axis=0, dtype=np.float64)
    total = s.sum()
    return float(entropy_bits(s / total)) if total > 0 else NAN


@register(
    "catalog_diversity",
    higher_is_better=True,
    inputs=("item_features", "available"),
    by_default=False,
)
def catalog_diversity(ctx: MetricContext) -> float:
    """Diversity of what is on offer: the mean pairwise cosine distance between the topic
    profiles (item_features) of the available items, mean over unordered pairs i<j of
    (1 − cos(fᵢ, fⱼ)), computed exactly in O(m·d) as in intra_list_diversity (an all-zero
    profile has similarity 0 with everything). 0 when every item has the same topic mix (for
    instance when creators all chase the same trend); nan with fewer than 2 available items."""
    unit = unit_rows(ctx.item_features[ctx.available], np.float64)
    m = unit.shape[0]
    if m < 2:
        return NAN
    sum_sq = np.asarray((unit * unit).sum())
    return float(1.0 - mean_pairwise_cosine(unit.sum(axis=0), sum_sq, m))


def _dedupe_sorted(rows: np.ndarray) -> np.ndarray:
    """Each row sorted, with repeated ids replaced by -1 (so a row is a set)."""
    rows = np.sort(rows, axis=1)
    tail = rows[:, 1:]
    tail[tail == rows[:, :-1]] = -1
    return rows


@register("homogenization", higher_is_better=False, inputs=("recent", "rng"), heavy=True)
def homogenization(ctx: MetricContext) -> float:
    """Mean Jaccard similarity |A∩B| / |A∪B| of the sets of recent items (ids in ``recent``,
    -1 ignored, repeats counted once) over pairs of distinct users with a non-empty set.
    Exact over all unordered pairs when at most 64 users have history; otherwise an unbiased
    estimate from 2000 pairs drawn uniformly (with replacement) with ``ctx.rng``.
    0 when users consume disjoint items, 1 when all consume the same set; nan with fewer than
    2 users with history."""
    users = np.flatnonzero(kernels.any_nonnegative(ctx.recent))
    m = users.size
    if m < 2:
        return NAN
    if m <= HOMOGENIZATION_EXACT_MAX_USERS:
        a, b = np.triu_indices(m, 1)
    else:
        a = ctx.rng.integers(0, m, size=HOMOGENIZATION_PAIRS)
        b = ctx.rng.integers(0, m - 1, size=HOMOGENIZATION_PAIRS)
        b = b + (b >= a)  # uniform over the other m - 1 users
    sets_a = _dedupe_sorted(ctx.recent[users[a]])
    sets_b = _dedupe_sorted(ctx.recent[users[b]])
    valid_a = sets_a >= 0
    inter = ((sets_a[:, :, None] == sets_b[:, None, :]).any(axis=2) & valid_a).sum(axis=1)
    union = valid_a.sum(axis=1) + (sets_b >= 0).sum(axis=1) - inter
    return float(np.mean(inter / union))


@register(
    "calibration_kl",
    higher_is_better=False,
    inputs=("imp_users", "slates", "item_features", "genre_history"),
    heavy=True,
)
def calibration_kl(ctx: MetricContext) -> float:
    """Miscalibration (Steck 2018): mean over the served slates whose user has history of
    KL(p‖q̃) = Σ_g p_g ln(p_g / q̃_g) in nats, where p = the user's normalised genre_history,
    q = the normalised mean item_features of the slate (q = 0 if the slate's features are all
    zero) and q̃ = (1 − α) q + α p with α = 0.01, which keeps the divergence finite when the
    slate misses a topic the user consumes. 0 when the slate matches the user's topic mix;
    nan when no served slate belongs to a user with history."""
    if ctx.imp_users.size == 0:
        return NAN
    shares, h_total = ctx.genre_shares
    rows = np.flatnonzero(h_total[ctx.imp_users] > 0)
    if rows.size == 0:
        return NAN
    p = np.take(shares, ctx.imp_users[rows], axis=0)  # = shares[...], faster
    q = slate_sum(ctx.item_features, ctx.slates, rows)
    ratio = kernels.calibration_ratio(p, q, q.sum(axis=1), CALIBRATION_ALPHA)
    terms = np.log(ratio, out=ratio)
    terms *= p
    return float(np.mean(terms.sum(axis=1)))

"""Every registered metric against a value computed by hand on a tiny world.

The hand world: 5 users, 6 items with 2-d features, slates of k = 2, 5 served slates.
Expected values are written as explicit arithmetic on literal numbers, never by calling the
vectorised code. A new metric without an entry in ``EXPECTED`` fails ``test_every_metric_has_a
_hand_value``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from typing import Any

import numpy as np
import pytest

from simenv.metrics import (
    CONTEXT_FIELDS,
    Metric,
    MetricContext,
    UnknownMetricError,
    available,
    compute,
    get,
    register,
)

NAN = float("nan")
A = 0.01  # Steck's α in calibration_kl
R2 = math.sqrt(2.0)


def hand_ctx(**overrides: Any) -> MetricContext:
    """The hand world (see each EXPECTED entry for the arithmetic)."""
    fields: dict[str, Any] = dict(
        tick=3,
        n_users=5,
        # user 2 churned this tick; user 3 came back this tick; user 4 stayed away
        present=np.array([True, True, False, True, False]),
        active=np.array([0, 1, 2, 3], dtype=np.int64),
        session_length=np.array([2, 1, 1, 1], dtype=np.int64),
        churned=np.array([2], dtype=np.int64),
        returned=np.array([3], dtype=np.int64),
        imp_users=np.array([0, 0, 1, 2, 3], dtype=np.int64),
        slates=np.array([[0, 1], [2, 3], [0, 3], [1, 2], [0, 2]], dtype=np.int64),
        chosen_item=np.array([1, -1, -1, 3, 2], dtype=np.int64),
        rating=np.array([4, NAN, NAN, 2, 5], dtype=np.float32),
        item_features=np.array([[1, 0], [0, 1], [1, 1], [2, 0], [0, 3], [1, 2]], dtype=np.float32),
        available=np.array([True, True, True, True, True, False]),  # item 5 retired
        exposure_total=np.array([6, 2, 4, 8, 0, 30], dtype=np.int64),
        consumption_total=np.array([1, 4, 2, 1, 0, 9], dtype=np.int64),
        genre_history=np.array([[1, 1], [3, 1], [2, 0], [0, 2], [0, 0]], dtype=np.float32),
        recent=np.array(
            [[1, 0, -1], [2, 2, 1], [3, -1, -1], [2, 0, 1], [-1, -1, -1]], dtype=np.int64
        ),
        taste=np.array([[1, 0], [0, 2], [5, 5], [1, 1], [2, 0]], dtype=np.float32),
        # taste - taste_initial = (3,4), (0,0), (1,0), (0,2), (0,0)
        taste_initial=np.array([[-2, -4], [0, 2], [4, 5], [1, -1], [2, 0]], dtype=np.float32),
        rng=np.random.default_rng(0),
    )
    fields.update(overrides)
    return MetricContext(**fields)


def kl2(p: tuple[float, float], q: tuple[float, float]) -> float:
    """KL(p || (1-A) q + A p) in nats for a 2-topic distribution, written out term by term."""
    total = 0.0
    for pg, qg in zip(p, q, strict=True):
        if pg > 0:
            total += pg * math.log(pg / ((1 - A) * qg + A * pg))
    return total


def h2(p: float) -> float:
    """Entropy in bits of (p, 1 - p)."""
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


EXPECTED: dict[str, float] = {
    # chosen_item = [1, -1, -1, 3, 2]: 3 consumptions in 5 slates
    "ctr": 3 / 5,
    # 3 consumptions / 4 active users
    "consumption": 3 / 4,
    # ratings of the consumed rows: 4, 2, 5
    "mean_rating": (4 + 2 + 5) / 3,
    # session lengths 2, 1, 1, 1
    "session_length": (2 + 1 + 1 + 1) / 4,
    "active_users": 4.0,
    # users 0, 1, 3 present out of 5
    "present_users": 3 / 5,
    # churned {2} / (present {0,1,3} ∪ churned {2})
    "churn_rate": 1 / 4,
    # absent at start: not present {2,4} minus churned {2} plus returned {3} = {3,4}
    "return_rate": 1 / 2,
    # available exposure 6,2,4,8,0 (mean 4); Σ|xi-xj| over unordered pairs:
    # 0:(2+4+6+8) + 2:(2+4+6) + 4:(2+4) + 6:(2) = 40 → ordered 80; G = 80 / (2·5²·4)
    "exposure_gini": 80 / (2 * 25 * 4),
    # available consumption 1,4,2,1,0 (mean 8/5); unordered |diffs|:
    # (1,4)3 (1,2)1 (1,1)0 (1,0)1 (4,2)2 (4,1)3 (4,0)4 (2,1)1 (2,0)2 (1,0)1 = 18 → 36
    "consumption_gini": 36 / (2 * 25 * (8 / 5)),
    # items shown {0,1,2,3} of the available {0,1,2,3,4}
    "coverage": 4 / 5,
    # cos of the slates: (0,1)=0, (2,3)=1/√2, (0,3)=1, (1,2)=1/√2, (0,2)=1/√2
    "intra_list_diversity": ((1 - 0) + (1 - 1 / R2) + (1 - 1) + 2 * (1 - 1 / R2)) / 5,
    # users with history: 0 (1,1)→1 bit, 1 (3,1)→H(3/4), 2 (2,0)→0, 3 (0,2)→0; user 4 none
    "user_genre_entropy": (1 + h2(3 / 4) + 0 + 0) / 4,
    # column sums (6, 4) → P = (0.6, 0.4)
    "aggregate_genre_entropy": h2(0.6),
    # sets {0,1} {1,2} {3} {0,1,2}; Jaccard: (0,1)=1/3 (0,2)=0 (0,3)=2/3 (1,2)=0 (1,3)=2/3
    # (2,3)=0 over 6 pairs
    "homogenization": (1 / 3 + 0 + 2 / 3 + 0 + 2 / 3 + 0) / 6,
    # total consumption 17; served entries' consumption:
    # (1+4) + (2+1) + (1+1) + (4+2) + (1+2) = 19 over 10 entries
    "avg_rec_popularity": (19 / 10) / 17,
    # consumed items 1, 3, 2; p = (c + 1) / (17 + 5): 5/22, 2/22, 3/22
    "novelty": (math.log2(22 / 5) + math.log2(22 / 2) + math.log2(22 / 3)) / 3,
    # q of the slates (normalised feature sums): [1,1]→(1/2,1/2), [3,1]→(3/4,1/4),
    # [3,0]→(1,0), [1,2]→(1/3,2/3), [2,1]→(2/3,1/3); users 0,0,1,2,3 with
    # p = (1/2,1/2), (1/2,1/2), (3/4,1/4), (1,0), (0,1)
    "calibration_kl": (
        0.0
        + 0.5 * math.log(0.5 / 0.7475)
        + 0.5 * math.log(0.5 / 0.2525)  # q̃ = .99·(3/4,1/4) + .01·(1/2,1/2)
        + 0.75 * math.log(0.75 / 0.9975)
        + 0.25 * math.log(0.25 / 0.0025)  # q̃ = .99·(1,0) + .01·(3/4,1/4)
        + math.log(1 / 0.34)  # q̃₀ = .99/3 + .01
        + math.log(1 / 0.34)  # q̃₁ = .99/3 + .01
    )
    / 5,
    # ‖Δ‖ = 5, 0, 1, 2, 0 over 5 users
    "taste_drift": (5 + 0 + 1 + 2 + 0) / 5,
    # present users 0 (1,0), 1 (0,2), 3 (1,1): cos 0, 1/√2, 1/√2
    "polarization": ((1 - 0) + (1 - 1 / R2) + (1 - 1 / R2)) / 3,
    # --- recorded on request (by_default=False) ---
    # unit initial tastes (-.447,-.894) (0,1) (.625,.781) (.707,-.707) (1,0), mean (.377,.036);
    # cosines to it -.201 .036 .264 .241 .377: the ceil(5/4) = 2 niche users are 0 and 1.
    # Their slates (rows 0, 1, 2) clicked 1, 0, 0; the others' (rows 3, 4) 1, 1
    "niche_ctr_gap": 1 / 3 - 2 / 2,
    # rated consumptions: user 0 → 4 (niche); users 2, 3 → 2, 5
    "niche_rating_gap": 4 - (2 + 5) / 2,
    # main topics 0, 1, 1, 0, 0: groups of 3 and 2; none fits in 5/4 users, so the smallest
    # (topic 1: users 1, 2) is the minority; rows 2, 3 clicked 0, 1; rows 0, 1, 4: 1, 0, 1
    "minority_ctr_gap": 1 / 2 - 2 / 3,
    # available unit profiles (1,0) (0,1) (1,1)/√2 (1,0) (0,1); cosines over the 10 pairs:
    # 0, 1/√2, 1, 0, 1/√2, 0, 1, 1/√2, 1/√2, 0
    "catalog_diversity": 1 - (2 + 4 / R2) / 10,
}


def test_every_metric_has_a_hand_value() -> None:
    assert set(EXPECTED) == set(available())


def test_calibration_hand_terms_match_helper() -> None:
    # the literal numbers above, rederived with the term-by-term helper
    rows = [
        kl2((0.5, 0.5), (0.5, 0.5)),
        kl2((0.5, 0.5), (0.75, 0.25)),
        kl2((0.75, 0.25), (1.0, 0.0)),
        kl2((1.0, 0.0), (1 / 3, 2 / 3)),
        kl2((0.0, 1.0), (2 / 3, 1 / 3)),
    ]
    assert sum(rows) / 5 == pytest.approx(EXPECTED["calibration_kl"], rel=1e-12)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hand_value(name: str) -> None:
    got = get(name)(hand_ctx())
    assert isinstance(got, float)
    assert got == pytest.approx(EXPECTED[name], rel=1e-6, abs=1e-9)


def test_compute_all_and_subset() -> None:
    ctx = hand_ctx()
    every = compute(ctx)
    assert list(every) == available()
    assert every == pytest.approx(EXPECTED, rel=1e-6, abs=1e-9)
    assert compute(ctx, ["ctr", "coverage"]) == pytest.approx({"ctr": 0.6, "coverage": 0.8})


def test_metrics_do_not_mutate_the_context() -> None:
    ctx = hand_ctx()
    before = {f: np.copy(getattr(ctx, f)) for f in CONTEXT_FIELDS if f != "rng"}
    compute(ctx)
    for f, arr in before.items():
        np.testing.assert_array_equal(getattr(ctx, f), arr, err_msg=f)


@pytest.mark.parametrize("name", available())
def test_metadata(name: str) -> None:
    m = get(name)
    assert isinstance(m, Metric)
    assert m.name == name
    assert len(m.description.split()) >= 8
    assert m.inputs
    assert set(m.inputs) <= CONTEXT_FIELDS
    assert m.higher_is_better in (True, False, None)


class _Guard:
    """A context that only lets a metric read the fields it declared."""

    def __init__(self, ctx: MetricContext, allowed: tuple[str, ...]) -> None:
        self._ctx = ctx
        self._allowed = allowed

    def __getattr__(self, attr: str) -> Any:
        if attr in CONTEXT_FIELDS and attr not in self._allowed:
            raise AssertionError(f"reads undeclared input {attr!r}")
        return getattr(self._ctx, attr)


@pytest.mark.parametrize("name", available())
def test_metric_reads_only_declared_inputs(name: str) -> None:
    m = get(name)
    got = m.fn(_Guard(hand_ctx(), m.inputs))  # type: ignore[arg-type]
    assert got == pytest.approx(EXPECTED[name], rel=1e-6, abs=1e-9)


def idle_ctx() -> MetricContext:
    """The hand world on a tick in which nobody had a session: no impressions at all."""
    return hand_ctx(
        active=np.zeros(0, dtype=np.int64),
        session_length=np.zeros(0, dtype=np.int64),
        imp_users=np.zeros(0, dtype=np.int64),
        slates=np.zeros((0, 2), dtype=np.int64),
        chosen_item=np.zeros(0, dtype=np.int64),
        rating=np.zeros(0, dtype=np.float32),
    )


def empty_world_ctx() -> MetricContext:
    """No users, no items, no impressions."""
    d = 2
    return MetricContext(
        tick=0,
        n_users=0,
        present=np.zeros(0, dtype=bool),
        active=np.zeros(0, dtype=np.int64),
        session_length=np.zeros(0, dtype=np.int64),
        churned=np.zeros(0, dtype=np.int64),
        returned=np.zeros(0, dtype=np.int64),
        imp_users=np.zeros(0, dtype=np.int64),
        slates=np.zeros((0, 3), dtype=np.int64),
        chosen_item=np.zeros(0, dtype=np.int64),
        rating=np.zeros(0, dtype=np.float32),
        item_features=np.zeros((0, d), dtype=np.float32),
        available=np.zeros(0, dtype=bool),
        exposure_total=np.zeros(0, dtype=np.int64),
        consumption_total=np.zeros(0, dtype=np.int64),
        genre_history=np.zeros((0, d), dtype=np.float32),
        recent=np.zeros((0, 4), dtype=np.int64),
        taste=np.zeros((0, d), dtype=np.float32),
        taste_initial=np.zeros((0, d), dtype=np.float32),
        rng=np.random.default_rng(0),
    )


@pytest.mark.parametrize("name", available())
def test_zero_impressions_gives_nan_not_an_error(name: str) -> None:
    m = get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 either
        got = m(idle_ctx())
    assert isinstance(got, float)
    if m.needs_impressions:
        assert math.isnan(got)
    else:  # population / cumulative metrics stay defined on an idle tick
        assert math.isfinite(got)


@pytest.mark.parametrize("name", available())
def test_empty_world_does_not_raise(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = get(name)(empty_world_ctx())
    assert isinstance(got, float)
    if name == "active_users":
        assert got == 0.0
    else:
        assert math.isnan(got)


def test_hand_world_raises_no_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compute(hand_ctx())


def test_unknown_metric_name() -> None:
    with pytest.raises(UnknownMetricError, match=r"available metrics: .*ctr") as err:
        get("click_rate")
    assert isinstance(err.value, ValueError)
    assert "'click_rate'" in str(err.value)
    with pytest.raises(UnknownMetricError):
        compute(hand_ctx(), ["ctr", "click_rate"])


def test_register_rejects_duplicates_and_unknown_inputs() -> None:
    n = len(available())
    with pytest.raises(ValueError, match="already registered"):
        register("ctr", higher_is_better=True, inputs=("chosen_item",))(lambda c: 0.0)
    with pytest.raises(ValueError, match="not MetricContext fields"):
        register("bogus", higher_is_better=None, inputs=("clicks",), description="x y")(
            lambda c: 0.0
        )
    with pytest.raises(ValueError, match="needs a description"):
        register("undocumented", higher_is_better=None, inputs=("tick",))(lambda c: 0.0)
    assert len(available()) == n


def _random_sets_ctx(n_users: int, seed: int) -> MetricContext:
    gen = np.random.default_rng(seed)
    recent = gen.integers(-1, 8, size=(n_users, 4))  # ids 0..7, -1 padding, repeats
    return hand_ctx(
        n_users=n_users, recent=recent.astype(np.int64), rng=np.random.default_rng(seed)
    )


def _exact_jaccard(recent: np.ndarray) -> float:
    sets = [set(int(x) for x in row if x >= 0) for row in recent]
    sets = [s for s in sets if s]
    vals = [len(a & b) / len(a | b) for a, b in itertools.combinations(sets, 2)]
    return sum(vals) / len(vals)


def test_homogenization_exact_for_few_users() -> None:
    ctx = _random_sets_ctx(60, seed=1)
    assert get("homogenization")(ctx) == pytest.approx(_exact_jaccard(ctx.recent), rel=1e-12)


def test_homogenization_sampled_for_many_users() -> None:
    ctx = _random_sets_ctx(300, seed=2)
    exact = _exact_jaccard(ctx.recent)
    est = get("homogenization")(ctx)
    assert est == pytest.approx(exact, abs=0.02)
    again = get("homogenization")(_random_sets_ctx(300, seed=2))
    assert again == est  # same rng seed, same sample
    same = hand_ctx(n_users=200, recent=np.tile(np.array([[4, 2, -1]]), (200, 1)))
    assert get("homogenization")(same) == 1.0
    disjoint = hand_ctx(n_users=200, recent=np.arange(200, dtype=np.int64)[:, None])
    assert get("homogenization")(disjoint) == 0.0


def test_scales_without_quadratic_memory() -> None:
    gen = np.random.default_rng(5)
    n_users, n_items, d, k, r = 20_000, 2_000, 8, 10, 100_000
    ctx = MetricContext(
        tick=1,
        n_users=n_users,
        present=gen.random(n_users) < 0.9,
        active=np.arange(n_users // 2, dtype=np.int64),
        session_length=np.full(n_users // 2, 2, dtype=np.int64),
        churned=np.arange(n_users // 2, n_users // 2 + 100, dtype=np.int64),
        returned=np.arange(n_users // 2 + 100, n_users // 2 + 150, dtype=np.int64),
        imp_users=gen.integers(0, n_users, size=r),
        slates=gen.integers(0, n_items, size=(r, k)),
        chosen_item=gen.integers(-1, n_items, size=r),
        rating=gen.uniform(1, 5, size=r).astype(np.float32),
        item_features=gen.random((n_items, d)).astype(np.float32),
        available=gen.random(n_items) < 0.95,
        exposure_total=gen.integers(0, 1000, size=n_items),
        consumption_total=gen.integers(0, 100, size=n_items),
        genre_history=gen.random((n_users, d)).astype(np.float32),
        recent=gen.integers(-1, n_items, size=(n_users, 20)),
        taste=gen.normal(size=(n_users, d)).astype(np.float32),
        taste_initial=gen.normal(size=(n_users, d)).astype(np.float32),
        rng=np.random.default_rng(0),
    )
    values = compute(ctx)
    assert all(math.isfinite(v) for v in values.values()), values
    assert dataclasses.is_dataclass(ctx)


def test_metrics_on_request_are_recorded_only_when_asked() -> None:
    from simenv.metrics import defaults, recorded

    on_request = {"niche_ctr_gap", "niche_rating_gap", "minority_ctr_gap", "catalog_diversity"}
    assert on_request <= set(available())
    assert not on_request & set(defaults())
    assert not get("niche_ctr_gap").by_default and get("ctr").by_default
    assert recorded(None) == defaults() == recorded([])
    assert recorded(None, ["catalog_diversity"]) == [*defaults(), "catalog_diversity"]
    assert recorded(["ctr"], ["niche_ctr_gap", "ctr", "niche_ctr_gap"]) == ["ctr", "niche_ctr_gap"]
    with pytest.raises(UnknownMetricError, match="'niche_gap'"):
        recorded(None, ["niche_gap"])


def test_niche_users_and_minority_groups() -> None:
    from simenv.metrics.groups import minority_users, niche_users

    # six users like topic 0, two topic 1, one both (topic 1 a little more): the mean unit
    # taste is (6.64, 2.77) / 9, to which the cosines are .92 (x6), .38 (x2) and .89, so the
    # ceil(9/4) = 3 niche users are the last three
    taste = np.array([[1, 0]] * 6 + [[0, 1]] * 2 + [[1, 1.2]], dtype=np.float32)
    np.testing.assert_array_equal(niche_users(taste), [0] * 6 + [1, 1, 1])
    # groups by main topic: 6 (topic 0) and 3 (topic 1); 3 > 9/4 but the smallest is kept
    np.testing.assert_array_equal(minority_users(taste), [0] * 6 + [1, 1, 1])
    one_group = np.ones((4, 3), dtype=np.float32)
    assert minority_users(one_group).all()  # one group: no minority to compare (gap is nan)
    ctx = hand_ctx(taste_initial=one_group[:, :2].repeat(2, axis=0)[:5])
    assert math.isnan(get("minority_ctr_gap")(ctx))


@pytest.mark.parametrize("seed", range(4))
def test_slate_count_metrics_equal_their_per_entry_formulas(seed: int) -> None:
    """coverage and avg_rec_popularity, computed from the tick's impressions per item
    (`MetricContext.tick_exposures`), equal their formulas over every served entry bit for
    bit, and avg_rec_popularity keeps them where its integer sum would not be exact."""
    from simenv.metrics.exposure import avg_rec_popularity, coverage

    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(20, 3000))
    slates = np.stack([rng.choice(n_items, 10, replace=False) for _ in range(500)])
    available = rng.random(n_items) < 0.9
    for top in (1000, 2**50):  # the second: Σ over the entries is past 2⁵³
        counts = rng.integers(0, top, n_items)
        ctx = hand_ctx(slates=slates, available=available, consumption_total=counts)
        shown = np.zeros(n_items, dtype=bool)
        shown[slates.ravel()] = True
        assert coverage(ctx) == np.count_nonzero(shown & available) / np.count_nonzero(available)
        mean = counts[slates.ravel()].mean(dtype=np.float64)
        assert avg_rec_popularity(ctx) == float(mean / counts.sum())

"""Each compiled kernel of `simenv.kernels` gives exactly what a plain numpy reference gives,
on random inputs and on the edge cases (no rows, empty lists, padding, rows that run out)."""

from __future__ import annotations

import numpy as np
import pytest

from simenv import kernels

# world tick ---------------------------------------------------------------------------------


def _rotated_top_reference(
    head: np.ndarray,
    group: np.ndarray,
    shift: np.ndarray,
    n_cand: int,
    recent: np.ndarray,
    length: int,
) -> np.ndarray:
    out = np.full((recent.shape[0], length), -1, dtype=np.int64)
    for r in range(recent.shape[0]):
        cands = np.concatenate([head, np.roll(group, -int(shift[r]))])[:n_cand]
        kept = cands[~np.isin(cands, recent[r])][:length]
        out[r, : kept.size] = kept
    return out


@pytest.mark.parametrize("seed", range(6))
def test_rotated_top_is_the_first_candidates_not_recent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items = int(rng.integers(12, 60))
    items = rng.permutation(n_items).astype(np.int64)
    g0 = int(rng.integers(0, 6))
    length = int(rng.integers(1, 6))
    width = int(rng.integers(0, 12))
    n_cand = min(n_items, g0 + int(rng.integers(1, length + width + 2)))
    rows = int(rng.integers(0, 40))
    head, group = items[:g0], items[g0:]
    shift = rng.integers(0, group.size, size=rows).astype(np.int64)
    recent = rng.integers(-1, n_items + 5, size=(rows, width))  # padding and unknown ids too
    recent[: rows // 3] = items[:width]  # rows that lose the head (and may run out)
    got = kernels.rotated_top(head, group, shift, n_cand, recent, length)
    expected = _rotated_top_reference(head, group, shift, n_cand, recent, length)
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == np.int64 and got.shape == (rows, length)


def test_rotated_top_of_a_row_that_runs_out_pads_with_minus_one() -> None:
    items = np.arange(4, dtype=np.int64)
    recent = np.array([[0, 1, 2], [-1, -1, -1]])
    got = kernels.rotated_top(items[:1], items[1:], np.array([1, 2]), 4, recent, 3)
    np.testing.assert_array_equal(got, [[3, -1, -1], [0, 3, 1]])


def _holds_any_reference(slates: np.ndarray, lists: np.ndarray, rows: np.ndarray) -> np.ndarray:
    held = lists[rows]
    return ((slates[:, :, None] == held[:, None, :]) & (held[:, None, :] >= 0)).any(axis=2)


@pytest.mark.parametrize("seed", range(6))
def test_holds_any_is_membership_in_the_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ids = int(rng.integers(1, 40))
    n, k, width = int(rng.integers(0, 50)), int(rng.integers(1, 8)), int(rng.integers(0, 10))
    lists = rng.integers(-1, n_ids + 3, size=(int(rng.integers(1, 60)), width))  # ids >= n_ids
    rows = rng.integers(0, lists.shape[0], size=n)  # rows repeat and are out of order
    slates = rng.integers(-1, n_ids, size=(n, k))
    got = kernels.holds_any(slates, lists, rows, n_ids)
    np.testing.assert_array_equal(got, _holds_any_reference(slates, lists, rows))
    assert got.dtype == np.bool_ and got.shape == (n, k)


def _slate_sum_reference(table: np.ndarray, slates: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = np.zeros((rows.size, table.shape[1]), dtype=np.float64)
    for j in range(slates.shape[1]):  # the positions in order, as the metrics summed them
        out += table[slates[rows, j]]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_slate_sum_adds_the_positions_in_order(dtype: type, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_items, d = int(rng.integers(1, 50)), int(rng.integers(1, 20))
    # magnitudes far apart, so that another order of the additions would round differently
    table = (rng.random((n_items, d)) * 10.0 ** rng.integers(-8, 8, size=(n_items, d))).astype(
        dtype
    )
    slates = rng.integers(0, n_items, size=(int(rng.integers(0, 40)), int(rng.integers(1, 12))))
    rows = rng.integers(0, max(slates.shape[0], 1), size=int(rng.integers(0, 30)))
    rows = rows[rows < slates.shape[0]]
    got = kernels.slate_sum(table, slates, rows)
    expected = _slate_sum_reference(table, slates, rows)
    assert got.dtype == np.float64 and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("seed", range(4))
def test_calibration_ratio_is_the_numpy_expression_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, d, alpha = int(rng.integers(0, 300)), int(rng.integers(1, 20)), 0.01
    p = rng.random((n, d)) * (rng.random((n, d)) < 0.7)  # zeros: ratio 1
    q = rng.random((n, d)) * 10.0 ** rng.integers(-5, 5, size=(n, d))
    q[: n // 4] = 0.0  # slates without topic mass: q̃ = alpha · p
    q_total = q.sum(axis=1)
    got = kernels.calibration_ratio(p, q, q_total, alpha)
    share = np.divide(q, q_total[:, None], out=np.zeros_like(q), where=q_total[:, None] > 0)
    mix = (1.0 - alpha) * share + alpha * p
    expected = np.divide(p, mix, out=np.ones_like(p), where=p > 0)
    assert got.tobytes() == expected.tobytes()  # no fused multiply-add, same rounding


def test_any_nonnegative_marks_rows_with_an_id() -> None:
    rng = np.random.default_rng(0)
    lists = rng.integers(-1, 3, size=(200, 4))
    lists[rng.random(200) < 0.3] = -1
    np.testing.assert_array_equal(kernels.any_nonnegative(lists), (lists >= 0).any(axis=1))
    assert kernels.any_nonnegative(np.zeros((3, 0), dtype=np.int64)).tolist() == [False] * 3


def _random_context(n: int, seed: int):  # type: ignore[no-untyped-def]
    """A decision context of ``n`` users with random float32 state (any values the world's
    arrays can take, and some that they cannot, such as negative similarities)."""
    from agents import emotion as emo
    from agents.deciders import DecisionContext
    from agents.persona import sample_personas

    rng = np.random.default_rng(seed)
    n_items, d, k = 40, 5, 6
    feats = rng.random((n_items, d), dtype=np.float32)
    state = emo.EmotionState.initial(rng.random(n, dtype=np.float32))
    state.boredom[:] = rng.random(n, dtype=np.float32)
    state.fatigue[:] = rng.random(n, dtype=np.float32)
    return DecisionContext(
        tick=0,
        step=0,
        users=rng.permutation(n),
        slates=np.array([rng.choice(n_items, k, replace=False) for _ in range(n)]),
        persona=sample_personas(n, d, rng),
        taste=rng.standard_normal((n, d)).astype(np.float32),
        emotion=state,
        item_features=feats,
        item_unit=feats / np.linalg.norm(feats, axis=1, keepdims=True),
        item_quality=rng.random(n_items, dtype=np.float32),
        item_popularity=rng.random(n_items, dtype=np.float32),
        recent=rng.integers(-1, n_items, size=(n, 4)),
        recent_profile=rng.standard_normal((n, d)).astype(np.float32),
        inbox=rng.integers(-1, n_items, size=(n, 2)),
        rng=rng,
    )


@pytest.mark.parametrize("seed", range(3))
def test_fill_features_is_the_numpy_feature_block_bit_for_bit(seed: int) -> None:
    from agents.deciders import CHOICE_WEIGHTS, _feature_block_numpy, slate_terms

    ctx = _random_context(200, seed)
    terms = slate_terms(ctx)
    n, k = ctx.slates.shape
    f = np.full((len(CHOICE_WEIGHTS), n, k + 1), np.nan, dtype=np.float32)  # all overwritten
    e = ctx.emotion
    position = (-np.log1p(np.arange(k))).astype(np.float32)
    kernels.fill_features(
        f, terms.match, terms.similarity, terms.repeat, terms.shared, ctx.slates, ctx.users,
        ctx.item_quality, ctx.item_popularity, ctx.persona.conformity, e.curiosity, e.boredom,
        e.fatigue, position,
    )  # fmt: skip
    expected = _feature_block_numpy(ctx, terms)
    assert f.tobytes() == expected.tobytes()  # -0.0 of the repeat column included


def test_noisy_argmax_is_numpys_argmax_of_the_sum() -> None:
    rng = np.random.default_rng(0)
    utility = rng.standard_normal((500, 7)).astype(np.float32)
    draws = rng.gumbel(size=(500, 7))
    draws[:50] = 0.0  # ties: the first maximum wins
    utility[:50, 3] = utility[:50, 5] = utility[:50].max(axis=1) + 1
    utility[60, 2] = utility[61, 0] = utility[62, 6] = np.nan  # the first NaN wins
    utility[63, [1, 4]] = np.nan
    for noise in (0.0, 0.3, 1.0):
        expected = np.argmax(utility + noise * draws, axis=1)
        np.testing.assert_array_equal(kernels.noisy_argmax(utility, noise, draws), expected)


def test_ring_slots_gives_each_write_the_next_slot_of_its_user() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        width, n_users = int(rng.integers(1, 6)), int(rng.integers(1, 9))
        users = rng.integers(0, n_users, size=int(rng.integers(0, 30)))  # repeats, > width too
        ptr = rng.integers(0, width, size=n_users)
        ref_ptr, expected = ptr.copy(), []
        for u in users.tolist():
            expected.append(int(ref_ptr[u]))
            ref_ptr[u] = (ref_ptr[u] + 1) % width
        assert kernels.ring_slots(ptr, users, width).tolist() == expected
        np.testing.assert_array_equal(ptr, ref_ptr)


@pytest.mark.parametrize("seed", range(8))
def test_slate_faults_finds_what_the_numpy_checks_find(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(3, 30)), int(rng.integers(1, 5))
    available = rng.random(m) < 0.9
    slates = np.array([rng.choice(m, k, replace=False) for _ in range(int(rng.integers(0, 40)))])
    slates = slates.reshape(-1, k)
    if slates.size and seed % 2:  # a repeated item, an unavailable one, an id out of range
        slates[rng.integers(slates.shape[0]), -1] = slates[0, 0] if k > 1 else -1
        if seed % 4 == 3:
            slates[-1, 0] = rng.choice([-1, m, m + 7])
    inside = (slates >= 0) & (slates < m)
    ordered = np.sort(np.where(inside, slates, -1 - np.arange(k)), axis=1)  # out: distinct
    expected = (
        bool((~inside).any()),
        bool((~available[slates[inside]]).any()),
        bool((ordered[:, 1:] == ordered[:, :-1]).any()),
    )
    assert kernels.slate_faults(slates, available) == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pairwise_sum_is_numpys_sum_bit_for_bit(dtype: type) -> None:
    rng = np.random.default_rng(0)
    for n in [*range(1, 20), 31, 64, 127, kernels.PAIRWISE_BLOCK]:
        # magnitudes far apart: any other order of the additions would round differently
        a = (rng.random((50, n)) * 10.0 ** rng.integers(-6, 6, size=(50, n))).astype(dtype)
        expected = np.add.reduce(a, axis=-1)
        got = np.array([kernels.pairwise_sum(row, 0, n) for row in a], dtype=dtype)
        assert got.tobytes() == expected.tobytes(), n


def _unit_rows_reference(x: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.add.reduce(x * x, axis=-1, keepdims=True))
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [0, 1, 5, 8, 12, 19, 64, 130])
def test_unit_rows_is_the_numpy_expression_bit_for_bit(dtype: type, d: int) -> None:
    from simenv.arrays import unit_rows

    rng = np.random.default_rng(d)
    x = (rng.standard_normal((300, d)) * 10.0 ** rng.integers(-30, 30, (300, d))).astype(dtype)
    if d:  # a zero row, -0.0, NaN and infinity, squares that overflow float32
        x[0], x[1], x[2, 0], x[3, 0] = 0.0, -0.0, np.nan, np.inf
    with np.errstate(all="ignore"):
        expected = _unit_rows_reference(x)
        if d <= kernels.PAIRWISE_BLOCK:  # wider rows take the numpy path of unit_rows
            assert kernels.unit_rows(x).tobytes() == expected.tobytes()
        assert unit_rows(x, dtype).tobytes() == expected.tobytes()
        assert unit_rows(x[:, None], dtype).shape == (300, 1, d)  # any leading shape
        column = x[:, ::2]  # not contiguous
        assert unit_rows(column, dtype).tobytes() == _unit_rows_reference(column).tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [0, 1, 7, 12, 19, 128])
def test_distances_are_numpys_norms_of_the_differences(dtype: type, d: int) -> None:
    rng = np.random.default_rng(d)
    a = (rng.standard_normal((200, d)) * 10.0 ** rng.integers(-20, 20, (200, d))).astype(dtype)
    b = (rng.standard_normal((200, d)) * 10.0 ** rng.integers(-20, 20, (200, d))).astype(dtype)
    if d:
        b[0] = a[0]  # distance 0
        a[1, 0] = np.nan
    expected = np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=1)
    assert kernels.distances(a, b).tobytes() == expected.tobytes()


def _consume_reference(state: dict, users: np.ndarray, chosen: np.ndarray, drift: float) -> None:
    """The numpy code of `UserState._consume` on a dict of its arrays."""
    from simenv.arrays import ring_slots, unit_rows

    feats, recent = state["features"], state["recent"]
    slots = ring_slots(state["recent_ptr"], users, recent.shape[1])
    evicted = recent[users, slots]
    old = feats[np.maximum(evicted, 0)]
    old[evicted < 0] = 0.0
    added = feats[chosen]
    state["recent_profile"][users] = state["recent_profile"][users] + (added - old)
    recent[users, slots] = chosen
    state["genre_history"][users] = state["genre_history"][users] + added
    if drift > 0:
        moved = (1 - drift) * state["taste"][users] + drift * state["unit"][chosen]
        state["taste"][users] = unit_rows(moved)


def _consume_state(rng: np.random.Generator, n: int, m: int, d: int, width: int) -> dict:
    f32 = np.float32
    feats = rng.random((m, d)).astype(f32)
    return {
        "recent": np.where(rng.random((n, width)) < 0.4, -1, rng.integers(0, m, (n, width))),
        "recent_ptr": rng.integers(0, 3 * width, n),
        "recent_profile": rng.random((n, d)).astype(f32),
        "genre_history": rng.random((n, d)).astype(f32),
        "taste": rng.normal(size=(n, d)).astype(f32),
        "features": feats,
        "unit": (feats / np.linalg.norm(feats, axis=1, keepdims=True)).astype(f32),
    }


def _consume_kernel(state: dict, users: np.ndarray, chosen: np.ndarray, drift: float) -> bool:
    s = state
    return kernels.consume(
        users, chosen, s["recent"], s["recent_ptr"], s["recent_profile"], s["genre_history"],
        s["taste"], s["features"], s["unit"], np.float32(1 - drift), np.float32(drift), drift > 0,
    )  # fmt: skip


@pytest.mark.parametrize("drift", [0.0, 0.05, 0.5, 1e-50])
@pytest.mark.parametrize("seed", range(3))
def test_consume_is_the_numpy_update_bit_for_bit(drift: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m, d, width = 300, 50, int(rng.integers(1, 20)), int(rng.integers(1, 8))
    state = _consume_state(rng, n, m, d, width)
    users = rng.permutation(n)[: int(rng.integers(0, n))].astype(np.int64)
    chosen = rng.integers(0, m, users.size)
    expected = {key: value.copy() for key, value in state.items()}
    _consume_reference(expected, users, chosen, drift)
    assert _consume_kernel(state, users, chosen, drift)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key, strict=True)


def test_consume_refuses_a_repeated_user_and_changes_nothing() -> None:
    state = _consume_state(np.random.default_rng(0), 10, 20, 4, 3)
    before = {key: value.copy() for key, value in state.items()}
    assert not _consume_kernel(state, np.array([1, 2, 1]), np.array([3, 4, 5]), 0.1)
    for key, value in before.items():
        np.testing.assert_array_equal(state[key], value, err_msg=key)

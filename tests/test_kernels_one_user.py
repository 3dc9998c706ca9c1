"""The one-user step's numba kernels (`simenv.kernels`, "one-user step") against numpy."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest

from policies.selection import TieKeys, splitmix64
from simenv import kernels


def _reference(
    neg: np.ndarray, n_cand: int, keys: np.ndarray, offset: int
) -> tuple[np.ndarray, int]:
    """`kernels.global_head` by a full sort: every column by (neg, key), the head down to the
    cut's tie group, the group rotated by ``offset`` (none if < 0)."""
    order = np.lexsort((keys, neg))
    cut = neg[order[n_cand - 1]]
    g0, size = int((neg < cut).sum()), int((neg == cut).sum())
    group = order[g0 : g0 + size]
    start = offset % size if offset >= 0 and size > 1 else 0
    window = group[(start + np.arange(n_cand - g0)) % size]
    return np.concatenate([order[:g0], window]), size


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_global_head_equals_a_full_sort(mode: int) -> None:
    rng = np.random.default_rng(mode)
    for trial in range(300):
        m = int(rng.choice([5, 40, 300, 3000]))
        neg = -rng.integers(0, int(rng.choice([2, 4, 50])), m).astype(np.float64)
        if trial % 5 == 0:
            neg[:] = -0.0  # a cold catalog: one tie group
        n_cand = int(rng.integers(1, min(m, 40) + 1))
        perm = rng.permutation(m).astype(np.int64)
        salt = int(rng.integers(0, 2**63 - 1))
        keys = [np.arange(m), perm, splitmix64(salt, np.arange(m))][mode]
        offset = int(rng.integers(-1, m))
        cut = np.partition(neg, n_cand - 1)[n_cand - 1]
        no_perm = np.zeros(0, np.int64)
        got, size = kernels.global_head(
            neg, cut, n_cand, mode, perm if mode == 1 else no_perm, np.uint64(salt), offset
        )
        ref, ref_size = _reference(neg, n_cand, keys, offset)
        np.testing.assert_array_equal(got, ref, err_msg=f"trial {trial}")
        assert size == ref_size


def test_tie_keys_in_the_kernel_are_the_numpy_keys() -> None:
    rng = np.random.default_rng(9)
    for hashed in (True, False):
        ties = TieKeys(500, 1, "random", rng, hashed=hashed)
        mode, perm, salt = ties.kernel_keys()
        cols = np.arange(500)
        got = [kernels._tie_key(int(c), mode, perm, salt) for c in cols]
        np.testing.assert_array_equal(got, ties.keys(cols))


def test_select_is_numpy_partition() -> None:
    rng = np.random.default_rng(2)
    for _ in range(300):
        a = rng.integers(-5, int(rng.choice([3, 10**9])), int(rng.integers(1, 400)))
        k = int(rng.integers(0, a.size))
        work = a.copy()
        assert kernels.select(work, k) == np.partition(a, k)[k]
        np.testing.assert_array_equal(np.sort(work), np.sort(a))  # reordered, not changed


def test_rank_window_is_a_slice_of_the_sorted_keys() -> None:
    """Evenly spread keys (the one-pass guess) and skewed ones (the guess misses: `select`)."""
    rng = np.random.default_rng(3)
    for trial in range(300):
        size = int(rng.integers(1, 3000))
        if trial % 2:
            keys = splitmix64(int(rng.integers(0, 2**62)), np.arange(size))
        else:  # most keys bunched near the bottom, a few huge
            keys = rng.choice(10 * size, size, replace=False).astype(np.int64)
            keys[rng.random(size) < 0.05] += 2**60
        tied = rng.permutation(size).astype(np.int64) + 7
        r0 = int(rng.integers(0, size))
        r1 = int(rng.integers(r0 + 1, size + 1))
        out = np.full(r1 - r0 + 3, -1, dtype=np.int64)
        kernels.rank_window(tied, keys, r0, r1, keys.min(), keys.max(), out, 2)
        np.testing.assert_array_equal(out[2 : 2 + r1 - r0], tied[np.argsort(keys)][r0:r1])
        assert out[0] == out[1] == out[-1] == -1


def test_negated_scores_are_minus_the_cleaned_available_scores() -> None:
    from policies.selection import _BIG, _available_scores

    rng = np.random.default_rng(8)
    for _ in range(100):
        n = int(rng.integers(1, 200))
        scores = rng.normal(size=n)
        scores[rng.random(n) < 0.1] = np.nan
        scores[rng.random(n) < 0.05] = np.inf
        scores[rng.random(n) < 0.05] = -np.inf
        scores[rng.random(n) < 0.2] = 0.0
        avail = np.sort(rng.choice(n, int(rng.integers(1, n + 1)), replace=False))
        for s in (scores, scores[avail]):  # per item id, per available item
            ref = -_available_scores(s, avail)
            got = kernels.negated_scores(s, avail, _BIG)
            assert got.tobytes() == ref.tobytes()  # the same bits, signed zeros included


def test_select_on_many_equal_floats() -> None:
    rng = np.random.default_rng(10)
    for _ in range(100):
        a = -rng.integers(0, 3, int(rng.integers(1, 5000))).astype(np.float64)
        k = int(rng.integers(0, a.size))
        assert kernels.select(a.copy(), k) == np.partition(a, k)[k]


def test_kth_smallest_is_numpy_partition() -> None:
    """Distinct, repeated and cold-catalog-like (mostly equal) floats, every rank k; the
    input is left as it was."""
    rng = np.random.default_rng(14)
    for trial in range(400):
        size = int(rng.integers(1, 600))
        if trial % 3 == 0:
            a = rng.standard_normal(size)
        elif trial % 3 == 1:
            a = rng.integers(-5, 5, size).astype(np.float64)
        else:  # a few consumed items among many with no consumption
            a = np.where(rng.random(size) < 0.05, -rng.integers(1, 60, size), 0.0)
        k = int(rng.integers(0, size))
        before = a.copy()
        assert kernels.kth_smallest(a, k) == np.partition(a, k)[k]
        np.testing.assert_array_equal(a, before)


def test_noisy_argmax_row_is_a_row_of_noisy_argmax() -> None:
    rng = np.random.default_rng(15)
    utility = rng.standard_normal((200, 11)).astype(np.float32)
    draws = rng.gumbel(size=(200, 11))
    utility[:20, 4] = utility[:20, 7] = utility[:20].max(axis=1) + 1  # ties
    draws[:20] = 0.0
    utility[30, 5] = utility[31, 0] = np.nan
    for noise in (0.0, 0.5):
        rows = kernels.noisy_argmax(utility, noise, draws)
        got = [kernels.noisy_argmax_row(utility[i], noise, draws[i]) for i in range(200)]
        np.testing.assert_array_equal(got, rows)
        assert all(type(pick) is int for pick in got)


# The single env's step: decision features, observation, consumption ---------------------------

_LENGTHS = [0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 13, 15, 16, 17, 20, 31, 32, 33, 47, 64, 100, 128]


def _needs_einsum_order() -> None:
    from simenv.arrays import einsum_order_holds

    if not einsum_order_holds():  # the callers then keep numpy's einsum
        pytest.skip("this numpy's float32 einsum adds in another order than einsum_dot")


def _same(a: object, b: object) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
    assert a.tobytes() == b.tobytes()


def _rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """float32 rows of mixed scales, with an all-zero row and a row of one sign."""
    x = (rng.standard_normal((n, d)) * rng.choice([1e-3, 1.0, 30.0], (n, 1))).astype(np.float32)
    if n > 2:
        x[0] = 0.0
        x[1] = np.abs(x[1])
    return x


def test_einsum_dot_adds_as_numpy_einsum() -> None:
    _needs_einsum_order()
    rng = np.random.default_rng(3)
    for d in _LENGTHS:
        a, b = _rows(rng, 40, d), _rows(rng, 40, d)
        want = np.einsum("nd,nd->n", a, b)
        got = np.array([kernels.einsum_dot(a[i], b[i]) for i in range(40)], dtype=np.float32)
        _same(got, want)
        slates = np.einsum("nkd,nd->nk", a.reshape(4, 10, d), b[:4])
        for i in range(4):
            dots = [kernels.einsum_dot(a[10 * i + j], b[i]) for j in range(10)]
            _same(np.array(dots, dtype=np.float32), slates[i])


def test_unit_row_into_is_unit_rows() -> None:
    from simenv.arrays import unit_rows

    rng = np.random.default_rng(4)
    for d in _LENGTHS[1:]:
        x = _rows(rng, 20, d)
        out = np.empty_like(x)
        for i in range(20):
            kernels.unit_row_into(x[i], out[i])
        _same(out, unit_rows(x))


def test_cosine_one_is_the_users_cosine() -> None:
    from simenv.users import _cosine

    _needs_einsum_order()
    rng = np.random.default_rng(5)
    for d in _LENGTHS[1:]:
        a, b = _rows(rng, 30, d), _rows(rng, 30, d)
        got = [kernels.cosine_one(a[i], b[i]) for i in range(30)]
        _same(np.array(got, dtype=np.float32), _cosine(a, b))


def _ids(rng: np.random.Generator, n_items: int, shape: tuple[int, int]) -> np.ndarray:
    """Item ids with about 30% -1 (empty) entries."""
    return np.where(rng.random(shape) < 0.3, -1, rng.integers(0, n_items, shape))


def _world_arrays(rng: np.random.Generator, n_users: int, n_items: int, d: int) -> dict:
    f32 = np.float32
    return {
        "item_unit": _rows(rng, n_items, d),
        "taste": _rows(rng, n_users, d),
        "recent_profile": _rows(rng, n_users, d),
        "recent": _ids(rng, n_items, (n_users, 6)),
        "inbox": _ids(rng, n_items, (n_users, 3)),
        "quality": rng.random(n_items).astype(f32),
        "popularity": rng.random(n_items).astype(f32),
        "conformity": rng.random(n_users).astype(f32),
        "curiosity": rng.random(n_users).astype(f32),
        "boredom": rng.random(n_users).astype(f32),
        "fatigue": rng.random(n_users).astype(f32),
    }  # fmt: skip


def test_slate_features_one_are_the_numpy_terms_and_block() -> None:
    """`kernels.slate_features_one` against `_slate_terms_one` and `_feature_block_numpy`."""
    from agents.deciders import CHOICE_WEIGHTS, _feature_block_numpy, _slate_terms_one
    from agents.emotion import EmotionState

    _needs_einsum_order()
    rng = np.random.default_rng(6)
    for d in (1, 5, 12, 16, 33):
        w = _world_arrays(rng, 8, 40, d)
        for trial in range(20):
            k, u = int(rng.integers(1, 12)), int(rng.integers(0, 8))
            slate = rng.choice(40, (1, k), replace=False)
            if trial % 3 == 0:  # recent and inbox items in the slate
                slate[0, : min(k, 2)] = [w["recent"][u, 0], w["inbox"][u, 0]][: min(k, 2)]
                slate[slate < 0] = 39
                slate[0] = np.unique(slate[0])[0] if k == 1 else slate[0]
            emotion = EmotionState.initial(w["curiosity"])
            emotion.boredom, emotion.fatigue = w["boredom"], w["fatigue"]
            persona = SimpleNamespace(conformity=w["conformity"])
            ctx = SimpleNamespace(
                users=np.array([u]), slates=slate, item_unit=w["item_unit"], taste=w["taste"],
                recent_profile=w["recent_profile"], recent=w["recent"], inbox=w["inbox"],
                item_quality=w["quality"], item_popularity=w["popularity"], persona=persona,
                emotion=emotion,
            )  # fmt: skip
            terms = _slate_terms_one(ctx, u)  # type: ignore[arg-type]
            want = _feature_block_numpy(ctx, terms)  # type: ignore[arg-type]
            f = np.full((len(CHOICE_WEIGHTS), 1, k + 1), np.nan, dtype=np.float32)
            match = np.empty(k, dtype=np.float32)
            position = (-np.log1p(np.arange(k))).astype(np.float32)
            kernels.slate_features_one(
                f, match, slate[0], u, w["item_unit"], w["taste"], w["recent_profile"],
                w["recent"], w["inbox"], w["quality"], w["popularity"], w["conformity"],
                emotion.curiosity, w["boredom"], w["fatigue"], position,
            )  # fmt: skip
            _same(match, terms.match[0])
            _same(f, want)


def test_observe_one_is_the_numpy_observation() -> None:
    """`kernels.observe_one` against the arrays' observation (`recent_stats_padded` and the
    user features as `ObservationBuilder._observe_rows` stacks them)."""
    from simenv.envs.observation import padded_rows, recent_stats_padded

    _needs_einsum_order()
    rng = np.random.default_rng(7)
    f32 = np.float32
    for d in (2, 4, 12, 20):  # one feature: numpy sums the history pairwise, not row by row
        padded = padded_rows(np.clip(_rows(rng, 50, d), -1, 1))
        for width in (0, 1, 5, 20):
            for _ in range(15):
                recent = np.where(rng.random(width) < 0.4, -1, rng.integers(0, 50, width))
                stats = rng.random(5).astype(f32) * f32(5)
                last, tick = int(rng.integers(-1, 4)), int(rng.integers(3, 30))
                pos, max_steps, cap = f32(rng.integers(0, 12)), 10, 10
                user = np.empty(9, dtype=f32)
                profile = np.empty(d, dtype=f32)
                one = np.zeros(1, dtype=np.int64)
                kernels.observe_one(
                    padded, recent, 0, stats[0:1], stats[1:2], stats[2:3], stats[3:4],
                    stats[4:5], one + last, tick, pos, max_steps, cap, f32(10.0), user, profile,
                )  # fmt: skip
                want_profile, fill, repetition = recent_stats_padded(recent[None], padded)
                gap = min(tick - last, cap) if last >= 0 else cap
                want = np.stack(
                    [
                        stats[0:1], stats[1:2], np.minimum(stats[2:3], 10.0) / 10.0,
                        np.minimum(np.array([pos]) / max_steps, 1.0),
                        np.array([gap], dtype=f32) / cap, np.array([last < 0], dtype=f32),
                        stats[3:4] / (stats[4:5] + 1.0), fill, np.clip(repetition, 0.0, 1.0),
                    ],
                    axis=1,
                ).astype(f32)  # fmt: skip
                _same(user, want[0])
                _same(profile, want_profile[0].astype(f32))


def test_consume_one_is_the_users_consume() -> None:
    """`kernels.consume_one` against `UserState._consume` of one row (ring, profile sum,
    genre history, taste drift)."""
    from simenv.users import UserState

    rng = np.random.default_rng(8)
    d, n_users, n_items = 7, 5, 30
    features = _rows(rng, n_items, d)
    items = SimpleNamespace(features=features, unit=np.clip(_rows(rng, n_items, d), -1, 1))
    state = SimpleNamespace(
        recent=np.full((n_users, 4), -1, dtype=np.int64),
        recent_ptr=np.zeros(n_users, dtype=np.int64),
        recent_profile=_rows(rng, n_users, d),
        genre_history=_rows(rng, n_users, d),
        taste=_rows(rng, n_users, d),
    )
    ref = copy.deepcopy(state)
    for trial in range(200):
        u, item = int(rng.integers(0, n_users)), int(rng.integers(0, n_items))
        drift = [0.0, 0.05, 0.5][trial % 3]
        kernels.consume_one(
            u, item, state.recent, state.recent_ptr, state.recent_profile, state.genre_history,
            state.taste, items.features, items.unit, drift,
        )  # fmt: skip
        UserState._consume(ref, np.array([u]), np.array([item]), items, drift)  # type: ignore[arg-type]
        for name in ("recent", "recent_ptr", "recent_profile", "genre_history", "taste"):
            _same(getattr(state, name), getattr(ref, name))


def test_recent_profile_one_is_the_numpy_profile() -> None:
    from simenv.envs.observation import RecommendRequest, recent_stats

    rng = np.random.default_rng(9)
    for d in (2, 5, 12):
        unit = np.clip(_rows(rng, 30, d), -1, 1)
        for width in (0, 1, 6, 20):
            recent = _ids(rng, 30, (1, width))
            request = RecommendRequest(
                tick=0, users=np.array([0]), k=1, item_features=unit,
                available=np.ones(30, dtype=bool), item_age=np.zeros(30, np.int32), recent=recent,
            )  # fmt: skip
            out = np.empty(d, dtype=np.float32)
            kernels.recent_profile_one(unit, recent[0], out)
            _same(out, recent_stats(request, unit)[0][0])


def test_explore_one_picks_the_numpy_novel_items() -> None:
    """`kernels.explore_one` against the numpy selection of `_explore_one`: median cut, the
    slate's and the recent items left out, the smallest draws first."""
    rng = np.random.default_rng(10)
    for _ in range(300):
        n, k = int(rng.integers(3, 60)), int(rng.integers(1, 4))
        ids = np.sort(rng.choice(100, n, replace=False))
        sims = rng.integers(-3, 4, n).astype(np.float32) / 3  # ties at the median
        slate = rng.choice(ids, k, replace=False)
        recent = np.where(rng.random(5) < 0.3, -1, rng.integers(0, 100, 5))
        draws = rng.random(n)
        m = int(rng.integers(1, k + 1))
        kth = (n - 1) // 2
        novel = sims <= np.partition(sims, kth)[kth]
        novel[np.searchsorted(ids, slate)] = False
        at = np.minimum(np.searchsorted(ids, recent), n - 1)
        novel[at[(recent >= 0) & (ids[at] == recent)]] = False
        keys = np.where(novel, draws, np.inf)
        picks = ids[np.argsort(keys, kind="stable")]
        want = slate.copy()
        take = min(m, int(novel.sum()))
        if take:
            want[k - take :] = picks[:take]
        got = slate.copy()
        kernels.explore_one(sims, ids, got, recent, draws, m)
        _same(got, want)

"""User-model parts on their own: ring buffers, memory retrieval, emotion, the utility decider."""

from __future__ import annotations

import numpy as np
import pytest

from agents import emotion as emo
from agents.deciders import DecisionContext, UtilityDecider, UtilityParams, slate_terms
from agents.memory import MemoryKind, MemoryStore
from agents.persona import sample_personas
from simenv.arrays import ring_push, ring_slots


def test_ring_push_handles_repeated_users_in_order():
    buf = np.full((2, 3), -1)
    ptr = np.zeros(2, dtype=np.int64)
    ring_push(buf, ptr, np.array([0, 1, 0, 0, 0]), np.array([10, 20, 11, 12, 13]))
    # user 0 wrote 10, 11, 12, 13 into 3 slots: 13 overwrote the oldest (10)
    assert sorted(buf[0]) == [11, 12, 13]
    assert buf[1].tolist() == [20, -1, -1]
    assert ptr.tolist() == [1, 1]
    assert ring_slots(ptr, np.array([], dtype=np.int64), 3).size == 0


def test_ring_slots_of_distinct_users_and_of_one_user_match_the_general_path():
    rng = np.random.default_rng(0)
    for _ in range(200):
        width, n = int(rng.integers(1, 5)), int(rng.integers(1, 8))
        users = rng.choice(10, n, replace=bool(rng.random() < 0.5))
        start = rng.integers(0, width, 10)
        ptr = start.copy()
        got = ring_slots(ptr, users, width)  # fast paths for one or distinct users
        ref_ptr, ref = start.copy(), []
        for u in users.tolist():  # one write at a time
            ref.append(ref_ptr[u])
            ref_ptr[u] = (ref_ptr[u] + 1) % width
        assert got.tolist() == ref and ptr.tolist() == ref_ptr.tolist()


def test_memory_is_bounded_and_retrieves_by_relevance_recency_importance():
    feats = np.array([[1, 0], [0, 1], [0.7, 0.7]], dtype=np.float32)
    mem = MemoryStore(n_users=2, capacity=3)
    for t, item in enumerate([0, 1, 2, 0]):
        mem.record(np.array([0]), MemoryKind.CONSUMED, np.array([item]), t, importance=0.5)
    records = mem.records(0)
    assert [r.tick for r in records] == [1, 2, 3]  # the oldest (tick 0) was overwritten
    # relevance only: a query along topic 1 retrieves item 1 first
    q = np.array([[0, 1]], dtype=np.float32)
    best = mem.retrieve(np.array([0]), q, feats, now=3, top=1, weights=(0, 0, 1))
    assert mem.item[0, best[0, 0]] == 1
    # recency only: the last record (tick 3, item 0)
    best = mem.retrieve(np.array([0]), q, feats, now=3, top=1, weights=(1, 0, 0))
    assert mem.tick[0, best[0, 0]] == 3
    # importance only
    slot = mem.record(np.array([0]), MemoryKind.SHARED, np.array([2]), 4, importance=0.99)
    best = mem.retrieve(np.array([0]), q, feats, now=4, top=1, weights=(0, 1, 0))
    assert best[0, 0] == slot[0]
    # an empty memory retrieves nothing
    assert (mem.retrieve(np.array([1]), q, feats, now=4, top=2) == -1).all()


def test_emotion_moves_with_ratings_repetition_and_time():
    params = emo.EmotionParams()
    state = emo.EmotionState.initial(np.array([0.2, 0.2], dtype=np.float32))
    users = np.array([0, 1])
    for _ in range(5):
        emo.after_slate(
            state,
            users,
            consumed=np.array([True, True]),
            rating=np.array([5.0, 1.0]),
            similarity=np.array([0.0, 1.0]),
            base_curiosity=np.array([0.2, 0.2]),
            params=params,
        )
    assert state.satisfaction[0] > 0.5 > -0.5 > state.satisfaction[1]
    assert state.boredom[1] > 0.5 and state.boredom[0] == 0
    assert state.curiosity[1] > state.curiosity[0]  # boredom makes curious
    assert state.fatigue[0] == pytest.approx(min(1.0, 5 * params.fatigue_per_slate))
    exit_p = emo.exit_prob(state, users, params)
    assert exit_p[1] > 10 * exit_p[0]  # the unhappy, bored user is far likelier to leave
    act = emo.activation_prob(state, np.array([0.5, 0.5]), params)
    assert act[0] > act[1]
    before = state.fatigue.copy()
    emo.start_tick(state, params)
    assert (state.fatigue < before).all()
    assert "pleased" in state.describe(0) and "bored" in state.describe(1)


def _context(utility_rows: int, rng: np.random.Generator, k: int = 4) -> DecisionContext:
    d = 3
    persona = sample_personas(utility_rows, d, np.random.default_rng(0))
    taste = np.zeros((utility_rows, d), dtype=np.float32)
    taste[:, 0] = 1.0  # everybody loves topic 0
    feats = np.eye(d, dtype=np.float32)[[0, 1, 2, 1, 2, 0]]
    return DecisionContext(
        tick=0,
        step=0,
        users=np.arange(utility_rows),
        slates=np.tile(np.array([1, 0, 2, 3])[:k], (utility_rows, 1)),
        persona=persona,
        taste=taste,
        emotion=emo.EmotionState.initial(np.zeros(utility_rows, dtype=np.float32)),
        item_features=feats,
        item_unit=feats,
        item_quality=np.full(6, 0.5, dtype=np.float32),
        item_popularity=np.zeros(6, dtype=np.float32),
        recent=np.full((utility_rows, 2), -1, dtype=np.int64),
        recent_profile=np.zeros((utility_rows, d), dtype=np.float32),
        inbox=np.full((utility_rows, 1), -1, dtype=np.int64),
        rng=rng,
    )


def test_utility_decider_samples_the_multinomial_logit():
    """Gumbel-max sampling must reproduce softmax(U) over slate ∪ {none}."""
    decider = UtilityDecider(UtilityParams(position=0.0, novelty=0.0))
    ctx = _context(40_000, np.random.default_rng(1))
    util, none = decider.utilities(ctx, slate_terms(ctx))
    full = np.concatenate([util[0], [none[0]]])
    expected = np.exp(full - full.max()) / np.exp(full - full.max()).sum()
    out = decider.decide(ctx)
    picks = np.where(out.chosen_pos >= 0, out.chosen_pos, 4)
    observed = np.bincount(picks, minlength=5) / picks.size
    np.testing.assert_allclose(observed, expected, atol=0.01)
    assert observed[1] == observed.max()  # the topic-0 item (slot 1) is the favourite
    chosen = out.chosen_pos >= 0
    assert np.isnan(out.rating[~chosen]).all()
    assert np.isin(out.rating[chosen], [1, 2, 3, 4, 5]).all()
    # liked items are rated higher than the rest
    assert out.rating[out.chosen_pos == 1].mean() > out.rating[out.chosen_pos == 0].mean()


def test_decider_penalises_repeats_and_rewards_friends_shares():
    decider = UtilityDecider()
    ctx = _context(8, np.random.default_rng(0))
    base, _ = decider.utilities(ctx, slate_terms(ctx))
    ctx.recent[:, 0] = 1  # item 1 consumed recently
    ctx.inbox[:, 0] = 2  # a friend shared item 2
    ctx.recent_profile[:, 0] = 1.0
    util, _ = decider.utilities(ctx, slate_terms(ctx))
    assert (util[:, 0] < base[:, 0] - decider.params.repeat + 1e-5).all()
    assert (util[:, 2] > base[:, 2]).all()


@pytest.mark.parametrize("rows", [5, 300])
@pytest.mark.parametrize("big_ids", [False, True])
@pytest.mark.parametrize("negative", [False, True])
def test_holds_any_is_membership_in_the_row(rows: int, big_ids: bool, negative: bool) -> None:
    from agents.deciders import _holds_any

    rng = np.random.default_rng(rows)
    top = 2**40 if big_ids else 50  # ids past int32 take the int64 path
    slates = rng.integers(0, 50, size=(rows, 6)) + (top - 50)
    if negative:  # not an item: never held, not even by the padding -1
        slates[::3, 2] = -1
    lists = rng.integers(-1, 50, size=(rows, 9)) + np.where(
        rng.random((rows, 9)) < 0.8, top - 50, 0
    )
    lists[lists < top - 50] = -1
    which = rng.permutation(rows)  # slate i is checked against row which[i] of lists
    rows_of = [set(row[row >= 0].tolist()) for row in lists[which]]
    expected = np.array(
        [[item in held for item in s] for s, held in zip(slates, rows_of, strict=True)]
    )
    assert expected.any() and not expected.all()
    np.testing.assert_array_equal(_holds_any(slates, lists, which), expected)


def test_memory_record_writes_the_same_into_arrays_of_any_layout() -> None:
    a, b = MemoryStore(6, 4), MemoryStore(6, 4)
    for name in ("kind", "item", "tick", "rating", "valence", "importance"):
        setattr(b, name, np.asfortranarray(getattr(b, name)))  # not C-contiguous: no flat view
    for store in (a, b):
        users, items = np.array([1, 3, 1, 5]), np.array([7, 8, 9, 10])
        rating = np.array([4.0, 5.0, 3.0, 1.0])
        store.record(users, MemoryKind.CONSUMED, items, 2, rating=rating, importance=0.9)
        store.record(np.arange(6), MemoryKind.SKIPPED, 11, 3, importance=0.2)
    for name in ("kind", "item", "tick", "rating", "valence", "importance", "ptr"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.item[1].tolist() == [7, 9, 11, -1] and a.kind[5, 0] == MemoryKind.CONSUMED


def test_utility_decider_reuses_its_feature_memory_but_never_pickles_it() -> None:
    import pickle

    decider = UtilityDecider()
    small, large = _context(100, np.random.default_rng(0)), _context(300, np.random.default_rng(0))
    first = decider.utility_matrix(large)
    memory = decider._scratch
    assert memory.size >= 11 * 300 * 5
    decider.utility_matrix(small)  # a smaller batch reuses the memory
    assert decider._scratch is memory
    np.testing.assert_array_equal(decider.utility_matrix(large), first)
    copy = pickle.loads(pickle.dumps(decider))
    assert copy._scratch.size == 0 and decider._scratch is memory
    np.testing.assert_array_equal(copy.utility_matrix(large), first)
    # a decider pickled before the memory existed (an older checkpoint) decides all the same
    old = UtilityDecider.__new__(UtilityDecider)
    old.__dict__.update({"params": decider.params})
    np.testing.assert_array_equal(old.utility_matrix(large), first)
    assert UtilityDecider._scratch.size == 0  # the class default was replaced, not written

"""The one-user fast paths of a single env's step give exactly what the array paths give.

A session env steps one user at a time, so the decider, the observation builder, the
popularity retriever's ranking and a few bookkeeping functions have a branch for one row
(scalars and short Python lists instead of (1, k) arrays). Each test here runs both paths on
the same input (and the same random draws) and compares the bytes.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest

from agents.deciders import UtilityDecider
from policies.base import NO_ITEM, Feedback, RecommendRequest
from policies.learning import ItemStats
from policies.selection import TieKeys, splitmix64, top_global
from scenarios import load
from simenv.envs.core import SMALL_OVERRIDES, SessionCore
from simenv.envs.observation import ObservationBuilder, recent_stats, recent_stats_padded
from simenv.world import World


def _same(a: object, b: object) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def core() -> SessionCore:
    """A session core stepped for a while: users with history, clicks, inbox items."""
    core = SessionCore("filter_bubble", [*SMALL_OVERRIDES, "social.share_prob=0.9"])
    core.reset(seed=4)
    core.observe()
    rng = np.random.default_rng(0)
    for _ in range(300):
        _, term, trunc, _ = core.step(rng.integers(0, core.n_candidates, (1, core.k)))
        if term[0] or trunc[0]:
            core.observe(np.array([0]))
            core.reset_slots(np.array([0]))
        core.observe()
    return core


@pytest.mark.parametrize("latent", [False, True])
def test_decide_one_equals_decide_rows(core: SessionCore, latent: bool) -> None:
    world = core._world
    decider = UtilityDecider(
        world.scenario.decider.utility.model_copy(update={"rating_latent": 0.7})
    )
    rng = np.random.default_rng(1)
    present = np.flatnonzero(world.users.present)
    factors = rng.standard_normal((world.items.capacity, 3)).astype(np.float32)
    persona = replace(
        world.users.persona, latent=rng.standard_normal((world.n_users, 3)).astype(np.float32)
    )
    for trial in range(60):
        users = rng.choice(present, 1)
        slate = rng.choice(np.flatnonzero(world.items.available), (1, world.spec.k), False)
        ctx = world.decision_context(users, slate, trial % 3)
        if latent:  # personas with latent tastes (persona_model mf): the rating's latent term
            ctx = replace(ctx, item_latent=factors, persona=persona)
        gen = np.random.default_rng(trial)
        one = decider._decide_one(replace(ctx, rng=copy.deepcopy(gen)))
        rows = decider._decide_rows(replace(ctx, rng=copy.deepcopy(gen)))
        for field in ("chosen_pos", "rating", "ended_session"):
            _same(getattr(one, field), getattr(rows, field))
    assert decider.decide(ctx).chosen_pos.shape == (1,)


def test_observe_one_equals_observe_rows(core: SessionCore) -> None:
    world, builder = core._world, core.builder
    unit = world.items.unit_clipped()
    for u in range(0, world.n_users, 7):
        request = world.request(np.array([u]))
        for step in (0, 2):
            one = builder.observe(request, np.array([step]), unit)
            rows = builder._observe_rows(request, np.array([u]), step, unit)
            assert set(one) == set(rows)
            for key in one:
                _same(one[key], rows[key])


def test_padded_recent_stats_equal_recent_stats(core: SessionCore) -> None:
    world = core._world
    request = world.request(np.arange(world.n_users))
    unit = world.items.unit_clipped()
    padded = core.builder._padded(unit)
    assert core.builder._padded(unit) is padded  # kept while the items are the same
    for rows in (slice(None), slice(0, 10)):  # column by column (many rows) and one gather
        recent = request.recent[rows]
        masked = recent_stats(replace(request, recent=recent), unit)
        for a, b in zip(masked, recent_stats_padded(recent, padded), strict=True):
            _same(a, b)


def test_update_one_equals_update_rows(core: SessionCore) -> None:
    spec = core._world.spec
    one, rows = ObservationBuilder(spec, 3), ObservationBuilder(spec, 3)
    rng = np.random.default_rng(2)
    for tick in range(200):
        u = rng.integers(0, spec.n_users, 1)
        pos = int(rng.integers(-1, spec.k))
        item = int(rng.integers(0, 30)) if pos >= 0 else -1
        rating = np.float32(rng.integers(1, 6)) if pos >= 0 else np.float32(np.nan)
        fb = Feedback(
            tick=tick,
            users=u,
            slates=rng.integers(0, spec.n_items, (1, spec.k)),
            chosen_pos=np.array([pos]),
            chosen_item=np.array([item]),
            rating=np.array([rating], dtype=np.float32),
            ended_session=np.array([False]),
        )
        one.update(fb)
        rows._update_rows(fb, u)
    for name in (
        "last_click",
        "last_rating",
        "streak",
        "last_tick",
        "impressions",
        "clicks",
        "item_consumed",
        "log_consumed",
        "popularity",
    ):
        _same(getattr(one, name), getattr(rows, name))
    assert one.top_consumed == rows.top_consumed == one.item_consumed.max()
    _same(one.log_consumed, np.log1p(one.item_consumed))
    top = np.log1p(one.top_consumed)
    _same(one.item_popularity(np.arange(40)), (one.log_consumed[:40] / top).astype(np.float32))


@pytest.mark.parametrize("hashed", [True, False])
@pytest.mark.parametrize("tie_break", ["random", "id"])
@pytest.mark.parametrize("case", ["cold", "warm", "few"])
def test_top_global_one_row_equals_row_of_many(tie_break: str, case: str, hashed: bool) -> None:
    rng = np.random.default_rng(3)
    m = 40 if case == "few" else 300
    avail = np.sort(rng.choice(m + 20, m, replace=False))
    length, history = (30, 12) if case == "few" else (10, 8)
    for trial in range(40):
        scores = np.zeros(m + 20)
        if case != "cold":  # a few distinct counts, many ties among them
            hot = rng.choice(m + 20, 25, replace=False)
            scores[hot] = rng.integers(1, 6, hot.size)
        recent = np.full((1, history), NO_ITEM, dtype=np.int64)
        fill = int(rng.integers(0, history + 1))
        recent[0, :fill] = rng.choice(avail, fill, replace=False)
        ties = TieKeys(m, 1, tie_break, np.random.default_rng(trial), hashed=hashed)
        one = top_global(scores, avail, recent, length, ties)
        many = top_global(
            scores, avail, np.repeat(recent, 2, 0), length, ties.subset(np.array([0, 0]))
        )
        _same(one, many[:1])
        assert len(set(one[0].tolist())) == length


def test_emotion_after_slate_one_user_equals_rows() -> None:
    from agents import emotion as emo

    params = emo.EmotionParams()
    rng = np.random.default_rng(6)
    curiosity = rng.random(20).astype(np.float32)
    one, rows = emo.EmotionState.initial(curiosity), emo.EmotionState.initial(curiosity)
    for _ in range(300):
        users = rng.choice(20, 2, replace=False)
        consumed = rng.random(2) < 0.5
        rating = np.where(consumed, rng.integers(1, 6, 2), np.nan).astype(np.float32)
        if rng.random() < 0.1:
            rating[0] = np.nan  # consumed without a rating: valence 0
        similarity = rng.uniform(-0.5, 1.5, 2).astype(np.float32)
        emo.after_slate(one, users[:1], consumed[:1], rating[:1], similarity[:1], curiosity, params)
        emo.after_slate(rows, users, consumed, rating, similarity, curiosity, params)
        # the second row is applied to both states alike (rows are independent)
        emo.after_slate(one, users[1:], consumed[1:], rating[1:], similarity[1:], curiosity, params)
    for name in ("satisfaction", "fatigue", "boredom", "curiosity"):
        _same(getattr(one, name), getattr(rows, name))


@pytest.mark.parametrize("with_unit", [True, False])
def test_explore_one_equals_explore_rows(core: SessionCore, with_unit: bool) -> None:
    from simenv.envs.core import _explore_one, _explore_rows

    world = core._world
    unit = world.items.unit_clipped() if with_unit else None
    avail = np.flatnonzero(world.items.available)
    rng = np.random.default_rng(7)
    for trial in range(80):
        request = world.request(rng.choice(world.n_users, 1))
        slate = rng.choice(avail, (1, world.spec.k), replace=False)
        m = int(rng.integers(1, world.spec.k + 1))
        one, rows = slate.copy(), slate.copy()
        _explore_one(request, one[0], m, np.random.default_rng(trial), unit)
        _explore_rows(
            request, rows, np.array([m]), np.array([0]), np.random.default_rng(trial), unit
        )
        _same(one, rows)
        assert len(set(one[0].tolist())) == world.spec.k


def test_item_stats_one_item_equals_bincount() -> None:
    rng = np.random.default_rng(4)
    for decay in (1.0, 0.9):
        fast, ref = ItemStats(50, decay), ItemStats(50, decay)
        for tick in range(300):
            item = rng.integers(0, 50, 1)
            reward = rng.random(1)
            fast.add(item, reward, tick // 7)
            # the bincount path, for one item: a second item with weight 0 changes nothing
            ref.add(np.array([item[0], item[0]]), np.array([reward[0], 0.0]), tick // 7)
            ref.pulls[item[0]] -= 1.0
        np.testing.assert_allclose(fast.pulls, ref.pulls)
        np.testing.assert_allclose(fast.rewards, ref.rewards)


def test_next_users_is_next_user_in_turn() -> None:
    scenario = load("filter_bubble", list(SMALL_OVERRIDES))
    a = World(scenario, None, seed=5)
    b = World(scenario, None, seed=5)
    from simenv.envs.core import Scheduler

    one_by_one, batched = Scheduler(a), Scheduler(b)
    busy_a, busy_b = {3, 7}, {3, 7}
    singles = []
    for _ in range(60):
        u = one_by_one.next_user(busy_a)
        busy_a.add(u)
        singles.append(u)
    assert batched.next_users(60, busy_b) == singles
    assert busy_a == busy_b and a.tick == b.tick
    empty = Scheduler(World(scenario, None, seed=5), max_idle_ticks=2)
    with pytest.raises(RuntimeError, match="no free user"):  # everybody is busy
        empty.next_users(1, set(range(empty.world.n_users)))
    assert empty.world.tick == 1  # two ticks begun, the first ended


def test_recommend_request_of_one_user_is_served(core: SessionCore) -> None:
    """The retriever's one-row ranking inside a request (not only top_global)."""
    world = core._world
    request: RecommendRequest = world.request(np.array([1]))
    out = core.base.recommend(replace(request, k=core.n_candidates))
    assert out.shape == (1, core.n_candidates)
    assert world.items.available[out].all() and len(set(out[0].tolist())) == out.shape[1]


@pytest.mark.parametrize(
    ("slate", "message"),
    [
        ([0, 1, 2], None),
        ([0, 1, 1], "twice"),
        ([0, 1, 9], "outside"),
        ([0, -1, 2], "outside"),
        ([0, 1, 3], "not available"),
    ],
)
def test_valid_slates_one_row_as_many(slate: list[int], message: str | None) -> None:
    from policies.selection import InvalidSlatesError, valid_slates

    available = np.array([True, True, True, False, True, True])
    for rows in (1, 2):  # one slate, and the same slate twice (the array path)
        arr = np.array([slate] * rows, dtype=np.int64)
        if message is None:
            _same(valid_slates(arr, available, (rows, 3)), arr)
        else:
            with pytest.raises(InvalidSlatesError, match=message):
                valid_slates(arr, available, (rows, 3))


def test_resolve_duplicates_one_row_as_many() -> None:
    from simenv.envs.core import resolve_duplicates

    rng = np.random.default_rng(8)
    for _ in range(100):
        row = rng.integers(0, 6, (1, 5))
        _same(resolve_duplicates(row, 6), resolve_duplicates(np.repeat(row, 2, 0), 6)[:1])
    with pytest.raises(ValueError, match="must be in"):
        resolve_duplicates(np.array([[0, 6]]), 6)


def test_candidate_age_feature_is_kept_per_tick(core: SessionCore) -> None:
    from simenv.envs.observation import item_age_feature

    world = core._world
    age = world.items.age(world.tick)
    kept = core._age_feature(age)
    assert core._age_feature(world.items.age(world.tick)) is kept  # same tick: not recomputed
    _same(kept, item_age_feature(age))
    obs = core.observe()
    _same(obs["cand_age"], item_age_feature(age[core.cands]))


def test_popularity_signal_is_kept_until_a_consumption(core: SessionCore) -> None:
    items, n = core._world.items, core._world.n_users

    def fresh() -> np.ndarray:
        signal = np.log1p(items.consumption_total + items.prior * n)
        return (signal / signal.max()).astype(np.float32)

    kept = items.popularity_signal(n)
    _same(kept, fresh())
    assert not kept.flags.writeable
    items.record(np.array([[0, 1, 2]]), np.zeros(0, dtype=np.int64))  # seen, not consumed
    assert items.popularity_signal(n) is kept
    items.record(np.array([[0, 1, 2]]), np.array([1]))
    assert items.popularity_signal(n) is not kept
    _same(items.popularity_signal(n), fresh())
    assert items.popularity_signal(n + 1) is not items.popularity_signal(n)  # other prior weight


def test_popularity_signal_updated_by_entries_equals_a_fresh_one(core: SessionCore) -> None:
    """Consumptions of a few items (entries updated), of the most popular one (a new maximum:
    everything rescaled) and of many at once (everything computed again): always the values a
    fresh computation gives, bit for bit."""
    items, n = core._world.items, core._world.n_users
    rng = np.random.default_rng(4)

    def fresh() -> np.ndarray:
        signal = np.log1p(items.consumption_total + items.prior * n)
        return (signal / signal.max()).astype(np.float32)

    ids = np.flatnonzero(items.available)
    for trial in range(60):
        if trial % 10 == 9:  # the most popular item: a new maximum
            consumed = np.array([int(np.argmax(items.popularity_signal(n)))] * 3)
        else:
            consumed = rng.choice(ids, int(rng.integers(0, 3)))
        items.record(rng.choice(ids, (1, 4), replace=False), consumed)
        _same(items.popularity_signal(n), fresh())
    items.record(rng.choice(ids, (items.capacity, 4)), rng.choice(ids, 50))  # the bincount path
    _same(items.popularity_signal(n), fresh())


def test_activation_prob_of_some_users_is_their_entries() -> None:
    from agents import emotion as emo

    rng = np.random.default_rng(6)
    n = 50
    state = emo.EmotionState.initial(np.full(n, 0.5, dtype=np.float32))
    state.satisfaction[:] = rng.uniform(-1, 1, n).astype(state.satisfaction.dtype)
    state.fatigue[:] = rng.uniform(0, 1, n).astype(state.fatigue.dtype)
    activity = rng.uniform(0, 1, n).astype(np.float32) * 1.3
    params = emo.EmotionParams()
    users = np.array([3, 17, 3, 49])
    full = emo.activation_prob(state, activity, params)
    _same(emo.activation_prob(state, activity[users], params, users), full[users])


def test_tie_keys_of_one_row_draw_what_the_array_call_draws() -> None:
    for seed in range(50):
        for m in (1, 2, 30, 1000, 2**33 + 7):
            a, b = np.random.default_rng(seed), np.random.default_rng(seed)
            one = TieKeys(min(m, 1000), 1, "random", a)
            ref_perm = b.permutation(min(m, 1000))
            ref_offset = b.integers(0, max(min(m, 1000), 1), size=1, dtype=np.int64)
            _same(one.perm, ref_perm)
            _same(one.offset, ref_offset)
            assert a.random() == b.random()  # the generators are in the same state
            c, d = np.random.default_rng(seed), np.random.default_rng(seed)
            assert c.integers(0, m, dtype=np.int64) == d.integers(0, m, size=1, dtype=np.int64)[0]
            assert c.random() == d.random()


def test_hashed_tie_keys_draw_two_numbers_whatever_the_catalog() -> None:
    for m in (5, 1000, 10**6):
        a, b = np.random.default_rng(1), np.random.default_rng(1)
        ties = TieKeys(m, 1, "random", a, hashed=True)
        assert ties.salt == int(b.integers(0, np.iinfo(np.int64).max, dtype=np.int64))
        assert ties.offset[0] == b.integers(0, m, dtype=np.int64)
        assert a.random() == b.random()  # nothing else was drawn
        _same(ties.keys(np.arange(5)), splitmix64(ties.salt, np.arange(5)))
    assert len(set(TieKeys(5000, 1, "random", a, hashed=True).perm.tolist())) == 5000


@pytest.mark.parametrize("drift", [0.0, 0.05])
def test_user_after_slate_one_equals_rows(core: SessionCore, drift: float) -> None:
    """`UserState.after_slate` of one user (the kernels' path) against the array path."""
    world = core._world
    one, rows = copy.deepcopy(world.users), copy.deepcopy(world.users)
    items, params = world.items, world.scenario.emotion
    rng = np.random.default_rng(11)
    available = np.flatnonzero(items.available)
    for trial in range(200):
        user = np.array([rng.choice(np.flatnonzero(one.present))])
        slate = rng.choice(available, (1, world.spec.k), replace=False)
        pos = int(rng.integers(-1, world.spec.k))
        rating = np.array([rng.integers(1, 6) if pos >= 0 else np.nan], dtype=np.float32)
        if trial % 17 == 0 and pos >= 0:
            rating[0] = np.nan  # consumed without a rating
        fb = Feedback(
            tick=world.tick,
            users=user,
            slates=slate,
            chosen_pos=np.array([pos]),
            chosen_item=np.array([slate[0, pos] if pos >= 0 else -1]),
            rating=rating,
            ended_session=np.array([False]),
            item_features=items.features,
        )
        one.after_slate(fb, items, params, drift)
        rows._after_slate_rows(fb, items, params, drift)
    for name in ("taste", "recent", "recent_ptr", "recent_profile", "genre_history"):
        _same(getattr(one, name), getattr(rows, name))
    _same(one.session_length, rows.session_length)
    for name in ("satisfaction", "fatigue", "boredom", "curiosity"):
        _same(getattr(one.emotion, name), getattr(rows.emotion, name))
    for name in ("kind", "item", "tick", "rating", "valence", "importance", "ptr"):
        _same(getattr(one.memory, name), getattr(rows.memory, name))


def test_memory_record_of_one_user_equals_the_array_write() -> None:
    """`MemoryStore.record` of one user (scalar writes) as the same users in one array call."""
    from agents.memory import MemoryKind, MemoryStore

    one, rows = MemoryStore(6, 4), MemoryStore(6, 4)
    rng = np.random.default_rng(2)
    for t in range(40):
        users = rng.choice(6, 2, replace=False)
        items = rng.integers(0, 50, 2)
        rating = np.array([rng.integers(1, 6), np.nan], dtype=np.float32)
        valence = ((rating - 3.0) / 2.0).astype(np.float32)
        kind = [MemoryKind.CONSUMED, MemoryKind.SKIPPED][t % 2]
        slots = []
        for i in range(2):
            one_row = slice(i, i + 1)
            slots.append(
                one.record(
                    users[one_row],
                    kind,
                    items[one_row],
                    t,
                    rating=rating[one_row],
                    valence=valence[one_row],
                    importance=[0.2, 0.3][i],
                )
            )
        importance = np.array([0.2, 0.3])
        together = rows.record(
            users, kind, items, t, rating=rating, valence=valence, importance=importance
        )
        _same(np.concatenate(slots), together)
    for name in ("kind", "item", "tick", "rating", "valence", "importance", "ptr"):
        _same(getattr(one, name), getattr(rows, name))


@pytest.mark.parametrize("reward", [None, {"rating": -0.7, "leave": 0.3}])
def test_reward_one_equals_reward_rows(core: SessionCore, reward: dict | None) -> None:
    """The scalar reward of one slot (every term but diversity) as the arrays' reward."""
    from simenv.envs.core import reward_weights

    world, weights, steps = core._world, core.weights, core.steps.copy()
    rng = np.random.default_rng(12)
    try:
        core.weights = reward_weights("exploration", reward)
        for trial in range(200):
            pos = int(rng.integers(-1, world.spec.k))
            rating = np.array([rng.integers(1, 6) if pos >= 0 else np.nan], dtype=np.float32)
            if trial % 9 == 0:
                rating[0] = np.nan  # consumed without a rating
            fb = Feedback(
                tick=world.tick,
                users=np.array([rng.integers(0, world.n_users)]),
                slates=np.zeros((1, world.spec.k), dtype=np.int64),
                chosen_pos=np.array([pos]),
                chosen_item=np.array([pos]),
                rating=rating,
                ended_session=np.array([rng.random() < 0.4]),
                item_features=world.items.features,
            )
            core.steps[0] = rng.integers(1, core.max_steps + 1)
            done = np.array([rng.random() < 0.4])
            _same(core.reward(fb, done), core._reward_rows(fb, done))
    finally:
        core.weights, core.steps[:] = weights, steps


def _first_row_feedback(
    tick: int, users: list[int], slate: np.ndarray, pos: int, stars: float
) -> Feedback:
    """Feedback of ``users`` shown ``slate``: the first consumed position ``pos`` (-1: none)
    with ``stars``, any second consumed nothing."""
    n = len(users)
    return Feedback(
        tick=tick,
        users=np.array(users),
        slates=np.repeat(slate, n, 0),
        chosen_pos=np.array([pos, -1][:n]),
        chosen_item=np.array([slate[0, pos] if pos >= 0 else -1, -1][:n]),
        rating=np.array([stars, np.nan][:n], dtype=np.float32),
        ended_session=np.zeros(n, dtype=bool),
    )


def test_share_of_one_user_equals_the_array_path(core: SessionCore) -> None:
    """`UserState.share` of one user (scalars, the friends' slice) against a batch of the same
    user and a second one that consumed nothing (which draws no number): the same inboxes,
    memories and generator state."""
    world = core._world
    one, rows = copy.deepcopy(world.users), copy.deepcopy(world.users)
    cfg = world.scenario.social.model_copy(update={"share_prob": 0.7})
    one_rng, rows_rng = np.random.default_rng(5), np.random.default_rng(5)
    rng = np.random.default_rng(13)
    k, shared = world.spec.k, 0
    for tick in range(150):
        user, other = (int(u) for u in rng.choice(world.n_users, 2, replace=False))
        pos = int(rng.integers(-1, k))
        stars = float(rng.integers(1, 6)) if pos >= 0 else np.nan
        slate = rng.integers(0, world.spec.n_items, (1, k))
        before = int((one.inbox >= 0).sum())
        one.share(_first_row_feedback(tick, [user], slate, pos, stars), world.social, cfg, one_rng)
        both = _first_row_feedback(tick, [user, other], slate, pos, stars)
        rows.share(both, world.social, cfg, rows_rng)
        shared += int((one.inbox >= 0).sum()) > before
    assert shared  # some shares reached friends
    _same(one.inbox, rows.inbox)
    _same(one.inbox_ptr, rows.inbox_ptr)
    for name in ("kind", "item", "tick", "importance", "ptr"):
        _same(getattr(one.memory, name), getattr(rows.memory, name))
    assert one_rng.random() == rows_rng.random()


def test_record_of_one_slate_counts_as_add_at(core: SessionCore) -> None:
    """`ItemStore.record` of one slate (fancy-index increments) as `np.add.at` counts."""
    items = copy.deepcopy(core._world.items)
    exposure, consumption = items.exposure_total.copy(), items.consumption_total.copy()
    rng = np.random.default_rng(3)
    ids = np.flatnonzero(items.available)
    for _ in range(100):
        slate = rng.choice(ids, (1, 5), replace=False)
        consumed = slate[0, : int(rng.integers(0, 2))]
        items.record(slate, consumed)
        np.add.at(exposure, slate.ravel(), 1)
        np.add.at(consumption, consumed, 1)
    _same(items.exposure_total, exposure)
    _same(items.consumption_total, consumption)


def test_step_info_of_one_slot_is_the_feedback_as_python_values(core: SessionCore) -> None:
    """The info dict of a one-slot step: Python values of the feedback (rating 0 where no
    item, or no stars, came back)."""
    fb = Feedback(
        tick=7,
        users=np.array([3]),
        slates=np.array([[4, 5, 6]]),
        chosen_pos=np.array([1]),
        chosen_item=np.array([5]),
        rating=np.array([4.0], dtype=np.float32),
        ended_session=np.array([False]),
    )
    info = core._info_one(fb, 3, np.array([0.25]))
    assert info == {
        "user": 3,
        "tick": 7,
        "slate": info["slate"],
        "clicked": True,
        "item": 5,
        "rating": 4.0,
        "explore_share": 0.25,
    }
    _same(info["slate"], fb.slates[0])
    assert all(type(info[key]) is type(value) for key, value in [("user", 1), ("rating", 1.0)])
    unrated = replace(fb, rating=np.array([np.nan], dtype=np.float32))
    assert core._info_one(unrated, 3, np.zeros(1))["rating"] == 0.0
    skipped = replace(fb, chosen_pos=np.array([-1]), chosen_item=np.array([-1]))
    info = core._info_one(skipped, 3, np.zeros(1))
    assert (info["clicked"], info["item"], info["rating"]) == (False, -1, 0.0)


def test_distinct_row_takes_the_first_unused_candidate() -> None:
    from simenv.envs.core import _distinct_row

    assert _distinct_row([2, 2, 0, 0, 1], 5) == [2, 0, 1, 3, 4]
    assert _distinct_row([0, 1, 2], 3) == [0, 1, 2]
    assert _distinct_row([4, 4, 4], 5) == [4, 0, 1]

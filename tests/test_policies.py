"""Tests of the recommender policies: the slate contract for every registered policy, the
registry's errors, determinism, and known-answer worlds where each learner must beat chance."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

import policies
from policies import (
    NO_ITEM,
    Feedback,
    NotEnoughItemsError,
    PlatformSpec,
    RecommendRequest,
    SocialGraph,
    UnknownPolicyError,
    check_slates,
)
from policies.selection import (
    TieKeys,
    _head_order,
    first_distinct,
    splitmix64,
    top_global,
    top_personal,
)

# policies that need a trained artefact to exist are tested where one is made (test_train.py)
NEEDS_ARTEFACT = {"sb3"}
ALL = [name for name in policies.available() if name not in NEEDS_ARTEFACT]

# --------------------------------------------------------------------------------------------
# a tiny world written for the tests
# --------------------------------------------------------------------------------------------


def ring_graph(n_users: int, width: int = 2) -> SocialGraph:
    """Each user is friends with the ``width`` users on either side."""
    offsets = [d for d in range(-width, width + 1) if d != 0]
    indices = np.array([(u + d) % n_users for u in range(n_users) for d in offsets])
    indptr = np.arange(0, n_users * len(offsets) + 1, len(offsets))
    return SocialGraph(indptr=indptr.astype(np.int64), indices=indices.astype(np.int64))


class World:
    """Users, items with features, a history of recent consumption and a click function.

    ``click_prob(users, slates) -> (n, k)`` gives each slate item's attraction probability; the
    user consumes the first attracted position (a cascade), or nothing. Requests carry the
    click probabilities as the users' true utilities (what the simulator's world hands an
    oracle; the other policies ignore them).
    """

    def __init__(
        self,
        n_users: int,
        features: np.ndarray,
        k: int,
        click_prob: Callable[[np.ndarray, np.ndarray], np.ndarray],
        history: int = 3,
        seed: int = 0,
        social: SocialGraph | None = None,
    ) -> None:
        self.n_users = n_users
        self.features = features.astype(np.float32)
        self.n_items = features.shape[0]
        self.k = k
        self.click_prob = click_prob
        self.rng = np.random.default_rng(seed)
        self.recent = np.full((n_users, history), NO_ITEM, dtype=np.int64)
        self.available = np.ones(self.n_items, dtype=bool)
        self.social = social
        self.tick = 0

    @property
    def spec(self) -> PlatformSpec:
        return PlatformSpec(
            n_users=self.n_users,
            n_items=self.n_items,
            n_features=self.features.shape[1],
            k=self.k,
            history=self.recent.shape[1],
        )

    def request(self, users: np.ndarray) -> RecommendRequest:
        def utility(rows: np.ndarray, items: np.ndarray) -> np.ndarray:
            grid = np.broadcast_to(items, (rows.size, items.size))
            return np.asarray(self.click_prob(users[rows], grid), dtype=np.float64)

        return RecommendRequest(
            tick=self.tick,
            users=users,
            k=self.k,
            item_features=self.features,
            available=self.available.copy(),
            item_age=np.where(self.available, 1, -1).astype(np.int32),
            recent=self.recent[users].copy(),
            social=self.social,
            true_utility=utility,
        )

    def feedback(self, users: np.ndarray, slates: np.ndarray) -> Feedback:
        n, k = slates.shape
        attracted = self.rng.random((n, k)) < self.click_prob(users, slates)
        has = attracted.any(1)
        pos = np.where(has, attracted.argmax(1), -1)
        item = np.where(has, slates[np.arange(n), np.maximum(pos, 0)], NO_ITEM)
        rating = np.where(has, 4.0, np.nan).astype(np.float32)
        rows = np.flatnonzero(has)
        if self.recent.shape[1]:
            self.recent[users[rows]] = np.roll(self.recent[users[rows]], 1, axis=1)
            self.recent[users[rows], 0] = item[rows]
        return Feedback(
            tick=self.tick,
            users=users,
            slates=slates,
            chosen_pos=pos.astype(np.int64),
            chosen_item=item.astype(np.int64),
            rating=rating,
            ended_session=np.zeros(n, dtype=bool),
            item_features=self.features,
        )

    def run(
        self,
        policy: policies.Recommender,
        rounds: int,
        batch: int | None = None,
        warmup: int = 0,
    ) -> list[tuple[np.ndarray, np.ndarray, Feedback]]:
        """Alternate recommend/update for ``rounds`` ticks; returns (users, slates, feedback).

        During the first ``warmup`` rounds the slates are uniformly random (drawn by the world)
        and the policy only learns from their feedback (logged data)."""
        log = []
        for t in range(rounds):
            if batch is None:
                users = np.arange(self.n_users)
            else:
                users = np.sort(self.rng.choice(self.n_users, size=batch, replace=False))
            request = self.request(users)
            if t < warmup:
                slates = np.argsort(self.rng.random((users.size, self.n_items)), 1)[:, : self.k]
            else:
                slates = policy.recommend(request)
                check_slates(slates, request)
            fb = self.feedback(users, slates)
            policy.update(fb)
            log.append((users, slates, fb))
            self.tick += 1
        return log


def started(name: str, world: World, seed: int = 0, **kwargs: object) -> policies.Recommender:
    policy = policies.make(name, **kwargs)
    policy.reset(world.spec, np.random.default_rng(seed))
    return policy


def clicks(log: list[tuple[np.ndarray, np.ndarray, Feedback]], last: int) -> float:
    """Click-through per slate over the last ``last`` rounds."""
    return float(np.mean([fb.clicked.mean() for _, _, fb in log[-last:]]))


# --------------------------------------------------------------------------------------------
# the contract, for every registered policy
# --------------------------------------------------------------------------------------------


def contract_world(seed: int = 0) -> World:
    rng = np.random.default_rng(seed)
    features = rng.random((40, 4))
    world = World(
        30,
        features,
        k=5,
        click_prob=lambda u, s: np.full(s.shape, 0.3),
        history=4,
        seed=seed,
        social=ring_graph(30),
    )
    world.available[30:] = False  # 10 items are published later
    return world


@pytest.mark.parametrize("name", ALL)
def test_contract_shape_distinct_available_not_recent(name: str) -> None:
    world = contract_world()
    policy = started(name, world)
    assert isinstance(policy, policies.Recommender)
    assert policy.name == name
    empty = np.zeros(0, dtype=np.int64)
    for tick in range(12):
        world.tick = tick
        if tick == 5:
            world.available[30:] = True  # cold items appear
            world.available[:3] = False  # and some retire
        users = world.rng.choice(30, size=20, replace=False)
        request = world.request(users)
        slates = policy.recommend(request)
        check_slates(slates, request)
        assert slates.dtype == np.int64 and slates.shape == (20, 5)
        for row, rec in zip(slates, request.recent, strict=True):
            assert not set(row.tolist()) & set(rec[rec >= 0].tolist())
        policy.update(world.feedback(users, slates))
        # a request and an update with zero rows
        none = world.request(empty)
        assert policy.recommend(none).shape == (0, 5)
        policy.update(world.feedback(empty, np.zeros((0, 5), dtype=np.int64)))
    if isinstance(policy, policies.SlatePolicy):
        request = world.request(np.arange(30))
        longer = policy.rank(request, 20)
        check_slates(longer, request, 20)


@pytest.mark.parametrize("name", ALL)
def test_contract_at_a_larger_scale(name: str) -> None:
    """Large enough for the chunked, block-preselected and cold/warm code paths."""
    rng = np.random.default_rng(5)
    p = rng.random(1200) * 0.3
    world = World(3000, rng.random((1200, 6)), k=10, click_prob=lambda u, s: p[s], history=12)
    world.social = ring_graph(3000)
    world.available[1000:] = False
    policy = started(name, world)
    for tick in range(4):
        world.tick = tick
        world.available[1000 + 50 * tick : 1050 + 50 * tick] = True
        users = np.sort(world.rng.choice(3000, size=2500, replace=False))
        request = world.request(users)
        slates = policy.recommend(request)
        check_slates(slates, request)
        has_recent = (slates[:, :, None] == request.recent[:, None, :]).any((1, 2))
        assert not has_recent.any()
        policy.update(world.feedback(users, slates))


@pytest.mark.parametrize("name", ALL)
def test_contract_falls_back_to_recent_items_and_errors_when_too_few(name: str) -> None:
    world = contract_world()
    policy = started(name, world)
    world.available[:] = False
    world.available[:6] = True
    users = np.arange(10)
    world.recent[users] = [0, 1, 2, 3]  # only 2 non-recent items left for a 5-slate
    request = world.request(users)
    slates = policy.recommend(request)
    check_slates(slates, request)
    assert np.isin([4, 5], slates).all(axis=None)
    assert (np.isin(slates, [4, 5]).sum(1) == 2).all()
    world.available[:] = False
    world.available[:3] = True
    with pytest.raises(NotEnoughItemsError, match="only 3 items are available"):
        policy.recommend(world.request(users))


def test_check_slates_rejects_what_breaks_the_contract() -> None:
    world = contract_world()
    world.available[7] = False
    request = world.request(np.arange(2))
    good = np.array([[0, 1, 2, 3, 4], [5, 6, 8, 9, 10]], dtype=np.int64)
    check_slates(good, request)
    bad = {
        "int64 ndarray": good.astype(np.int32),
        "shape": good[:, :4].copy(),
        "outside": np.where(good == 10, 10_000, good),
        "not available": np.where(good == 10, 7, good),
        "twice": np.where(good == 10, 9, good),
    }
    for message, slates in bad.items():
        with pytest.raises(ValueError, match=message):
            check_slates(slates, request)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_slates(name: str) -> None:
    runs = []
    for _ in range(2):
        world = contract_world(seed=3)
        policy = started(name, world, seed=11)
        log = world.run(policy, rounds=6, batch=20)
        runs.append(np.stack([s for _, s, _ in log]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_different_seeds_differ_for_random() -> None:
    world = contract_world()
    request = world.request(np.arange(30))
    a = started("random", world, seed=1).recommend(request)
    b = started("random", world, seed=2).recommend(request)
    assert not np.array_equal(a, b)


# --------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------


def test_registry_lists_the_built_in_policies() -> None:
    expected = {
        "random",
        "popularity",
        "mf",
        "item_knn",
        "content",
        "epsilon_greedy",
        "softmax",
        "ucb",
        "thompson",
        "linucb",
        "mmr",
        "social",
        "oracle",
    }
    assert expected <= set(ALL)
    assert sorted(ALL) == ALL


def test_unknown_policy_name_lists_known_names() -> None:
    with pytest.raises(UnknownPolicyError, match=r"unknown policy 'ubc'.*did you mean 'ucb'"):
        policies.make("ubc")
    with pytest.raises(ValueError, match=r"available policies: .*popularity.*ucb"):
        policies.make("nope")


def test_unknown_and_bad_parameters() -> None:
    with pytest.raises(ValueError, match=r"policy 'ucb' has no parameter 'foo'; parameters: c"):
        policies.make("ucb", foo=1)
    with pytest.raises(ValueError, match="epsilon must be in"):
        policies.make("epsilon_greedy", epsilon=2.0)
    with pytest.raises(ValueError, match="reward must be one of"):
        policies.make("thompson", reward="watch")
    with pytest.raises(UnknownPolicyError):
        policies.make("mmr", base="nope")
    with pytest.raises(ValueError, match="policy 'popularity' has no parameter 'c'"):
        policies.make("mmr", base="popularity", base_kwargs={"c": 1})


def test_register_decorator_and_duplicates() -> None:
    @policies.register("test_first_item")
    class FirstItems(policies.SlatePolicy):
        def __init__(self, offset: int = 0) -> None:
            super().__init__()
            self.offset = offset

        def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
            return self.rank_global(request, n, -np.arange(request.available.size) + self.offset)

    try:
        assert "test_first_item" in policies.available()
        world = contract_world()
        policy = started("test_first_item", world, offset=3)
        assert policy.get_params() == {"offset": 3}  # type: ignore[attr-defined]
        slates = policy.recommend(world.request(np.array([0])))
        np.testing.assert_array_equal(slates, [[0, 1, 2, 3, 4]])
        with pytest.raises(ValueError, match="already registered"):
            policies.register("test_first_item")(FirstItems)
    finally:
        from policies import registry

        registry._REGISTRY.pop("test_first_item", None)


def test_lazy_entry_point_and_parameters() -> None:
    from policies import registry

    policies.register("test_lazy_ucb", entry_point="policies.bandits:UCB")
    try:
        policy = policies.make("test_lazy_ucb", c=0.3)
        assert policy.name == "test_lazy_ucb" and policies.make("ucb").name == "ucb"
        assert policy.get_params() == {  # type: ignore[attr-defined]
            "c": 0.3,
            "reward": "click",
            "decay": 1.0,
            "retrain_every": 0,
            "train_ticks": None,
        }
    finally:
        registry._REGISTRY.pop("test_lazy_ucb", None)
    assert policies.parameters("epsilon_greedy")["epsilon"] == 0.1
    assert set(policies.parameters("mmr")) == {"base", "lambda_", "pool", "base_kwargs"}


def test_reset_is_required() -> None:
    policy = policies.make("popularity")
    with pytest.raises(RuntimeError, match="call reset"):
        policy.recommend(contract_world().request(np.arange(3)))


# --------------------------------------------------------------------------------------------
# selection helpers against brute force
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_items", [60, 700])
@pytest.mark.parametrize("tie_break", ["id", "random"])
def test_top_personal_matches_a_full_sort(n_items: int, tie_break: str) -> None:
    """Chunked selection (block pre-selection, tie walks) equals a full lexicographic sort by
    (score desc, tie key) with recent items last, on rows with few, many and total ties."""
    rng = np.random.default_rng(0)
    n_rows, k = 300, 7
    scores = rng.random((n_rows, n_items))
    scores[100:200] = rng.integers(0, 3, size=(100, n_items))  # many ties
    scores[200:250] = 1.0  # cold rows: everything tied
    scores[250:275, :10] = 5.0  # a tie group spanning the cut-off
    scores[275:, :5] = [9.0, 8.0, 7.0, 6.0, 5.0]  # then 4 scattered items tied for 2 places
    scores[275:, [n_items // 5, n_items // 3, n_items // 2, n_items - 1]] = 4.0
    avail = np.sort(rng.choice(n_items, size=n_items * 3 // 4, replace=False))
    recent = rng.choice(avail, size=(n_rows, 5))
    recent[::7] = NO_ITEM
    ties = TieKeys(avail.size, n_rows, tie_break, rng)
    got = top_personal(lambda rows, items: scores[rows][:, items], avail, recent, k, ties, n_items)
    for r in range(n_rows):
        s = scores[r, avail].copy()
        s[np.isin(avail, recent[r])] = -np.inf
        order = np.lexsort((ties.key(np.array(r), np.arange(avail.size)), -s))
        np.testing.assert_array_equal(got[r], avail[order[:k]], err_msg=f"row {r}")


def test_first_distinct() -> None:
    cands = np.array([[3, 3, 1, -1, 2, 5], [4, 4, 4, 4, 4, 4]])
    out = first_distinct(cands, 3, exclude=np.array([[1, -1], [9, 9]]))
    np.testing.assert_array_equal(out, [[3, 2, 5], [4, NO_ITEM, NO_ITEM]])


def test_first_distinct_one_row_path_equals_the_array_path() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        cands = rng.integers(-2, 12, (1, int(rng.integers(0, 15))))
        exclude = rng.integers(-1, 12, (1, int(rng.integers(0, 5))))
        length = int(rng.integers(0, 18))
        one = first_distinct(cands, length, exclude)  # the Python walk
        two = first_distinct(np.repeat(cands, 2, 0), length, np.repeat(exclude, 2, 0))
        np.testing.assert_array_equal(one[0], two[0])
        np.testing.assert_array_equal(two[0], two[1])


def test_splitmix64_is_the_reference_generator() -> None:
    """The tie keys of the global rankings: SplitMix64's published outputs for seed 1234567,
    and a pure-Python SplitMix64 stream for other seeds."""
    got = splitmix64(1234567, np.arange(3)).view(np.uint64).tolist()
    assert got == [6457827717110365317, 3203168211198807973, 9817491932198370423]
    mask = (1 << 64) - 1
    for salt in (0, 1, 2**62 + 12345):
        state, ref = salt, []
        for _ in range(20):
            state = (state + 0x9E3779B97F4A7C15) & mask
            z = state
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
            ref.append(z ^ (z >> 31))
        assert splitmix64(salt, np.arange(20)).view(np.uint64).tolist() == ref


def test_head_order_is_the_head_of_a_full_sort() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        m = int(rng.integers(1, 40))
        neg = rng.integers(-3, 1, m).astype(np.float64) * rng.choice([1.0, 0.5])
        key = rng.permutation(m)
        n = int(rng.integers(1, m + 1))
        head, g0 = _head_order(neg, key.__getitem__, n)
        full = np.lexsort((key, neg))
        np.testing.assert_array_equal(head, full[: head.size])
        cut = neg[full[n - 1]]
        assert g0 == int((neg < cut).sum()) and head.size == int((neg <= cut).sum())


@pytest.mark.parametrize("hashed", [True, False])
@pytest.mark.parametrize("tie_break", ["random", "id"])
def test_top_global_many_rows_equal_one_row_at_a_time(tie_break: str, hashed: bool) -> None:
    """The many-row path (tie group rotated per row, recent items masked by rank) gives what
    ranking each row alone gives (the explicit candidate list and `first_distinct`)."""
    rng = np.random.default_rng(2)
    for _ in range(200):
        m = int(rng.integers(1, 50))
        avail = np.sort(rng.choice(m + 5, m, replace=False))
        scores = rng.integers(0, 3, m + 5).astype(np.float64)
        rows, history = int(rng.integers(2, 7)), int(rng.integers(0, 7))
        recent = rng.integers(-1, m + 5, (rows, history))
        length = int(rng.integers(1, m + 1))
        ties = TieKeys(m, rows, tie_break, np.random.default_rng(int(rng.integers(99))), hashed)
        got = top_global(scores, avail, recent, length, ties)
        for r in range(rows):
            alone = top_global(scores, avail, recent[r : r + 1], length, ties.subset([r]))
            np.testing.assert_array_equal(got[r], alone[0])


def test_top_global_without_ties_equals_the_masked_sort() -> None:
    """Distinct scores (no tie group: the compiled walk over the shared candidates) give what
    masking each row's recent items and sorting by the mask gives, also where rows run out
    and get their recent items last."""
    from policies.selection import _top_recent_last

    rng = np.random.default_rng(5)
    for _ in range(300):
        m = int(rng.integers(1, 40))
        avail = np.sort(rng.choice(m + 5, m, replace=False))
        scores = rng.permutation(m + 5).astype(np.float64)  # distinct
        rows, history = int(rng.integers(2, 9)), int(rng.integers(0, 9))
        top = avail[np.argsort(-scores[avail], kind="stable")]
        recent = np.where(rng.random((rows, history)) < 0.7, rng.choice(top[:12], (rows, history)),
                          rng.integers(-1, m + 5, (rows, history)))  # fmt: skip
        length = int(rng.integers(1, m + 1))
        ties = TieKeys(m, rows, "id", np.random.default_rng(0))
        cand = top[: min(m, length + history)]
        expected = _top_recent_last(cand, recent, length)
        np.testing.assert_array_equal(top_global(scores, avail, recent, length, ties), expected)


# --------------------------------------------------------------------------------------------
# known-answer worlds
# --------------------------------------------------------------------------------------------

BEST = 7


def bandit_world(k: int, seed: int = 0) -> World:
    """50 items; item 7 attracts with probability 0.9, every other item with 0.1."""
    p = np.full(50, 0.1)
    p[BEST] = 0.9
    features = np.random.default_rng(seed).random((50, 3))
    return World(200, features, k, lambda u, s: p[s], history=0, seed=seed)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("ucb", {}),
        ("thompson", {}),
        ("epsilon_greedy", {"epsilon": 0.1}),
        ("softmax", {"temperature": 0.1}),
    ],
)
@pytest.mark.parametrize("k", [1, 3])
def test_bandits_find_the_best_item(name: str, kwargs: dict[str, object], k: int) -> None:
    world = bandit_world(k)
    policy = started(name, world, **kwargs)
    log = world.run(policy, rounds=150)
    last = np.concatenate([s for _, s, _ in log[-20:]])
    share = (last == BEST).any(1).mean()
    # random would put item 7 in k/50 of the slates
    assert share > 0.85, f"{name}: best item in only {share:.2f} of the last slates"
    assert clicks(log, 20) > clicks(log, 150) - 0.01


def test_popularity_learns_the_best_item_from_logged_slates() -> None:
    """Popularity does not explore, so it learns from 20 rounds of logged random slates."""
    world = bandit_world(3)
    policy = started("popularity", world)
    world.run(policy, rounds=20, warmup=20)
    counts = policy.stats.pulls  # type: ignore[attr-defined]
    assert counts.argmax() == BEST
    slates = policy.recommend(world.request(np.arange(200)))
    assert (slates[:, 0] == BEST).all()
    # with decay, evidence from long ago fades: item 7 stops being consumed, item 3 takes over
    decayed = started("popularity", world, decay=0.5)
    world.run(decayed, rounds=5, warmup=5)
    world.click_prob = lambda u, s: np.where(s == 3, 0.9, 0.0)
    world.run(decayed, rounds=5, warmup=5)
    assert decayed.recommend(world.request(np.arange(5)))[0, 0] == 3


def test_random_does_not_find_the_best_item() -> None:
    world = bandit_world(1)
    log = world.run(started("random", world), rounds=50)
    last = np.concatenate([s for _, s, _ in log[-20:]])
    assert (last == BEST).mean() < 0.1


def test_linucb_finds_the_best_feature_direction() -> None:
    """Click probability rises along one feature direction; a sliding window of 60 fresh
    items (20 new per round) means only a model of the features can pick good new items."""
    rng = np.random.default_rng(1)
    features = rng.normal(size=(1000, 5))
    direction = np.array([1.0, -1.0, 0.5, 0.0, 0.0])
    utility = features @ direction
    p = 1.0 / (1.0 + np.exp(-(utility - 2.0)))

    def percentiles(name: str) -> list[float]:
        world = World(100, features, k=3, click_prob=lambda u, s: p[s], history=0, seed=1)
        policy = started(name, world)
        out = []
        for t in range(40):
            world.available[:] = False
            world.available[20 * t : 20 * t + 60] = True
            ((_, slates, _),) = world.run(policy, rounds=1)
            out.append(float((utility[world.available] < utility[slates].mean()).mean()))
        if name == "linucb":
            theta = np.linalg.solve(policy.A, policy.b)[:5]  # type: ignore[attr-defined]
            cosine = theta @ direction / np.linalg.norm(theta) / np.linalg.norm(direction)
            assert cosine > 0.8, f"learnt direction has cosine {cosine:.2f} with the true one"
        return out

    assert np.mean(percentiles("linucb")[-20:]) > 0.9
    assert np.mean(percentiles("random")[-20:]) < 0.7


def intra_list_similarity(slates: np.ndarray, features: np.ndarray) -> float:
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    x = f[slates]
    sim = np.einsum("rif,rjf->rij", x, x)
    k = slates.shape[1]
    return float(((sim.sum((1, 2)) - k) / (k * (k - 1))).mean())


def test_mmr_diversifies_its_base() -> None:
    # 5 clusters of 20 items; the popular items are all in cluster 0
    rng = np.random.default_rng(2)
    centres = np.eye(5) * 3
    cluster = np.repeat(np.arange(5), 20)
    features = centres[cluster] + 0.3 * rng.normal(size=(100, 5))
    p = np.where(cluster == 0, 0.8, 0.05)
    world = World(100, features, k=5, click_prob=lambda u, s: p[s], history=2, seed=2)
    base = started("popularity", world)
    world.run(base, rounds=20)
    mmr = started("mmr", world, base="popularity", lambda_=0.5, pool=30)
    mmr.base.stats = base.stats  # type: ignore[attr-defined]  # same learnt state
    request = world.request(np.arange(100))
    plain, diverse = base.recommend(request), mmr.recommend(request)
    check_slates(diverse, request)
    assert intra_list_similarity(diverse, features) < intra_list_similarity(plain, features) - 0.3
    assert (cluster[plain] == 0).all()
    assert len(np.unique(cluster[diverse[0]])) >= 3
    assert (diverse[:, 0] == plain[:, 0]).all()  # the most relevant item stays first
    top = started("mmr", world, base="popularity", lambda_=1.0)
    top.base.stats = base.stats  # type: ignore[attr-defined]
    np.testing.assert_array_equal(top.recommend(request)[:, :1], plain[:, :1])


def topic_world(seed: int = 0) -> tuple[World, np.ndarray, np.ndarray]:
    """5 topics x 20 items; each of 300 users only likes items of one topic."""
    rng = np.random.default_rng(seed)
    topic = np.repeat(np.arange(5), 20)
    features = np.eye(5)[topic] + 0.2 * rng.random((100, 5))
    taste = rng.integers(0, 5, size=300)

    def click_prob(users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        return np.where(topic[slates] == taste[users][:, None], 0.5, 0.02)

    return World(300, features, k=5, click_prob=click_prob, history=5, seed=seed), topic, taste


def precision(
    log: list[tuple[np.ndarray, np.ndarray, Feedback]],
    topic: np.ndarray,
    taste: np.ndarray,
    last: int,
) -> float:
    hits = [(topic[s] == taste[u][:, None]).mean() for u, s, _ in log[-last:]]
    return float(np.mean(hits))


@pytest.mark.parametrize("name", ["content", "item_knn", "mf", "social"])
def test_personalised_policies_learn_the_topics(name: str) -> None:
    """After 10 rounds of logged random slates, the policy serves on-topic items."""
    world, topic, taste = topic_world()
    if name == "social":  # friends share the taste: users sorted by taste on a ring graph
        taste.sort()
        world.social = ring_graph(300, width=3)
    log = world.run(started(name, world), rounds=40, batch=150, warmup=10)
    world_r, topic_r, taste_r = topic_world()
    log_r = world_r.run(started("random", world_r), rounds=40, batch=150, warmup=10)
    learnt, chance = precision(log, topic, taste, 10), precision(log_r, topic_r, taste_r, 10)
    assert chance < 0.3
    assert learnt > 0.55, f"{name}: precision {learnt:.2f} (random {chance:.2f})"


def test_social_serves_what_friends_just_consumed() -> None:
    world = contract_world()
    world.available[:] = True
    policy = started("social", world)
    # users 1 and 2 (friends of 0 on the ring) consumed item 33; user 28 (not a friend) item 5
    users = np.array([1, 2, 28])
    slates = np.array([[33, 0, 1, 2, 3], [4, 33, 6, 7, 8], [5, 9, 10, 11, 12]])
    fb = Feedback(
        tick=0,
        users=users,
        slates=slates,
        chosen_pos=np.array([0, 1, 0]),
        chosen_item=np.array([33, 33, 5]),
        rating=np.full(3, 4.0, dtype=np.float32),
        ended_session=np.zeros(3, dtype=bool),
    )
    policy.update(fb)
    world.tick = 1
    out = policy.recommend(world.request(np.array([0, 15])))
    assert out[0, 0] == 33  # friends' item first
    assert 5 in out[0]  # back-filled by popularity
    assert out[1, 0] in (33, 5)  # user 15 has no friends who consumed: popularity only
    world.social = None
    np.testing.assert_array_equal(
        np.sort(policy.recommend(world.request(np.array([0])))[0, :2]), [5, 33]
    )


# --------------------------------------------------------------------------------------------
# the oracle
# --------------------------------------------------------------------------------------------


def test_oracle_shows_the_best_item_from_the_first_round() -> None:
    world = bandit_world(3)
    log = world.run(started("oracle", world), rounds=3)
    assert all((slates[:, 0] == BEST).all() for _, slates, _ in log)


def test_oracle_is_marked_not_deployable_and_refused_where_utilities_are_not_handed() -> None:
    assert policies.needs_true_utilities(policies.get_class("oracle"))
    assert policies.needs_true_utilities(policies.make("oracle"))
    assert not any(
        policies.needs_true_utilities(policies.get_class(n)) for n in ALL if n != "oracle"
    )
    with pytest.raises(ValueError, match="mmr's base 'oracle' is not deployable"):
        policies.make("mmr", base="oracle")
    with pytest.raises(ValueError, match="retriever 'oracle' is not deployable"):
        policies.check_deployable(policies.make("oracle"), "retriever")
    policies.check_deployable(policies.make("mf"), "retriever")
    oracle = started("oracle", contract_world())
    request = contract_world().request(np.arange(3))
    with pytest.raises(ValueError, match="policy 'oracle' got no true utilities"):
        oracle.recommend(dataclasses.replace(request, true_utility=None))


# --------------------------------------------------------------------------------------------
# when learning policies learn: retrain_every and train_ticks
# --------------------------------------------------------------------------------------------

LEARNERS = [n for n in ALL if "retrain_every" in policies.parameters(n)]


def test_every_policy_that_learns_takes_the_training_options() -> None:
    learns = {"popularity", "mf", "item_knn", "content", "epsilon_greedy", "softmax", "ucb",
              "thompson", "linucb", "social"}  # fmt: skip
    assert set(LEARNERS) == learns
    for name in LEARNERS:
        params = policies.parameters(name)
        assert params["retrain_every"] == 0 and params["train_ticks"] is None
    assert set(policies.TRAINING_PARAMS) == {"retrain_every", "train_ticks"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"retrain_every": -1}, "retrain_every must be an integer >= 0, got -1"),
        ({"retrain_every": 2.5}, "retrain_every must be an integer >= 0, got 2.5"),
        ({"retrain_every": True}, "retrain_every must be an integer"),
        ({"train_ticks": -3}, "train_ticks must be an integer >= 0, got -3"),
        ({"train_ticks": "10"}, "train_ticks must be an integer >= 0, got '10'"),
    ],
)
def test_training_options_are_validated(params: dict[str, object], message: str) -> None:
    for name in ("mf", "ucb", "social"):
        with pytest.raises(ValueError, match=message):
            policies.make(name, **params)


def _feed(
    policy: policies.Recommender, world: World, ticks: range
) -> tuple[list[np.ndarray], list[int]]:
    """Recommend then learn for each tick; returns the popularity counts seen at each tick's
    recommendation (after any retraining due then) and each tick's number of clicks."""
    seen, clicked = [], []
    for tick in ticks:
        world.tick = tick
        users = np.arange(world.n_users)
        slates = policy.recommend(world.request(users))
        seen.append(policy.stats.pulls.copy())  # type: ignore[attr-defined]
        feedback = world.feedback(users, slates)
        clicked.append(int(feedback.clicked.sum()))
        policy.update(feedback)
    return seen, clicked


def test_retrain_every_learns_the_kept_feedback_every_k_ticks() -> None:
    """Fed the same feedback, popularity retrained every 3 ticks holds the online model's
    counts of tick 3j at ticks 3j .. 3j+2 (the model is fixed between retrainings)."""
    online_world, batch_world = bandit_world(3, seed=4), bandit_world(3, seed=4)
    online = started("popularity", online_world)
    batch = started("popularity", batch_world, retrain_every=3)
    # both serve the online model's slates, so both see the same feedback
    seen_online, seen_batch = [], []
    for tick in range(10):
        for world in (online_world, batch_world):
            world.tick = tick
        users = np.arange(online_world.n_users)
        slates = online.recommend(online_world.request(users))
        batch.recommend(batch_world.request(users))  # a retraining due now happens here
        seen_online.append(online.stats.pulls.copy())  # type: ignore[attr-defined]
        seen_batch.append(batch.stats.pulls.copy())  # type: ignore[attr-defined]
        online.update(online_world.feedback(users, slates))
        batch.update(batch_world.feedback(users, slates))
    for tick in range(10):
        np.testing.assert_array_equal(seen_batch[tick], seen_online[3 * (tick // 3)])
    assert seen_online[2].sum() > 0


def test_train_ticks_freezes_the_model() -> None:
    world = bandit_world(3, seed=1)
    frozen, clicked = _feed(started("popularity", world, train_ticks=4), world, range(9))
    assert frozen[4].sum() == sum(clicked[:4]) > frozen[3].sum() > 0
    for later in frozen[5:]:
        np.testing.assert_array_equal(later, frozen[4])
    # trained once: nothing learnt before tick 4, then the logs of ticks 0-3 at once, frozen
    world = bandit_world(3, seed=1)
    policy = started("popularity", world, retrain_every=4, train_ticks=4)
    once, clicked = _feed(policy, world, range(9))
    assert all(s.sum() == 0 for s in once[:4])
    assert once[4].sum() == sum(clicked[:4]) > 0
    for later in once[5:]:
        np.testing.assert_array_equal(later, once[4])
    # never trained
    world = bandit_world(3, seed=1)
    never, _ = _feed(started("popularity", world, train_ticks=0), world, range(3))
    assert all(s.sum() == 0 for s in never)


def test_a_reranker_retrains_its_base_before_ranking() -> None:
    world = bandit_world(3, seed=2)
    mmr = started("mmr", world, base="popularity", base_kwargs={"retrain_every": 2}, pool=10)
    counts = []
    for tick in range(5):
        world.tick = tick
        users = np.arange(world.n_users)
        slates = mmr.recommend(world.request(users))
        counts.append(mmr.base.stats.pulls.sum())  # type: ignore[attr-defined]
        mmr.update(world.feedback(users, slates))
    assert counts[0] == counts[1] == 0 < counts[2] == counts[3] < counts[4]


@pytest.mark.parametrize("name", LEARNERS)
def test_training_options_keep_the_contract_and_defaults_change_nothing(name: str) -> None:
    runs = {}
    for params in ({}, {"retrain_every": 0}, {"retrain_every": 3, "train_ticks": 5}):
        world = contract_world(seed=3)
        policy = started(name, world, seed=11, **params)
        log = world.run(policy, rounds=8, batch=20)
        runs[str(params)] = np.stack([s for _, s, _ in log])
    np.testing.assert_array_equal(runs["{}"], runs["{'retrain_every': 0}"])


@pytest.mark.parametrize("then_masked", [False, True])
def test_first_unmasked_is_the_stable_sort_by_mask(then_masked: bool) -> None:
    from policies.selection import first_unmasked

    rng = np.random.default_rng(5)
    for rows, width, length in [(0, 6, 3), (40, 6, 3), (200, 30, 10), (50, 4, 4)]:
        cands = rng.integers(0, 1000, size=(rows, width))
        masked = rng.random((rows, width)) < rng.choice([0.0, 0.2, 0.7])
        pick = np.argsort(masked, axis=1, kind="stable")[:, :length]
        expected = np.take_along_axis(cands, pick, 1)
        if not then_masked:
            expected[np.take_along_axis(masked, pick, 1)] = -1
        np.testing.assert_array_equal(first_unmasked(cands, masked, length, then_masked), expected)

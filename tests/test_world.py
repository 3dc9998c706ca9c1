"""The world's tick: determinism, the story's invariants, and what reaches the policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import policies
from agents.deciders import ScriptedDecider
from agents.memory import MemoryKind
from policies.base import Feedback, PlatformSpec, RecommendRequest
from scenarios import load
from simenv.world import PolicyError, World


def small(**over: object) -> object:
    sets = [
        "ticks=6",
        "population.size=120",
        "catalog.n_items=150",
        "catalog.n_creators=10",
        "seeds=[0]",
    ]
    sets += [f"{k}={v}" for k, v in over.items()]
    return load("filter_bubble", sets)


def run_world(scenario, policy="popularity", seed=0, **kw) -> World:
    world = World(scenario, policies.make(policy), seed=seed, **kw)
    world.run()
    return world


def test_same_seed_same_trajectory_different_seed_differs():
    sc = small()
    a = run_world(sc, "mf", seed=3).interactions_frame()
    b = run_world(sc, "mf", seed=3).interactions_frame()
    c = run_world(sc, "mf", seed=4).interactions_frame()
    pd.testing.assert_frame_equal(a, b)
    assert len(a) > 0
    assert not (len(a) == len(c) and a.equals(c))


def test_metrics_argument_chooses_the_recorded_metrics():
    world = run_world(small(), metrics=["ctr", "churn_rate"])
    assert list(world.metrics_frame().columns[:3]) == ["tick", "ctr", "churn_rate"]
    assert "homogenization" not in world.metrics_frame().columns
    with pytest.raises(ValueError, match="unknown metric"):
        World(small(), None, metrics=["ctrr"])


def test_log_has_one_row_per_impression_and_matches_totals():
    world = run_world(small())
    log = world.interactions_frame()
    k = world.spec.k
    assert (log.groupby(["tick", "step", "user"]).size() == k).all()
    exposure = np.bincount(log["item"], minlength=world.items.capacity)
    np.testing.assert_array_equal(exposure, world.items.exposure_total)
    clicks = log[log["clicked"]]
    assert clicks["rating"].between(1, 5).all()
    assert log.loc[~log["clicked"], "rating"].isna().all()
    assert (clicks.groupby(["tick", "step", "user"]).size() == 1).all()


def test_metrics_frame_has_every_metric_each_tick():
    from simenv import metrics

    world = run_world(small())
    frame = world.metrics_frame()
    assert list(frame["tick"]) == list(range(6))
    for name in metrics.defaults():
        assert name in frame.columns
    assert "niche_ctr_gap" not in frame.columns  # recorded on request only
    assert frame["ctr"].between(0, 1).all()
    extra = run_world(small(extra_metrics="[niche_ctr_gap, catalog_diversity]")).metrics_frame()
    assert list(extra.columns) == [*frame.columns[:-2], "niche_ctr_gap", "catalog_diversity",
                                   *frame.columns[-2:]]  # fmt: skip
    pd.testing.assert_frame_equal(extra[frame.columns], frame)


class Recorder:
    """A policy that serves the first k available items and records what it was given."""

    name = "recorder"

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        self.spec, self.requests, self.feedback = spec, [], []

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        self.requests.append(request)
        first = np.flatnonzero(request.available)[: request.k]
        return np.tile(first, (request.n, 1))

    def update(self, feedback: Feedback) -> None:
        self.feedback.append(feedback)


def test_policy_sees_only_observable_fields_and_gets_feedback():
    rec = Recorder()
    world = World(small(), rec, seed=0, decider=ScriptedDecider(pick=1, rating=5.0))
    world.run(2)
    fields = set(RecommendRequest.__dataclass_fields__)
    assert fields == {
        "tick",
        "users",
        "k",
        "item_features",
        "available",
        "item_age",
        "recent",
        "social",
        "true_utility",  # only ever filled for an oracle (below)
    }
    assert all(r.true_utility is None for r in rec.requests)
    fb = rec.feedback[0]
    np.testing.assert_array_equal(fb.chosen_item, fb.slates[:, 1])
    assert (fb.rating == 5.0).all()
    # the item picked at tick 0 is now in the users' recent list, which the policy sees
    later = rec.requests[-1]
    assert (later.recent == fb.slates[0, 1]).any()


def test_scripted_decider_drives_memory_emotion_and_drift():
    world = World(small(), Recorder(), seed=0, decider=ScriptedDecider(pick=0, rating=5.0))
    world.run(3)
    users = np.flatnonzero(world.users.genre_history.sum(axis=1) > 0)
    assert users.size > 0
    u = int(users[0])
    kinds = {r.kind for r in world.users.memory.records(u)}
    assert MemoryKind.CONSUMED in kinds
    assert world.users.emotion.satisfaction[u] > 0  # rating 5 pleases
    assert np.linalg.norm(world.users.taste[u] - world.users.taste_initial[u]) > 0  # taste drifted
    agent = world.user_agents.select(lambda a: a.user_id == u)[0]
    assert agent.memories()[-1].tick <= 2
    assert "pleased" in agent.feeling()


def test_memory_stays_bounded():
    world = run_world(small(ticks=10, **{"session.memory": 4}))
    assert world.users.memory.kind.shape == (120, 4)
    assert all(len(world.users.memory.records(u)) <= 4 for u in range(120))


def test_leaving_and_returning_users():
    sc = small(ticks=15, **{"emotion.exit_base": 0.0, "emotion.return_rate": 0.3})
    frame = run_world(sc).metrics_frame()
    assert frame["churn_rate"].max() > 0
    assert frame["return_rate"].max() > 0


def test_creators_publish_and_items_age_out():
    sc = small(
        ticks=8,
        **{"creators.enabled": "true", "creators.publish_rate": 1.0, "creators.max_item_age": 3},
    )
    world = run_world(sc, "content")
    assert world.items.size > 150
    assert world.item_agents.__len__() == world.items.size
    assert not world.items.available[:150].any()  # initial items retired after age 3
    assert world.metrics_frame()["items_available"].iloc[-1] > 0


class Broken(Recorder):
    def __init__(self, how: str) -> None:
        self.how = how

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        good = super().recommend(request)
        if self.how == "shape":
            return good[:, :-1]
        if self.how == "duplicate":
            good[:, 1] = good[:, 0]
            return good
        return np.full_like(good, request.available.size + 5)


@pytest.mark.parametrize("how", ["shape", "duplicate", "range"])
def test_bad_slates_are_a_clear_error(how):
    world = World(small(), Broken(how), seed=0)
    with pytest.raises(PolicyError, match="recorder"):
        world.step()


def test_slate_larger_than_catalog_is_rejected():
    from scenarios import ScenarioError

    with pytest.raises(ScenarioError, match="slate_size"):
        load("filter_bubble", ["session.slate_size=50", "catalog.n_items=20"])


def test_an_llm_scenario_never_runs_parametric_users_silently(tmp_path):
    """`World` builds no LLM personas: given an LLM scenario and no decider it refuses and names
    the factory that does; `make_world` builds the decider the scenario names."""
    from agents.deciders import UtilityDecider
    from agents.llm_decider import LLMDecider
    from simenv.studies import make_world

    llm = load("filter_bubble_llm", ["ticks=2", "population.size=6"])
    with pytest.raises(ValueError, match=r"decider.kind: llm.*simenv\.studies\.make_world"):
        World(llm, policies.make("random"), seed=0)
    parametric = World(llm, None, seed=0, decider=UtilityDecider(llm.decider.utility))
    assert type(parametric.decider) is UtilityDecider  # asked for explicitly

    fake = load(llm, ["decider.llm.backend=fake", "decider.llm.embeddings=topics"])
    world = make_world(fake, "random", seed=1, run_dir=tmp_path)
    assert isinstance(world.decider, LLMDecider) and world.seed == 1
    assert world.decider.max_fallback_share == 0.5  # from the scenario's decider.llm
    world.run()
    assert world.decider.decisions > 0 and (tmp_path / "llm_cache.sqlite").is_file()
    utility = make_world("filter_bubble", policies.make("mf"))
    assert type(utility.decider) is UtilityDecider and utility.scenario.name == "filter_bubble"


# --------------------------------------------------------------------------------------------
# the oracle: true utilities handed over by the world
# --------------------------------------------------------------------------------------------


def test_oracle_gets_the_deciders_utilities_without_drawing_random_numbers():
    world = World(small(), policies.make("oracle"), seed=0)
    world.run(2)  # some history, boredom, popularity and recent items
    users = np.arange(0, 120, 7)
    request = world.request(users)
    assert request.true_utility is not None
    streams = {name: world.rngs[name].bit_generator.state for name in ("decider", "policy")}
    avail = np.flatnonzero(world.items.available)
    rows = np.arange(users.size)
    got = request.true_utility(rows, avail)
    assert got.shape == (users.size, avail.size) and got.dtype == np.float64
    for name, state in streams.items():
        assert world.rngs[name].bit_generator.state == state, name
    # each item's utility is the decider's utility of that item at the top of a slate
    others = avail[-(world.spec.k - 1) :]
    for col in range(10):
        slates = np.tile(np.r_[avail[col], others], (users.size, 1))
        ctx = world.decision_context(users, slates, step=0)
        want = world.decider.utility_matrix(ctx)[:, 0]
        np.testing.assert_allclose(got[:, col], want, rtol=1e-5, atol=1e-5)
    # the oracle shows every user the available items with the highest utilities, best first
    # (items consumed recently come last, as with every policy)
    slates = world.policy.recommend(request)
    shown = np.take_along_axis(got, np.searchsorted(avail, slates), axis=1)
    assert (np.diff(shown, axis=1) <= 1e-9).all()
    fresh = np.where((avail[None, :, None] == request.recent[:, None, :]).any(2), -np.inf, got)
    kth_best = -np.sort(-fresh, axis=1)[:, world.spec.k - 1]
    assert (shown[:, -1] >= kth_best - 1e-9).all()


def test_oracle_beats_random():
    sc = small(ticks=4)
    oracle = run_world(sc, "oracle").metrics_frame()["ctr"].mean()
    random = run_world(sc, "random").metrics_frame()["ctr"].mean()
    assert oracle > random + 0.2


def test_oracle_needs_a_decider_with_utilities():
    with pytest.raises(ValueError, match="'oracle' needs the users' true utilities, which the "
                       "scripted decider does not define"):  # fmt: skip
        World(small(), policies.make("oracle"), seed=0, decider=ScriptedDecider())
    bare = policies.make("oracle")
    world = World(small(), None, seed=0)  # an environment's world hands out no utilities
    bare.reset(world.spec, np.random.default_rng(0))
    with pytest.raises(ValueError, match="got no true utilities"):
        bare.recommend(world.request(np.arange(3)))

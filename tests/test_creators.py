"""Creators on their own: Poisson publication, orders of driven creators, reacting to exposure."""

from __future__ import annotations

import numpy as np

from scenarios.schema import CreatorsConfig
from simenv.catalog import topic_names
from simenv.creators import (
    CreatorState,
    Order,
    adapt_topics,
    creator_exposure,
    exposure_trend,
    fulfil,
    publish,
    react,
    record_tick,
)


def test_creators_adapt_toward_exposed_topics():
    feats = np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32)
    exposures = np.array([0, 5, 5])
    trend = exposure_trend(feats, exposures)
    np.testing.assert_allclose(trend, [0, 1])
    topics = np.array([[1.0, 0.0]], dtype=np.float32)
    moved = adapt_topics(topics, trend, 0.25)
    np.testing.assert_allclose(moved, [[0.75, 0.25]])
    assert exposure_trend(feats, np.zeros(3)) is None
    np.testing.assert_array_equal(creator_exposure(np.array([0, 1, 1]), exposures, 3), [0, 10, 0])


def _state(n: int = 4, d: int = 3) -> CreatorState:
    return CreatorState.start(np.full((n, d), 1.0 / d, dtype=np.float32))


def test_driven_and_inactive_creators_do_not_publish_by_themselves():
    state = _state()
    state.drive([0])
    state.active[1] = False
    new = publish(state, 5.0, 1, np.random.default_rng(0), topic_names(3))
    assert new is not None and len(new) > 0
    assert set(new.creator.tolist()) == {2, 3}
    assert publish(state, 0.0, 1, np.random.default_rng(0), topic_names(3)) is None


def test_an_order_publishes_on_its_topics_with_its_effort():
    state = _state()
    state.drive([0, 1])
    topics = np.array([0.0, 0.0, 1.0])
    new = fulfil(
        state, Order(1, topics, 3, effort=1.0), 2, np.random.default_rng(0), topic_names(3)
    )
    assert new is not None and len(new) == 3
    assert (new.creator == 1).all() and (new.publish_tick == 2).all()
    assert (np.argmax(new.features, axis=1) == 2).all()
    assert (new.quality >= 0.8).all()
    np.testing.assert_allclose(state.topics[1], topics)
    state.active[0] = False  # a creator who quit publishes nothing
    assert fulfil(state, Order(0, topics, 3), 2, np.random.default_rng(0), topic_names(3)) is None
    assert fulfil(state, Order(1, topics, 0), 2, np.random.default_rng(0), topic_names(3)) is None


def test_react_counts_idle_ticks_and_creators_quit():
    state = _state(n=2, d=2)
    feats = np.array([[1, 0], [0, 1]], dtype=np.float32)
    cfg = CreatorsConfig(enabled=True, leave_after=2, adapt=0.5)
    for _ in range(2):
        record_tick(state, np.array([0, 1]), feats, np.array([4, 0]), np.array([1, 0]))
        react(state, cfg)
    np.testing.assert_array_equal(state.exposure, [4, 0])
    np.testing.assert_array_equal(state.consumption, [1, 0])
    np.testing.assert_array_equal(state.active, [True, False])  # creator 1: 2 idle ticks
    assert state.topics[1, 0] > 0.5  # moved toward what was exposed (topic 0)
    react(state, CreatorsConfig(enabled=False, leave_after=1))  # disabled: nothing changes
    np.testing.assert_array_equal(state.idle_ticks, [0, 2])

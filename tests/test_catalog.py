from __future__ import annotations

import numpy as np
import pytest

from simenv.catalog import (
    TOPIC_WORDS,
    Catalog,
    new_items_for_creators,
    synthetic_catalog,
    topic_names,
)


def _cat(seed: int = 0, **kw) -> Catalog:
    args = {"n_items": 2000, "n_topics": 12, "n_creators": 60, **kw}
    return synthetic_catalog(rng=np.random.default_rng(seed), **args)


def test_shapes_dtypes_ranges() -> None:
    c = _cat()
    n = 2000
    assert len(c) == n and c.n_topics == 12
    assert c.features.shape == (n, 12) and c.features.dtype == np.float32
    assert (c.features >= 0).all()
    np.testing.assert_allclose(c.features.sum(axis=1), 1.0, atol=1e-5)
    for name in ("quality", "popularity_prior", "mean_rating"):
        assert getattr(c, name).shape == (n,) and getattr(c, name).dtype == np.float32
    assert ((c.quality >= 0) & (c.quality <= 1)).all()
    assert c.popularity_prior.min() > 0
    assert c.popularity_prior.sum() == pytest.approx(1.0, abs=1e-5)
    assert c.creator.dtype == np.int64 and c.creator.min() >= 0 and c.creator.max() < 60
    assert c.publish_tick.dtype == np.int64 and (c.publish_tick == 0).all()
    assert np.isnan(c.mean_rating).all()
    assert len(c.titles) == len(c.descriptions) == n
    assert c.topic_names == list(TOPIC_WORDS)[:12]
    assert c.creator_topics is not None and c.creator_topics.shape == (60, 12)


def test_items_concentrate_on_few_topics_near_their_creator() -> None:
    c = _cat()
    top2 = np.sort(c.features, axis=1)[:, -2:].sum(axis=1)
    assert np.median(top2) > 0.75
    # Items are much closer to their own creator's profile than to a random creator's.
    ct = c.creator_topics
    assert ct is not None

    def cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    own = cos(c.features, ct[c.creator])
    other = cos(c.features, ct[np.random.default_rng(9).integers(0, len(ct), len(c))])
    assert np.median(own) > 0.7 and np.median(own) > np.median(other) + 0.4


def test_popularity_prior_is_long_tailed() -> None:
    p = np.sort(_cat().popularity_prior)[::-1]
    assert p[: len(p) // 10].sum() > 0.4
    assert p[len(p) // 2 :].sum() < 0.2


def test_texts_are_readable_and_use_topic_words() -> None:
    c = _cat(n_items=200)
    for i in range(200):
        title, desc = c.titles[i], c.descriptions[i]
        assert 0 < len(title) <= 40 and "\n" not in title
        assert desc.startswith("A ") and desc.endswith(".") and desc.count(".") == 1
        assert c.topic_names[c.dominant_topic()[i]] in desc


def test_generated_topic_names_beyond_builtin() -> None:
    names = topic_names(30)
    assert names[:24] == list(TOPIC_WORDS) and names[24] == "topic-25" and names[-1] == "topic-30"
    c = synthetic_catalog(300, 30, 10, np.random.default_rng(1))
    assert c.topic_names == names and len(c) == 300


def test_determinism() -> None:
    a, b, c = _cat(seed=3), _cat(seed=3), _cat(seed=4)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.popularity_prior, b.popularity_prior)
    np.testing.assert_array_equal(a.creator, b.creator)
    assert a.titles == b.titles and a.descriptions == b.descriptions
    assert not np.array_equal(a.features, c.features)
    assert a.titles != c.titles


def test_given_creator_topics_are_used() -> None:
    ct = np.eye(4)[[0, 1, 2, 3, 0]]  # 5 creators, each on one topic
    c = synthetic_catalog(500, 4, 5, np.random.default_rng(0), creator_topics=ct)
    np.testing.assert_array_equal(c.dominant_topic(), ct.argmax(axis=1)[c.creator])
    with pytest.raises(ValueError, match="creator_topics"):
        synthetic_catalog(10, 4, 3, np.random.default_rng(0), creator_topics=ct)


def test_new_items_for_creators_and_concat() -> None:
    base = _cat(n_items=300)
    assert base.creator_topics is not None
    creators = np.array([5, 5, 7, 0])
    new = new_items_for_creators(creators, base.creator_topics, 9, np.random.default_rng(1))
    assert len(new) == 4
    np.testing.assert_array_equal(new.creator, creators)
    assert (new.publish_tick == 9).all() and new.topic_names == base.topic_names
    np.testing.assert_allclose(new.features.sum(axis=1), 1.0, atol=1e-5)
    both = base.concat(new)
    assert len(both) == 304 and both.titles[300:] == new.titles
    assert both.popularity_prior.sum() == pytest.approx(1.0, abs=1e-5)
    # each part keeps its average mass per item
    assert both.popularity_prior[:300].sum() == pytest.approx(300 / 304, abs=1e-5)
    np.testing.assert_array_equal(both.publish_tick[300:], 9)
    empty = new_items_for_creators(
        np.array([], dtype=np.int64), base.creator_topics, 1, np.random.default_rng(0)
    )
    assert len(empty) == 0
    with pytest.raises(ValueError, match="creator ids"):
        new_items_for_creators(np.array([60]), base.creator_topics, 1, np.random.default_rng(0))


def test_subset() -> None:
    c = _cat(n_items=100)
    s = c.subset(np.array([3, 1, 4]))
    assert len(s) == 3 and s.titles == [c.titles[3], c.titles[1], c.titles[4]]
    np.testing.assert_array_equal(s.features[0], c.features[3])
    assert s.popularity_prior.sum() == pytest.approx(1.0, abs=1e-6)
    assert len(c.subset(c.quality > 0.5)) == int((c.quality > 0.5).sum())


def test_item_store_caches_follow_publication_and_record_counts_alike() -> None:
    from simenv.arrays import unit_rows_clipped
    from simenv.catalog import ItemStore

    rng = np.random.default_rng(0)
    cat = synthetic_catalog(30, 3, 4, rng)
    store = ItemStore(100, cat.topic_names)
    store.add(cat)
    age = store.age(4)
    assert store.age(4) is age and not age.flags.writeable
    np.testing.assert_array_equal(store.unit_clipped(), unit_rows_clipped(store.features))
    store.add(synthetic_catalog(5, 3, 4, rng, publish_tick=4))
    assert (store.age(4)[30:35] == 0).all() and (store.age(4)[35:] == -1).all()
    np.testing.assert_array_equal(store.unit_clipped(), unit_rows_clipped(store.features))
    assert store.unit_clipped()[30:35].any()
    # a few slates (add.at) and many slates (bincount) count the same
    slates = rng.integers(0, 35, (3, 2))
    store.record(slates, slates[:, 0])
    many = np.repeat(slates, 40, 0)
    other = ItemStore(100, cat.topic_names)
    other.record(many, many[:, 0])
    np.testing.assert_array_equal(40 * store.exposure_total, other.exposure_total)
    np.testing.assert_array_equal(40 * store.consumption_total, other.consumption_total)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agents import persona
from agents.persona import PersonaTable, personas_from_ratings, sample_personas

TRAITS = ("activity", "conformity", "diversity", "curiosity")


def _check_table(p: PersonaTable, n: int, d: int, n_examples: int = 5) -> None:
    assert len(p) == n
    for name in (*TRAITS, "rating_bias"):
        a = getattr(p, name)
        assert a.shape == (n,) and a.dtype == np.float32 and np.isfinite(a).all(), name
    for name in TRAITS:
        a = getattr(p, name)
        assert a.min() >= 0 and a.max() <= 1, name
    assert p.taste.shape == (n, d) and p.taste.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p.taste, axis=1), 1.0, atol=1e-5)
    assert (p.taste >= 0).all()
    for ex in (p.liked, p.disliked):
        assert ex.shape == (n, n_examples) and ex.dtype == np.int64 and ex.min() >= -1


# ------------------------------------------------------------------------------- synthetic


def test_sample_personas_shapes_and_ranges() -> None:
    p = sample_personas(1000, 8, np.random.default_rng(0))
    _check_table(p, 1000, 8)
    assert (p.liked == -1).all() and (p.disliked == -1).all()
    assert p.activity.std() > 0.05 and p.conformity.std() > 0.05
    # diversity is the normalised entropy of the taste distribution: peaked tastes score low
    peaked = np.max(p.taste, axis=1) ** 2  # share of the top topic in the L2 sense
    assert np.corrcoef(peaked, p.diversity)[0, 1] < -0.5


def test_sample_personas_concentration() -> None:
    rng = np.random.default_rng(0)
    focused = sample_personas(2000, 10, rng, taste_concentration=0.1)
    broad = sample_personas(2000, 10, rng, taste_concentration=10.0)
    assert focused.diversity.mean() < 0.5 < 0.9 < broad.diversity.mean()


def test_sample_personas_determinism() -> None:
    a = sample_personas(500, 6, np.random.default_rng(7))
    b = sample_personas(500, 6, np.random.default_rng(7))
    c = sample_personas(500, 6, np.random.default_rng(8))
    for name in (*TRAITS, "taste", "rating_bias"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(getattr(a, name), getattr(c, name))


def test_sample_personas_examples_from_items() -> None:
    rng = np.random.default_rng(1)
    feats = rng.dirichlet(np.full(5, 0.3), size=50).astype(np.float32)
    p = sample_personas(300, 5, rng, item_features=feats, n_examples=3)
    _check_table(p, 300, 5, n_examples=3)
    assert (p.liked >= 0).all() and (p.disliked >= 0).all()
    cos = p.taste @ (feats / np.linalg.norm(feats, axis=1, keepdims=True)).T
    best = np.take_along_axis(cos, p.liked, axis=1)
    worst = np.take_along_axis(cos, p.disliked, axis=1)
    np.testing.assert_allclose(best[:, 0], cos.max(axis=1), atol=1e-5)
    np.testing.assert_allclose(worst[:, 0], cos.min(axis=1), atol=1e-5)
    assert (np.diff(best, axis=1) <= 1e-6).all()


def test_example_items_are_scored_in_bounded_chunks(monkeypatch) -> None:
    """The chunk of (users × items) scores shrinks as the catalog grows (memory does not grow
    with it), and the chunking never changes the example items."""
    assert persona.example_chunk_rows(10) == 4096
    assert persona.example_chunk_rows(10**6) == persona.EXAMPLE_CHUNK_SCORES // 10**6
    assert persona.example_chunk_rows(10**9) == 1
    feats = np.random.default_rng(2).dirichlet(np.full(6, 0.5), size=800)
    whole = sample_personas(500, 6, np.random.default_rng(3), item_features=feats)
    monkeypatch.setattr(persona, "EXAMPLE_CHUNK_SCORES", 2000)  # 2 users per chunk
    chunked = sample_personas(500, 6, np.random.default_rng(3), item_features=feats)
    np.testing.assert_array_equal(whole.liked, chunked.liked)
    np.testing.assert_array_equal(whole.disliked, chunked.disliked)


def test_sample_personas_100k_shapes() -> None:
    # speed is measured in benchmarks/, not asserted here
    p = sample_personas(100_000, 20, np.random.default_rng(0))
    assert len(p) == 100_000
    assert p.taste.shape == (100_000, 20)


# ------------------------------------------------------------------------------- from ratings


def _toy() -> dict[str, np.ndarray]:
    # 3 items: 0 pure topic A, 1 pure topic B, 2 half/half; item means 4, 2, 3
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    rows = [  # user, item, rating
        (0, 0, 5), (0, 1, 1), (0, 2, 3),  # user 0 agrees with the crowd, likes A
        (1, 0, 1), (1, 1, 5),  # user 1 disagrees, likes B
        (2, 0, 4), (2, 2, 4), (2, 1, 2), (2, 0, 4),  # most active
        (3, 1, 3),
    ]  # fmt: skip
    u, i, r = (np.array(c) for c in zip(*rows, strict=True))
    return {"users": u, "items": i, "ratings": r, "item_features": feats,
            "item_mean_rating": np.array([4.0, 2.0, 3.0], dtype=np.float32)}  # fmt: skip


def test_personas_from_ratings_toy() -> None:
    p = personas_from_ratings(**_toy(), n_examples=2, n_users=5)
    _check_table(p, 5, 2, n_examples=2)
    assert p.activity[2] == pytest.approx(0.95) and p.activity[4] == pytest.approx(0.05)
    assert p.conformity[0] > p.conformity[1]
    assert p.taste[0, 0] > p.taste[0, 1] and p.taste[1, 1] > p.taste[1, 0]
    assert p.diversity[3] == pytest.approx(0.0)  # only ever rated topic B
    assert p.rating_bias[0] == pytest.approx(3.0 - 3.2) and p.rating_bias[4] == 0
    assert p.liked[0].tolist() == [0, -1] and p.disliked[0].tolist() == [1, -1]
    assert p.liked[1].tolist() == [1, -1] and p.disliked[1].tolist() == [0, -1]
    assert p.liked[3].tolist() == [-1, -1] and p.disliked[3].tolist() == [-1, -1]
    # user without ratings: neutral traits and a uniform taste
    assert p.conformity[4] == 0.5 and p.diversity[4] == 0.5
    np.testing.assert_allclose(p.taste[4], [2**-0.5, 2**-0.5], rtol=1e-6)


def test_personas_from_ratings_rejects_bad_input() -> None:
    t = _toy()
    with pytest.raises(ValueError, match="same length"):
        personas_from_ratings(t["users"][:-1], t["items"], t["ratings"],
                              t["item_features"], t["item_mean_rating"])  # fmt: skip
    with pytest.raises(ValueError, match="item ids"):
        personas_from_ratings(t["users"], t["items"] + 5, t["ratings"],
                              t["item_features"], t["item_mean_rating"])  # fmt: skip


@pytest.mark.movielens
def test_personas_from_real_movielens(movielens_path: Path) -> None:
    from simenv.data import catalog_from_movielens, load_movielens

    ml = load_movielens(movielens_path)
    cat = catalog_from_movielens(ml)
    r = ml.ratings
    p = personas_from_ratings(
        r["user"].to_numpy(), r["item"].to_numpy(), r["rating"].to_numpy(),
        cat.features, cat.mean_rating,
    )  # fmt: skip
    _check_table(p, 943, 19)
    counts = np.bincount(r["user"].to_numpy(), minlength=943)
    assert p.activity[np.argmax(counts)] == pytest.approx(0.95)  # raw user 405, 737 ratings
    assert p.activity[np.argmin(counts)] < 0.2
    assert np.corrcoef(counts, p.activity)[0, 1] > 0.6
    for name in ("conformity", "diversity", "curiosity"):
        a = getattr(p, name)
        assert 0.2 < a.mean() < 0.9 and a.std() > 0.03, name
    assert abs(float(p.rating_bias.mean())) < 0.2 and p.rating_bias.std() > 0.2
    # liked examples really are 4-5 star ratings of that user, disliked ones 1-2 stars
    stars = dict(zip(zip(r["user"], r["item"], strict=True), r["rating"], strict=True))
    for u in range(0, 943, 37):
        assert all(stars[(u, i)] >= 4 for i in p.liked[u] if i >= 0)
        assert all(stars[(u, i)] <= 2 for i in p.disliked[u] if i >= 0)
    assert (p.liked[:, 0] >= 0).mean() > 0.95
    # raw user 283 gave 4-5 stars to 32 comedies out of 53 ratings: comedy tops their taste
    comedy = ml.genre_names.index("Comedy")
    u283 = int(ml.users.index[ml.users["raw_id"] == 283][0])
    assert int(np.argmax(p.taste[u283])) == comedy
    # tastes differ between users (not all drama)
    assert len(np.unique(np.argmax(p.taste, axis=1))) >= 8

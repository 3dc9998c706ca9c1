"""Users fitted to data: implicit-ALS latent factors (`simenv.factors`), personas and items
with latent tastes (``population.persona_model: mf``), the latent term of the utility and the
rating model's exact star probabilities."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agents.deciders import UtilityDecider, UtilityParams, star_probabilities, utility_features
from scenarios import ScenarioError, load
from simenv.factors import implicit_als
from simenv.world import World


def test_star_probabilities_match_the_rating_draw() -> None:
    # mean 3, sigma 1: P(3) = Φ(.5) − Φ(−.5) = 0.38292...
    p = star_probabilities(np.array([3.0]), 1.0)[0]
    assert p[2] == pytest.approx(math.erf(0.5 / math.sqrt(2)), abs=1e-12)
    assert p.sum() == pytest.approx(1.0) and p[0] == pytest.approx(p[4])
    rng = np.random.default_rng(0)
    means = np.array([0.7, 2.2, 3.5, 4.9])
    draws = np.clip(np.rint(means[:, None] + 0.8 * rng.standard_normal((4, 200_000))), 1, 5)
    freq = np.stack([(draws == s).mean(axis=1) for s in range(1, 6)], axis=1)
    np.testing.assert_allclose(star_probabilities(means, 0.8), freq, atol=4e-3)
    # no noise: all mass on the rounded, clipped mean (round half to even, as np.rint)
    assert star_probabilities(np.array([2.5, 7.0]), 0.0).argmax(axis=1).tolist() == [1, 4]
    # far tails keep their precision
    assert star_probabilities(np.array([30.0]), 1.0)[0, 4] == 1.0


def _blocks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users 0-9 rate items 0-9, users 10-19 rate items 10-19, each rates 6 of the 10."""
    users, items = [], []
    for u in range(20):
        base = 0 if u < 10 else 10
        for j in range(6):
            users.append(u)
            items.append(base + (u + j) % 10)
    return np.array(users), np.array(items), np.full(len(users), 4)


def test_implicit_als_learns_the_blocks_and_is_seeded() -> None:
    users, items, stars = _blocks()
    f = implicit_als(users, items, stars, 20, 20, factors=4, iterations=10, seed=3)
    inside = f.scores(np.array([0, 0, 15]), np.array([6, 9, 11]))  # unrated, same block
    across = f.scores(np.array([0, 0, 15]), np.array([12, 17, 3]))  # other block
    assert (inside > across + 0.3).all()
    again = implicit_als(users, items, stars, 20, 20, factors=4, iterations=10, seed=3)
    assert np.array_equal(f.users, again.users) and np.array_equal(f.items, again.items)
    other = implicit_als(users, items, stars, 20, 20, factors=4, iterations=10, seed=4)
    assert not np.array_equal(f.users, other.users)


def test_implicit_als_solves_the_weighted_least_squares() -> None:
    """After the last sweep, each item's factors minimise Σ_u c_ui (p_ui − x_u·y)² + reg|y|²
    for the final user factors: the normal equations, checked item by item."""
    users, items, stars = _blocks()
    reg, alpha = 0.5, 7.0
    f = implicit_als(
        users,
        items,
        stars,
        20,
        20,
        factors=3,
        reg=reg,
        alpha=alpha,
        iterations=4,
        confidence="stars",
    )
    x = f.users.astype(np.float64)
    for i in range(20):
        pref = np.zeros(20)
        pref[users[items == i]] = 1.0
        conf = 1.0 + alpha * pref * 4 / 5
        a = x.T @ (conf[:, None] * x) + reg * np.eye(3)
        y = np.linalg.solve(a, x.T @ (conf * pref))
        np.testing.assert_allclose(f.items[i], y, rtol=1e-4, atol=1e-6)


def test_implicit_als_refuses_bad_settings() -> None:
    users, items, stars = _blocks()
    with pytest.raises(ValueError, match="factors >= 1"):
        implicit_als(users, items, stars, 20, 20, factors=0)
    with pytest.raises(ValueError, match="same length"):
        implicit_als(users, items[:-1], stars, 20, 20)


def _movielens_world(data: Path, persona_model: str) -> World:
    scenario = load(
        "popularity_bias",
        [f"catalog.data_path={data}", f"population.persona_model={persona_model}",
         "population.size=80"],
    )  # fmt: skip
    return World(scenario, None, seed=0)


def test_mf_personas_and_items_carry_latent_factors_into_the_utility(
    movielens_slice: Path,
) -> None:
    world = _movielens_world(movielens_slice, "mf")
    persona = world.users.persona
    assert persona.latent.shape == (80, 16) and world.items.latent.shape[1] == 16
    users, items = np.arange(10), np.arange(5, 15)
    ctx = world.decision_context(users, np.stack([items, items + 20], axis=1), step=0)
    feats = utility_features(ctx)
    want = np.einsum("nf,nf->n", persona.latent[users], world.items.latent[items])
    np.testing.assert_allclose(feats[:, 0, -1], want, rtol=1e-5)
    assert (feats[:, -1, -1] == 0).all()  # "none" has no latent term
    plain = UtilityDecider(UtilityParams()).utility_matrix(ctx)
    weighted = UtilityDecider(UtilityParams(latent=2.0)).utility_matrix(ctx)
    np.testing.assert_allclose(weighted[:, 0] - plain[:, 0], 2.0 * want, rtol=1e-4, atol=1e-5)
    rated = UtilityDecider(UtilityParams(rating_latent=1.0)).rating_probabilities(ctx)
    base = UtilityDecider(UtilityParams()).rating_probabilities(ctx)
    mean = rated @ np.arange(1, 6) - base @ np.arange(1, 6)
    assert np.corrcoef(mean, want)[0, 1] > 0.9  # the latent match moves the expected rating


def test_genre_personas_have_no_latent_term(movielens_slice: Path) -> None:
    world = _movielens_world(movielens_slice, "genre")
    assert world.users.persona.n_latent == 0 and world.items.latent.shape[1] == 0
    ctx = world.decision_context(np.arange(5), np.arange(10).reshape(5, 2), step=0)
    assert (utility_features(ctx)[..., -1] == 0).all()


def test_mf_personas_need_movielens() -> None:
    with pytest.raises(ScenarioError, match=r"persona_model 'mf' needs population\.source"):
        load("filter_bubble", ["population.persona_model=mf"])


def test_rating_probabilities_are_the_distribution_decide_samples(movielens_slice: Path) -> None:
    world = _movielens_world(movielens_slice, "mf")
    params = UtilityParams(rating_latent=0.7, rating_noise=0.9, no_choice=-50.0)
    decider = UtilityDecider(params)
    users = np.repeat(np.arange(4), 20_000)
    items = np.repeat(np.array([3, 50, 100, 170]), 20_000)
    ctx = world.decision_context(users, items[:, None], step=0)
    sampled = decider.decide(ctx)
    assert (sampled.chosen_pos == 0).all()  # no_choice -50: every user takes the item
    probs = decider.rating_probabilities(ctx)
    for u in range(4):
        rows = users == u
        freq = np.bincount(sampled.rating[rows].astype(int) - 1, minlength=5) / rows.sum()
        np.testing.assert_allclose(freq, probs[rows][0], atol=0.015)

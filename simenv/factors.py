"""Latent factors learned from ratings: implicit-feedback matrix factorisation by ALS.

`implicit_als` is the weighted alternating least squares of Hu, Koren and Volinsky (2008,
"Collaborative Filtering for Implicit Feedback Datasets"): every (user, item) pair is a
preference ``p_ui`` (1 if the user rated the item, else 0) with a confidence
``c_ui = 1 + alpha · w_ui`` (``w_ui`` = 1 for a rating, or its stars / 5 with
``confidence="stars"``, so that what a user liked counts more than what they merely watched),
and the factors minimise

    Σ_ui c_ui (p_ui − x_u · y_i)² + reg · (|X|² + |Y|²).

Each half-step is exact: with the item factors fixed, every user's factors solve a small linear
system (and the other way round). The factors start from a seeded normal draw, so the same
ratings, settings and seed give the same factors bit for bit. The matrices are dense (users ×
items, and a (rows, factors²) product per half-step), which suits MovieLens-100k (943 × 1682).

The personas of ``population.persona_model: mf`` get their latent taste from here
(`simenv.population`), and ``recloop validate`` uses it for its MF baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class Factors:
    """User factors (n_users, f) and item factors (n_items, f), float32."""

    users: np.ndarray
    items: np.ndarray

    def scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``x_u · y_i`` for each pair (float64): the predicted preference."""
        u = self.users[users].astype(np.float64)
        return np.einsum("nf,nf->n", u, self.items[items].astype(np.float64))


def implicit_als(
    users: np.ndarray,
    items: np.ndarray,
    ratings: np.ndarray,
    n_users: int,
    n_items: int,
    *,
    factors: int = 16,
    reg: float = 0.1,
    alpha: float = 20.0,
    iterations: int = 15,
    confidence: Literal["binary", "stars"] = "binary",
    seed: int = 0,
) -> Factors:
    """Implicit-feedback ALS factors of the ratings ``(users, items, ratings)`` (module
    docstring). A repeated (user, item) pair counts once."""
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    stars = np.asarray(ratings, dtype=np.float64)
    if not users.shape == items.shape == stars.shape:
        raise ValueError("users, items and ratings must have the same length")
    if factors < 1 or iterations < 1 or reg < 0 or alpha < 0:
        raise ValueError(
            f"need factors >= 1, iterations >= 1, reg >= 0 and alpha >= 0; got {factors}, "
            f"{iterations}, {reg}, {alpha}"
        )
    weight = np.ones_like(stars) if confidence == "binary" else stars / 5.0
    pref = np.zeros((n_users, n_items))
    conf = np.zeros((n_users, n_items))  # alpha · w_ui, 0 where unrated
    pref[users, items] = 1.0
    conf[users, items] = alpha * weight
    conf_t, pref_t = np.ascontiguousarray(conf.T), np.ascontiguousarray(pref.T)
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.01, size=(n_users, factors))
    y = rng.normal(0.0, 0.01, size=(n_items, factors))
    for _ in range(iterations):
        x = _half_step(y, conf, pref, reg)
        y = _half_step(x, conf_t, pref_t, reg)
    return Factors(users=x.astype(np.float32), items=y.astype(np.float32))


def _half_step(fixed: np.ndarray, conf: np.ndarray, pref: np.ndarray, reg: float) -> np.ndarray:
    """The rows' factors with ``fixed`` the other side's: for row u,
    ``(FᵀF + Fᵀ diag(conf_u) F + reg·I) x_u = Fᵀ (1 + conf_u) p_u``; the ``conf_u``-weighted
    sums of all outer products are one matrix product."""
    f = fixed.shape[1]
    gram = fixed.T @ fixed + reg * np.eye(f)
    outer = (fixed[:, :, None] * fixed[:, None, :]).reshape(fixed.shape[0], f * f)
    a = gram[None] + (conf @ outer).reshape(-1, f, f)
    b = ((1.0 + conf) * pref) @ fixed
    return np.linalg.solve(a, b[:, :, None])[:, :, 0]

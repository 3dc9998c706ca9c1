"""Build what a world starts from: the catalog, the personas and the social graph.

MovieLens worlds derive items and personas from the ratings of a `MovieLens` object: the
scenario's files, or one passed in (``recloop validate`` passes the training part of its split,
so that nothing held out reaches a persona or an item statistic). With
``population.persona_model: mf`` the personas and the items also get latent factors learned
from those ratings (`simenv.factors.implicit_als`, ``population.mf``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from agents.persona import PersonaTable, personas_from_ratings, sample_personas
from policies.base import SocialGraph
from scenarios.schema import MFConfig, Scenario
from simenv.catalog import Catalog, synthetic_catalog
from simenv.data.movielens import MovieLens, catalog_from_movielens, load_movielens
from simenv.factors import Factors, implicit_als
from simenv.rng import RngTree
from simenv.social import build_graph, to_csr


@dataclass
class Population:
    catalog: Catalog
    persona: PersonaTable
    social: SocialGraph | None


def build_population(
    scenario: Scenario, rngs: RngTree, movielens: MovieLens | None = None
) -> Population:
    """The population of ``scenario``; MovieLens sources read ``movielens`` when given, else
    the files at ``catalog.data_path``."""
    pop_cfg, cat_cfg = scenario.population, scenario.catalog
    if pop_cfg.source == "movielens" and cat_cfg.source != "movielens":
        raise ValueError(
            "population.source 'movielens' needs catalog.source 'movielens' (personas are "
            "derived from ratings of MovieLens items)"
        )
    ml = None
    if cat_cfg.source == "movielens":
        ml = movielens if movielens is not None else load_movielens(cat_cfg.data_path)
    if ml is not None:
        catalog = catalog_from_movielens(ml)
    else:
        catalog = synthetic_catalog(
            cat_cfg.n_items, cat_cfg.n_topics, cat_cfg.n_creators, rngs["catalog"]
        )
    if ml is not None and pop_cfg.source == "movielens":
        factors = ratings_factors(ml, pop_cfg.mf) if pop_cfg.persona_model == "mf" else None
        if factors is not None:
            catalog = dataclasses.replace(catalog, latent=factors.items)
        persona = _movielens_personas(ml, catalog, pop_cfg.size, rngs["population"], factors)
    else:
        persona = sample_personas(
            pop_cfg.size,
            catalog.n_topics,
            rngs["population"],
            taste_concentration=pop_cfg.taste_concentration,
            item_features=catalog.features,
        )
    social = None
    if scenario.social.enabled:
        graph = build_graph(len(persona), scenario.social, rngs.int_seed("graph"))
        social = to_csr(graph, len(persona))
    return Population(catalog=catalog, persona=persona, social=social)


def ratings_factors(ml: MovieLens, cfg: MFConfig) -> Factors:
    """Latent factors of every MovieLens user and item, learned from ``ml.ratings``."""
    r = ml.ratings
    return implicit_als(
        r["user"].to_numpy(),
        r["item"].to_numpy(),
        r["rating"].to_numpy(),
        ml.n_users,
        ml.n_items,
        factors=cfg.factors,
        reg=cfg.reg,
        alpha=cfg.alpha,
        iterations=cfg.iterations,
        confidence=cfg.confidence,
        seed=cfg.seed,
    )


def movielens_personas(
    ml: MovieLens, catalog: Catalog, factors: Factors | None = None
) -> PersonaTable:
    """One persona per MovieLens user from ``ml.ratings`` (and latent tastes from ``factors``)."""
    r = ml.ratings
    table = personas_from_ratings(
        r["user"].to_numpy(),
        r["item"].to_numpy(),
        r["rating"].to_numpy(),
        catalog.features,
        catalog.mean_rating,
        n_users=ml.n_users,
    )
    if factors is not None:
        table.latent = factors.users.astype(np.float32)
    return table


def _movielens_personas(
    ml: MovieLens,
    catalog: Catalog,
    size: int,
    rng: np.random.Generator,
    factors: Factors | None = None,
) -> PersonaTable:
    if size > ml.n_users:
        raise ValueError(
            f"population.size ({size}) is larger than the {ml.n_users} MovieLens users"
        )
    table = movielens_personas(ml, catalog, factors)
    if size == ml.n_users:
        return table
    keep = np.sort(rng.choice(ml.n_users, size=size, replace=False))
    return PersonaTable(**{name: getattr(table, name)[keep] for name in table.__dataclass_fields__})

"""Build what a world starts from: the catalog, the personas and the social graph."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agents.persona import PersonaTable, personas_from_ratings, sample_personas
from policies.base import SocialGraph
from scenarios.schema import Scenario
from simenv.catalog import Catalog, synthetic_catalog
from simenv.data.movielens import MovieLens, catalog_from_movielens, load_movielens
from simenv.rng import RngTree
from simenv.social import build_graph, to_csr


@dataclass
class Population:
    catalog: Catalog
    persona: PersonaTable
    social: SocialGraph | None


def build_population(scenario: Scenario, rngs: RngTree) -> Population:
    pop_cfg, cat_cfg = scenario.population, scenario.catalog
    if pop_cfg.source == "movielens" and cat_cfg.source != "movielens":
        raise ValueError(
            "population.source 'movielens' needs catalog.source 'movielens' (personas are "
            "derived from ratings of MovieLens items)"
        )
    ml = load_movielens(cat_cfg.data_path) if cat_cfg.source == "movielens" else None
    if ml is not None:
        catalog = catalog_from_movielens(ml)
    else:
        catalog = synthetic_catalog(
            cat_cfg.n_items, cat_cfg.n_topics, cat_cfg.n_creators, rngs["catalog"]
        )
    if ml is not None and pop_cfg.source == "movielens":
        persona = _movielens_personas(ml, catalog, pop_cfg.size, rngs["population"])
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


def _movielens_personas(
    ml: MovieLens, catalog: Catalog, size: int, rng: np.random.Generator
) -> PersonaTable:
    if size > ml.n_users:
        raise ValueError(
            f"population.size ({size}) is larger than the {ml.n_users} MovieLens users"
        )
    r = ml.ratings
    table = personas_from_ratings(
        r["user"].to_numpy(),
        r["item"].to_numpy(),
        r["rating"].to_numpy(),
        catalog.features,
        catalog.mean_rating,
        n_users=ml.n_users,
    )
    if size == ml.n_users:
        return table
    keep = np.sort(rng.choice(ml.n_users, size=size, replace=False))
    return PersonaTable(**{name: getattr(table, name)[keep] for name in table.__dataclass_fields__})

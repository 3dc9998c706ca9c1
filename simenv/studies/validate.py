"""`recloop validate`: how closely a user model reproduces real users, on MovieLens-100k.

    recloop validate --dataset movielens-100k --decider utility --out runs/val
    recloop validate --dataset movielens-100k --utility fitted.yaml --out runs/val-fitted
    recloop validate --dataset movielens-100k --decider llm --users 20 --max-per-user 3 ...

The protocol (docs/architecture.md, "Validation"):

1. **Split.** Each user's ratings are ordered by time (then item id); the first
   ``train_share`` of them (``floor(share · n)``) are the training part, the rest is held out.
2. **Training world.** The catalog (quality, popularity prior, mean ratings), the personas
   (traits, genre taste, example titles, latent factors with ``persona_model: mf``) and the
   baselines come from a `MovieLens` object holding the training ratings only
   (`training_data`), built by the same `simenv.population.build_population` as any MovieLens
   world; the held-out part is only ever read as labels.
3. **Taste alignment.** Per user, the held-out items rated >= 4 (positives) against items the
   user never rated (negatives, neither in training nor held out), at 1:1, 1:3 and 1:9;
   negatives drawn uniformly and, separately, matched on training popularity (same decile of
   log rating count; unrated-in-training items form their own bin). The 1:1 and 1:3 sets are
   the first draws of the 1:9 set. Each candidate is shown to the persona alone (a slate of
   one) and the decider answers by its own choice rule: ``choice_probabilities`` gives
   p(item) and p(none), and the persona "watches" when p(item) > p(none) (for the utility
   decider: utility above the no-choice utility; for LLM personas: the more likely answer).
   No threshold is tuned. Accuracy, precision, recall and F1 of that decision and the ROC AUC
   of log p(item)/p(none) are computed per user and averaged over users
   (`simenv.studies.fidelity`). Baselines on the same candidates: training rating count, item
   mean training rating, and an implicit-feedback MF (`simenv.factors.implicit_als`, binary
   confidence, the ``MFConfig`` defaults) trained on the training part; having no choice rule,
   they "watch" their top-m candidates per user, m = the user's number of positives (they are
   told the share of positives, which the persona is not).
4. **Ratings.** For every held-out rating, the persona's distribution over 1..5 stars for that
   item (``rating_probabilities``): the mean of those distributions against the held-out
   ratings' distribution (total variation, Jensen-Shannon in bits, share of 1-2 stars), and
   the expected rating's per-user MAE / RMSE and mean bias, next to the item-mean and
   global-mean baselines.
5. **Behaviour.** A world of the training personas runs ``behaviour_ticks`` ticks under
   ``behaviour_policy`` with the decider; per user, Spearman correlations of persona traits
   with outcomes, in that world and in the held-out data: activity with active days and with
   items per active day, conformity with agreement with the items' training mean ratings (after
   the user's own offset), diversity with the genre entropy of what was consumed.
6. **Split hygiene.** What the world was built from, and checks that no held-out (user, item)
   pair is in the training part, that every user's training ratings precede the held-out ones
   and that no persona example title is a held-out item (tests perturb every held-out rating
   and find personas, prompts, item statistics and baselines bit-identical).

``--users N`` evaluates a seeded sample of the users with a held-out positive (slow deciders);
``--max-per-user K`` caps each user's positives and rated pairs. Every number of the report
comes with the decider, its settings (model and backend for LLM personas), the sample and the
seed. Files: ``validation.json``, ``validation.md`` and ``plots/*.png`` in the output folder.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from agents.deciders import Decider, DecisionContext, UtilityDecider
from agents.persona import PersonaTable
from scenarios.schema import MFConfig, Scenario
from simenv.data.movielens import MovieLens
from simenv.population import Population, build_population, ratings_factors
from simenv.rng import RngTree
from simenv.studies import fidelity as fm
from simenv.world import World

DATASETS = ("movielens-100k",)
SCHEMES = ("uniform", "popularity")
#: The baselines of the taste section, in report order.
BASELINES = ("popularity", "item_mean", "mf")
#: The MF baseline: implicit ALS with binary confidence and the `MFConfig` defaults.
BASELINE_MF = MFConfig(confidence="binary")
POPULARITY_BINS = 10
POSITIVE_STARS = 4
#: Independent random streams of the protocol (besides the world's own `RngTree`).
_STREAMS = {"users": 1, "candidates": 2, "ties": 3, "ratings": 4}
BATCH = {"utility": 50_000, "llm": 32}


class Respondent(Protocol):
    """What validation asks a decider (`UtilityDecider` and `LLMDecider` answer both)."""

    def choice_probabilities(self, ctx: DecisionContext) -> np.ndarray: ...

    def rating_probabilities(self, ctx: DecisionContext) -> np.ndarray: ...


def as_respondent(decider: Decider) -> Respondent:
    """``decider`` when it can answer validation's questions (the utility and LLM deciders)."""
    from agents.llm_decider import LLMDecider

    if not isinstance(decider, UtilityDecider | LLMDecider):
        raise ValueError(
            f"recloop validate asks the utility or LLM decider, not {type(decider).__name__}"
        )
    return decider


@dataclass(frozen=True)
class ValidateConfig:
    """The protocol's settings: the options of `recloop validate`, which
    `simenv.cli.add_config_options` builds from the ``help`` of each field."""

    dataset: str = field(
        default="movielens-100k",
        metadata={"help": "dataset to validate against", "metavar": "NAME"},
    )
    data: Path | None = field(
        default=None,
        metadata={
            "help": "MovieLens-100k folder (default: catalog.data_path, $RECLOOP_DATA, then "
            "the cache)",
            "metavar": "DIR",
        },
    )
    users: int | None = field(
        default=None,
        metadata={
            "help": "evaluate a seeded sample of this many users (default: every user with a "
            "held-out rating >= 4); for slow deciders",
            "metavar": "N",
        },
    )
    max_per_user: int | None = field(
        default=None,
        metadata={
            "help": "at most this many held-out positives and held-out ratings per user "
            "(seeded sample; default: all)",
            "metavar": "K",
        },
    )
    seed: int = field(
        default=0, metadata={"help": "seed of the sample, the negatives and the world"}
    )
    train_share: float = field(
        default=0.8,
        metadata={"help": "share of each user's ratings (oldest first) used for training",
                  "metavar": "SHARE"},
    )  # fmt: skip
    ratios: tuple[int, ...] = field(
        default=(1, 3, 9),
        metadata={
            "help": "negatives per positive, comma-separated",
            "metavar": "R,R,...",
            "cli_default": "1,3,9",
        },
    )
    behaviour_ticks: int = field(
        default=10,
        metadata={"help": "ticks of the behaviour world (0 skips the behaviour section)",
                  "metavar": "T"},
    )  # fmt: skip
    behaviour_policy: str = field(
        default="mf", metadata={"help": "recommender of the behaviour world", "metavar": "NAME"}
    )

    def check(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset '{self.dataset}' (known: {', '.join(DATASETS)})")
        if self.users is not None and self.users < 1:
            raise ValueError(f"--users must be at least 1, got {self.users}")
        if self.max_per_user is not None and self.max_per_user < 1:
            raise ValueError(f"--max-per-user must be at least 1, got {self.max_per_user}")
        if not 0.0 < self.train_share < 1.0:
            raise ValueError(f"--train-share must be in (0, 1), got {self.train_share}")
        if not self.ratios or min(self.ratios) < 1:
            raise ValueError(f"--ratios must be positive integers, got {self.ratios}")
        if self.behaviour_ticks < 0:
            raise ValueError(f"--behaviour-ticks must be >= 0, got {self.behaviour_ticks}")
        import policies

        if self.behaviour_policy not in policies.available():
            raise ValueError(
                f"unknown --behaviour-policy '{self.behaviour_policy}' "
                f"(known: {', '.join(policies.available())})"
            )


def parse_ratios(text: str) -> tuple[int, ...]:
    """``"1,3,9"`` -> ``(1, 3, 9)`` (sorted, distinct)."""
    try:
        values = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ValueError(f"expected integers like 1,3,9, got {text!r}") from None
    return tuple(values)


# ---------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class Split:
    """A per-user time split of a ratings frame (columns user, item, rating, timestamp)."""

    train: pd.DataFrame
    test: pd.DataFrame
    train_share: float


def time_split(ratings: pd.DataFrame, train_share: float = 0.8) -> Split:
    """Each user's first ``floor(train_share · n)`` ratings by (timestamp, item) train, the
    rest held out."""
    r = ratings.sort_values(["user", "timestamp", "item"], kind="stable").reset_index(drop=True)
    n = r.groupby("user")["item"].transform("size").to_numpy()
    rank = r.groupby("user").cumcount().to_numpy()
    keep = rank < np.floor(train_share * n + 1e-9)
    train = r[keep].reset_index(drop=True)
    test = r[~keep].reset_index(drop=True)
    return Split(train=train, test=test, train_share=train_share)


def training_data(ml: MovieLens, split: Split) -> MovieLens:
    """``ml`` with only the training ratings: what every persona and item statistic is built
    from."""
    return dataclasses.replace(ml, ratings=split.train.copy())


# ---------------------------------------------------------------------------- the scenario


def validation_scenario(config: ValidateConfig, overrides: list[str] | None = None) -> Scenario:
    """The scenario whose decider and persona model are validated: MovieLens personas and
    movies, one seed (``config.seed``), no social graph, ``overrides`` (``--utility`` and
    ``--set``) applied."""
    from scenarios import load, validate

    start = validate(
        {
            "name": "validate-movielens-100k",
            "description": "recloop validate",
            "ticks": max(1, config.behaviour_ticks),
            "seeds": [config.seed],
            "population": {"source": "movielens", "size": 943},
            "catalog": {
                "source": "movielens",
                "data_path": None if config.data is None else str(config.data),
            },
            "social": {"enabled": False},
            "policies": [{"name": config.behaviour_policy}],
        },
        source="recloop validate",
    )
    scenario = load(start, overrides)
    if "synthetic" in (scenario.population.source, scenario.catalog.source):
        raise ValueError("recloop validate needs population.source and catalog.source movielens")
    return scenario


# ---------------------------------------------------------------------------- the world


@dataclass
class TrainingWorld:
    """The world built from the training part, and what the protocol reads from it."""

    ml: MovieLens  # the training part only
    population: Population
    world: World  # policy-less: decision contexts for any (user, item)
    counts: np.ndarray  # (n_items,) training ratings per item


def training_world(scenario: Scenario, train_ml: MovieLens, decider: Decider) -> TrainingWorld:
    """The population of ``scenario`` built from ``train_ml`` (all users) and a policy-less
    world holding it, whose decision contexts the decider answers."""
    seed = scenario.seeds[0]
    sized = scenario.model_copy(
        update={"population": scenario.population.model_copy(update={"size": train_ml.n_users})}
    )
    population = build_population(sized, RngTree(seed), movielens=train_ml)
    world = World(sized, None, seed=seed, decider=decider, population=population)
    counts = np.bincount(train_ml.ratings["item"].to_numpy(), minlength=train_ml.n_items)
    return TrainingWorld(ml=train_ml, population=population, world=world, counts=counts)


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_STREAMS[stream],)))


# ---------------------------------------------------------------------------- candidates


def popularity_bins(counts: np.ndarray, bins: int = POPULARITY_BINS) -> np.ndarray:
    """(n_items,) bin of each item's training popularity: 0 for items without training
    ratings, else 1..``bins`` by quantiles of log(1 + count) over the rated items."""
    counts = np.asarray(counts, dtype=np.float64)
    out = np.zeros(counts.size, dtype=np.int64)
    rated = counts > 0
    if rated.any():
        logc = np.log1p(counts)
        edges = np.quantile(logc[rated], np.linspace(0, 1, bins + 1)[1:-1])
        out[rated] = 1 + np.searchsorted(edges, logc[rated], side="right")
    return out


def eligible_users(split: Split) -> np.ndarray:
    """Users with at least one held-out rating >= 4 (they have positives)."""
    test = split.test
    return np.unique(test.loc[test["rating"] >= POSITIVE_STARS, "user"].to_numpy())


def sample_users(split: Split, n: int | None, seed: int) -> np.ndarray:
    """The evaluated users: every eligible user, or a seeded sample of ``n`` of them."""
    users = eligible_users(split)
    if n is None or n >= users.size:
        if n is not None and n > users.size:
            raise ValueError(f"--users {n}: only {users.size} users have held-out positives")
        return users
    return np.sort(_rng(seed, "users").choice(users, size=n, replace=False))


def sample_candidates(
    split: Split,
    users: np.ndarray,
    n_items: int,
    bins: np.ndarray,
    ratios: tuple[int, ...],
    rng: np.random.Generator,
    max_per_user: int | None = None,
) -> pd.DataFrame:
    """Rows (user, item, label, scheme, depth): each user's held-out positives (at most
    ``max_per_user``, seeded) once per scheme with depth -1, and ``max(ratios)`` negatives per
    positive per scheme from the items the user never rated; the negatives of ratio r are those
    with depth < r (module docstring)."""
    rated = pd.concat([split.train, split.test])
    rated_by_user = rated.groupby("user")["item"].apply(np.asarray)
    test = split.test[split.test["user"].isin(users)]
    positives = test[test["rating"] >= POSITIVE_STARS].groupby("user")["item"].apply(np.asarray)
    top = max(ratios)
    everything = np.arange(n_items)
    parts: list[tuple[np.ndarray, ...]] = []  # (user, item, label, scheme, depth) columns
    for u in users.tolist():
        pos = np.sort(positives.get(u, np.zeros(0, dtype=np.int64)))
        if max_per_user is not None and pos.size > max_per_user:
            pos = np.sort(rng.choice(pos, size=max_per_user, replace=False))
        if pos.size == 0:
            continue
        pool = np.setdiff1d(everything, rated_by_user[u], assume_unique=False)
        uni = _draw(pool, top * pos.size, rng)
        uni_depth = np.arange(uni.size) // pos.size
        pop, pop_depth = _matched(pool, pos, bins, top, rng)
        for scheme, items, depth in ((0, uni, uni_depth), (1, pop, pop_depth)):
            n = pos.size + items.size
            parts.append(
                (
                    np.full(n, u),
                    np.concatenate([pos, items]),
                    np.repeat([1, 0], [pos.size, items.size]),
                    np.full(n, scheme),
                    np.concatenate([np.full(pos.size, -1), depth]),
                )
            )
    if not parts:
        raise ValueError("no user has a held-out rating >= 4: nothing to validate")
    cols = [np.concatenate(c) for c in zip(*parts, strict=True)]
    return pd.DataFrame(
        {
            "user": cols[0].astype(np.int64),
            "item": cols[1].astype(np.int64),
            "label": cols[2].astype(np.int8),
            "scheme": np.asarray(SCHEMES)[cols[3]],
            "depth": cols[4].astype(np.int64),
        }
    )


def _draw(pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` items of ``pool``, without replacement when it is large enough."""
    return rng.choice(pool, size=size, replace=size > pool.size)


def _matched(
    pool: np.ndarray, pos: np.ndarray, bins: np.ndarray, top: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``top`` negatives per positive from ``pool``, each from the positive's popularity bin
    (the nearest bin with unrated items when that one has none); depth as in the uniform
    draw, within each bin."""
    items, depth = [], []
    pool_bins = bins[pool]
    present = np.unique(pool_bins)
    for b in np.unique(bins[pos]).tolist():
        m = int(np.sum(bins[pos] == b))
        nearest = int(present[np.argmin(np.abs(present - b))])
        drawn = _draw(pool[pool_bins == nearest], top * m, rng)
        items.append(drawn)
        depth.append(np.arange(drawn.size) // m)
    return np.concatenate(items), np.concatenate(depth)


def setting(candidates: pd.DataFrame, scheme: str, ratio: int) -> pd.DataFrame:
    """The candidates of one setting: the scheme's positives and its negatives of depth <
    ``ratio``."""
    c = candidates
    return c[(c["scheme"] == scheme) & ((c["label"] == 1) | (c["depth"] < ratio))]


# ---------------------------------------------------------------------------- scoring


def watch_log_odds(
    respondent: Respondent,
    world: World,
    users: np.ndarray,
    items: np.ndarray,
    batch: int,
    tick: Callable[[int], object] | None = None,
) -> np.ndarray:
    """log p(item) − log p(none) of each (user, item) shown alone: > 0 means "watch" by the
    decider's own choice rule; NaN where the decider gave no answer."""
    out = np.empty(users.size, dtype=np.float64)
    for start in range(0, users.size, batch):
        u = users[start : start + batch]
        slates = items[start : start + batch, None]
        ctx = world.decision_context(u, slates, step=0)
        p = np.asarray(respondent.choice_probabilities(ctx), dtype=np.float64)
        with np.errstate(divide="ignore"):
            out[start : start + batch] = np.log(p[:, 0]) - np.log(p[:, -1])
        if tick is not None:
            tick(u.size)
    return out


def star_probabilities(
    respondent: Respondent,
    world: World,
    users: np.ndarray,
    items: np.ndarray,
    batch: int,
    tick: Callable[[int], object] | None = None,
) -> np.ndarray:
    """(n, 5) the decider's probabilities of 1..5 stars for each (user, item)."""
    out = np.empty((users.size, 5), dtype=np.float64)
    for start in range(0, users.size, batch):
        u = users[start : start + batch]
        ctx = world.decision_context(u, items[start : start + batch, None], step=0)
        out[start : start + batch] = respondent.rating_probabilities(ctx)
        if tick is not None:
            tick(u.size)
    return out


def baseline_scores(tw: TrainingWorld, users: np.ndarray, items: np.ndarray) -> dict[str, Any]:
    """Scores of the baselines for each (user, item), from the training part only."""
    r = tw.ml.ratings
    stars = r["rating"].to_numpy(dtype=np.float64)
    item = r["item"].to_numpy()
    n_items = tw.ml.n_items
    sums = np.bincount(item, weights=stars, minlength=n_items)
    mean = np.where(tw.counts > 0, sums / np.maximum(tw.counts, 1), stars.mean())
    factors = ratings_factors(tw.ml, BASELINE_MF)
    return {
        "popularity": tw.counts[items].astype(np.float64),
        "item_mean": mean[items],
        "mf": factors.scores(users, items),
    }


# ---------------------------------------------------------------------------- sections


def taste_section(
    candidates: pd.DataFrame,
    scores: dict[str, np.ndarray],
    persona: str,
    ratios: tuple[int, ...],
    seed: int,
) -> list[dict[str, Any]]:
    """One entry per (scheme, ratio): per-user-averaged metrics of the persona (its own
    decision: log-odds > 0) and of each baseline (top-m decision)."""
    out = []
    for scheme in SCHEMES:
        for ratio in ratios:
            rows = setting(candidates, scheme, ratio)
            idx = rows.index.to_numpy()
            answered = np.isfinite(scores[persona][idx])
            idx, rows = idx[answered], rows[answered]
            u, y = rows["user"].to_numpy(), rows["label"].to_numpy()
            models: dict[str, dict[str, float]] = {}
            s = scores[persona][idx]
            models[persona] = fm.per_user(u, y, s, s > 0)
            for name in BASELINES:
                b = scores[name][idx]
                d = fm.top_share_decisions(u, b, y, _rng(seed, "ties"))
                models[name] = fm.per_user(u, y, b, d)
            out.append(
                {
                    "scheme": scheme,
                    "ratio": ratio,
                    "positives": int((y == 1).sum()),
                    "negatives": int((y == 0).sum()),
                    "unanswered": int((~answered).sum()),
                    "models": models,
                }
            )
    return out


def ratings_section(
    users: np.ndarray,
    items: np.ndarray,
    truth: np.ndarray,
    probs: np.ndarray,
    baselines: dict[str, np.ndarray],
) -> dict[str, Any]:
    """The persona's star distributions on held-out pairs against the held-out ratings."""
    ok = np.isfinite(probs).all(axis=1)
    probs, users, truth = probs[ok], users[ok], truth[ok]
    data = fm.rating_distribution(truth)
    simulated = probs.mean(axis=0) if probs.size else np.full(5, np.nan)
    expected = probs @ np.arange(1.0, 6.0)
    out: dict[str, Any] = {
        "pairs": int(truth.size),
        "unanswered": int((~ok).sum()),
        "data": data.tolist(),
        "simulated": simulated.tolist(),
        "total_variation": fm.total_variation(simulated, data),
        "jensen_shannon": fm.jensen_shannon(simulated, data),
        "share_1_2": {"data": float(data[:2].sum()), "simulated": float(simulated[:2].sum())},
        "errors": {"persona": fm.rating_errors(users, truth, expected)},
    }
    for name, pred in baselines.items():
        out["errors"][name] = fm.rating_errors(users, truth, pred[ok])
    return out


@dataclass
class BehaviourRun:
    """The behaviour world's interactions and its personas."""

    users: np.ndarray  # the dataset ids of the world's users (world user i = users[i])
    interactions: pd.DataFrame
    persona: PersonaTable


def run_behaviour_world(
    scenario: Scenario,
    tw: TrainingWorld,
    users: np.ndarray,
    decider: Decider,
    policy: str,
    ticks: int,
    tick: Callable[[int], object] | None = None,
) -> BehaviourRun:
    """``ticks`` ticks of a world of the evaluated users' training personas under ``policy``."""
    import policies

    pop = tw.population
    subset = PersonaTable(
        **{name: getattr(pop.persona, name)[users] for name in pop.persona.__dataclass_fields__}
    )
    sized = scenario.model_copy(
        update={"population": scenario.population.model_copy(update={"size": int(users.size)})}
    )
    world = World(
        sized,
        policies.make(policy),
        seed=scenario.seeds[0],
        decider=decider,
        population=Population(catalog=pop.catalog, persona=subset, social=None),
    )
    for _ in range(ticks):
        world.step()
        if tick is not None:
            tick(1)
    return BehaviourRun(users=users, interactions=world.interactions_frame(), persona=subset)


def behaviour_section(
    run: BehaviourRun, split: Split, tw: TrainingWorld, ticks: int, policy: str
) -> dict[str, Any]:
    """Spearman correlations of traits with outcomes, in the world and in the held-out data."""
    n = run.users.size
    genres = tw.population.catalog.features.astype(np.float64)
    item_mean = _item_means(tw)
    sim = _sim_outcomes(run.interactions, n, genres, item_mean)
    test = split.test.set_index("user").loc[run.users].reset_index()
    index = {u: i for i, u in enumerate(run.users.tolist())}
    local = test["user"].map(index).to_numpy()
    data = _outcomes(
        local,
        test["item"].to_numpy(),
        test["rating"].to_numpy(dtype=np.float64),
        (test["timestamp"].to_numpy() // 86400),
        n,
        genres,
        item_mean,
    )
    traits = {
        "activity": run.persona.activity,
        "conformity": run.persona.conformity,
        "diversity": run.persona.diversity,
    }
    pairs = (
        ("activity", "active_days", "active days (world: ticks with a session)"),
        ("activity", "per_day", "items per active day (world: consumed per session)"),
        ("conformity", "agreement", "agreement with the items' mean ratings"),
        ("diversity", "entropy", "genre entropy of what was consumed"),
    )
    rows = []
    for trait, outcome, text in pairs:
        row: dict[str, Any] = {"trait": trait, "outcome": outcome, "text": text}
        for side, values in (("data", data), ("world", sim)):
            v = values[outcome]
            ok = np.isfinite(v)
            row[side] = fm.spearman(traits[trait][ok], v[ok])
            row[f"n_{side}"] = int(ok.sum())
        rows.append(row)
    world_ratings = run.interactions.loc[run.interactions["clicked"], "rating"].to_numpy()
    return {
        "ticks": ticks,
        "policy": policy,
        "users": int(n),
        "consumptions": int(world_ratings.size),
        "correlations": rows,
        "world_ratings": fm.rating_distribution(world_ratings).tolist()
        if world_ratings.size
        else None,
    }


def _item_means(tw: TrainingWorld) -> np.ndarray:
    r = tw.ml.ratings
    sums = np.bincount(
        r["item"].to_numpy(), weights=r["rating"].to_numpy(float), minlength=tw.ml.n_items
    )
    return np.where(tw.counts > 0, sums / np.maximum(tw.counts, 1), np.nan)


def _sim_outcomes(
    log: pd.DataFrame, n: int, genres: np.ndarray, item_mean: np.ndarray
) -> dict[str, np.ndarray]:
    clicked = log[log["clicked"]]
    sessions = log.groupby("user")["tick"].nunique().reindex(range(n)).to_numpy(float)
    out = _outcomes(
        clicked["user"].to_numpy(),
        clicked["item"].to_numpy(),
        clicked["rating"].to_numpy(np.float64),
        clicked["tick"].to_numpy(),
        n,
        genres,
        item_mean,
    )
    out["active_days"] = np.nan_to_num(sessions, nan=0.0)
    consumed = np.bincount(clicked["user"].to_numpy(), minlength=n).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["per_day"] = np.where(out["active_days"] > 0, consumed / out["active_days"], np.nan)
    return out


def _outcomes(
    users: np.ndarray,
    items: np.ndarray,
    stars: np.ndarray,
    days: np.ndarray,
    n: int,
    genres: np.ndarray,
    item_mean: np.ndarray,
) -> dict[str, np.ndarray]:
    """Per user (0..n-1): active days, items per active day, agreement with item means
    (minus the mean absolute deviation after the user's own offset) and genre entropy."""
    count = np.bincount(users, minlength=n).astype(float)
    frame = pd.DataFrame({"user": users, "day": days})
    active = frame.groupby("user")["day"].nunique().reindex(range(n)).fillna(0).to_numpy(float)
    known = np.isfinite(item_mean[items]) & np.isfinite(stars)
    dev = stars - np.where(known, item_mean[items], 0.0)
    k_count = np.bincount(users[known], minlength=n).astype(float)
    offset = np.bincount(users[known], weights=dev[known], minlength=n) / np.maximum(k_count, 1)
    mad = np.bincount(
        users[known], weights=np.abs(dev - offset[users])[known], minlength=n
    ) / np.maximum(k_count, 1)
    mass = np.zeros((n, genres.shape[1]))
    np.add.at(mass, users, genres[items])
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "active_days": active,
            "per_day": np.where(active > 0, count / np.maximum(active, 1), np.nan),
            "agreement": np.where(k_count > 0, -mad, np.nan),
            "entropy": np.where(count > 0, fm.normalised_entropy(mass), np.nan),
        }


def hygiene_section(split: Split, tw: TrainingWorld) -> dict[str, Any]:
    """What the world was built from, and the checks that nothing held out reached it."""
    train, test = split.train, split.test
    key = train["user"].to_numpy() * tw.ml.n_items + train["item"].to_numpy()
    held = test["user"].to_numpy() * tw.ml.n_items + test["item"].to_numpy()
    last_train = train.groupby("user")["timestamp"].max()
    first_test = test.groupby("user")["timestamp"].min()
    both = last_train.index.intersection(first_test.index)
    persona = tw.population.persona
    examples = np.concatenate([persona.liked, persona.disliked], axis=1)
    users = np.repeat(np.arange(examples.shape[0]), examples.shape[1])
    ex = examples.ravel()
    ex_key = users[ex >= 0] * tw.ml.n_items + ex[ex >= 0]
    return {
        "built_from": {
            "training_ratings": len(train),
            "held_out_ratings": len(test),
            "personas": "training ratings (traits, genre taste, examples, latent factors)",
            "item_statistics": "training ratings (quality, popularity prior, mean rating)",
            "baselines": "training ratings (counts, item means, MF)",
        },
        "checks": {
            "held_out_pairs_in_training": int(np.isin(held, key).sum()),
            "users_with_training_after_held_out": int((last_train[both] > first_test[both]).sum()),
            "persona_examples_that_are_held_out": int(np.isin(ex_key, held).sum()),
        },
    }


# ---------------------------------------------------------------------------- together


def decider_description(scenario: Scenario, utility_file: Path | None = None) -> dict[str, Any]:
    """What decided: kind, persona model, the weights (or the LLM settings) and their file."""
    d = scenario.decider
    out: dict[str, Any] = {
        "kind": d.kind,
        "persona_model": scenario.population.persona_model,
        "utility_file": None if utility_file is None else str(utility_file),
    }
    if scenario.population.persona_model == "mf":
        out["mf"] = scenario.population.mf.model_dump()
    if d.kind == "llm":
        from agents.prompts import PROMPT_VERSION
        from simenv.studies.provenance import model_provenance

        out["llm"] = {**d.llm.model_dump(), **(model_provenance(scenario) or {})}
        out["prompt_version"] = PROMPT_VERSION
    else:
        out["utility"] = d.utility.model_dump()
    return out


def persona_label(scenario: Scenario) -> str:
    """The persona's row name: ``utility (genre)``, ``utility (mf)`` or ``llm (<model>)``."""
    if scenario.decider.kind == "llm":
        cfg = scenario.decider.llm
        return f"llm ({cfg.model or cfg.backend + ' default'})"
    return f"utility ({scenario.population.persona_model})"


def run_validation(
    scenario: Scenario,
    config: ValidateConfig,
    out: Path | None = None,
    *,
    decider: Decider | None = None,
    utility_file: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The protocol of the module docstring on ``scenario``'s decider; writes the report into
    ``out`` when given and returns it (the content of ``validation.json``)."""
    from tqdm import tqdm

    from simenv.data.movielens import load_movielens
    from simenv.studies.factory import make_decider
    from simenv.studies.provenance import provenance
    from simenv.studies.run_folder import check_output_folder

    config.check()
    started = time.perf_counter()
    seed = config.seed
    if out is not None:
        out = check_output_folder(Path(out), into_run=False)
    ml = load_movielens(scenario.catalog.data_path)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    split = time_split(ml.ratings, config.train_share)
    users = sample_users(split, config.users, seed)
    decider = decider if decider is not None else make_decider(scenario, out)
    respondent = as_respondent(decider)
    batch = BATCH["utility" if scenario.decider.kind == "utility" else "llm"]
    tw = training_world(scenario, training_data(ml, split), decider)
    candidates = sample_candidates(
        split,
        users,
        ml.n_items,
        popularity_bins(tw.counts),
        config.ratios,
        _rng(seed, "candidates"),
        config.max_per_user,
    )
    pairs = candidates[["user", "item"]].drop_duplicates().reset_index(drop=True)
    rated = _rated_pairs(split, users, config.max_per_user, _rng(seed, "ratings"))
    total = len(pairs) + len(rated) + config.behaviour_ticks
    with tqdm(total=total, disable=not progress, unit="q", dynamic_ncols=True) as bar:
        bar.set_description("taste")
        pu, pi = pairs["user"].to_numpy(), pairs["item"].to_numpy()
        pair_scores = {"persona": watch_log_odds(respondent, tw.world, pu, pi, batch, bar.update)}
        pair_scores.update(baseline_scores(tw, pu, pi))
        position = candidates.merge(pairs.reset_index(), on=["user", "item"], how="left")["index"]
        scores = {k: v[position.to_numpy()] for k, v in pair_scores.items()}
        taste = taste_section(candidates, scores, "persona", config.ratios, seed)
        bar.set_description("ratings")
        ru, ri = rated["user"].to_numpy(), rated["item"].to_numpy()
        probs = star_probabilities(respondent, tw.world, ru, ri, batch, bar.update)
        item_mean = _item_means(tw)
        global_mean = float(tw.ml.ratings["rating"].mean())
        ratings = ratings_section(
            ru,
            ri,
            rated["rating"].to_numpy(np.float64),
            probs,
            {
                "item_mean": np.where(np.isfinite(item_mean[ri]), item_mean[ri], global_mean),
                "global_mean": np.full(ri.size, global_mean),
            },
        )
        behaviour = None
        if config.behaviour_ticks > 0:
            bar.set_description("behaviour")
            run = run_behaviour_world(
                scenario,
                tw,
                users,
                decider,
                config.behaviour_policy,
                config.behaviour_ticks,
                bar.update,
            )
            behaviour = behaviour_section(
                run, split, tw, config.behaviour_ticks, config.behaviour_policy
            )
    report = {
        "dataset": config.dataset,
        "persona": persona_label(scenario),
        "decider": decider_description(scenario, utility_file),
        "seed": seed,
        "split": {
            "train_share": config.train_share,
            "rule": "per user: the first floor(share * n) ratings by (timestamp, item) train",
            "train_ratings": len(split.train),
            "held_out_ratings": len(split.test),
        },
        "sample": {
            "users": int(users.size),
            "eligible_users": int(eligible_users(split).size),
            "max_per_user": config.max_per_user,
            "seed": seed,
        },
        "config": {**dataclasses.asdict(config), "data": str(config.data) if config.data else None},
        "made_with": provenance(scenario),
        "taste": taste,
        "ratings": ratings,
        "behaviour": behaviour,
        "hygiene": hygiene_section(split, tw),
        "llm_stats": decider.stats() or None,
        "seconds": round(time.perf_counter() - started, 2),
    }
    if out is not None:
        from simenv.studies.validate_report import write_report

        write_report(report, Path(out))
    return report


def _rated_pairs(
    split: Split, users: np.ndarray, max_per_user: int | None, rng: np.random.Generator
) -> pd.DataFrame:
    """The held-out ratings of ``users`` (at most ``max_per_user`` each, seeded)."""
    test = split.test[split.test["user"].isin(users)].reset_index(drop=True)
    if max_per_user is None:
        return test
    keep = rng.permutation(len(test))
    shuffled = test.iloc[keep]
    first = shuffled.groupby("user").cumcount() < max_per_user
    return (
        shuffled[first.to_numpy()].sort_values(["user", "timestamp", "item"]).reset_index(drop=True)
    )


__all__ = [
    "Split",
    "TrainingWorld",
    "ValidateConfig",
    "run_validation",
    "sample_candidates",
    "time_split",
    "training_data",
    "training_world",
]

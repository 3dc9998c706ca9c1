"""Deciders turn (persona, memory, emotion, slate) into outcomes for every user in a batch.

A decider sees one `DecisionContext` for all users that are looking at a slate right now and
returns `Decisions`: the slate position chosen (-1 for none), the rating given, and whether the
user ends the session. Deciders never draw from global random state: ``ctx.rng`` is the world's.

`UtilityDecider` is the fast parametric user model: a multinomial logit over the slate plus a
no-choice option, vectorised over users (sampling by the Gumbel-max trick). Its utilities are
linear in the choice weights: ``utility_features(ctx) @ choice_weights(params)`` (what
`recloop calibrate` and `recloop fit` fit). Its ratings are ``clip(round(rating_mean + noise),
1, 5)``; `rating_probabilities` gives their exact distribution (`star_probabilities`), which
`recloop validate` compares with real ratings. `item_utilities` gives the same utilities for
any items at the first slate position, without drawing random numbers: the true utilities the
world hands the ``oracle`` policy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agents.emotion import EmotionState
from agents.memory import MemoryStore
from agents.persona import PersonaTable
from simenv import kernels
from simenv.arrays import one_user_kernels, unit_rows


@dataclass(frozen=True)
class DecisionContext:
    tick: int
    step: int  # slate number within today's session, 0-based
    users: np.ndarray  # (n,) int64
    slates: np.ndarray  # (n, k) int64 item ids
    persona: PersonaTable  # whole population; index with ``users``
    taste: np.ndarray  # (N, d) float32 current (drifting) taste, L2-normalised
    emotion: EmotionState  # whole population
    item_features: np.ndarray  # (n_items, d) float32
    item_unit: np.ndarray  # (n_items, d) float32 item_features scaled to unit length
    item_quality: np.ndarray  # (n_items,) float32 in [0, 1]
    item_popularity: np.ndarray  # (n_items,) float32 in [0, 1], observed popularity
    recent: np.ndarray  # (N, H) int64 recently consumed items, -1 padded
    recent_profile: np.ndarray  # (N, d) float32 sum of the features of ``recent`` items
    inbox: np.ndarray  # (N, S) int64 items friends shared, -1 padded
    rng: np.random.Generator
    # the session ends after this slate whatever the answer (a decider may skip asking)
    last_step: bool = False
    # (n_items, f) float32 items' latent factors, matched with ``persona.latent`` (f = 0 or
    # None: no latent tastes, persona_model genre)
    item_latent: np.ndarray | None = None
    # texts and memory, for deciders that write prompts (`LLMDecider`)
    item_titles: Sequence[str] = ()  # (n_items,) published items' titles
    item_descriptions: Sequence[str] = ()  # (n_items,)
    topic_names: Sequence[str] = ()  # (d,) names of the feature dimensions
    memory: MemoryStore | None = None  # the world's memory of every user


@dataclass(frozen=True)
class Decisions:
    chosen_pos: np.ndarray  # (n,) int64, -1 = no choice
    rating: np.ndarray  # (n,) float32 in 1..5, nan where nothing was chosen
    ended_session: np.ndarray  # (n,) bool

    def __post_init__(self) -> None:
        n = self.chosen_pos.shape[0]
        if self.rating.shape != (n,) or self.ended_session.shape != (n,):
            raise ValueError("Decisions arrays must all have one entry per user")


class Decider(Protocol):
    """Every hook the world and the studies call on a decider, in the order of a tick.

    - `reflect` (the reflection phase): before the first slate of a session, for the users
      about to see it; deciders with memory write reflections here;
    - `decide`: one answer per user for the slates of ``ctx``;
    - `tick_counters`: extra metric columns counted since the last call (once per tick);
    - `reflection_texts`: texts of the reflection memory records, by (user, memory slot);
    - `finish`: the job's last tick is over (the runner calls it before writing the job's
      results); a decider may refuse the job by raising (the LLM decider raises `LLMError`
      when too many of its decisions fell back to the utility model);
    - `stats`: statistics to keep with the job's results (the LLM backend's calls, tokens,
      cache hits, decisions and fallbacks...); empty when there are none;
    - `label_priors`: the label priors an LLM decider divided out of its answers (contextual
      calibration, `agents.label_calibration`), to keep with the job's results; empty when
      there are none;
    - `true_utilities` (only when `defines_true_utilities`): the users' deterministic
      utilities of any items, which the world hands a policy that needs them (the oracle);
    - `attachments`: the objects the decider uses but does not own, by name (an LLM backend,
      a text embedder): a checkpoint of the world (`simenv.studies.checkpoint`) stores their
      names only, and a resumed job puts the ones of its freshly made decider in their place.

    `BaseDecider` gives every hook but `decide` a default that does nothing (and defines no
    true utilities).
    """

    name: str
    defines_true_utilities: bool

    def reflect(self, ctx: DecisionContext) -> None: ...

    def decide(self, ctx: DecisionContext) -> Decisions: ...

    def tick_counters(self) -> dict[str, float]: ...

    def reflection_texts(self) -> dict[tuple[int, int], str]: ...

    def finish(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def label_priors(self) -> dict[str, Any]: ...

    def true_utilities(
        self, ctx: DecisionContext, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray: ...

    def attachments(self) -> dict[str, object]: ...


class BaseDecider:
    """Defaults for the `Decider` hooks: no reflection, no counters, nothing to write, no
    true utilities."""

    name = "decider"
    defines_true_utilities = False

    def reflect(self, ctx: DecisionContext) -> None:
        return None

    def decide(self, ctx: DecisionContext) -> Decisions:
        raise NotImplementedError(f"{type(self).__name__} must implement decide()")

    def tick_counters(self) -> dict[str, float]:
        return {}

    def reflection_texts(self) -> dict[tuple[int, int], str]:
        return {}

    def finish(self) -> None:
        return None

    def stats(self) -> dict[str, Any]:
        return {}

    def label_priors(self) -> dict[str, Any]:
        return {}

    def true_utilities(
        self, ctx: DecisionContext, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError(f"the {self.name} decider defines no true utilities")

    def attachments(self) -> dict[str, object]:
        return {}


class UtilityParams(BaseModel):
    """Weights of the multinomial-logit user model (scenario ``decider.utility.*``)."""

    model_config = ConfigDict(extra="forbid")

    taste: float = Field(6.0, description="weight of cosine(taste, item features)")
    quality: float = Field(1.5, description="weight of item quality (centred at 0.5)")
    popularity: float = Field(1.5, description="weight of observed popularity, times conformity")
    novelty: float = Field(1.0, description="weight of novelty vs recent items, times curiosity")
    boredom: float = Field(2.0, description="penalty on similarity to recent items, times boredom")
    social: float = Field(1.0, description="bonus for items a friend shared")
    repeat: float = Field(3.0, description="penalty for items consumed recently")
    position: float = Field(0.3, description="penalty per log(1 + slate position)")
    no_choice: float = Field(5.0, description="utility of choosing nothing")
    fatigue: float = Field(2.0, description="extra no-choice utility per unit of fatigue")
    latent: float = Field(
        0.0, description="weight of the latent-factor match (persona_model mf; 0 = unused)"
    )
    noise: float = Field(1.0, gt=0, description="scale of the Gumbel noise (choice randomness)")
    rating_base: float = Field(3.0, description="stars before the terms below")
    rating_taste: float = Field(3.0, description="stars per unit of taste match above 0.4")
    rating_quality: float = Field(2.0, description="stars per unit of quality above 0.5")
    rating_latent: float = Field(
        0.0, description="stars per unit of latent-factor match (persona_model mf)"
    )
    rating_noise: float = Field(0.5, ge=0, description="std of rating noise (stars)")
    end_base: float = Field(-2.0, description="logit of ending the session after a slate")
    end_fatigue: float = Field(3.0, description="end-session logit per unit of fatigue")
    end_satisfaction: float = Field(1.5, description="end-session logit per unit dissatisfaction")
    end_no_choice: float = Field(1.5, description="end-session logit added after choosing nothing")
    end_boredom: float = Field(0.0, description="end-session logit per unit of boredom")


@dataclass(frozen=True)
class SlateTerms:
    """The per-(user, slot) quantities every utility-based decision needs."""

    match: np.ndarray  # (n, k) cosine(taste, item)
    similarity: np.ndarray  # (n, k) cosine(item, mean of recent items), 0 without history
    repeat: np.ndarray  # (n, k) bool, item consumed recently
    shared: np.ndarray  # (n, k) bool, item in the user's social inbox


def latent_match(ctx: DecisionContext, slates: np.ndarray) -> np.ndarray | None:
    """(n, k) float32 latent-factor match ``persona.latent[u] · item_latent[j]`` of the items
    ``slates`` (one row per user of ``ctx``), or None when the personas have no latent tastes."""
    if ctx.item_latent is None or ctx.persona.n_latent == 0 or ctx.item_latent.shape[1] == 0:
        return None
    lat = ctx.persona.latent[ctx.users]
    return np.einsum("nkf,nf->nk", ctx.item_latent[slates], lat).astype(np.float32)


def slate_terms(ctx: DecisionContext) -> SlateTerms:
    """The `SlateTerms` of every user of ``ctx``. The (n, k, d) item vectors are gathered a
    chunk of rows at a time (`_row_chunks`), so that both products read them from the cache;
    each row's products are the same whatever the chunk (einsum reduces each row alone)."""
    n, k = ctx.slates.shape
    d = ctx.item_unit.shape[1]
    match = np.empty((n, k), dtype=np.result_type(ctx.item_unit, ctx.taste))
    # the profiles are unit_rows' float32
    similarity = np.empty((n, k), dtype=np.result_type(ctx.item_unit, np.float32))
    for rows in _row_chunks(n, k * d):
        # np.take: the same rows as fancy indexing, several times faster
        feats = np.take(ctx.item_unit, ctx.slates[rows], axis=0)  # (rows, k, d)
        users = ctx.users[rows]
        np.einsum("nkd,nd->nk", feats, np.take(ctx.taste, users, axis=0), out=match[rows])
        profile = unit_rows(np.take(ctx.recent_profile, users, axis=0))
        np.einsum("nkd,nd->nk", feats, profile, out=similarity[rows])
    repeat = _holds_any(ctx.slates, ctx.recent, ctx.users)
    shared = _holds_any(ctx.slates, ctx.inbox, ctx.users)
    return SlateTerms(match=match, similarity=similarity, repeat=repeat, shared=shared)


#: Cells (rows x width) of one chunk of `_row_chunks`: 1 MiB of float32.
CHUNK_CELLS = 1 << 18


def _row_chunks(n: int, width: int) -> list[slice]:
    """Consecutive slices of ``range(n)`` of about `CHUNK_CELLS` / ``width`` rows each."""
    step = max(1, CHUNK_CELLS // max(width, 1))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def _has_latent(ctx: DecisionContext) -> bool:
    """Whether `latent_match` has anything to match (personas with latent tastes)."""
    return not (
        ctx.item_latent is None or ctx.persona.n_latent == 0 or ctx.item_latent.shape[1] == 0
    )


def _slate_terms_one(ctx: DecisionContext, u: int) -> SlateTerms:
    """`slate_terms` of one user ``u`` (``ctx.users == [u]``): repeat and shared from sets."""
    feats = ctx.item_unit[ctx.slates]  # (1, k, d)
    match = np.einsum("nkd,nd->nk", feats, ctx.taste[ctx.users])
    profile = unit_rows(ctx.recent_profile[ctx.users])
    similarity = np.einsum("nkd,nd->nk", feats, profile)
    items = ctx.slates[0].tolist()
    recent, inbox = set(ctx.recent[u].tolist()), set(ctx.inbox[u].tolist())
    repeat = np.array([[i in recent and i >= 0 for i in items]], dtype=bool)
    shared = np.array([[i in inbox and i >= 0 for i in items]], dtype=bool)
    return SlateTerms(match=match, similarity=similarity, repeat=repeat, shared=shared)


def _holds_any(slates: np.ndarray, lists: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, k) bool: whether each slate item is in row ``rows[i]`` of ``lists`` (-1 padded item
    ids). Many rows: `simenv.kernels.holds_any` (one pass per row over a table of the ids up to
    the largest slate item, no gathered copy of the lists); a few rows (env steps) or ids too
    large for a table: one broadcast comparison."""
    n_ids = int(slates.max(initial=-1)) + 1  # a list entry past every slate item holds none
    if slates.shape[0] >= 64 and n_ids <= _MAX_TABLE_IDS:
        return kernels.holds_any(slates, lists, rows, n_ids)
    held = lists[rows]
    padded = np.where(held >= 0, held, -2)  # a slate item (an id >= 0) never matches -2
    return (slates[:, :, None] == padded[:, None, :]).any(axis=2)


#: Largest id + 1 for which `_holds_any` builds a table over ids (a catalog of 16M items).
_MAX_TABLE_IDS = 1 << 24


#: The choice-model weights of `UtilityParams`, in the order of the last axis of
#: `utility_features`: the utilities are ``utility_features(ctx) @ choice_weights(params)``.
CHOICE_WEIGHTS = (
    "taste",
    "quality",
    "popularity",
    "novelty",
    "boredom",
    "social",
    "repeat",
    "position",
    "no_choice",
    "fatigue",
    "latent",
)


def choice_weights(params: UtilityParams) -> np.ndarray:
    """(len(CHOICE_WEIGHTS),) float64: the weights of ``params`` in `CHOICE_WEIGHTS` order."""
    return np.array([getattr(params, name) for name in CHOICE_WEIGHTS], dtype=np.float64)


def utility_features(ctx: DecisionContext, terms: SlateTerms | None = None) -> np.ndarray:
    """(n, k + 1, len(CHOICE_WEIGHTS)) float32 features of every option, linear in the weights.

    Option j < k is slate position j, option k is choosing nothing. Signs are folded in (the
    boredom, repeat and position columns are negative), so for any `UtilityParams` the
    utilities are ``features @ choice_weights(params)``:

        item j:  taste·match + quality·(q − ½) + popularity·conformity·pop
                 + novelty·curiosity·(1 − sim) − boredom·boredom_u·sim + social·[shared]
                 − repeat·[recent] − position·log(1 + j)
                 + latent·(latent_u · latent_j)        (persona_model mf only)
        none:    no_choice + fatigue·fatigue_u

    The array is a view of a (features, n, k + 1) contiguous block (fast to fill and combine).
    """
    return np.moveaxis(_feature_block(ctx, terms), 0, -1)


def _feature_block(
    ctx: DecisionContext, terms: SlateTerms | None = None, memory: np.ndarray | None = None
) -> np.ndarray:
    """The (len(CHOICE_WEIGHTS), n, k + 1) contiguous block `utility_features` is a view of.
    Many rows of float32 arrays (the world's): one pass of `kernels.fill_features`, in
    ``memory`` when given (a flat float32 array of exactly the block's size); else the numpy
    expressions of `_feature_block_numpy` (the same values, tests/test_kernels.py)."""
    terms = slate_terms(ctx) if terms is None else terms
    u, e, slates = ctx.users, ctx.emotion, ctx.slates
    n, k = slates.shape
    shape = (len(CHOICE_WEIGHTS), n, k + 1)
    if n >= 64 and _all_float32(ctx, terms):
        f = np.empty(shape, dtype=np.float32) if memory is None else memory.reshape(shape)
        position = (-np.log1p(np.arange(k))).astype(np.float32)
        kernels.fill_features(
            f, terms.match, terms.similarity, terms.repeat, terms.shared, slates, u,
            ctx.item_quality, ctx.item_popularity, ctx.persona.conformity, e.curiosity,
            e.boredom, e.fatigue, position,
        )  # fmt: skip
    else:
        f = _feature_block_numpy(ctx, terms)
    lat = latent_match(ctx, slates)
    if lat is not None:
        f[10, :, :k] = lat
    return f


@cache
def _positions(k: int) -> np.ndarray:
    """(k,) float32 position terms ``-log(1 + j)`` of a slate of ``k`` (read-only, kept)."""
    position = (-np.log1p(np.arange(k))).astype(np.float32)
    position.flags.writeable = False
    return position


def _all_float32(ctx: DecisionContext, terms: SlateTerms) -> bool:
    """Whether every float array `kernels.fill_features` reads is float32 (the world's)."""
    e = ctx.emotion
    arrays = [terms.match, terms.similarity, ctx.item_quality, ctx.item_popularity]
    arrays += [ctx.persona.conformity, e.curiosity, e.boredom, e.fatigue]
    return all(a.dtype == np.float32 for a in arrays)


def _feature_block_numpy(ctx: DecisionContext, terms: SlateTerms) -> np.ndarray:
    """`_feature_block` without the latent column, in numpy (a few rows, or other dtypes)."""
    u, e, slates = ctx.users, ctx.emotion, ctx.slates
    n, k = slates.shape
    f = np.zeros((len(CHOICE_WEIGHTS), n, k + 1), dtype=np.float32)
    f[0, :, :k] = terms.match
    f[1, :, :k] = ctx.item_quality[slates] - 0.5
    f[2, :, :k] = ctx.persona.conformity[u][:, None] * ctx.item_popularity[slates]
    f[3, :, :k] = e.curiosity[u][:, None] * (1.0 - terms.similarity)
    f[4, :, :k] = -(e.boredom[u][:, None] * terms.similarity)
    f[5, :, :k] = terms.shared
    f[6, :, :k] = -terms.repeat.astype(np.float32)
    f[7, :, :k] = -np.log1p(np.arange(k))[None, :]
    f[8, :, k] = 1.0
    f[9, :, k] = e.fatigue[u]
    return f


def item_utilities(
    ctx: DecisionContext, params: UtilityParams, rows: np.ndarray, items: np.ndarray
) -> np.ndarray:
    """(len(rows), len(items)) float64 deterministic utilities of ``items`` (item ids) for
    the users ``ctx.users[rows]``, each item as if shown at the first slate position (so the
    position term is 0): the item columns of ``utility_features(ctx) @ choice_weights(params)``
    for a slate that starts with that item. ``ctx.slates`` is not read and nothing random is
    drawn. Memory is O(len(rows) · len(items)).
    """
    rows = np.asarray(rows, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    u = ctx.users[rows]
    e, p = ctx.emotion, params
    feats = ctx.item_unit[items].astype(np.float64)  # (m, d)
    match = ctx.taste[u].astype(np.float64) @ feats.T
    similarity = unit_rows(ctx.recent_profile[u], np.float64) @ feats.T
    out = p.taste * match
    out += p.quality * (ctx.item_quality[items].astype(np.float64) - 0.5)
    conformity = ctx.persona.conformity[u].astype(np.float64)
    out += p.popularity * np.outer(conformity, ctx.item_popularity[items])
    out += p.novelty * e.curiosity[u].astype(np.float64)[:, None] * (1.0 - similarity)
    out -= p.boredom * e.boredom[u].astype(np.float64)[:, None] * similarity
    out += p.social * _holds(ctx.inbox[u], items, ctx.item_unit.shape[0])
    out -= p.repeat * _holds(ctx.recent[u], items, ctx.item_unit.shape[0])
    return out


def _holds(lists: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """(len(lists), len(items)) float64: 1 where the row of ``lists`` (-1 padded item ids)
    holds the item."""
    column = np.full(n_items, -1, dtype=np.int64)
    column[items] = np.arange(items.size)
    out = np.zeros((lists.shape[0], items.size))
    col = np.where(lists >= 0, column[np.maximum(lists, 0)], -1)
    r, c = np.nonzero(col >= 0)
    out[r, col[r, c]] = 1.0
    return out


class UtilityDecider(BaseDecider):
    """Multinomial logit over slate ∪ {no choice}, vectorised over all users in the batch."""

    name = "utility"
    defines_true_utilities = True
    #: the feature block's memory (below); a class default too, so that a decider unpickled
    #: from a checkpoint written before it existed has one (it is only ever replaced, not
    #: written, while empty)
    _scratch: np.ndarray = np.zeros(0, dtype=np.float32)

    def __init__(self, params: UtilityParams | None = None) -> None:
        self.params = params or UtilityParams()
        # the feature block's memory, kept from one call to the next: a fresh block (tens of
        # MB at 100k users) pays a page fault per 4 KiB at every tick. Not pickled.
        self._scratch = np.zeros(0, dtype=np.float32)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_scratch"] = np.zeros(0, dtype=np.float32)  # a checkpoint keeps no scratch
        return state

    def utility_matrix(self, ctx: DecisionContext, terms: SlateTerms | None = None) -> np.ndarray:
        """(n, k + 1) float32 deterministic utilities; the last column is choosing nothing."""
        n, k = ctx.slates.shape
        size = len(CHOICE_WEIGHTS) * n * (k + 1)
        if self._scratch.size < size:
            self._scratch = np.empty(size + size // 8, dtype=np.float32)  # room to grow
        f = _feature_block(ctx, terms, self._scratch[:size])
        w = choice_weights(self.params).astype(np.float32)
        # np.tensordot(w, f, axes=1) is this one dot product, without its shape bookkeeping
        return np.dot(w[None, :], f.reshape(f.shape[0], -1)).reshape(f.shape[1:])

    def utilities(self, ctx: DecisionContext, terms: SlateTerms) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic utilities: (n, k) for slate items and (n,) for choosing nothing."""
        full = self.utility_matrix(ctx, terms)
        return full[:, :-1], full[:, -1]

    def true_utilities(
        self, ctx: DecisionContext, rows: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """The users' utilities of ``items`` at the first slate position (`item_utilities`)."""
        return item_utilities(ctx, self.params, rows, items)

    def choice_probabilities(self, ctx: DecisionContext) -> np.ndarray:
        """(n, k + 1) float64 probabilities of each slate position and of choosing nothing
        (the softmax of utility / noise that `decide` samples from)."""
        z = self.utility_matrix(ctx).astype(np.float64) / self.params.noise
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def decide(self, ctx: DecisionContext) -> Decisions:
        if ctx.users.shape[0] == 1:
            return self._decide_one(ctx)
        return self._decide_rows(ctx)

    def _decide_rows(self, ctx: DecisionContext) -> Decisions:
        """`decide` as arrays over the users of ``ctx`` (any number of them). The Gumbel
        draws are numpy's (`kernels.noisy_argmax` adds them and picks the maximum in one
        pass)."""
        p, n = self.params, ctx.users.shape[0]
        terms = slate_terms(ctx)
        full = self.utility_matrix(ctx, terms)
        k = full.shape[1] - 1
        pick = kernels.noisy_argmax(full, p.noise, ctx.rng.gumbel(size=full.shape))
        chose = pick < k
        chosen_pos = np.where(chose, pick, -1).astype(np.int64)
        rows = np.arange(n)
        slot = np.minimum(pick, k - 1)
        mean = self.rating_mean(ctx, terms.match[rows, slot], slot)
        stars = mean + p.rating_noise * ctx.rng.standard_normal(n)
        rating = np.where(chose, np.clip(np.rint(stars), 1, 5), np.nan).astype(np.float32)
        ended = self._ends(ctx, chose, ctx.rng.random(n))
        return Decisions(chosen_pos=chosen_pos, rating=rating, ended_session=ended)

    def _decide_one(self, ctx: DecisionContext) -> Decisions:
        """`decide` for one user (a single env's step): the same random draws and the same
        float operations (numpy scalars keep the arrays' dtypes), without (1, k) arrays after
        the utilities."""
        p, rng = self.params, ctx.rng
        u = int(ctx.users[0])
        full, match = self._utilities_one(ctx, u)
        k = full.shape[1] - 1
        pick = kernels.noisy_argmax_row(full[0], p.noise, rng.gumbel(size=full.shape)[0])
        chose = pick < k
        slot = min(pick, k - 1)
        item = int(ctx.slates[0, slot])
        if _has_latent(ctx):
            mean = self.rating_mean(ctx, match[slot : slot + 1], np.array([slot]))[0]
        else:
            mean = (
                p.rating_base
                + p.rating_taste * (match[slot] - 0.4)
                + p.rating_quality * (ctx.item_quality[item] - 0.5)
                + ctx.persona.rating_bias[u]
            )
        stars = mean + p.rating_noise * rng.standard_normal(1)[0]
        rating = min(max(np.rint(stars), 1.0), 5.0) if chose else np.nan
        e = ctx.emotion
        logit = (
            p.end_base
            + p.end_fatigue * e.fatigue[u]
            - p.end_satisfaction * e.satisfaction[u]
            + np.float64(p.end_no_choice * (not chose))  # a float times a bool array: float64
            + p.end_boredom * e.boredom[u]
        )
        ended = rng.random(1)[0] < 1.0 / (1.0 + np.exp(-logit))
        return Decisions(
            chosen_pos=np.array([pick if chose else -1], dtype=np.int64),
            rating=np.array([rating], dtype=np.float32),
            ended_session=np.array([ended], dtype=bool),
        )

    def _utilities_one(self, ctx: DecisionContext, u: int) -> tuple[np.ndarray, np.ndarray]:
        """`utility_matrix` (1, k + 1) of one user ``u`` and the slate's taste match (k,).
        Float32 arrays (the world's): the slate terms and the feature block in one compiled
        pass (`kernels.slate_features_one`, the values of `_slate_terms_one` and
        `_feature_block_numpy`), then the same dot product with the weights; else numpy."""
        e = ctx.emotion
        float_arrays: tuple[np.ndarray, ...] = (ctx.item_unit, ctx.taste, ctx.recent_profile)
        float_arrays += (ctx.item_quality, ctx.item_popularity, ctx.persona.conformity)
        float_arrays += (e.curiosity, e.boredom)
        if not one_user_kernels(*float_arrays, e.fatigue):
            terms = _slate_terms_one(ctx, u)
            return self.utility_matrix(ctx, terms), terms.match[0]
        k = ctx.slates.shape[1]
        n_feat = len(CHOICE_WEIGHTS)
        size = n_feat * (k + 1)
        if self._scratch.size < size:
            self._scratch = np.empty(size, dtype=np.float32)
        f = self._scratch[:size].reshape(n_feat, 1, k + 1)
        match = np.empty(k, dtype=np.float32)
        kernels.slate_features_one(
            f, match, ctx.slates[0], u, ctx.item_unit, ctx.taste, ctx.recent_profile,
            ctx.recent, ctx.inbox, ctx.item_quality, ctx.item_popularity,
            ctx.persona.conformity, e.curiosity, e.boredom, e.fatigue, _positions(k),
        )  # fmt: skip
        lat = latent_match(ctx, ctx.slates)
        if lat is not None:
            f[10, :, :k] = lat
        w = choice_weights(self.params).astype(np.float32)
        return np.dot(w[None, :], f.reshape(n_feat, -1)).reshape(1, k + 1), match

    def rating_mean(self, ctx: DecisionContext, match: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """(n,) the stars before noise that each user of ``ctx`` gives the item at slate
        position ``slot[i]`` of its row, whose taste match is ``match``:
        ``rating_base + rating_taste·(match − 0.4) + rating_quality·(q − ½)
        + rating_latent·latent_match + rating_bias_u``. The rating is this plus
        ``N(0, rating_noise²)``, rounded and clipped to 1..5."""
        p = self.params
        items = ctx.slates[np.arange(ctx.users.size), slot]
        mean = (
            p.rating_base
            + p.rating_taste * (match - 0.4)
            + p.rating_quality * (ctx.item_quality[items] - 0.5)
            + ctx.persona.rating_bias[ctx.users]
        )
        lat = latent_match(ctx, items[:, None])
        if lat is not None:
            mean = mean + p.rating_latent * lat[:, 0]
        return mean

    def rating_probabilities(self, ctx: DecisionContext) -> np.ndarray:
        """(n, 5) float64 probabilities of 1..5 stars for the item at slate position 0 of each
        row of ``ctx`` (the distribution `decide` samples a rating from, had it been chosen)."""
        terms = slate_terms(ctx)
        slot = np.zeros(ctx.users.size, dtype=np.int64)
        mean = self.rating_mean(ctx, terms.match[:, 0], slot).astype(np.float64)
        return star_probabilities(mean, self.params.rating_noise)

    def _ends(
        self, ctx: DecisionContext, chose: np.ndarray, draw: np.ndarray | float
    ) -> np.ndarray:
        p, e, u = self.params, ctx.emotion, ctx.users
        logit = (
            p.end_base
            + p.end_fatigue * e.fatigue[u]
            - p.end_satisfaction * e.satisfaction[u]
            + p.end_no_choice * ~chose
            + p.end_boredom * e.boredom[u]
        )
        return draw < 1.0 / (1.0 + np.exp(-logit))


def normal_cdf(z: np.ndarray) -> np.ndarray:
    """Φ(z) of the standard normal, accurate in both tails (erfc, elementwise)."""
    z = np.asarray(z, dtype=np.float64)
    return 0.5 * np.asarray(_ERFC(-z / math.sqrt(2.0)), dtype=np.float64)


_ERFC = np.frompyfunc(math.erfc, 1, 1)


def star_probabilities(mean: np.ndarray, noise: float) -> np.ndarray:
    """(n, 5) probabilities of ``clip(round(mean + N(0, noise²)), 1, 5)`` = 1..5 stars.

    Star s covers (s − ½, s + ½], the ends open (1 takes everything below 1.5, 5 everything
    above 4.5); with ``noise`` = 0 all the mass is on ``clip(rint(mean), 1, 5)``. Each band's
    mass is taken from the nearer tail, so tiny probabilities keep their precision.
    """
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    if noise <= 0:
        stars = np.clip(np.rint(mean), 1, 5).astype(np.int64)
        return np.eye(5)[stars - 1]
    cuts = (np.arange(1.5, 5.0, 1.0)[None, :] - mean[:, None]) / noise  # (n, 4)
    lo = np.concatenate([np.full((mean.size, 1), -np.inf), cuts], axis=1)
    hi = np.concatenate([cuts, np.full((mean.size, 1), np.inf)], axis=1)
    upper = lo > 0  # the band lies right of the mean: 1 − Φ is the accurate side
    below = np.where(upper, normal_cdf(-lo) - normal_cdf(-hi), normal_cdf(hi) - normal_cdf(lo))
    probs = np.clip(below, 0.0, 1.0)
    return probs / probs.sum(axis=1, keepdims=True)


class ScriptedDecider(BaseDecider):
    """Test double: always takes slate position ``pick`` (or ``-1``), rates ``rating``, stays."""

    name = "scripted"

    def __init__(self, pick: int = 0, rating: float = 4.0, end_after: int | None = None) -> None:
        self.pick, self.rating, self.end_after = pick, rating, end_after

    def decide(self, ctx: DecisionContext) -> Decisions:
        n = ctx.users.shape[0]
        chose = self.pick >= 0
        ended = self.end_after is not None and ctx.step + 1 >= self.end_after
        return Decisions(
            chosen_pos=np.full(n, self.pick if chose else -1, dtype=np.int64),
            rating=np.full(n, self.rating if chose else np.nan, dtype=np.float32),
            ended_session=np.full(n, ended, dtype=bool),
        )

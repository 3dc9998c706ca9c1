"""Items: catalogs of new items (`Catalog`) and the live items of a world (`ItemStore`).

A `Catalog` is a struct of arrays with one row per item, synthetic (`synthetic_catalog`, and
`new_items_for_creators` for the items creators publish during a run) or built from data
(`simenv.data.movielens`). Every item has a non-negative topic profile (a row summing to 1), a
latent quality in [0, 1], a long-tailed popularity prior, a creator and the tick it was
published at. Titles and descriptions are short readable strings so that LLM users can be shown
a slate.

The `ItemStore` is the world's item arrays at full capacity: every item that can ever exist has
an id from the start; catalogs are added to it as they are published, items age and retire.

All randomness comes from a ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simenv.arrays import unit_rows_clipped

#: Words per built-in topic; the first ``n_topics`` names are used, ``topic-25``... beyond.
TOPIC_WORDS: dict[str, tuple[str, ...]] = {
    "comedy": ("jokes", "sitcom", "prank", "laughs", "parody", "roast", "blunders", "punchline"),
    "drama": ("family", "secrets", "betrayal", "reunion", "letters", "verdict", "promise", "exile"),
    "sci-fi": ("robots", "starship", "aliens", "time loop", "colony", "android", "warp", "orbit"),
    "horror": ("haunting", "cellar", "curse", "ghosts", "masks", "night", "ritual", "swamp"),
    "romance": ("love", "wedding", "first date", "letters", "summer", "heartbreak", "vows", "kiss"),
    "documentary": ("archive", "witnesses", "inquiry", "frontline", "origins", "record", "truth"),
    "cooking": ("recipes", "pasta", "baking", "spices", "kitchen", "street food", "soups", "bread"),
    "travel": ("road trip", "islands", "backpacking", "cities", "trains", "deserts", "harbours"),
    "music": ("guitar", "concert", "playlist", "jazz", "vinyl", "choir", "beats", "symphony"),
    "sports": ("football", "marathon", "finals", "tennis", "cycling", "comeback", "league"),
    "gaming": ("speedrun", "quests", "pixels", "boss fight", "esports", "mods", "arcade", "loot"),
    "news": ("headlines", "briefing", "bulletin", "report", "dispatch", "analysis", "update"),
    "politics": ("elections", "debate", "parliament", "campaign", "policy", "summit", "reform"),
    "science": ("physics", "lab", "experiments", "cells", "telescopes", "atoms", "evolution"),
    "technology": ("gadgets", "chips", "startups", "code", "smartphones", "cloud", "open source"),
    "history": ("empires", "battles", "dynasties", "ruins", "revolutions", "pharaohs", "castles"),
    "fashion": ("runway", "streetwear", "tailoring", "vintage", "fabrics", "sneakers", "couture"),
    "fitness": ("workouts", "yoga", "running", "strength", "stretching", "cardio", "recovery"),
    "finance": ("markets", "savings", "stocks", "budgets", "crypto", "pensions", "interest"),
    "nature": ("forests", "wildlife", "oceans", "birds", "mountains", "rivers", "seasons"),
    "art": ("painting", "sculpture", "galleries", "sketches", "murals", "portraits", "colour"),
    "education": ("lessons", "exams", "tutoring", "classrooms", "study tips", "lectures", "maths"),
    "animation": ("cartoons", "anime", "claymation", "sketches", "puppets", "heroes", "studios"),
    "crime": ("heists", "detectives", "alibis", "cold cases", "smugglers", "trials", "gangs"),
}

_GENERIC_NOUNS = ("stories", "guide", "notes", "moments", "ideas", "diaries", "picks", "tales")
_ADJECTIVES = (
    "Quiet", "Bright", "Hidden", "Golden", "Broken", "Endless", "Little", "Midnight", "Wild",
    "Last", "Secret", "Tiny", "Electric", "Lost", "Brave", "Strange", "Silver", "Late",
    "Perfect", "Honest",
)  # fmt: skip
_FORMATS = ("episode", "video", "story", "short", "feature", "piece", "show", "series")


def topic_names(n_topics: int) -> list[str]:
    """The first ``n_topics`` built-in topic names; generated names ``topic-25``... beyond."""
    if n_topics < 1:
        raise ValueError(f"n_topics must be >= 1, got {n_topics}")
    builtin = list(TOPIC_WORDS)
    return builtin[:n_topics] + [f"topic-{k + 1}" for k in range(len(builtin), n_topics)]


_default_topic_names = topic_names


def topic_words(name: str) -> tuple[str, ...]:
    """The word list of a topic (generated topics get ``"<name> <noun>"`` words)."""
    words = TOPIC_WORDS.get(name)
    if words is not None:
        return words
    return tuple(f"{name} {noun}" for noun in _GENERIC_NOUNS)


@dataclass
class Catalog:
    """Struct of arrays, one row per item."""

    features: np.ndarray  # (n, d) float32, non-negative topic profile rows summing to 1
    quality: np.ndarray  # (n,) float32 in [0, 1]
    popularity_prior: np.ndarray  # (n,) float32, long-tailed, sums to 1
    creator: np.ndarray  # (n,) int64
    publish_tick: np.ndarray  # (n,) int64, 0 for the initial catalog
    titles: list[str]
    descriptions: list[str]
    topic_names: list[str]
    mean_rating: np.ndarray  # (n,) float32 stars, nan if unknown
    creator_topics: np.ndarray | None = None  # (n_creators, d) float32 creator profiles, if known
    # (n, f) float32 latent factors learned from ratings (`simenv.factors`), if known
    latent: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = int(self.features.shape[0])
        if self.features.ndim != 2 or self.features.shape[1] != len(self.topic_names):
            raise ValueError(
                f"features must be (n, {len(self.topic_names)}), got {self.features.shape}"
            )
        for name in ("quality", "popularity_prior", "creator", "publish_tick", "mean_rating"):
            shape = getattr(self, name).shape
            if shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {shape}")
        if len(self.titles) != n or len(self.descriptions) != n:
            raise ValueError(f"titles and descriptions must have {n} entries")
        if self.latent is not None and (self.latent.ndim != 2 or self.latent.shape[0] != n):
            raise ValueError(f"latent must be ({n}, f), got {self.latent.shape}")

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def n_topics(self) -> int:
        return int(self.features.shape[1])

    @property
    def n_creators(self) -> int:
        """Number of creator ids in use (max id + 1, or the rows of ``creator_topics``)."""
        top = int(self.creator.max()) + 1 if len(self) else 0
        known = 0 if self.creator_topics is None else int(self.creator_topics.shape[0])
        return max(top, known)

    def dominant_topic(self) -> np.ndarray:
        """(n,) int64 index of each item's strongest topic."""
        return np.argmax(self.features, axis=1).astype(np.int64)

    def subset(self, idx: np.ndarray | Sequence[int]) -> Catalog:
        """Rows ``idx`` (ids are re-numbered 0..len-1); the popularity prior is renormalised."""
        idx = np.asarray(idx)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64)
        return Catalog(
            features=self.features[idx].copy(),
            quality=self.quality[idx].copy(),
            popularity_prior=_normalise(self.popularity_prior[idx]),
            creator=self.creator[idx].copy(),
            publish_tick=self.publish_tick[idx].copy(),
            titles=[self.titles[i] for i in idx],
            descriptions=[self.descriptions[i] for i in idx],
            topic_names=list(self.topic_names),
            mean_rating=self.mean_rating[idx].copy(),
            creator_topics=None if self.creator_topics is None else self.creator_topics.copy(),
            latent=None if self.latent is None else self.latent[idx].copy(),
        )

    def concat(self, other: Catalog) -> Catalog:
        """Append ``other``'s items (their ids follow this catalog's).

        Each part's prior is weighted by its number of items before renormalising, so the mean
        prior mass per item of either part is kept. ``creator_topics`` of ``other`` wins if set.
        """
        if list(other.topic_names) != list(self.topic_names):
            raise ValueError("cannot concatenate catalogs with different topic names")
        n_a, n_b = len(self), len(other)
        prior = np.concatenate(
            [self.popularity_prior.astype(np.float64) * n_a, other.popularity_prior * n_b]
        )
        creator_topics = other.creator_topics
        if creator_topics is None:
            creator_topics = self.creator_topics
        latent = _concat_latent(self, other)
        return Catalog(
            features=np.concatenate([self.features, other.features]).astype(np.float32),
            quality=np.concatenate([self.quality, other.quality]).astype(np.float32),
            popularity_prior=_normalise(prior),
            creator=np.concatenate([self.creator, other.creator]).astype(np.int64),
            publish_tick=np.concatenate([self.publish_tick, other.publish_tick]).astype(np.int64),
            titles=[*self.titles, *other.titles],
            descriptions=[*self.descriptions, *other.descriptions],
            topic_names=list(self.topic_names),
            mean_rating=np.concatenate([self.mean_rating, other.mean_rating]).astype(np.float32),
            creator_topics=creator_topics,
            latent=latent,
        )


def synthetic_catalog(
    n_items: int,
    n_topics: int,
    n_creators: int,
    rng: np.random.Generator,
    *,
    topic_concentration: float = 0.3,
    publish_tick: int = 0,
    creator_topics: np.ndarray | None = None,
    item_concentration: float = 3.0,
    quality_ab: tuple[float, float] = (2.0, 2.0),
    popularity_sigma: float = 1.5,
    productivity_sigma: float = 0.75,
) -> Catalog:
    """A synthetic catalog.

    Each creator has a topic profile drawn from ``Dirichlet(topic_concentration)`` (small → one
    or two dominant topics) unless ``creator_topics`` (n_creators, n_topics) is given. Creators
    publish a log-normally distributed share of the items; each item's profile is drawn near its
    creator's (``Dirichlet(item_concentration * creator_profile)``). Quality ~ Beta(quality_ab);
    the popularity prior is log-normal (``popularity_sigma``) tilted by quality, normalised to 1.
    """
    if n_items < 0 or n_creators < 1:
        raise ValueError(f"need n_items >= 0 and n_creators >= 1, got {n_items}, {n_creators}")
    names = topic_names(n_topics)
    if creator_topics is None:
        gammas = rng.standard_gamma(np.full((n_creators, n_topics), topic_concentration))
        creator_topics = _rows_to_simplex(gammas, rng)
    else:
        creator_topics = _check_creator_topics(creator_topics, n_creators, n_topics)
    productivity = rng.lognormal(0.0, productivity_sigma, size=n_creators)
    creator = rng.choice(n_creators, size=n_items, p=productivity / productivity.sum())
    return _make_items(
        creator.astype(np.int64),
        creator_topics,
        names,
        publish_tick,
        rng,
        item_concentration=item_concentration,
        quality_ab=quality_ab,
        popularity_sigma=popularity_sigma,
    )


def new_items_for_creators(
    creators: np.ndarray,
    creator_topics: np.ndarray,
    tick: int,
    rng: np.random.Generator,
    *,
    topic_names: list[str] | None = None,
    item_concentration: float = 3.0,
    quality_ab: tuple[float, float] = (2.0, 2.0),
    popularity_sigma: float = 1.5,
) -> Catalog:
    """One new item per entry of ``creators`` (creator ids), published at ``tick``.

    ``creator_topics`` (n_creators, d) are the creators' current profiles (the world may have
    adapted them to exposure); items are drawn near them as in `synthetic_catalog`. The returned
    catalog's ids start at 0: `Catalog.concat` it onto the live catalog.
    """
    creator_topics = np.asarray(creator_topics, dtype=np.float64)
    if creator_topics.ndim != 2:
        raise ValueError(f"creator_topics must be 2-D, got shape {creator_topics.shape}")
    n_creators, n_topics = creator_topics.shape
    creators = np.asarray(creators, dtype=np.int64).reshape(-1)
    if creators.size and (creators.min() < 0 or creators.max() >= n_creators):
        raise ValueError(f"creator ids must be in [0, {n_creators}), got {creators}")
    names = list(topic_names) if topic_names is not None else _default_topic_names(n_topics)
    if len(names) != n_topics:
        raise ValueError(f"{len(names)} topic names for {n_topics} topics")
    return _make_items(
        creators,
        _check_creator_topics(creator_topics, n_creators, n_topics),
        names,
        tick,
        rng,
        item_concentration=item_concentration,
        quality_ab=quality_ab,
        popularity_sigma=popularity_sigma,
    )


class ItemStore:
    """The live items of a world: arrays sized to ``capacity``, filled as items are published.

    Policies are told the capacity once (`PlatformSpec.n_items`), so every item that can ever
    exist has an id from the start; an item becomes ``available`` when it is published and
    stops being available when it retires. The store starts empty: the world adds the initial
    catalog like any later publication.
    """

    def __init__(self, capacity: int, topic_names: Sequence[str], n_latent: int = 0) -> None:
        d = len(topic_names)
        self.capacity = capacity
        self.topic_names = list(topic_names)
        self.features = np.zeros((capacity, d), dtype=np.float32)
        self.unit = np.zeros((capacity, d), dtype=np.float32)  # features of unit length
        self.quality = np.zeros(capacity, dtype=np.float32)
        # latent factors of the items that have them (learned from ratings), zeros elsewhere
        self.latent = np.zeros((capacity, n_latent), dtype=np.float32)
        self.prior = np.zeros(capacity, dtype=np.float32)
        self.creator = np.zeros(capacity, dtype=np.int64)
        self.publish_tick = np.full(capacity, -1, dtype=np.int64)
        self.available = np.zeros(capacity, dtype=bool)
        self.exposure_total = np.zeros(capacity, dtype=np.int64)
        self.consumption_total = np.zeros(capacity, dtype=np.int64)
        self.titles: list[str] = []
        self.descriptions: list[str] = []
        self.size = 0
        self.dropped = 0  # publications that did not fit into the capacity
        self._age = np.zeros(0, dtype=np.int32)
        self._age_key: tuple[int, int] = (-1, -1)
        self._unit_clipped = np.zeros((0, d), dtype=np.float32)
        self._unit_size = -1

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def add(self, new: Catalog) -> np.ndarray:
        """Publish ``new`` items; returns their ids (fewer if the capacity runs out)."""
        room = self.capacity - self.size
        take = min(room, len(new))
        self.dropped += len(new) - take
        ids = np.arange(self.size, self.size + take)
        self.features[ids] = new.features[:take]
        norms = np.linalg.norm(new.features[:take], axis=1, keepdims=True)
        self.unit[ids] = new.features[:take] / np.maximum(norms, 1e-12)
        self.quality[ids] = new.quality[:take]
        if new.latent is not None and self.latent.shape[1]:
            self.latent[ids] = new.latent[:take]
        self.prior[ids] = new.popularity_prior[:take]
        self.creator[ids] = new.creator[:take]
        self.publish_tick[ids] = new.publish_tick[:take]
        self.available[ids] = True
        self.titles.extend(new.titles[:take])
        self.descriptions.extend(new.descriptions[:take])
        self.size += take
        return ids

    def record(self, slates: np.ndarray, consumed: np.ndarray) -> None:
        """Add one impression per entry of ``slates`` and one consumption per ``consumed`` id."""
        shown, consumed = np.asarray(slates).ravel(), np.asarray(consumed)
        if np.ndim(slates) == 2 and len(slates) == 1 and consumed.size <= 1:
            # one slate (a single env's step): its items are distinct, so a fancy-index
            # increment counts as `np.add.at` does
            self.exposure_total[shown] += 1
            if consumed.size:
                item = int(consumed[0])
                self.consumption_total[item] += 1
                if self._changed is not None:
                    self._changed.append(item)
            return
        if 16 * shown.size < self.capacity:  # a few slates: touch their items only
            np.add.at(self.exposure_total, shown, 1)
            if consumed.size:
                np.add.at(self.consumption_total, consumed, 1)
                if self._changed is not None:  # `popularity_signal` updates these only
                    self._changed.extend(np.asarray(consumed).tolist())
            return
        self.exposure_total += np.bincount(shown, minlength=self.capacity)
        self.consumption_total += np.bincount(consumed, minlength=self.capacity)
        if consumed.size:
            self._changed = None  # many: `popularity_signal` computes everything again

    def unit_clipped(self) -> np.ndarray:
        """(capacity, d) `unit_rows_clipped` of every item's features (what observations show),
        read-only, computed once per catalog size (features never change once published)."""
        if self._unit_clipped.shape[0] != self.capacity or self._unit_size != self.size:
            unit = unit_rows_clipped(self.features)
            unit.flags.writeable = False
            self._unit_clipped, self._unit_size = unit, self.size
        return self._unit_clipped

    def age(self, tick: int) -> np.ndarray:
        """(capacity,) int32 age of every item at ``tick`` (-1: not published yet); read-only,
        computed once per tick and catalog size (a session env asks at every step)."""
        key = (tick, self.size)
        if self._age_key != key:
            age = np.where(self.publish_tick >= 0, tick - self.publish_tick, -1).astype(np.int32)
            age.flags.writeable = False
            self._age, self._age_key = age, key
        return self._age

    def retire_older_than(self, tick: int, max_age: int) -> int:
        old = self.available & (tick - self.publish_tick > max_age)
        self.available[old] = False
        return int(old.sum())

    #: `popularity_signal`'s last answer, what it was computed from (population and catalog
    #: size), its unscaled log counts and their maximum, and the items consumed since (None:
    #: unknown, compute everything). Class defaults, so that a store unpickled from an older
    #: checkpoint has them too.
    _signal_key: tuple[int, int] | None = None
    _signal: np.ndarray = np.zeros(0, dtype=np.float32)
    _log_counts: np.ndarray = np.zeros(0, dtype=np.float64)
    _top: float = 0.0
    _changed: list[int] | None = None

    def popularity_signal(self, n_users: int) -> np.ndarray:
        """Observed popularity in [0, 1]: log consumption plus a prior pseudo-count per item.

        The prior stands for word of mouth from before the simulation (``n_users`` consumptions
        spread by the catalog's popularity prior), so the crowd signal exists at tick 0.
        Read-only; a new array only after a consumption or a publication (a session env asks at
        every step, and most of its slates are not consumed). After a few consumptions only the
        consumed items' entries are computed again (the same values), unless one of them
        becomes the new maximum, which rescales every entry: the cost of a step does not grow
        with the catalog.
        """
        # counts only grow (`record`) and priors come with new items (`add`)
        key = (n_users, self.size)
        if key != self._signal_key or self._changed is None:
            counts = self.consumption_total + self.prior * n_users
            self._log_counts = np.log1p(counts)
            self._top = float(self._log_counts.max())
            self._publish_signal(self._log_counts)
            self._signal_key, self._changed = key, []
        elif len(self._changed) == 1:  # one consumption (a single env's step): scalars
            self._update_signal_one(self._changed.pop(), n_users)
        elif self._changed:
            changed = self._changed
            ids = np.array(changed if len(changed) == 1 else sorted(set(changed)), dtype=np.int64)
            self._changed = []
            log = np.log1p(self.consumption_total[ids] + self.prior[ids] * n_users)
            self._log_counts[ids] = log
            if float(log.max()) > self._top:  # a new maximum: every entry scales anew
                self._top = float(log.max())
                self._publish_signal(self._log_counts)
            else:
                out = self._signal.copy()
                out[ids] = (log / self._top if self._top > 0 else log).astype(np.float32)
                out.flags.writeable = False
                self._signal = out
        return self._signal

    def _update_signal_one(self, i: int, n_users: int) -> None:
        """`popularity_signal`'s update after one consumption of item ``i``: the same float64
        ufunc on a numpy scalar instead of a (1,) array, the same float32 rounding."""
        log = np.log1p(self.consumption_total[i] + self.prior[i] * n_users)
        self._log_counts[i] = log
        if float(log) > self._top:  # a new maximum: every entry scales anew
            self._top = float(log)
            self._publish_signal(self._log_counts)
            return
        out = self._signal.copy()
        out[i] = np.float32(log / self._top if self._top > 0 else log)
        out.flags.writeable = False
        self._signal = out

    def _publish_signal(self, log_counts: np.ndarray) -> None:
        top = self._top
        out = (log_counts / top if top > 0 else log_counts).astype(np.float32)
        out.flags.writeable = False
        self._signal = out


# --------------------------------------------------------------------------------------------
# helpers


def _concat_latent(a: Catalog, b: Catalog) -> np.ndarray | None:
    """The latent factors of ``a`` then ``b`` (zeros for the part without), or None."""
    known = [c.latent for c in (a, b) if c.latent is not None]
    if not known:
        return None
    f = known[0].shape[1]
    parts = [c.latent if c.latent is not None else np.zeros((len(c), f)) for c in (a, b)]
    return np.concatenate(parts).astype(np.float32)


def _normalise(w: np.ndarray) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    total = w.sum()
    if w.size == 0:
        return np.zeros(0, dtype=np.float32)
    if not np.isfinite(total) or total <= 0:
        return np.full(w.shape, 1.0 / w.size, dtype=np.float32)
    return (w / total).astype(np.float32)


def _check_creator_topics(ct: np.ndarray, n_creators: int, n_topics: int) -> np.ndarray:
    ct = np.asarray(ct, dtype=np.float64)
    if ct.shape != (n_creators, n_topics):
        raise ValueError(f"creator_topics must be ({n_creators}, {n_topics}), got {ct.shape}")
    if (ct < 0).any() or not np.isfinite(ct).all():
        raise ValueError("creator_topics must be finite and non-negative")
    sums = ct.sum(axis=1, keepdims=True)
    return np.where(sums > 0, ct / np.where(sums > 0, sums, 1.0), 1.0 / n_topics)


def _rows_to_simplex(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Normalise rows; a row that underflowed to all zeros becomes a random one-hot."""
    sums = x.sum(axis=1, keepdims=True)
    bad = ~(sums[:, 0] > 0)
    out = x / np.where(sums > 0, sums, 1.0)
    if bad.any():
        out[bad] = 0.0
        out[np.flatnonzero(bad), rng.integers(0, x.shape[1], size=int(bad.sum()))] = 1.0
    return out


def _make_items(
    creator: np.ndarray,
    creator_topics: np.ndarray,
    names: list[str],
    tick: int,
    rng: np.random.Generator,
    *,
    item_concentration: float,
    quality_ab: tuple[float, float],
    popularity_sigma: float,
) -> Catalog:
    n = int(creator.shape[0])
    d = len(names)
    # Dirichlet with a per-row concentration, through normalised gammas.
    alpha = np.maximum(item_concentration * creator_topics[creator], 1e-3)
    g = rng.standard_gamma(alpha) if n else np.zeros((0, d))
    sums = g.sum(axis=1, keepdims=True)
    bad = ~(sums[:, 0] > 0)
    features = g / np.where(sums > 0, sums, 1.0)
    if bad.any():  # all gammas underflowed: fall back to the creator's main topic
        features[bad] = 0.0
        features[np.flatnonzero(bad), np.argmax(alpha[bad], axis=1)] = 1.0

    quality = rng.beta(quality_ab[0], quality_ab[1], size=n)
    log_pop = popularity_sigma * rng.standard_normal(n) + 1.0 * (quality - 0.5)
    prior = _normalise(np.exp(log_pop - (log_pop.max() if n else 0.0)))

    titles, descriptions = _texts(features, names, rng)
    return Catalog(
        features=features.astype(np.float32),
        quality=quality.astype(np.float32),
        popularity_prior=prior,
        creator=creator.astype(np.int64),
        publish_tick=np.full(n, tick, dtype=np.int64),
        titles=titles,
        descriptions=descriptions,
        topic_names=list(names),
        mean_rating=np.full(n, np.nan, dtype=np.float32),
        creator_topics=creator_topics.astype(np.float32),
    )


def _texts(
    features: np.ndarray, names: list[str], rng: np.random.Generator
) -> tuple[list[str], list[str]]:
    """Short titles and one-sentence descriptions from each item's two dominant topics."""
    n, d = features.shape
    if n == 0:
        return [], []
    order = np.argsort(-features, axis=1, kind="stable")
    first = order[:, 0]
    second = order[:, 1] if d > 1 else order[:, 0]
    has_second = (features[np.arange(n), second] >= 0.2) & (second != first)
    words = [topic_words(name) for name in names]
    # All random draws are vectorised; words are picked by index modulo each list's length.
    r = rng.integers(0, 1 << 30, size=(n, 5))
    titles: list[str] = []
    descriptions: list[str] = []
    for i in range(n):
        t1, t2 = int(first[i]), int(second[i])
        w1, w2 = words[t1], words[t2]
        adj = _ADJECTIVES[r[i, 0] % len(_ADJECTIVES)]
        noun = w1[r[i, 1] % len(w1)]
        fmt = _FORMATS[r[i, 4] % len(_FORMATS)]
        titles.append(f"{adj} {noun.title()}")
        if has_second[i]:
            other = w2[r[i, 2] % len(w2)]
            descriptions.append(
                f"A {adj.lower()} {names[t1]} {fmt} about {noun}, with a touch of "
                f"{names[t2]} and {other}."
            )
        else:
            other = w1[r[i, 3] % len(w1)]
            if other == noun:
                other = w1[(r[i, 3] + 1) % len(w1)]
            descriptions.append(f"A {adj.lower()} {names[t1]} {fmt} about {noun} and {other}.")
    return titles, descriptions

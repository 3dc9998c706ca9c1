"""Creators: who publishes what, and how they react to the exposure they get.

`CreatorState` holds one row per creator (topic profile, active, idle ticks) and what the
creators' items got in the last tick. Two phases of the tick live here:

- `publish` (items phase): each active creator publishes Poisson(``publish_rate``) items drawn
  near its topic profile, except the creators *driven* from outside (`CreatorState.drive`, e.g.
  the creator agents of ``recloop/ecosystem``), which publish what an `Order` says (`fulfil`);
- `react` (end of the tick, before measuring): idle counters, quitting after ``leave_after``
  ticks without exposure, and topic adaptation toward the exposure-weighted topic trend of the
  tick (the supply-side feedback loop), from what `record_tick` noted.

Nothing here touches the item store: the world adds the returned `Catalog` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from scenarios.schema import CreatorsConfig
from simenv.catalog import Catalog, new_items_for_creators

#: Share of the way a full quality effort moves an ordered item's quality toward 1.
QUALITY_GAIN = 0.8


@dataclass(frozen=True)
class Order:
    """What one driven creator publishes in the next items phase.

    ``count`` items drawn near ``topics`` (d,) (normalised by `new_items_for_creators`); a
    quality ``effort`` e in [0, 1] turns each item's quality q into ``q + e·(1 − q)·QUALITY_GAIN``.
    A creator who quit publishes nothing.
    """

    creator: int
    topics: np.ndarray
    count: int
    effort: float = 0.0


@dataclass
class CreatorState:
    """Per-creator arrays (``C`` creators, ``d`` topics)."""

    topics: np.ndarray  # (C, d) float32 current topic profiles
    active: np.ndarray  # (C,) bool, False once a creator quit
    idle_ticks: np.ndarray  # (C,) int64 ticks in a row without exposure
    driven: np.ndarray  # (C,) bool, publications set by `Order`s instead of Poisson draws
    published: np.ndarray  # (C,) int64 items added in the last items phase
    exposure: np.ndarray  # (C,) float64 impressions of each creator's items in the last tick
    consumption: np.ndarray  # (C,) float64 consumptions of each creator's items in the last tick
    trend: np.ndarray | None = field(default=None)  # (d,) exposure-weighted topics, last tick

    @classmethod
    def start(cls, topics: np.ndarray) -> CreatorState:
        """Every creator active, scripted, idle for 0 ticks, with the given profiles."""
        n = int(topics.shape[0])
        return cls(
            topics=np.asarray(topics, dtype=np.float32),
            active=np.ones(n, dtype=bool),
            idle_ticks=np.zeros(n, dtype=np.int64),
            driven=np.zeros(n, dtype=bool),
            published=np.zeros(n, dtype=np.int64),
            exposure=np.zeros(n),
            consumption=np.zeros(n),
        )

    @property
    def n(self) -> int:
        return int(self.active.size)

    def drive(self, creators: np.ndarray | Sequence[int]) -> None:
        """``creators`` publish only what `Order`s tell them from now on."""
        self.driven[np.asarray(creators, dtype=np.int64)] = True


# -------------------------------------------------------------------------- items phase


def publish(
    state: CreatorState,
    rate: float,
    tick: int,
    rng: np.random.Generator,
    topic_names: list[str],
) -> Catalog | None:
    """New items of the scripted creators: Poisson(``rate``) each for the active, undriven
    ones, drawn near their current topic profiles; None if nobody publishes."""
    counts = rng.poisson(rate, size=state.n)
    counts[~state.active | state.driven] = 0
    who = np.repeat(np.arange(counts.size), counts)
    if who.size == 0:
        return None
    return new_items_for_creators(who, state.topics, tick, rng, topic_names=topic_names)


def fulfil(
    state: CreatorState,
    order: Order,
    tick: int,
    rng: np.random.Generator,
    topic_names: list[str],
) -> Catalog | None:
    """The items of one `Order`, or None when it asks for none or its creator quit.

    The creator's profile becomes the ordered topics (what it publishes now)."""
    c = int(order.creator)
    if order.count <= 0 or not state.active[c]:
        return None
    state.topics[c] = order.topics
    new = new_items_for_creators(
        np.zeros(order.count, dtype=np.int64),
        np.asarray(order.topics)[None, :],
        tick,
        rng,
        topic_names=topic_names,
    )
    new.creator[:] = c
    effort = np.float64(order.effort)  # q + e(1 - q)g is computed in float64, then stored
    new.quality[:] = new.quality + effort * (1.0 - new.quality) * QUALITY_GAIN
    return new


# -------------------------------------------------------------------------- end of the tick


def record_tick(
    state: CreatorState,
    item_creator: np.ndarray,
    item_features: np.ndarray,
    exposures: np.ndarray,
    consumptions: np.ndarray,
) -> None:
    """Note what each creator's items got this tick from per-item impressions and
    consumptions, and the exposure-weighted topic trend (None when nothing was shown)."""
    state.exposure = creator_exposure(item_creator, exposures, state.n)
    state.consumption = creator_exposure(item_creator, consumptions, state.n)
    state.trend = exposure_trend(item_features, exposures)


def react(state: CreatorState, cfg: CreatorsConfig) -> None:
    """Creators react to the tick `record_tick` noted: a creator without exposure counts an
    idle tick and quits after ``leave_after`` of them; profiles move a share ``adapt`` of the
    way toward the trend. Nothing happens unless ``creators.enabled``."""
    if not cfg.enabled:
        return
    state.idle_ticks = np.where(state.exposure > 0, 0, state.idle_ticks + 1)
    if cfg.leave_after is not None:
        state.active &= state.idle_ticks < cfg.leave_after
    state.topics = adapt_topics(state.topics, state.trend, cfg.adapt)


def exposure_trend(item_features: np.ndarray, exposures: np.ndarray) -> np.ndarray | None:
    """Topic profile of what the platform exposed (exposure-weighted mean), None if nothing."""
    total = exposures.sum()
    if total <= 0:
        return None
    trend = exposures.astype(np.float64) @ item_features / total
    return trend.astype(np.float32)


def adapt_topics(topics: np.ndarray, trend: np.ndarray | None, rate: float) -> np.ndarray:
    """Move each creator's topic profile a share ``rate`` of the way toward ``trend``."""
    if trend is None or rate <= 0:
        return topics
    moved = (1.0 - rate) * topics + rate * trend[None, :]
    return (moved / moved.sum(axis=1, keepdims=True)).astype(np.float32)


def creator_exposure(creator_of_item: np.ndarray, exposures: np.ndarray, n: int) -> np.ndarray:
    """Impressions each of ``n`` creators got, from per-item impressions."""
    return np.bincount(creator_of_item, weights=exposures, minlength=n)[:n]

"""Item and creator agents, and how creators react to the exposure they get.

Items are published by creators (at tick 0 or later, cold start), age, and may retire. Creators
publish at a rate, may drift the topics of their next items toward what the platform exposed
(supply-side feedback loop), and quit after a run of ticks without exposure.
"""

from __future__ import annotations

from typing import Any

import mesa
import numpy as np


class ItemAgent(mesa.Agent):
    def __init__(self, model: mesa.Model, item_id: int) -> None:
        super().__init__(model)
        self.item_id = item_id

    @property
    def world(self) -> Any:
        return self.model

    @property
    def title(self) -> str:
        return str(self.world.items.titles[self.item_id])

    @property
    def creator(self) -> int:
        return int(self.world.items.creator[self.item_id])

    @property
    def age(self) -> int:
        return int(self.world.tick - self.world.items.publish_tick[self.item_id])


class CreatorAgent(mesa.Agent):
    def __init__(self, model: mesa.Model, creator_id: int) -> None:
        super().__init__(model)
        self.creator_id = creator_id

    @property
    def active(self) -> bool:
        return bool(self.model.creators.active[self.creator_id])  # type: ignore[attr-defined]


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

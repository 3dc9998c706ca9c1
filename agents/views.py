"""Mesa agents: per-agent views on a world's arrays.

The hot state of users, items and creators lives in struct-of-arrays (`simenv.users.UserState`,
`simenv.catalog.ItemStore`, `simenv.creators.CreatorState`) so that a tick is vectorised. These
agents hold only their id and read those arrays, for inspection, interviews and mesa tooling
(AgentSet, DataCollector). The world creates them when users exist and items are published;
nothing else has to.
"""

from __future__ import annotations

from typing import Any

import mesa
import numpy as np

from agents.memory import MemoryRecord


class UserAgent(mesa.Agent):
    def __init__(self, model: mesa.Model, user_id: int) -> None:
        super().__init__(model)
        self.user_id = user_id

    @property
    def view_id(self) -> int:
        """The id this agent views (its constructor's argument)."""
        return self.user_id

    @property
    def world(self) -> Any:
        return self.model

    @property
    def present(self) -> bool:
        return bool(self.world.users.present[self.user_id])

    @property
    def taste(self) -> np.ndarray:
        return np.asarray(self.world.users.taste[self.user_id])

    def emotion(self) -> dict[str, float]:
        e = self.world.users.emotion
        u = self.user_id
        return {
            "satisfaction": float(e.satisfaction[u]),
            "fatigue": float(e.fatigue[u]),
            "boredom": float(e.boredom[u]),
            "curiosity": float(e.curiosity[u]),
        }

    def feeling(self) -> str:
        return str(self.world.users.emotion.describe(self.user_id))

    def memories(self) -> list[MemoryRecord]:
        return list(self.world.users.memory.records(self.user_id))


class ItemAgent(mesa.Agent):
    def __init__(self, model: mesa.Model, item_id: int) -> None:
        super().__init__(model)
        self.item_id = item_id

    @property
    def view_id(self) -> int:
        """The id this agent views (its constructor's argument)."""
        return self.item_id

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
    def view_id(self) -> int:
        """The id this agent views (its constructor's argument)."""
        return self.creator_id

    @property
    def world(self) -> Any:
        return self.model

    @property
    def active(self) -> bool:
        return bool(self.world.creators.active[self.creator_id])

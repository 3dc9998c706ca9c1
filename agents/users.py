"""User agents: thin mesa agents over the world's per-user arrays.

The hot state of a user (taste, emotion, memory, recent consumption) lives in the world's
struct-of-arrays so that a tick is vectorised; a `UserAgent` is the per-user view of those arrays,
for inspection, interviews and mesa tooling (AgentSet, DataCollector).
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
    def world(self) -> Any:
        return self.model

    @property
    def present(self) -> bool:
        return bool(self.world.present[self.user_id])

    @property
    def taste(self) -> np.ndarray:
        return np.asarray(self.world.taste[self.user_id])

    def emotion(self) -> dict[str, float]:
        e = self.world.emotion
        u = self.user_id
        return {
            "satisfaction": float(e.satisfaction[u]),
            "fatigue": float(e.fatigue[u]),
            "boredom": float(e.boredom[u]),
            "curiosity": float(e.curiosity[u]),
        }

    def feeling(self) -> str:
        return str(self.world.emotion.describe(self.user_id))

    def memories(self) -> list[MemoryRecord]:
        return list(self.world.memory.records(self.user_id))

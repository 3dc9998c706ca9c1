"""The interaction log: one row per impression (user, slate position, item) of a run."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from policies.base import Feedback


class InteractionLog:
    #: Columns and their dtypes (an empty log has the same columns and dtypes).
    DTYPES: ClassVar[dict[str, type]] = {
        "tick": np.int64,
        "step": np.int16,
        "user": np.int32,
        "position": np.int16,
        "item": np.int32,
        "clicked": np.bool_,
        "rating": np.float32,
        "ended_session": np.bool_,
    }
    COLUMNS = tuple(DTYPES)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._chunks: list[dict[str, np.ndarray]] = []

    def append(self, feedback: Feedback, step: int) -> None:
        if not self.enabled or feedback.users.size == 0:
            return
        n, k = feedback.slates.shape
        position = np.tile(np.arange(k, dtype=np.int16), n)
        clicked = position == np.repeat(feedback.chosen_pos, k)
        rating = np.where(clicked, np.repeat(feedback.rating, k), np.nan).astype(np.float32)
        self._chunks.append(
            {
                "tick": np.full(n * k, feedback.tick, dtype=np.int64),  # as in metrics.parquet
                "step": np.full(n * k, step, dtype=np.int16),
                "user": np.repeat(feedback.users, k).astype(np.int32),
                "position": position,
                "item": feedback.slates.ravel().astype(np.int32),
                "clicked": clicked,
                "rating": rating,
                "ended_session": np.repeat(feedback.ended_session, k),
            }
        )

    def __len__(self) -> int:
        return sum(len(c["tick"]) for c in self._chunks)

    def to_frame(self) -> pd.DataFrame:
        if not self._chunks:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in self.DTYPES.items()})
        return pd.DataFrame(
            {c: np.concatenate([chunk[c] for chunk in self._chunks]) for c in self.COLUMNS}
        )

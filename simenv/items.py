"""The live catalog: item arrays sized to the catalog's capacity, filled as creators publish.

Policies are told the capacity once (`PlatformSpec.n_items`), so every item that can ever exist
has an id from the start; an item becomes ``available`` when it is published and stops being
available when it retires.
"""

from __future__ import annotations

import numpy as np

from simenv.catalog import Catalog


class ItemStore:
    def __init__(self, catalog: Catalog, capacity: int) -> None:
        n, d = catalog.features.shape
        if capacity < n:
            raise ValueError(f"capacity {capacity} is smaller than the catalog ({n} items)")
        self.capacity = capacity
        self.topic_names = list(catalog.topic_names)
        self.features = np.zeros((capacity, d), dtype=np.float32)
        self.unit = np.zeros((capacity, d), dtype=np.float32)  # features of unit length
        self.quality = np.zeros(capacity, dtype=np.float32)
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
        self.add(catalog)

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
        self.prior[ids] = new.popularity_prior[:take]
        self.creator[ids] = new.creator[:take]
        self.publish_tick[ids] = new.publish_tick[:take]
        self.available[ids] = True
        self.titles.extend(new.titles[:take])
        self.descriptions.extend(new.descriptions[:take])
        self.size += take
        return ids

    def age(self, tick: int) -> np.ndarray:
        return np.where(self.publish_tick >= 0, tick - self.publish_tick, -1).astype(np.int32)

    def retire_older_than(self, tick: int, max_age: int) -> int:
        old = self.available & (tick - self.publish_tick > max_age)
        self.available[old] = False
        return int(old.sum())

    def popularity_signal(self, n_users: int) -> np.ndarray:
        """Observed popularity in [0, 1]: log consumption plus a prior pseudo-count per item.

        The prior stands for word of mouth from before the simulation (``n_users`` consumptions
        spread by the catalog's popularity prior), so the crowd signal exists at tick 0.
        """
        counts = self.consumption_total + self.prior * n_users
        signal = np.log1p(counts)
        top = signal.max()
        return (signal / top if top > 0 else signal).astype(np.float32)

"""One seed, one tree of generators. Nothing in recloop uses global random state.

Each named stream is a child of the run's `numpy.random.SeedSequence`, so adding draws to one
part of the world (say, the policy) never shifts the draws of another (the population), and
two policies compared under the same seed face the same users and catalog.
"""

from __future__ import annotations

import numpy as np

STREAMS = (
    "mesa",
    "population",
    "catalog",
    "graph",
    "activation",
    "decider",
    "policy",
    "creators",
    "social",
    "metrics",
    "env",
)


class RngTree:
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)
        children = np.random.SeedSequence(self.seed).spawn(len(STREAMS))
        self._gens = {
            name: np.random.default_rng(child)
            for name, child in zip(STREAMS, children, strict=True)
        }

    def __getitem__(self, name: str) -> np.random.Generator:
        try:
            return self._gens[name]
        except KeyError:
            raise KeyError(f"no random stream '{name}'; streams: {', '.join(STREAMS)}") from None

    def int_seed(self, name: str) -> int:
        """A plain int for libraries that want one (networkx), drawn from stream ``name``."""
        return int(self[name].integers(2**31 - 1))

"""`SlatePolicy`, the base class of the built-in policies, and the checks of their parameters.

A subclass says how good items are; `SlatePolicy.rank_global`, `rank_personal` and
`rank_sampled` turn that into slates with the selection engine (:mod:`policies.selection`).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from policies.base import Feedback, PlatformSpec, RecommendRequest
from policies.selection import (
    ScoreFn,
    TieKeys,
    available_ids,
    recent_of,
    sample_distinct,
    top_global,
    top_personal,
)


class SlatePolicy:
    """Base class of the built-in policies.

    Subclasses implement :meth:`rank` (usually with :meth:`rank_global`,
    :meth:`rank_personal` or :meth:`rank_sampled`), :meth:`_init_state` (allocate learnt state
    once ``self.spec`` and ``self.rng`` exist) and :meth:`_learn` (called by :meth:`update`
    for non-empty feedback). ``recommend(request)`` is
    ``rank(request, request.k)``. Constructor arguments are stored as same-named attributes,
    which is what :meth:`get_params` reports.
    """

    name: str = "base"
    #: How ties are broken: ``"random"`` (the policy's generator) or ``"id"`` (lowest id first).
    tie_break: str = "random"

    def __init__(self) -> None:
        self._spec: PlatformSpec | None = None
        self._rng: np.random.Generator | None = None

    # -- protocol ------------------------------------------------------------------------

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        """Forget everything learnt and allocate state for ``spec``; ``rng`` becomes the
        policy's only source of randomness."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._spec = spec
        self._rng = rng
        self._init_state()

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        """(n, k) int64 distinct available item ids per row."""
        _ = self.spec  # a clear error before reset
        return self.rank(request, request.k)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        """(request.n, n) int64: the policy's best ``n`` distinct available items per row,
        best first (``recent`` items last, only if needed)."""
        raise NotImplementedError

    def update(self, feedback: Feedback) -> None:
        """Learn from the outcome of served slates (a batch with no rows is a no-op)."""
        _ = self.spec
        if np.asarray(feedback.users).size:
            self._learn(feedback)

    def _learn(self, feedback: Feedback) -> None:
        """Learn from a non-empty feedback batch (the default learns nothing)."""

    # -- helpers for subclasses ----------------------------------------------------------

    @property
    def spec(self) -> PlatformSpec:
        if self._spec is None:
            raise RuntimeError(f"policy {self.name!r}: call reset(spec, rng) before using it")
        return self._spec

    @property
    def rng(self) -> np.random.Generator:
        if self._rng is None:
            raise RuntimeError(f"policy {self.name!r}: call reset(spec, rng) before using it")
        return self._rng

    def _init_state(self) -> None:
        """Allocate learnt state (called by :meth:`reset`)."""

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments of this policy (for logging a run's configuration)."""
        sig = inspect.signature(type(self))
        return {p: getattr(self, p) for p in sig.parameters if hasattr(self, p)}

    def _ties(self, m: int, n_rows: int) -> TieKeys:
        return TieKeys(m, n_rows, self.tie_break, self.rng)

    def rank_global(self, request: RecommendRequest, n: int, scores: np.ndarray) -> np.ndarray:
        """Rank by one (n_items,) score vector shared by all users."""
        avail = available_ids(request.available)
        recent = recent_of(request)
        return top_global(scores, avail, recent, n, self._ties(avail.size, request.n))

    def rank_personal(
        self,
        request: RecommendRequest,
        n: int,
        score_fn: ScoreFn,
        cold: np.ndarray | None = None,
        cold_scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Rank by per-user scores ``score_fn(rows, item_ids)``, computed chunk by chunk.

        Rows where the (n,) bool ``cold`` is true (users the policy knows nothing about) are
        ranked by the user-independent (n_items,) ``cold_scores`` instead, at the cost of one
        global ranking.
        """
        avail = available_ids(request.available)
        recent = recent_of(request)
        ties = self._ties(avail.size, request.n)
        m = request.available.size
        if cold is None or cold_scores is None or not np.any(cold):
            return top_personal(score_fn, avail, recent, n, ties, m)
        out = np.empty((request.n, n), dtype=np.int64)
        warm, cold_rows = np.flatnonzero(~cold), np.flatnonzero(cold)
        out[warm] = top_personal(score_fn, avail, recent, n, ties, m, rows=warm)
        out[cold_rows] = top_global(
            cold_scores, avail, recent[cold_rows], n, ties.subset(cold_rows)
        )
        return out

    def rank_sampled(
        self, request: RecommendRequest, n: int, weights: np.ndarray | None
    ) -> np.ndarray:
        """Sample ``n`` distinct items per row ∝ ``weights`` (n_items,) (uniform if None)."""
        avail = available_ids(request.available)
        recent = recent_of(request)
        w = None if weights is None else np.asarray(weights)[avail]
        return sample_distinct(w, avail, recent, n, self.rng)


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ``ValueError`` naming the parameter."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_range(name: str, value: float, low: float, high: float = np.inf) -> float:
    """``float(value)`` if ``low <= value <= high``, else a ``ValueError`` naming it."""
    v = float(value)
    if not low <= v <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value!r}")
    return v

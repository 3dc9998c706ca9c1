"""`SlatePolicy`, the base class of the built-in policies, and the checks of their parameters.

A subclass says how good items are; `SlatePolicy.rank_global`, `rank_personal` and
`rank_sampled` turn that into slates with the selection engine (:mod:`policies.selection`).

`SlatePolicy` also owns *when* a policy learns. By default it learns from every slate's
feedback at once (online). The learning policies expose two parameters (`TRAINING_PARAMS`):
``retrain_every=K`` keeps the feedback and learns it in one go every K ticks (the model stays
fixed in between: periodic retraining on the logged interactions), and ``train_ticks=N``
learns only from the feedback of the first N ticks, then freezes the model.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

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
    #: True for an oracle: the world hands it the users' true utilities in
    #: ``RecommendRequest.true_utility``. Such a policy is not deployable (no platform has
    #: them): `recloop list` says so and environments refuse it (`check_deployable`).
    needs_true_utilities: ClassVar[bool] = False

    def __init__(self, *, retrain_every: int = 0, train_ticks: int | None = None) -> None:
        self._spec: PlatformSpec | None = None
        self._rng: np.random.Generator | None = None
        self.retrain_every = check_count("retrain_every", retrain_every, 0)
        self.train_ticks = None if train_ticks is None else check_count("train_ticks", train_ticks)
        self._kept_feedback: list[Feedback] = []

    # -- protocol ------------------------------------------------------------------------

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        """Forget everything learnt and allocate state for ``spec``; ``rng`` becomes the
        policy's only source of randomness."""
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        self._spec = spec
        self._rng = rng
        self._kept_feedback = []
        self._init_state()

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        """(n, k) int64 distinct available item ids per row (after any retraining due at the
        request's tick: `sync`)."""
        _ = self.spec  # a clear error before reset
        self.sync(request.tick)
        return self.rank(request, request.k)

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        """(request.n, n) int64: the policy's best ``n`` distinct available items per row,
        best first (``recent`` items last, only if needed)."""
        raise NotImplementedError

    def update(self, feedback: Feedback) -> None:
        """Learn from the outcome of served slates (a batch with no rows is a no-op): at once
        by default, at the next retraining with ``retrain_every`` > 0, never for feedback of a
        tick at or after ``train_ticks``."""
        _ = self.spec
        if not np.asarray(feedback.users).size:
            return
        if self.train_ticks is not None and feedback.tick >= self.train_ticks:
            return  # the model is frozen
        if self.retrain_every == 0:
            self._learn(feedback)
        else:
            self._kept_feedback.append(feedback)

    def sync(self, tick: int) -> None:
        """Learn the kept feedback whose retraining is due by ``tick``, in the order it came.

        With ``retrain_every = K`` the feedback of ticks ``[jK, (j+1)K)`` is learnt before the
        first request of a tick ``>= (j+1)K`` (so the model changes only every K ticks), and
        everything kept is learnt once ``tick`` reaches ``train_ticks``. A policy that ranks
        with another policy's ``rank`` (a re-ranker) calls its ``sync`` first.
        """
        if not self._kept_feedback:
            return
        k, frozen = self.retrain_every, self.train_ticks is not None and tick >= self.train_ticks
        due = [frozen or fb.tick // k < tick // k for fb in self._kept_feedback]
        learn = [fb for fb, d in zip(self._kept_feedback, due, strict=True) if d]
        self._kept_feedback = [fb for fb, d in zip(self._kept_feedback, due, strict=True) if not d]
        for fb in learn:
            self._learn(fb)

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

    def _ties(self, m: int, n_rows: int, hashed: bool = False) -> TieKeys:
        return TieKeys(m, n_rows, self.tie_break, self.rng, hashed=hashed)

    def rank_global(self, request: RecommendRequest, n: int, scores: np.ndarray) -> np.ndarray:
        """Rank by one (n_items,) score vector shared by all users (ties: hashed keys, computed
        for the items at or above the cut only)."""
        avail = available_ids(request.available)
        recent = recent_of(request)
        return top_global(scores, avail, recent, n, self._ties(avail.size, request.n, True))

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


#: The parameters of every policy that learns from feedback, with their documentation (what
#: `recloop list policies` prints).
TRAINING_PARAMS = {
    "retrain_every": "0 = learn from every slate's feedback at once (default); K >= 1 = keep "
    "the feedback and learn it every K ticks (the model is fixed in between)",
    "train_ticks": "learn only from the first N ticks, then freeze the model (default: "
    "always learn); with retrain_every=N: trained once, on the first N ticks' logs",
}


def needs_true_utilities(policy: object) -> bool:
    """Whether ``policy`` (an instance or a class) is an oracle that must be handed the
    users' true utilities (``SlatePolicy.needs_true_utilities``)."""
    cls = policy if isinstance(policy, type) else type(policy)
    return issubclass(cls, SlatePolicy) and bool(policy.needs_true_utilities)  # type: ignore[attr-defined]


def check_deployable(policy: object, role: str) -> None:
    """A ``ValueError`` naming ``role`` if ``policy`` needs true utilities: only a `World`
    running its own policy hands them out (not an environment, not a wrapper's base)."""
    if needs_true_utilities(policy):
        name = getattr(policy, "name", type(policy).__name__)
        raise ValueError(
            f"{role} '{name}' is not deployable: it needs the users' true utilities, which "
            "only a world running it as its own policy hands out"
        )


def check_count(name: str, value: object, low: int = 0) -> int:
    """``value`` as an int if it is an integer ``>= low``, else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


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

"""Re-rankers that wrap another policy."""

from __future__ import annotations

from typing import Any

import numpy as np

from policies.base import Feedback, PlatformSpec, RecommendRequest
from policies.registry import make, register
from policies.selection import available_ids
from policies.slate_policy import SlatePolicy, check_deployable, check_range
from simenv.arrays import unit_rows

#: Rows per chunk of the MMR loop (bounds the (rows, pool, features) gather).
_MMR_CHUNK = 4096


@register("mmr")
class MMR(SlatePolicy):
    """Maximal Marginal Relevance re-ranking of any policy's candidates.

    The ``base`` policy (a registered name built with ``base_kwargs``, or a policy instance
    with a ``rank(request, n)`` method) ranks ``pool`` candidates per user; their relevance is
    linear in that rank (1 for the first, ``1/pool`` for the last). MMR then picks greedily the
    candidate maximising ``lambda_ * relevance - (1 - lambda_) * max cosine similarity`` of its
    ``item_features`` to the items already picked. ``lambda_ = 1`` returns the base's ranking.

    Observes and learns: whatever the base observes and learns (feedback is passed through;
    when the base learns is the base's ``retrain_every`` / ``train_ticks`` in ``base_kwargs``).
    The base cannot be the ``oracle`` (mmr does not hand true utilities on).
    """

    def __init__(
        self,
        base: str | SlatePolicy = "popularity",
        lambda_: float = 0.7,
        pool: int = 50,
        base_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.lambda_ = check_range("lambda_", lambda_, 0.0, 1.0)
        self.pool = int(check_range("pool", pool, 1))
        self.base_kwargs = dict(base_kwargs or {})
        self.base: Any
        if isinstance(base, str):
            if base == "mmr":
                raise ValueError("mmr cannot wrap itself")
            self.base = make(base, **self.base_kwargs)
        else:
            if self.base_kwargs:
                raise ValueError("base_kwargs only apply when base is a policy name")
            self.base = base
        if not callable(getattr(self.base, "rank", None)):
            raise TypeError(
                f"mmr needs a base policy with a rank(request, n) method, got {self.base!r}"
            )
        check_deployable(self.base, "mmr's base")

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        super().reset(spec, rng)
        self.base.reset(spec, rng.spawn(1)[0])

    def _learn(self, feedback: Feedback) -> None:
        self.base.update(feedback)

    def get_params(self) -> dict[str, Any]:
        params = super().get_params()
        params["base"] = getattr(self.base, "name", type(self.base).__name__)
        get = getattr(self.base, "get_params", None)
        params["base_kwargs"] = get() if callable(get) else dict(self.base_kwargs)
        return params

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        n_avail = int(available_ids(request.available).size)
        pool = max(n, min(self.pool, n_avail))
        if isinstance(self.base, SlatePolicy):
            self.base.sync(request.tick)  # a retraining due now happens before the base ranks
        cands = np.asarray(self.base.rank(request, pool), dtype=np.int64)
        if self.lambda_ >= 1.0 or pool == n:
            return cands[:, :n].copy()
        feats = unit_rows(request.item_features)
        out = np.empty((request.n, n), dtype=np.int64)
        for start in range(0, request.n, _MMR_CHUNK):
            rows = slice(start, start + _MMR_CHUNK)
            out[rows] = self._greedy(cands[rows], feats, n)
        return out

    def _greedy(self, cands: np.ndarray, feats: np.ndarray, n: int) -> np.ndarray:
        rows, pool = cands.shape
        f = feats[cands]  # (rows, pool, F)
        rel = 1.0 - np.arange(pool) / pool  # (pool,)
        max_sim = np.zeros((rows, pool), dtype=np.float32)
        picked = np.zeros((rows, pool), dtype=bool)
        r = np.arange(rows)
        out = np.empty((rows, n), dtype=np.int64)
        for t in range(n):
            value = self.lambda_ * rel - (1.0 - self.lambda_) * max_sim
            value[picked] = -np.inf
            j = np.argmax(value, axis=1)
            picked[r, j] = True
            out[:, t] = cands[r, j]
            if t + 1 < n:
                sim = np.einsum("rpf,rf->rp", f, f[r, j])
                np.maximum(max_sim, sim, out=max_sim)
        return out

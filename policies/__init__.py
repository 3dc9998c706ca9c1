"""Recommender policies behind one protocol, with a registry.

Usage::

    import numpy as np
    import policies

    policies.available()                          # sorted registered names
    policy = policies.make("ucb", c=0.5)          # ValueError for unknown names or parameters
    policy.reset(spec, np.random.default_rng(0))  # spec: policies.PlatformSpec
    slates = policy.recommend(request)            # (n, k) int64, distinct available items
    policy.update(feedback)

Every built-in policy derives from :class:`SlatePolicy`, whose ``rank(request, n)`` returns a
longer ranked list (what re-rankers such as ``"mmr"`` consume). The learning policies take
``retrain_every`` and ``train_ticks`` (`TRAINING_PARAMS`: when they learn). ``"oracle"`` is
a yardstick, not a deployable policy: the world hands it the users' true utilities
(`needs_true_utilities`). Importing this package needs numpy only; heavy policies register
lazily by entry point (see :mod:`policies.registry`).
"""

from __future__ import annotations

# Importing the definition modules registers their policies.
from policies import bandits, classic, oracle, rerank, social  # noqa: F401
from policies.base import (
    NO_ITEM,
    Feedback,
    PlatformSpec,
    Recommender,
    RecommendRequest,
    SocialGraph,
    TrueUtility,
)
from policies.registry import (
    UnknownPolicyError,
    available,
    get_class,
    make,
    parameters,
    register,
)
from policies.selection import NotEnoughItemsError, check_slates
from policies.slate_policy import (
    TRAINING_PARAMS,
    SlatePolicy,
    check_deployable,
    needs_true_utilities,
)

# A trained stable-baselines3 agent (`recloop train`), loaded lazily: torch only when used.
register("sb3", "simenv.envs.sb3_policy:SB3Policy")
# A base recommender with a fixed share of novel items (the Exploration-v0 mechanism).
register("explore", "simenv.envs.sb3_policy:FixedExploration")

__all__ = [
    "NO_ITEM",
    "TRAINING_PARAMS",
    "Feedback",
    "NotEnoughItemsError",
    "PlatformSpec",
    "RecommendRequest",
    "Recommender",
    "SlatePolicy",
    "SocialGraph",
    "TrueUtility",
    "UnknownPolicyError",
    "available",
    "check_deployable",
    "check_slates",
    "get_class",
    "make",
    "needs_true_utilities",
    "parameters",
    "register",
]

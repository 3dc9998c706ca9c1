"""``recloop/Exploration-v0`` and ``-Continuous-v0``: the agent sets how much a base
recommender explores for each slate of a session."""

from __future__ import annotations

from simenv.envs.core import Mode
from simenv.envs.session import _CoreEnv


class ExplorationEnv(_CoreEnv):
    """
    ## Description

    Same session structure as ``recloop/Session-v0`` (one persistent world, one user session
    per episode), but a base recommender (``retriever``, any `policies.make` name; popularity
    by default, learning from every slate) builds each slate and the agent decides how much of
    it is given to exploration: that share of the slots (the lowest-ranked ones; share · k
    rounded stochastically) is replaced by items novel to the user - available, not in the
    slate or the recent history, and at most as similar to the user's recent topic profile as
    the median such item - drawn uniformly with the world's ``env`` generator.

    ## Action Space

    ``Discrete(len(explore_levels))`` picking a share from ``explore_levels`` (default
    ``(0, 0.1, 0.25, 0.5, 1.0)``), or with ``continuous=True``
    (``recloop/ExplorationContinuous-v0``) ``Box(0, 1, (1,), float32)``: the share itself.

    ## Observation Space

    The `ObservationBuilder`'s user features from observable data only: ``user`` (9,) in
    [0, 1] and ``profile`` (d,) (see ``recloop/Session-v0``); no candidate matrix.

    ## Rewards

    Short-term engagement plus long-term outcomes, weights from ``reward`` updating the default
    ``{"click": 1, "rating": 0.5, "continue": 0.2, "leave": 1, "churn": 1, "return": 0.5}``:
    ``click`` 1 per consumption, ``rating`` (stars − 3) / 2, ``continue`` 1 per slate after
    which the session goes on, ``leave`` −1 if the user ends the session before ``max_steps``,
    ``churn`` −P(user leaves the platform) and ``return`` +P(user opens the app next tick) at
    the end of the episode (from the simulator's user model), ``diversity`` as in Session-v0.

    ## Starting State

    The next user who opened the app today, with the world as the earlier episodes left it.

    ## Episode End

    Terminated when the user ends the session (or has left the platform); truncated after
    ``max_steps`` slates.

    ## Arguments

    As ``recloop/Session-v0`` (no ``n_candidates``), plus ``explore_levels`` and
    ``continuous``. ``info`` holds ``clicked``, ``rating``, ``explore_share``, ``item``,
    ``user``, ``tick`` and ``slate``.

    ## Version History

    * v0: initial version.
    """

    mode: Mode = "exploration"

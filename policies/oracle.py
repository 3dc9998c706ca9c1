"""The oracle: a yardstick that ranks by the users' true utilities. Not deployable.

No platform knows what its users would get from an item. The oracle is told: the world hands
it ``RecommendRequest.true_utility`` (the decider's deterministic utility of every item for
every user, as if each item were shown first), so it shows each user the k items they would
like most right now. It tells a study how far a learning recommender is from the best a
recommender could do in the same world, and what that "best" does to the ecosystem
(homogenization, exposure) when it is taken as the target (Chaney et al. 2018's ideal
recommender).

The utility model is the definition of "true": with the utility decider the oracle's ranking
is the users' own choice utilities (taste, quality, popularity x conformity, novelty,
boredom, what friends shared, recent repeats). Deciders without a utility model (LLM
personas) define no true utilities, and a world refuses to run the oracle with them.
"""

from __future__ import annotations

import numpy as np

from policies.base import RecommendRequest
from policies.registry import register
from policies.slate_policy import SlatePolicy


@register("oracle")
class Oracle(SlatePolicy):
    """Each user's k items of highest true utility, which the world hands it (a yardstick).

    Not deployable: no platform knows its users' utilities. Observes: ``request.true_utility``
    (filled by the world only for this policy: the decider's deterministic utilities of the
    available items as if shown first in the slate; no random numbers are drawn to compute
    them). Learns: nothing. Runs only as a world's own policy with the utility decider:
    environments, wrappers and LLM personas refuse it.
    """

    needs_true_utilities = True

    def __init__(self) -> None:
        super().__init__()

    def rank(self, request: RecommendRequest, n: int) -> np.ndarray:
        if request.true_utility is None:
            raise ValueError(
                f"policy '{self.name}' got no true utilities: only a world running it as its "
                "own policy, with the utility decider, hands them out"
            )
        return self.rank_personal(request, n, request.true_utility)

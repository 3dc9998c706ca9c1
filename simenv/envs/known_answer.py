"""A known-answer slate environment: the optimal slate is fixed, so training can be checked.

Like SB3's ``IdentityEnv``, it exists to prove that the training machinery works, never to
stand in for the simulator.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class KnownAnswerEnv(gym.Env[np.ndarray, np.ndarray]):
    """## Description

    The agent fills a slate of ``k`` positions from ``n_candidates`` items. A fixed set of
    ``k`` items (``best``, drawn once from ``answer_seed``) are the only ones users click; the
    reward of a step is the share of the slate's distinct items that are in ``best``. The
    optimal return per step is therefore exactly 1.

    ## Action Space
    ``MultiDiscrete([n_candidates] * k)``.

    ## Observation Space
    ``Box(0, 1, (n_candidates,))``: a constant vector of ones (the answer does not depend on
    the state, as in SB3's identity envs).

    ## Rewards
    |slate ∩ best| / k per step.

    ## Episode End
    Truncated after ``horizon`` steps; never terminated.

    ## Arguments
    ``n_candidates`` (8), ``k`` (2), ``horizon`` (16), ``answer_seed`` (0).

    ## Version History
    * v0: initial version.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        n_candidates: int = 8,
        k: int = 2,
        horizon: int = 16,
        answer_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None:
            raise ValueError(f"render_mode must be None, got {render_mode!r}")
        if not 0 < k <= n_candidates:
            raise ValueError(f"need 0 < k <= n_candidates, got k={k}, n={n_candidates}")
        self.k, self.horizon = k, horizon
        answer = np.random.default_rng(answer_seed).permutation(n_candidates)[:k]
        self.best = np.sort(answer)
        self.action_space = spaces.MultiDiscrete([n_candidates] * k)
        self.observation_space = spaces.Box(0.0, 1.0, (n_candidates,), dtype=np.float32)
        self._obs = np.ones(n_candidates, dtype=np.float32)
        self._t = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        hits = np.isin(np.unique(np.asarray(action)), self.best).sum()
        self._t += 1
        reward = float(hits) / self.k
        return self._obs.copy(), reward, False, self._t >= self.horizon, {"hits": int(hits)}

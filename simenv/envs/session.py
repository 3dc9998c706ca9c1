"""``recloop/Session-v0``: the agent is the recommender of one user session at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from scenarios import Scenario
from simenv.envs.core import EXPLORE_LEVELS, Mode, SessionCore
from simenv.envs.render import (
    RENDER_FPS,
    RENDER_MODES,
    SessionTraces,
    check_render_mode,
    render_session,
)
from simenv.world import World


class _CoreEnv(gym.Env[dict[str, np.ndarray], Any]):
    """A single-session gymnasium view of a `SessionCore` with one slot."""

    metadata: dict[str, Any] = {"render_modes": list(RENDER_MODES), "render_fps": RENDER_FPS}  # noqa: RUF012
    mode: Mode = "session"

    def __init__(
        self,
        scenario: str | Path | Scenario = "filter_bubble",
        overrides: list[str] | None = None,
        *,
        max_steps: int | None = None,
        reward: dict[str, float] | None = None,
        retriever: str = "popularity",
        retriever_kwargs: dict[str, Any] | None = None,
        n_candidates: int | None = None,
        explore_levels: tuple[float, ...] | list[float] = EXPLORE_LEVELS,
        continuous: bool = False,
        render_mode: str | None = None,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        # the sessions as rendering shows them: kept only when a render mode was asked for
        self.traces = SessionTraces(1) if render_mode is not None else None
        self.core = SessionCore(
            scenario,
            overrides,
            n_sessions=1,
            mode=self.mode,
            max_steps=max_steps,
            reward=reward,
            retriever=retriever,
            retriever_kwargs=retriever_kwargs,
            n_candidates=n_candidates,
            explore_levels=explore_levels,
            continuous=continuous,
        )
        self.observation_space = self.core.observation_space  # type: ignore[assignment]
        self.action_space = self.core.action_space

    @property
    def world(self) -> World:
        """The world the sessions run in (after the first reset)."""
        return self.core._world

    @property
    def user(self) -> int:
        """The user whose session is running."""
        return int(self.core.users[0])

    def _obs(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.core.observe().items()}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self.core.reset(seed)
        obs = self._obs()
        if self.traces is not None:
            self.traces.start([0], self.core.users, self.core.tick)
        return obs, {"user": self.user, "tick": self.core.tick}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        rewards, terminated, truncated, infos = self.core.step(np.asarray(action)[None])
        obs = self._obs()
        if self.traces is not None:
            self.traces.record(infos, rewards, terminated, truncated)
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), infos[0]

    def render(self) -> str | np.ndarray | None:  # type: ignore[override]
        """The session so far: text (``ansi``) or an ``(H, W, 3)`` uint8 picture
        (``rgb_array``); None without a render mode (nothing is recorded then)."""
        if self.traces is None:
            return None
        return render_session(
            self.render_mode,
            self.traces.sessions[0],
            self.core._world,
            max_steps=self.core.max_steps,
            mode=self.core.mode,
        )


class SessionEnv(_CoreEnv):
    """
    ## Description

    The agent is the recommender of one user session at a time in a simulated recommendation
    ecosystem (`simenv.world.World`). The population persists across episodes: one world per
    environment instance, built at the first ``reset`` (and at every ``reset(seed=...)``);
    each episode is the session of the next user who opened the app (the tick's active users
    are served one session each, in id order; then the tick ends - churn, creators, metrics -
    and the next tick begins). Users of a tick are not served by anybody else.

    ## Action Space

    ``MultiDiscrete([C] * k)``: for each of the ``k`` slate slots, the index of one of the
    ``C`` candidates in the observation. Candidates are the top ``C`` of a base retriever
    (``retriever``, any `policies.make` name; popularity by default), which learns from every
    served slate. A repeated index is replaced by the best-ranked candidate not yet in the
    slate, so every action is a valid slate.

    ## Observation Space

    ``Dict`` of float32 boxes, all built from observable data only (`ObservationBuilder`):
    ``user`` (9,) in [0, 1] (last click and rating, clicks in a row, session position, ticks
    since the last visit, new-user flag, click-through rate, history fill, repetition of recent
    consumption), ``profile`` (d,) the unit topic profile of recent consumption,
    ``cand_features`` (C, d) the candidates' unit feature vectors, ``cand_popularity`` (C,)
    observed log-popularity and ``cand_age`` (C,) age / (age + 10).

    ## Rewards

    A weighted sum (``reward`` dict updates the default ``{"click": 1, "rating": 0.5}``):
    ``click`` 1 if an item was consumed; ``rating`` (stars − 3) / 2 of a consumed item;
    ``diversity`` the slate's intra-list diversity (mean pairwise 1 − cosine); ``continue`` 1
    while the user stays; ``leave`` −1 when the user closes the app before ``max_steps``;
    ``churn`` −P(user leaves the platform) and ``return`` +P(user opens the app next tick),
    both from the simulator's user model at the end of the episode.

    ## Starting State

    The next user who opened the app today, with the world as the earlier episodes left it.

    ## Episode End

    Terminated when the user ends the session (or has left the platform); truncated after
    ``max_steps`` slates (default: the scenario's ``session.max_steps``).

    ## Arguments

    ``scenario`` (name, path or `Scenario`; default ``"filter_bubble"``), ``overrides``
    (``["population.size=100", ...]``), ``max_steps``, ``reward``, ``retriever``,
    ``retriever_kwargs``, ``n_candidates`` (default ``min(3k, catalog)``), ``render_mode``
    (None, ``"ansi"``: the last slate, the user's answer and the reward as text, or
    ``"rgb_array"``: a picture of the session so far; `simenv.envs.render`).
    ``gymnasium.make("recloop/Session-v0", overrides=[...])``;
    ``gymnasium.make_vec("recloop/Session-v0", num_envs=N, overrides=[...])`` gives N sessions
    on one world, one decider call per step (`simenv.envs.batch.SessionVectorEnv`).

    ## Version History

    * v0: initial version.
    """

    mode: Mode = "session"

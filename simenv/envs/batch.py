"""N sessions on one shared world, stepped together: the machinery of both vector envs, and the
Gymnasium one.

`AutoResetSessions` steps a `SessionCore` (every slot served by ONE ``world.serve`` call, so
the decider answers for all N users in one batch) and replaces each finished session by the
next user at once, keeping the final observation of the finished one; optionally it renews
the world every ``renew_after_ticks`` ticks. Two adapters put it behind the two vector APIs:

- `SessionVectorEnv` here: a ``gymnasium.vector.VectorEnv`` (autoreset mode ``SAME_STEP``:
  ``infos["final_obs"]`` / ``infos["final_info"]`` hold the finished sessions' last
  observation and step info). It is the ``vector_entry_point`` of ``recloop/Session-v0``,
  ``recloop/Exploration-v0`` and ``recloop/ExplorationContinuous-v0``, so
  ``gymnasium.make_vec(id, num_envs=N)`` returns it, as Gymnasium's own vectorised envs do
  (``vectorization_mode="sync"`` still gives N independent worlds);
- `simenv.envs.vector.BatchedSessionVecEnv`: a stable-baselines3 ``VecEnv`` (needs the ``rl``
  extra; this module does not import stable-baselines3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from scenarios import Scenario
from simenv.envs.core import Mode, SessionCore
from simenv.envs.render import (
    RENDER_FPS,
    RENDER_MODES,
    SessionTraces,
    check_render_mode,
    render_session,
)
from simenv.world import World


@dataclass
class BatchStep:
    """What one step of all slots gives, after the finished sessions were replaced."""

    obs: dict[str, np.ndarray]  # observations of every slot (new sessions where one ended)
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict[str, Any]]  # the step's info per slot (`SessionCore.step`)
    done: np.ndarray  # slots whose session ended at this step
    final_obs: dict[str, np.ndarray]  # last observation of each finished session (rows: done)


class AutoResetSessions:
    """A `SessionCore` whose finished sessions are replaced by the next user at once.

    With ``renew_after_ticks=T`` the world is replaced by a fresh one (next seed) once it
    reaches tick T, all running sessions ending truncated. With ``render=True`` each slot's
    session is kept for rendering (`simenv.envs.render`).
    """

    def __init__(
        self, core: SessionCore, renew_after_ticks: int | None = None, *, render: bool = False
    ) -> None:
        if renew_after_ticks is not None and renew_after_ticks < 1:
            raise ValueError(f"renew_after_ticks must be positive, got {renew_after_ticks}")
        self.core = core
        self.renew_after_ticks = renew_after_ticks
        self.renewals = 0
        self.world_seed: int | None = None
        self.traces = SessionTraces(core.n) if render else None

    def reset(self, seed: int | None) -> dict[str, np.ndarray]:
        """New sessions in every slot (a new world for ``seed``, or when there is none)."""
        self.core.reset(seed)
        self.world_seed = self.core._world.seed
        self._started(np.arange(self.core.n))
        return self.core.observe()

    def step(self, actions: np.ndarray) -> BatchStep:
        core = self.core
        rewards, terminated, truncated, infos = core.step(actions)
        if self.traces is not None:
            self.traces.record(infos, rewards, terminated, truncated)
        renew = self.renew_after_ticks is not None and core.tick >= self.renew_after_ticks
        if renew:  # every running session ends with the world it lived in
            truncated = truncated | ~terminated
        done = np.flatnonzero(terminated | truncated)
        final_obs: dict[str, np.ndarray] = {}
        if done.size:
            final_obs = core.observe(done)
            if renew:
                self.renewals += 1
                core.reset(int(self.world_seed or 0) + self.renewals)
                self._started(np.arange(core.n))
            else:
                core.reset_slots(done)
                self._started(done)
        return BatchStep(core.observe(), rewards, terminated, truncated, infos, done, final_obs)

    def _started(self, slots: np.ndarray) -> None:
        if self.traces is not None:
            self.traces.start(slots, self.core.users, self.core.tick)

    def render(self, render_mode: str | None) -> tuple[Any, ...] | None:
        """One frame per slot (None without a render mode)."""
        if self.traces is None:
            return None
        core = self.core
        return tuple(
            render_session(
                render_mode, trace, core._world, max_steps=core.max_steps, mode=core.mode
            )
            for trace in self.traces.sessions
        )


class SessionVectorEnv(gymnasium.vector.VectorEnv[Any, Any, Any]):
    """``num_envs`` sessions of ``recloop/Session-v0`` (``mode="session"``) or
    ``recloop/Exploration-v0`` (``mode="exploration"``, ``continuous=`` as there) on one world,
    as a Gymnasium ``VectorEnv``.

    Keyword arguments are those of the single environments (``scenario``, ``overrides``,
    ``max_steps``, ``reward``, ``retriever``, ``retriever_kwargs``, ``n_candidates``,
    ``explore_levels``, ``continuous``, ``render_mode``) plus ``renew_after_ticks``.
    ``reset(seed=s)`` builds the world from ``s``; ``reset()`` starts new sessions in the same
    world (a world seeded from fresh entropy if there is none yet). Finished sessions are
    replaced in the same step (``metadata["autoreset_mode"]`` is ``SAME_STEP``): the returned
    observation is the new session's, ``infos["final_obs"][i]`` and ``infos["final_info"]``
    are the finished one's. ``render()`` returns one frame per slot.
    """

    metadata: dict[str, Any] = {  # noqa: RUF012
        "render_modes": list(RENDER_MODES),
        "render_fps": RENDER_FPS,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str | Path | Scenario = "filter_bubble",
        overrides: list[str] | None = None,
        *,
        mode: Mode = "session",
        renew_after_ticks: int | None = None,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        core = SessionCore(scenario, overrides, n_sessions=num_envs, mode=mode, **kwargs)
        self.sessions = AutoResetSessions(core, renew_after_ticks, render=render_mode is not None)
        self.num_envs = core.n
        self.single_observation_space = core.observation_space
        self.single_action_space = core.action_space
        self.observation_space = batch_space(core.observation_space, self.num_envs)
        self.action_space = batch_space(core.action_space, self.num_envs)

    @property
    def core(self) -> SessionCore:
        return self.sessions.core

    @property
    def world(self) -> World:
        """The shared world (after the first reset)."""
        return self.core._world

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        obs = self.sessions.reset(seed)
        infos: dict[str, Any] = {}
        for i in range(self.num_envs):
            infos = self._add_info(infos, self._reset_info(i), i)
        return obs, infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.sessions.step(np.asarray(actions))
        infos: dict[str, Any] = {}
        for j, i in enumerate(out.done):
            final = {key: value[j] for key, value in out.final_obs.items()}
            infos = self._add_info(infos, {"final_obs": final, "final_info": out.infos[i]}, i)
        finished = set(out.done.tolist())
        for i in range(self.num_envs):
            info = self._reset_info(i) if i in finished else out.infos[i]
            infos = self._add_info(infos, info, i)
        return (
            out.obs,
            out.rewards.astype(np.float64),
            out.terminated.copy(),
            out.truncated.copy(),
            infos,
        )

    def _reset_info(self, i: int) -> dict[str, Any]:
        return {"user": int(self.core.users[i]), "tick": int(self.core.tick)}

    def render(self) -> tuple[Any, ...] | None:
        """One frame per session slot (see `simenv.envs.render`); None without a render mode."""
        return self.sessions.render(self.render_mode)

    def close_extras(self, **kwargs: Any) -> None:
        self.core.world = None


def session_vector_env(num_envs: int = 1, **kwargs: Any) -> SessionVectorEnv:
    """The ``vector_entry_point`` of ``recloop/Session-v0``."""
    return SessionVectorEnv(num_envs, mode="session", **kwargs)


def exploration_vector_env(num_envs: int = 1, **kwargs: Any) -> SessionVectorEnv:
    """The ``vector_entry_point`` of ``recloop/Exploration-v0`` and ``-Continuous-v0``."""
    return SessionVectorEnv(num_envs, mode="exploration", **kwargs)

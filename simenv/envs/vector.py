"""N concurrent sessions on one shared world as a stable-baselines3 `VecEnv`.

Each step serves the N sessions' slates with ONE ``world.serve`` call, so the decider (an LLM
user model, say) answers for all N users in one batch during training too. Finished sessions
are replaced by the next user at once (SB3 convention: the last observation of the finished
session is ``infos[i]["terminal_observation"]``, time-limit ends carry
``infos[i]["TimeLimit.truncated"]``).

The N slots share the world, the base recommender and the observation statistics, so there is
one environment state, not N: ``get_attr``/``set_attr``/``env_method`` act on the shared
`SessionCore` (``env_method`` calls the method once and returns its result for every index),
except ``get_attr("user")``, ``get_attr("step_in_session")`` and ``env_method("render")``,
which are per slot. The stepping itself (auto-reset, world renewal) is
`simenv.envs.batch.AutoResetSessions`, shared with the Gymnasium ``VectorEnv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from scenarios import Scenario
from simenv.envs.batch import AutoResetSessions
from simenv.envs.core import Mode, SessionCore
from simenv.envs.render import check_render_mode
from simenv.world import World

_PER_SLOT = {"user": "users", "step_in_session": "steps"}


class BatchedSessionVecEnv(VecEnv):
    """``n_envs`` sessions of ``recloop/Session-v0`` (``mode="session"``) or
    ``recloop/Exploration-v0`` (``mode="exploration"``, ``continuous=`` as there) on one world.

    Keyword arguments are those of the single environments (``max_steps``, ``reward``,
    ``retriever``, ``retriever_kwargs``, ``n_candidates``, ``explore_levels``, ``continuous``,
    ``render_mode``). ``seed`` seeds the world at the first ``reset`` (``VecEnv.seed(s)``
    rebuilds it at the next one); without any seed the world is seeded from fresh entropy.
    With ``renew_after_ticks=T`` the world is replaced by a fresh one (next seed) once it
    reaches tick T, all running sessions ending truncated: training then sees worlds of the
    ages a T-tick scenario run has, instead of one world aging forever. With
    ``render_mode="rgb_array"`` ``get_images()`` gives one picture per session (SB3's
    ``render()`` tiles them); ``"ansi"`` frames come from ``env_method("render")``.
    """

    def __init__(
        self,
        scenario: str | Path | Scenario = "filter_bubble",
        n_envs: int = 1,
        overrides: list[str] | None = None,
        *,
        mode: Mode = "session",
        seed: int | None = None,
        renew_after_ticks: int | None = None,
        render_mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        core = SessionCore(scenario, overrides, n_sessions=n_envs, mode=mode, **kwargs)
        self.sessions = AutoResetSessions(core, renew_after_ticks, render=render_mode is not None)
        self._first_seed = seed
        self._actions: np.ndarray | None = None
        super().__init__(n_envs, core.observation_space, core.action_space)

    @property
    def core(self) -> SessionCore:
        return self.sessions.core

    @property
    def world(self) -> World:
        """The shared world (after the first reset)."""
        return self.core._world

    @property
    def renewals(self) -> int:
        """Worlds replaced so far (`renew_after_ticks`)."""
        return self.sessions.renewals

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds[0] is not None else self._first_seed
        self._first_seed = None
        obs = self.sessions.reset(seed)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{"user": int(u), "tick": self.core.tick} for u in self.core.users]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        out = self.sessions.step(actions)
        infos = out.infos
        keys = list(out.final_obs)
        rows = zip(*(list(out.final_obs[key]) for key in keys), strict=True) if keys else ()
        truncated = out.truncated.tolist()
        for i, row in zip(out.done.tolist(), rows, strict=False):
            infos[i]["terminal_observation"] = dict(zip(keys, row, strict=True))
            infos[i]["TimeLimit.truncated"] = truncated[i]
        return out.obs, out.rewards, out.terminated | out.truncated, infos

    def close(self) -> None:
        self.core.world = None

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """The world's seed for the next ``reset`` (one shared world: one seed)."""
        if seed is None:
            return [None] * self.num_envs
        self._seeds = [int(seed)] * self.num_envs
        return self._seeds

    def get_images(self) -> Sequence[np.ndarray | None]:
        """One ``rgb_array`` picture per session (``render_mode="rgb_array"`` only)."""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return list(self.sessions.render(self.render_mode) or ())

    # ------------------------------------------------------------------ attributes
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name in _PER_SLOT:
            values = getattr(self.core, _PER_SLOT[attr_name])
            return [int(values[i]) for i in idx]
        target = self if attr_name in ("render_mode", "world", "renewals") else self.core
        value = getattr(target, attr_name)
        return [value for _ in idx]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if attr_name in _PER_SLOT:
            raise AttributeError(f"{attr_name!r} is managed by the environment")
        setattr(self.core, attr_name, value)

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        idx = list(self._get_indices(indices))
        if method_name == "render":  # one frame per session
            frames = self.sessions.render(self.render_mode) or (None,) * self.num_envs
            return [frames[i] for i in idx]
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in idx]

    def env_is_wrapped(
        self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


def make_gym_vector_env(env_id: str, n: int, **kwargs: Any) -> gymnasium.vector.SyncVectorEnv:
    """``n`` independent copies of a registered ``recloop/*`` env (one world each) as a
    `gymnasium.vector.SyncVectorEnv`; use `BatchedSessionVecEnv` for one shared world."""

    def make() -> gymnasium.Env[Any, Any]:
        return gymnasium.make(env_id, **kwargs)

    return gymnasium.vector.SyncVectorEnv([make for _ in range(n)])

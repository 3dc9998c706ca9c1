"""N concurrent sessions on one shared world as a stable-baselines3 `VecEnv`.

Each step serves the N sessions' slates with ONE ``world.serve`` call, so the decider (an LLM
user model, say) answers for all N users in one batch during training too. Finished sessions
are replaced by the next user at once (SB3 convention: the last observation of the finished
session is ``infos[i]["terminal_observation"]``, time-limit ends carry
``infos[i]["TimeLimit.truncated"]``).

The N slots share the world, the base recommender and the observation statistics, so there is
one environment state, not N: ``get_attr``/``set_attr``/``env_method`` act on the shared
`SessionCore` (``env_method`` calls the method once and returns its result for every index),
except ``get_attr("user")`` and ``get_attr("step_in_session")``, which are per slot.
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
from simenv.envs.core import Mode, SessionCore
from simenv.world import World

_PER_SLOT = {"user": "users", "step_in_session": "steps"}


class BatchedSessionVecEnv(VecEnv):
    """``n_envs`` sessions of ``recloop/Session-v0`` (``mode="session"``) or
    ``recloop/Exploration-v0`` (``mode="exploration"``, ``continuous=`` as there) on one world.

    Keyword arguments are those of the single environments (``max_steps``, ``reward``,
    ``retriever``, ``retriever_kwargs``, ``n_candidates``, ``explore_levels``, ``continuous``).
    ``seed`` seeds the world at the first ``reset`` (``VecEnv.seed(s)`` rebuilds it at the
    next one); without any seed the world is seeded from fresh entropy. With
    ``renew_after_ticks=T`` the world is replaced by a fresh one (next seed) once it reaches
    tick T, all running sessions ending truncated: training then sees worlds of the ages a
    T-tick scenario run has, instead of one world aging forever.
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
        **kwargs: Any,
    ) -> None:
        self.core = SessionCore(scenario, overrides, n_sessions=n_envs, mode=mode, **kwargs)
        if renew_after_ticks is not None and renew_after_ticks < 1:
            raise ValueError(f"renew_after_ticks must be positive, got {renew_after_ticks}")
        self.renew_after_ticks = renew_after_ticks
        self._world_seed: int | None = None
        self.renewals = 0
        self.render_mode = None
        self._first_seed = seed
        self._actions: np.ndarray | None = None
        super().__init__(n_envs, self.core.observation_space, self.core.action_space)

    @property
    def world(self) -> World:
        """The shared world (after the first reset)."""
        return self.core._world

    # ------------------------------------------------------------------ stepping
    def reset(self) -> VecEnvObs:
        seed = self._seeds[0] if self._seeds[0] is not None else self._first_seed
        self._first_seed = None
        self.core.reset(seed)
        self._world_seed = self.core._world.seed
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{"user": int(u), "tick": self.core.tick} for u in self.core.users]
        return self.core.observe()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        rewards, terminated, truncated, infos = self.core.step(actions)
        renew = self.renew_after_ticks is not None and self.core.tick >= self.renew_after_ticks
        if renew:  # every running session ends with the world it lived in
            truncated = truncated | ~terminated
        dones = terminated | truncated
        done = np.flatnonzero(dones)
        if done.size:
            last = self.core.observe(done)
            for j, i in enumerate(done):
                infos[i]["terminal_observation"] = {key: v[j] for key, v in last.items()}
                infos[i]["TimeLimit.truncated"] = bool(truncated[i])
            if renew:
                self._renew()
            else:
                self.core.reset_slots(done)
        return self.core.observe(), rewards, dones, infos

    def _renew(self) -> None:
        """A fresh world (seed: the first world's seed + number of renewals) for new sessions,
        so that training sees the same range of world ages as a scenario run does."""
        self.renewals += 1
        self.core.reset(int(self._world_seed or 0) + self.renewals)

    def close(self) -> None:
        self.core.world = None

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """The world's seed for the next ``reset`` (one shared world: one seed)."""
        if seed is None:
            return [None] * self.num_envs
        self._seeds = [int(seed)] * self.num_envs
        return self._seeds

    # ------------------------------------------------------------------ attributes
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name in _PER_SLOT:
            values = getattr(self.core, _PER_SLOT[attr_name])
            return [int(values[i]) for i in idx]
        target = self if attr_name in ("render_mode", "world") else self.core
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
        result = getattr(self.core, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

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

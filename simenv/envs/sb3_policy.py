"""A trained stable-baselines3 agent as a `Recommender` usable in any scenario.

    recloop run boredom --policy sb3:runs/x/model.zip

The model's folder holds ``train.json`` (written by ``recloop train``) naming the env it was
trained on and the env's arguments; the adapter rebuilds the same observation from what a
platform sees (`ObservationBuilder` over `RecommendRequest`/`Feedback`) and turns the model's
actions into slates exactly as the env does:

- Exploration envs: the base recommender (``retriever``) ranks, the model picks the share of
  the slate given to novel items per user (`explore_slates`).
- Session env: the base recommender gives C candidates, the model picks k of them
  (`resolve_duplicates`).

A model whose spaces do not fit the scenario (other topic count or slate size) is refused when
the run starts, before any simulation.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import policies
from policies.base import Feedback, PlatformSpec, Recommender, RecommendRequest
from simenv.arrays import unit_rows_clipped
from simenv.envs.core import EXPLORE_LEVELS, explore_slates, resolve_duplicates
from simenv.envs.observation import ObservationBuilder, item_age_feature


class SB3Policy:
    """Recommend with a saved SB3 model (``path`` to ``model.zip``)."""

    name = "sb3"

    def __init__(self, path: str, deterministic: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"policy 'sb3': model file not found: {self.path}")
        meta_path = self.path.with_name("train.json")
        if not meta_path.is_file():
            raise ValueError(
                f"policy 'sb3': {meta_path} is missing; models are loaded with the train.json "
                "that `recloop train` writes beside them"
            )
        self.meta = json.loads(meta_path.read_text())
        self.env_id = str(self.meta["env_id"])
        if not self.env_id.startswith("recloop/"):
            raise ValueError(
                f"policy 'sb3': {self.path} was trained on '{self.env_id}', not a recloop "
                "recommender environment"
            )
        kwargs = {**(self.meta.get("env_kwargs") or {}), **(self.meta.get("env_attrs") or {})}
        self.mode = "session" if self.env_id.startswith("recloop/Session") else "exploration"
        self.continuous = "Continuous" in self.env_id
        self.levels = np.asarray(kwargs.get("explore_levels", EXPLORE_LEVELS), dtype=np.float64)
        self.retriever = str(kwargs.get("retriever", "popularity"))
        self.retriever_kwargs = dict(kwargs.get("retriever_kwargs") or {})
        self.max_steps = kwargs.get("max_steps")
        self.n_candidates = kwargs.get("n_candidates")
        self.deterministic = deterministic
        self.model = load_algorithm(self.path)

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng
        self.base: Recommender = policies.make(self.retriever, **self.retriever_kwargs)
        policies.check_deployable(self.base, "retriever")
        self.base.reset(spec, rng)
        max_steps = int(self.max_steps or spec.history)
        self.builder = ObservationBuilder(spec, max_steps)
        self.c = int(self.n_candidates or 3 * spec.k)
        self._check_spaces()
        self.steps = np.zeros(spec.n_users, dtype=np.int64)
        self.tick = -1

    def _check_spaces(self) -> None:
        from gymnasium import spaces

        expected = self.builder.space()
        if self.mode == "session":
            c, d = self.c, self.spec.n_features
            expected = spaces.Dict(
                {
                    **expected.spaces,
                    "cand_features": spaces.Box(-1.0, 1.0, (c, d), np.float32),
                    "cand_popularity": spaces.Box(0.0, 1.0, (c,), np.float32),
                    "cand_age": spaces.Box(0.0, 1.0, (c,), np.float32),
                }
            )
        got = self.model.observation_space
        if got != expected:
            raise ValueError(
                f"policy 'sb3': {self.path} observes {got}, but this scenario gives {expected} "
                f"(trained on another topic count, slate size or candidate count)"
            )
        if self.mode == "session" and self.model.action_space.nvec.size != self.spec.k:
            raise ValueError(
                f"policy 'sb3': {self.path} fills slates of {self.model.action_space.nvec.size} "
                f"items; this scenario's slate size is {self.spec.k}"
            )

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        if request.tick != self.tick:
            self.tick, self.steps[:] = request.tick, 0
        obs = self.builder.observe(request, self.steps[request.users])
        if self.mode == "session":
            cands = np.asarray(self.base.recommend(replace(request, k=self.c)), dtype=np.int64)
            obs["cand_features"] = unit_rows_clipped(request.item_features[cands])
            obs["cand_popularity"] = self.builder.item_popularity(cands)
            obs["cand_age"] = item_age_feature(request.item_age[cands])
            action, _ = self.model.predict(obs, deterministic=self.deterministic)
            idx = resolve_duplicates(np.asarray(action).reshape(request.n, -1), self.c)
            return np.take_along_axis(cands, idx, axis=1)
        action, _ = self.model.predict(obs, deterministic=self.deterministic)
        a = np.asarray(action)
        if self.continuous:
            shares = np.clip(a.reshape(request.n, -1)[:, 0].astype(np.float64), 0.0, 1.0)
        else:
            shares = self.levels[a.reshape(request.n).astype(np.int64)]
        slates = np.asarray(self.base.recommend(request), dtype=np.int64).copy()
        explore_slates(request, slates, shares, self.rng)
        return slates

    def update(self, feedback: Feedback) -> None:
        self.base.update(feedback)
        self.builder.update(feedback)
        self.steps[feedback.users] += 1

    def get_params(self) -> dict[str, Any]:
        return {"path": str(self.path), "env_id": self.env_id}


class FixedExploration:
    """A base recommender whose slates give a fixed ``share`` of slots to novel items.

    The same exploration as ``recloop/Exploration-v0`` at one constant level: the baseline a
    trained exploration controller has to beat.
    """

    name = "explore"

    def __init__(
        self,
        share: float = 0.1,
        base: str = "popularity",
        base_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"policy 'explore': share must be in [0, 1], got {share}")
        self.share = float(share)
        self.base_name, self.base_kwargs = base, dict(base_kwargs or {})
        policies.check_deployable(policies.get_class(base), "explore's base")

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        self.rng = rng
        self.base: Recommender = policies.make(self.base_name, **self.base_kwargs)
        self.base.reset(spec, rng)

    def recommend(self, request: RecommendRequest) -> np.ndarray:
        slates = np.asarray(self.base.recommend(request), dtype=np.int64).copy()
        explore_slates(request, slates, np.full(request.n, self.share), self.rng)
        return slates

    def update(self, feedback: Feedback) -> None:
        self.base.update(feedback)


def load_algorithm(path: Path) -> Any:
    """Load a saved model with the algorithm named in its ``train.json`` (no env checks)."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    model: BaseAlgorithm = _algo_of(Path(path)).load(path, device="cpu")
    return model


def _algo_of(path: Path) -> Any:
    from stable_baselines3 import A2C, DQN, PPO

    meta = path.with_name("train.json")
    name = json.loads(meta.read_text())["algo"] if meta.is_file() else "ppo"
    return {"ppo": PPO, "a2c": A2C, "dqn": DQN}[name]

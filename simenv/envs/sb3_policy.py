"""A trained stable-baselines3 agent as a `Recommender` usable in any scenario.

    recloop run boredom --policy sb3:runs/x/model.zip
    recloop run boredom --policy sb3:model.zip --env recloop/Session-v0 \
        --env-kwargs '{"retriever": "content"}'

Any SB3 model (PPO, A2C, DQN, SAC, TD3, DDPG; the algorithm is read from the saved policy)
whose observation and action spaces are those of a recloop session or exploration env on the
scenario can recommend. What the env was comes from, in order of precedence:

1. ``env_id`` / ``env_kwargs`` given to the policy (``recloop run --env/--env-kwargs``);
2. ``train.json`` beside the model (or beside its ``checkpoints/`` folder), which
   ``recloop train`` writes: the env id and its resolved arguments;
3. the model's spaces: a ``MultiDiscrete`` action is ``recloop/Session-v0`` (the candidate
   count is read from the observation), ``Discrete`` is ``recloop/Exploration-v0`` and
   ``Box`` ``recloop/ExplorationContinuous-v0``; the other arguments take the env's defaults
   (the session length ``max_steps`` is the scenario's ``session.max_steps``).

The adapter rebuilds the same observation from what a platform sees (`ObservationBuilder` over
`RecommendRequest`/`Feedback`) and turns the model's actions into slates exactly as the env
does:

- Exploration envs: the base recommender (``retriever``) ranks, the model picks the share of
  the slate given to novel items per user (`explore_slates`).
- Session env: the base recommender gives C candidates, the model picks k of them
  (`resolve_duplicates`).

A model whose spaces do not fit the scenario (other topic count, slate size, candidate count
or exploration menu) is refused in one line when the run starts, before any simulation.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium import spaces

import policies
from policies.base import Feedback, PlatformSpec, Recommender, RecommendRequest
from simenv.arrays import unit_rows_clipped
from simenv.envs.core import EXPLORE_LEVELS, explore_slates, resolve_duplicates
from simenv.envs.observation import ObservationBuilder, item_age_feature

#: The stable-baselines3 algorithms a saved model can come from.
ALGORITHMS = ("ppo", "a2c", "dqn", "sac", "td3", "ddpg")
#: The entry points of the recloop envs whose models recommend, and their mode.
_MODES = {
    "simenv.envs.session:SessionEnv": "session",
    "simenv.envs.exploration:ExplorationEnv": "exploration",
}
#: The env arguments the adapter uses; the other arguments of the envs only shape training.
USED_ENV_ARGS = (
    "max_steps",
    "retriever",
    "retriever_kwargs",
    "n_candidates",
    "explore_levels",
    "continuous",
)
TRAINING_ENV_ARGS = ("scenario", "overrides", "reward", "render_mode", "renew_after_ticks")


class SB3Policy:
    """Recommend with a saved SB3 model (``path`` to its ``.zip``); see the module docstring
    for ``env_id`` and ``env_kwargs``."""

    name = "sb3"

    def __init__(
        self,
        path: str,
        deterministic: bool = True,
        env_id: str | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"policy 'sb3': model file not found: {self.path}")
        check_env_args(env_kwargs or {})
        self.meta = train_meta(self.path)
        self.model = load_algorithm(self.path, self.meta.get("algo"))
        self.env_id = env_id or self.meta.get("env_id") or env_for(self.path, self.model)
        mode, spec_kwargs = env_mode(self.path, self.env_id)
        saved = {**(self.meta.get("env_kwargs") or {}), **(self.meta.get("env_attrs") or {})}
        kwargs = {**spec_kwargs, **saved, **(env_kwargs or {})}
        self.mode = mode
        self.continuous = bool(kwargs.get("continuous", False))
        self.levels = np.asarray(kwargs.get("explore_levels", EXPLORE_LEVELS), dtype=np.float64)
        self.retriever = str(kwargs.get("retriever", "popularity"))
        self.retriever_kwargs = dict(kwargs.get("retriever_kwargs") or {})
        self.max_steps = kwargs.get("max_steps")
        self.n_candidates = kwargs.get("n_candidates") or self._candidates_observed()
        self.deterministic = deterministic

    def _candidates_observed(self) -> int | None:
        """The candidate count C of a session model, read from its observation space."""
        space = self.model.observation_space
        if self.mode == "session" and isinstance(space, spaces.Dict) and "cand_age" in space:
            ages = space["cand_age"]
            if isinstance(ages, spaces.Box):
                return int(ages.shape[0])
        return None

    def reset(self, spec: PlatformSpec, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng
        self.base: Recommender = policies.make(self.retriever, **self.retriever_kwargs)
        policies.check_deployable(self.base, "retriever")
        self.base.reset(spec, rng)
        max_steps = self.max_steps or spec.max_steps
        if max_steps is None:
            raise ValueError(
                "policy 'sb3': the session length is unknown; give env_kwargs max_steps"
            )
        self.builder = ObservationBuilder(spec, int(max_steps))
        self.c = int(self.n_candidates or 3 * spec.k)
        self._check_spaces()
        self.steps = np.zeros(spec.n_users, dtype=np.int64)
        self.tick = -1

    def expected_spaces(self) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        """The observation and action spaces of the env on this scenario (after `reset`)."""
        obs = self.builder.space()
        action: spaces.Space[Any]
        if self.mode == "session":
            c, d = self.c, self.spec.n_features
            obs = spaces.Dict(
                {
                    **obs.spaces,
                    "cand_features": spaces.Box(-1.0, 1.0, (c, d), np.float32),
                    "cand_popularity": spaces.Box(0.0, 1.0, (c,), np.float32),
                    "cand_age": spaces.Box(0.0, 1.0, (c,), np.float32),
                }
            )
            action = spaces.MultiDiscrete([c] * self.spec.k)
        elif self.continuous:
            action = spaces.Box(0.0, 1.0, (1,), np.float32)
        else:
            action = spaces.Discrete(len(self.levels))
        return obs, action

    def _check_spaces(self) -> None:
        obs, action = self.expected_spaces()
        got_action = self.model.action_space
        if got_action != action:
            if type(got_action) is not type(action):
                hint = "; a model of another env? name it with --env"
            elif self.mode == "exploration" and not self.continuous:
                hint = "; give its menu with --env-kwargs '{\"explore_levels\": [...]}'"
            else:
                hint = " (trained with another slate size or candidate count)"
            raise ValueError(
                f"policy 'sb3': {self.path} acts in {got_action}, but {self.env_id} on this "
                f"scenario acts in {action}{hint}"
            )
        got = self.model.observation_space
        if got != obs:
            raise ValueError(
                f"policy 'sb3': {self.path} observes {got}, but {self.env_id} on this scenario "
                f"gives {obs} (trained on another topic count, slate size or candidate count)"
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


def train_meta(path: Path) -> dict[str, Any]:
    """The ``train.json`` of a model written by ``recloop train`` (beside it, or beside the
    ``checkpoints/`` folder it is in); empty when there is none."""
    candidates = [path.with_name("train.json")]
    if path.parent.name == "checkpoints":
        candidates.append(path.parent.with_name("train.json"))
    for meta in candidates:
        if meta.is_file():
            data: dict[str, Any] = json.loads(meta.read_text())
            return data
    return {}


def algorithm_class(name: str) -> Any:
    """The stable-baselines3 class of an algorithm in `ALGORITHMS`."""
    from stable_baselines3 import A2C, DDPG, DQN, PPO, SAC, TD3

    classes = {"ppo": PPO, "a2c": A2C, "dqn": DQN, "sac": SAC, "td3": TD3, "ddpg": DDPG}
    return classes[name]


def saved_algorithm(path: Path) -> str:
    """The algorithm of a saved model, from its policy class (PPO and A2C share one: PPO's
    models also save ``clip_range``)."""
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.save_util import load_from_zip_file
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
    from stable_baselines3.td3.policies import TD3Policy

    try:
        data, _, _ = load_from_zip_file(path, device="cpu", load_data=True)
    except Exception as exc:  # a zip of something else, or a truncated file
        raise ValueError(f"policy 'sb3': {path} is not a stable-baselines3 model: {exc}") from exc
    data = data or {}
    policy = data.get("policy_class")
    if isinstance(policy, type):
        if issubclass(policy, ActorCriticPolicy):
            return "ppo" if "clip_range" in data else "a2c"
        if issubclass(policy, DQNPolicy):
            return "dqn"
        if issubclass(policy, SACPolicy):
            return "sac"
        if issubclass(policy, TD3Policy):
            return "td3"  # DDPG saves a TD3Policy too; TD3 loads it for prediction
    raise ValueError(
        f"policy 'sb3': {path} holds a {policy!r} policy; models of "
        f"{', '.join(a.upper() for a in ALGORITHMS)} can recommend"
    )


def load_algorithm(path: Path, algo: str | None = None) -> Any:
    """Load a saved model (no env checks); ``algo`` (as ``train.json`` names it) or the
    algorithm read from the model file."""
    path = Path(path)
    name = algo or saved_algorithm(path)
    if name not in ALGORITHMS:
        raise ValueError(f"policy 'sb3': unknown algorithm '{name}' in {path}'s train.json")
    return algorithm_class(name).load(path, device="cpu")


def env_for(path: Path, model: Any) -> str:
    """The recloop env whose action space has the type of the model's (no train.json)."""
    action = model.action_space
    if isinstance(action, spaces.MultiDiscrete):
        return "recloop/Session-v0"
    if isinstance(action, spaces.Discrete):
        return "recloop/Exploration-v0"
    if isinstance(action, spaces.Box) and action.shape == (1,):
        return "recloop/ExplorationContinuous-v0"
    raise ValueError(
        f"policy 'sb3': {path} acts in {action}, which no recloop recommender env does "
        "(Session-v0: MultiDiscrete, Exploration-v0: Discrete, ExplorationContinuous-v0: "
        "Box of shape (1,))"
    )


def env_mode(path: Path, env_id: str) -> tuple[str, dict[str, Any]]:
    """The mode (session or exploration) of ``env_id`` and its registered arguments."""
    import gymnasium

    import simenv.envs  # noqa: F401  (registers the recloop ids)

    try:
        spec = gymnasium.spec(env_id)
    except gymnasium.error.Error:
        spec = None
    mode = _MODES.get(str(spec.entry_point)) if spec is not None else None
    if spec is None or mode is None:
        known = sorted(e for e, s in gymnasium.registry.items() if str(s.entry_point) in _MODES)
        raise ValueError(
            f"policy 'sb3': {path} is for '{env_id}', not a recloop recommender environment "
            f"({', '.join(known)})"
        )
    return mode, dict(spec.kwargs or {})


def check_env_args(env_kwargs: dict[str, Any]) -> None:
    """Refuse env arguments that no recloop recommender env takes (a typo, say)."""
    known = (*USED_ENV_ARGS, *TRAINING_ENV_ARGS)
    for key in env_kwargs:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(
                f"policy 'sb3': unknown env argument '{key}'{hint}; the envs take: "
                f"{', '.join(known)}"
            )

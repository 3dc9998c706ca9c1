"""Gymnasium environments where an RL agent takes the recommender's place.

``import simenv`` calls :func:`register_envs`, which registers (string entry points, so nothing
heavy is imported until ``gymnasium.make``):

- ``recloop/Session-v0``: the agent picks each slate of one user's session from a candidate set
  (`simenv.envs.session.SessionEnv`);
- ``recloop/Exploration-v0``: the agent picks an exploration level from a discrete menu for a
  base recommender's next slate (`simenv.envs.exploration.ExplorationEnv`);
- ``recloop/ExplorationContinuous-v0``: the same with a ``Box([0, 1])`` exploration share.

N sessions of one shared world, stepped with one decider call per step:
``gymnasium.make_vec(id, num_envs=N)`` on the three ids above returns
`simenv.envs.batch.SessionVectorEnv` (a Gymnasium ``VectorEnv``, their ``vector_entry_point``);
`simenv.envs.vector.BatchedSessionVecEnv` is the same for stable-baselines3.
"""

from __future__ import annotations

from typing import Any

ENV_IDS = ("recloop/Session-v0", "recloop/Exploration-v0", "recloop/ExplorationContinuous-v0")

#: id: (entry point, vector entry point or None, keyword arguments)
_SPECS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "recloop/Session-v0": (
        "simenv.envs.session:SessionEnv",
        "simenv.envs.batch:session_vector_env",
        {},
    ),
    "recloop/Exploration-v0": (
        "simenv.envs.exploration:ExplorationEnv",
        "simenv.envs.batch:exploration_vector_env",
        {"continuous": False},
    ),
    "recloop/ExplorationContinuous-v0": (
        "simenv.envs.exploration:ExplorationEnv",
        "simenv.envs.batch:exploration_vector_env",
        {"continuous": True},
    ),
    # a known-answer env for testing training machinery (outside the recloop/ namespace, so
    # the simulator conformance tests over recloop/* do not treat it as a simulator env)
    "recloop-test/KnownAnswer-v0": ("simenv.envs.known_answer:KnownAnswerEnv", None, {}),
}

_LAZY = {
    "SessionEnv": "simenv.envs.session",
    "ExplorationEnv": "simenv.envs.exploration",
    "ObservationBuilder": "simenv.envs.observation",
    "BatchedSessionVecEnv": "simenv.envs.vector",
    "SessionVectorEnv": "simenv.envs.batch",
    "make_gym_vector_env": "simenv.envs.vector",
}

__all__ = ["ENV_IDS", "register_envs", *_LAZY]


def register_envs() -> list[str]:
    """Register the ``recloop/*`` environments with gymnasium (again is a no-op)."""
    try:
        import gymnasium
    except ImportError:  # pragma: no cover - gymnasium is a core dependency
        return []
    for env_id, (entry_point, vector_entry_point, kwargs) in _SPECS.items():
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point=entry_point,
                vector_entry_point=vector_entry_point,
                kwargs=dict(kwargs),
            )
    return list(ENV_IDS)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'simenv.envs' has no attribute {name!r}")


register_envs()

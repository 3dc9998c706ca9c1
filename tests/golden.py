"""Golden runs: digests of what the simulator does, kept so that a refactor can prove it changed
nothing.

Each case runs through a public entry point that survives moving code around (the `recloop run`
command, `gymnasium.make`, `ecosystem_v0.parallel_env`) and is reduced to a SHA-256 digest of
its content: for a run, the rows of ``metrics.parquet`` and ``interactions.parquet`` (column
names, dtypes and values, not the parquet bytes, which carry the writer's version); for an
environment, 200 seeded steps of observations, rewards and end flags.

    python tests/golden.py              # print the digests of this checkout
    python tests/golden.py --update     # rewrite tests/golden_digests.json (a meant change)
    python tests/golden.py --only filter_bubble

`tests/test_golden.py` compares every case with ``golden_digests.json``. When a change means to
alter behaviour, refresh the file with ``--update`` (or ``RECLOOP_UPDATE_GOLDEN=1 pytest
tests/test_golden.py``) and say in the commit which digests changed and why.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DIGESTS = Path(__file__).with_name("golden_digests.json")
ENV_STEPS = 200

# (case name, recloop run arguments after the scenario name); small sizes, two policies, two
# seeds. popularity_bias needs MovieLens-100k (RECLOOP_DATA); the LLM case the embedded model.
RUNS: dict[str, list[str]] = {
    "boredom": [
        "boredom", "--policy", "popularity", "--policy", "mf", "--seed", "0", "--seed", "1",
        "--set", "ticks=6", "--set", "population.size=120", "--set", "catalog.n_items=200",
    ],
    "cold_start": [
        "cold_start", "--policy", "popularity", "--policy", "epsilon_greedy", "--seed", "0",
        "--seed", "1", "--set", "ticks=6", "--set", "population.size=120",
    ],
    "filter_bubble": [
        "filter_bubble", "--policy", "mf", "--policy", "mmr", "--seed", "0", "--seed", "1",
        "--set", "ticks=6", "--set", "population.size=150", "--set", "catalog.n_items=300",
    ],
    "filter_bubble_utility": [
        "filter_bubble_llm", "--decider", "utility", "--policy", "random", "--policy", "mf",
        "--seed", "0", "--seed", "1", "--set", "ticks=4", "--set", "population.size=60",
    ],
    "popularity_bias": [
        "popularity_bias", "--policy", "popularity", "--policy", "ucb", "--seed", "0",
        "--seed", "1", "--set", "ticks=4",
    ],
    "filter_bubble_llm": [
        "filter_bubble_llm", "--policy", "random", "--policy", "mf", "--seed", "0",
        "--set", "ticks=2", "--set", "population.size=4", "--set", "decider.llm.cache=false",
    ],
    # without contextual calibration: the decisions of the LLM personas before it existed
    "filter_bubble_llm_uncalibrated": [
        "filter_bubble_llm", "--policy", "random", "--policy", "mf", "--seed", "0",
        "--set", "ticks=2", "--set", "population.size=4", "--set", "decider.llm.cache=false",
        "--set", "decider.llm.calibration=none",
    ],
    "homogenization": [
        "homogenization", "--seed", "0", "--seed", "1", "--set", "ticks=6",
        "--set", "population.size=120", "--set", "catalog.n_items=200",
        "--set", "policies=[{name: oracle}, {name: mf, label: mf(retrain 2 until 4), "
        "params: {retrain_every: 2, train_ticks: 4}}]",
    ],
    "exploration": [
        "exploration", "--seed", "0", "--seed", "1", "--set", "ticks=6",
        "--set", "population.size=120", "--set", "catalog.n_items=200",
        "--set", "policies=[{name: epsilon_greedy, label: eps 0.3, params: {epsilon: 0.3}}, "
        "{name: thompson}]",
    ],
    "creator_competition": [
        "creator_competition", "--policy", "popularity", "--policy", "mf", "--seed", "0",
        "--seed", "1", "--set", "ticks=6", "--set", "population.size=120",
        "--set", "catalog.n_items=120",
    ],
}  # fmt: skip
NEEDS_MOVIELENS = {"popularity_bias"}
NEEDS_LLM = {"filter_bubble_llm", "filter_bubble_llm_uncalibrated"}


def frame_digest(frame: pd.DataFrame) -> str:
    """Column names, dtypes and every value of ``frame`` (row order included)."""
    h = hashlib.sha256()
    h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return h.hexdigest()


def run_digests(name: str, args: list[str]) -> dict[str, str]:
    from simenv.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / name
        code = main(["run", *args, "--out", str(out), "--no-progress"])
        if code not in (0, None):
            raise RuntimeError(f"golden run {name} failed with exit code {code}")
        result = {"metrics": frame_digest(pd.read_parquet(out / "metrics.parquet"))}
        interactions = out / "interactions.parquet"
        if interactions.exists():
            result["interactions"] = frame_digest(pd.read_parquet(interactions))
        return result


class _Trajectory:
    """SHA-256 over the arrays of an env trajectory, in the order they are added."""

    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def add(self, value: Any) -> None:
        if isinstance(value, dict):
            for key in sorted(value):
                self.h.update(str(key).encode())
                self.add(value[key])
            return
        arr = np.asarray(value)
        self.h.update(str(arr.dtype).encode())
        self.h.update(str(arr.shape).encode())
        self.h.update(np.ascontiguousarray(arr).tobytes())


def gym_digest(env_id: str) -> dict[str, str]:
    import gymnasium as gym

    import simenv  # noqa: F401  (registers the recloop/* ids)

    env = gym.make(env_id, scenario="filter_bubble", overrides=["population.size=200"])
    env.action_space.seed(7)
    traj = _Trajectory()
    obs, _ = env.reset(seed=3)
    traj.add(obs)
    for _ in range(ENV_STEPS):
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        traj.add(obs)
        traj.add(np.float64(reward))
        traj.add(np.asarray([terminated, truncated]))
        if terminated or truncated:
            obs, _ = env.reset()
            traj.add(obs)
    env.close()
    return {"trajectory": traj.h.hexdigest()}


def ecosystem_digest() -> dict[str, str]:
    from simenv.envs import ecosystem_v0

    env = ecosystem_v0.parallel_env(
        scenario="cold_start",
        overrides=["population.size=150"],
        n_platforms=2,
        n_creator_agents=3,
        seed=5,
    )
    traj = _Trajectory()
    obs, _ = env.reset(seed=5)
    traj.add(obs)
    spaces = {a: env.action_space(a) for a in env.possible_agents}
    for i, space in enumerate(spaces.values()):
        space.seed(11 + i)
    for _ in range(ENV_STEPS):
        if not env.agents:
            obs, _ = env.reset()
            traj.add(obs)
        actions = {a: spaces[a].sample() for a in env.agents}
        obs, rewards, terms, truncs, _ = env.step(actions)
        for part in (obs, rewards, terms, truncs):
            traj.add(part)
    env.close()
    return {"trajectory": traj.h.hexdigest()}


def cases() -> dict[str, Callable[[], dict[str, str]]]:
    found: dict[str, Callable[[], dict[str, str]]] = {
        name: (lambda name=name, args=args: run_digests(name, args)) for name, args in RUNS.items()
    }
    found["env_exploration"] = lambda: gym_digest("recloop/Exploration-v0")
    found["env_session"] = lambda: gym_digest("recloop/Session-v0")
    found["env_ecosystem"] = ecosystem_digest
    return found


def record(names: Iterable[str] | None = None) -> dict[str, dict[str, str]]:
    all_cases = cases()
    return {name: all_cases[name]() for name in (names or all_cases)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help="rewrite golden_digests.json")
    parser.add_argument("--only", action="append", help="case name (repeatable)")
    args = parser.parse_args(argv)
    found = record(args.only)
    print(json.dumps(found, indent=2))
    if args.update:
        stored = json.loads(DIGESTS.read_text()) if DIGESTS.exists() else {}
        stored.update(found)
        DIGESTS.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
        print(f"wrote {DIGESTS}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark of the RL environments: steps per second, single env against the batched VecEnv.

    python benchmarks/envs.py                       # Session mode, N = 1, 16, 256
    python benchmarks/envs.py --mode exploration --n 1 16 256 --seconds 1 --repeats 3
    python benchmarks/envs.py --profile 3000        # where a single env's step goes (cProfile)

The world is filter_bubble with 2,000 users and 1,000 items (slate 10, 30 candidates), random
actions drawn up front. ``recloop/Session-v0`` steps one session at a time;
`BatchedSessionVecEnv` steps N sessions with one ``world.serve`` (one decider call) per step.
"session-steps/s" counts served slates; the last column is the batched env's session-steps/s
over the single env's, i.e. the speed-up against stepping N separate single envs in turn.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OVERRIDES = [
    "population.size=2000",
    "catalog.n_items=1000",
    "catalog.n_creators=50",
    "log_interactions=false",
]


def random_actions(space: Any, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` batches of ``n`` random actions for ``space`` (MultiDiscrete/Discrete/Box)."""
    from gymnasium import spaces

    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(count, n, *space.nvec.shape))
    if isinstance(space, spaces.Discrete):
        return rng.integers(0, int(space.n), size=(count, n))
    return rng.random((count, n, *space.shape)).astype(np.float32)


def best_of(repeats: int, fn: Any, *args: Any) -> float:
    """The best rate of ``repeats`` runs (robust to other load on the machine)."""
    return max(fn(*args) for _ in range(repeats))


def bench_single(mode: str, seconds: float) -> float:
    """Steps per second of one single-session environment."""
    import gymnasium

    import simenv  # noqa: F401  (registers the envs)

    env_id = "recloop/Session-v0" if mode == "session" else "recloop/Exploration-v0"
    env = gymnasium.make(env_id, overrides=OVERRIDES)
    env.reset(seed=0)
    actions = random_actions(env.action_space, 1, 4096, np.random.default_rng(0))[:, 0]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bench_batched(mode: str, n: int, seconds: float) -> float:
    """VecEnv steps per second (each step serves ``n`` sessions)."""
    from simenv.envs.vector import BatchedSessionVecEnv

    venv = BatchedSessionVecEnv("filter_bubble", n, OVERRIDES, mode=mode, seed=0)  # type: ignore[arg-type]
    venv.reset()
    actions = random_actions(venv.action_space, n, 256, np.random.default_rng(0))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        venv.step(actions[steps % len(actions)])
        steps += 1
    return steps / (time.perf_counter() - start)


def profile_single(mode: str, steps: int, top: int = 30) -> None:
    """cProfile of ``steps`` steps of the single env (after 200 untimed ones): the functions
    that cost most, by their own time, with calls per env step."""
    import cProfile
    import pstats

    import gymnasium

    import simenv  # noqa: F401  (registers the envs)

    env_id = "recloop/Session-v0" if mode == "session" else "recloop/Exploration-v0"
    env = gymnasium.make(env_id, overrides=OVERRIDES)
    env.reset(seed=0)
    actions = random_actions(env.action_space, 1, 4096, np.random.default_rng(0))[:, 0]

    def run(count: int) -> None:
        for i in range(count):
            _, _, terminated, truncated, _ = env.step(actions[i % len(actions)])
            if terminated or truncated:
                env.reset()

    run(200)
    profiler = cProfile.Profile()
    profiler.runcall(run, steps)
    stats = pstats.Stats(profiler)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"{env_id}: {steps} steps, {total / steps * 1e6:.0f} us per step under cProfile")
    print(f"{'own us/step':>12}{'total us/step':>14}{'calls/step':>11}  function")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, own, cumulative, _) in rows[:top]:
        where = f"{Path(path).name}:{line}({name})" if line else name
        per_step = (own / steps * 1e6, cumulative / steps * 1e6, calls / steps)
        print("{:12.1f}{:14.1f}{:11.2f}  ".format(*per_step) + where)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["session", "exploration"], default="session")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the best counts")
    parser.add_argument(
        "--profile",
        type=int,
        metavar="STEPS",
        help="instead: profile STEPS steps of the single env of --mode and print the costliest "
        "functions per step",
    )
    args = parser.parse_args(argv)
    if args.profile:
        profile_single(args.mode, args.profile)
        return

    single = best_of(args.repeats, bench_single, args.mode, args.seconds)
    name = "SessionEnv" if args.mode == "session" else "ExplorationEnv"
    rows = [(f"{name} (single)", 1, single, single, 1.0)]
    for n in args.n:
        rate = best_of(args.repeats, bench_batched, args.mode, n, args.seconds)
        rows.append((f"BatchedSessionVecEnv N={n}", n, rate, rate * n, rate * n / single))
    print(f"mode={args.mode}  world: filter_bubble {' '.join(OVERRIDES)}")
    head = (
        f"{'environment':<28}{'N':>5}{'env steps/s':>14}{'session-steps/s':>18}"
        f"{'vs N single envs':>19}"
    )
    print(head)
    print("-" * len(head))
    for name, n, rate, per_session, ratio in rows:
        print(f"{name:<28}{n:>5}{rate:>14,.0f}{per_session:>18,.0f}{ratio:>18.1f}x")


if __name__ == "__main__":
    main()

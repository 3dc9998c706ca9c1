"""Benchmark of the RL environments: steps per second, single env against the batched VecEnv.

    python benchmarks/envs.py                       # Session mode, N = 1, 16, 256
    python benchmarks/envs.py --mode exploration --n 1 16 256 --seconds 1 --repeats 3
    python benchmarks/envs.py --profile 3000        # where a single env's step goes (cProfile)
    python benchmarks/envs.py --items 1000 10000 100000 --users 2000 100000  # single env by size

The world is filter_bubble with 2,000 users and 1,000 items (slate 10, 30 candidates), random
actions drawn up front (``--items`` / ``--users`` change the catalog and the population; given
either, the table has one row per size pair of the single env of ``--mode`` instead, to show
whether a step's cost grows with them).
``recloop/Session-v0`` steps one session at a time;
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

USERS, ITEMS = 2000, 1000
OVERRIDES = [
    f"population.size={USERS}",
    f"catalog.n_items={ITEMS}",
    "catalog.n_creators=50",
    "log_interactions=false",
]


def sized(users: int, items: int) -> list[str]:
    """`OVERRIDES` with ``users`` users and ``items`` items."""
    return [f"population.size={users}", f"catalog.n_items={items}", *OVERRIDES[2:]]


def random_actions(space: Any, n: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` batches of ``n`` random actions for ``space`` (MultiDiscrete/Discrete/Box)."""
    from gymnasium import spaces

    if isinstance(space, spaces.MultiDiscrete):
        return rng.integers(0, space.nvec, size=(count, n, *space.nvec.shape))
    if isinstance(space, spaces.Discrete):
        return rng.integers(0, int(space.n), size=(count, n))
    return rng.random((count, n, *space.shape)).astype(np.float32)


#: The clock the rates are timed by: wall time, or with ``--cpu-time`` the process's CPU time
#: (on a machine other jobs load, a process that waits for a core loses no CPU time).
CLOCK = time.perf_counter


def best_of(repeats: int, fn: Any, *args: Any) -> float:
    """The best rate of ``repeats`` runs (robust to other load on the machine)."""
    return max(fn(*args) for _ in range(repeats))


def make_single(mode: str, overrides: list[str] | None = None) -> Any:
    """The single env of ``mode`` on the benchmark's world (``overrides``: `OVERRIDES`), reset."""
    import gymnasium

    import simenv  # noqa: F401  (registers the envs)

    env_id = "recloop/Session-v0" if mode == "session" else "recloop/Exploration-v0"
    env = gymnasium.make(env_id, overrides=overrides or OVERRIDES)
    env.reset(seed=0)
    return env


def bench_single(mode: str, seconds: float, env: Any = None) -> float:
    """Steps per second of one single-session environment (``env``: made by `make_single`,
    stepped on from where it is; default: a new one on `OVERRIDES`)."""
    env = env or make_single(mode)
    actions = random_actions(env.action_space, 1, 4096, np.random.default_rng(0))[:, 0]
    steps, start = 0, CLOCK()
    while CLOCK() - start < seconds:
        _, _, terminated, truncated, _ = env.step(actions[steps % len(actions)])
        steps += 1
        if terminated or truncated:
            env.reset()
    return steps / (CLOCK() - start)


def bench_batched(mode: str, n: int, seconds: float) -> float:
    """VecEnv steps per second (each step serves ``n`` sessions)."""
    from simenv.envs.vector import BatchedSessionVecEnv

    venv = BatchedSessionVecEnv("filter_bubble", n, OVERRIDES, mode=mode, seed=0)  # type: ignore[arg-type]
    venv.reset()
    actions = random_actions(venv.action_space, n, 256, np.random.default_rng(0))
    steps, start = 0, CLOCK()
    while CLOCK() - start < seconds:
        venv.step(actions[steps % len(actions)])
        steps += 1
    return steps / (CLOCK() - start)


def profile_single(
    mode: str, steps: int, top: int = 30, overrides: list[str] | None = None
) -> None:
    """cProfile of ``steps`` steps of the single env (after 200 untimed ones; ``overrides``:
    `OVERRIDES`): the functions that cost most, by their own time, with calls per env step."""
    import cProfile
    import pstats

    env = make_single(mode, overrides)
    env_id = env.spec.id
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
    calls = stats.total_calls / steps  # type: ignore[attr-defined]
    print(
        f"{env_id}: {steps} steps, {total / steps * 1e6:.0f} us per step under cProfile, "
        f"{calls:.0f} function calls per step"
    )
    print(f"{'own us/step':>12}{'total us/step':>14}{'calls/step':>11}  function")
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][2], reverse=True)  # type: ignore[attr-defined]
    for (path, line, name), (_, calls, own, cumulative, _) in rows[:top]:
        where = f"{Path(path).name}:{line}({name})" if line else name
        per_step = (own / steps * 1e6, cumulative / steps * 1e6, calls / steps)
        print("{:12.1f}{:14.1f}{:11.2f}  ".format(*per_step) + where)


def size_table(mode: str, users: list[int], items: list[int], args: argparse.Namespace) -> None:
    """One row per (population, catalog) size: the single env's steps/s (best of
    ``args.repeats`` runs of ``args.seconds`` on one env, after 200 untimed steps), and the
    rate over the first row's."""
    print(f"mode={mode}  world: filter_bubble {' '.join(OVERRIDES[2:])}")
    head = f"{'users':>9}{'items':>9}{'env steps/s':>14}{'us/step':>10}{'vs first row':>14}"
    print(head)
    print("-" * len(head))
    first = None
    for n_users in users:
        for n_items in items:
            env = make_single(mode, sized(n_users, n_items))
            bench_single(mode, 0.2, env)  # warm caches (and skip the first ticks' cold ranking)
            rate = best_of(args.repeats, bench_single, mode, args.seconds, env)
            first = first or rate
            sizes = f"{n_users:>9,}{n_items:>9,}"
            print(f"{sizes}{rate:>14,.0f}{1e6 / rate:>10.0f}{rate / first:>13.2f}x")


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
        help="instead: profile STEPS steps of the single env of --mode (on the first --users and "
        "--items sizes) and print the costliest functions per step",
    )
    parser.add_argument(
        "--items",
        type=int,
        nargs="+",
        metavar="N",
        help=f"instead: the single env of --mode with catalogs of these sizes (users: --users, "
        f"default {USERS}), one row each",
    )
    parser.add_argument(
        "--users",
        type=int,
        nargs="+",
        metavar="N",
        help=f"instead: the single env of --mode with populations of these sizes (items: "
        f"--items, default {ITEMS}), one row each",
    )
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by the process's CPU time instead of wall time (a machine other jobs load)",
    )
    args = parser.parse_args(argv)
    if args.cpu_time:
        global CLOCK
        CLOCK = time.process_time
    if args.profile:
        users, items = (args.users or [USERS])[0], (args.items or [ITEMS])[0]
        profile_single(args.mode, args.profile, overrides=sized(users, items))
        return
    if args.items or args.users:
        size_table(args.mode, args.users or [USERS], args.items or [ITEMS], args)
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

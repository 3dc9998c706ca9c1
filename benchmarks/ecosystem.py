"""Benchmark: steps per second of the `recloop/ecosystem` ParallelEnv under random actions.

    python benchmarks/ecosystem.py                       # 500 and 5000 users
    python benchmarks/ecosystem.py --users 1000 --platforms 3 --steps 100

One step is one tick of the world: platform choice of every active user, up to
``session.max_steps`` slates per session (one serve call per session step for all platforms),
every strategy of every platform learning from its feedback, creator agents publishing.
Resets (building the world) are not timed. Printed: env steps/s and slates (user decisions)/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def bench(users: int, items: int, platforms: int, creators: int, steps: int, seed: int) -> None:
    from simenv.envs import ecosystem_v0

    overrides = [
        f"population.size={users}",
        f"catalog.n_items={items}",
        "catalog.n_creators=50",
        "creators.enabled=true",
        f"ticks={steps}",
    ]
    env = ecosystem_v0.parallel_env(
        scenario="filter_bubble",
        overrides=overrides,
        n_platforms=platforms,
        n_creator_agents=creators,
        max_cycles=steps,
    )
    env.reset(seed=seed)
    for i, agent in enumerate(env.possible_agents):
        env.action_space(agent).seed(seed + i)
    done = slates = 0
    start = time.perf_counter()
    while env.agents:
        actions = {a: env.action_space(a).sample() for a in env.agents}
        _, _, _, _, infos = env.step(actions)
        slates += sum(infos[p]["impressions"] for p in env.platforms)
        done += 1
    elapsed = time.perf_counter() - start
    print(
        f"users={users:>6} items={items:>5} platforms={platforms} creator_agents={creators} "
        f"steps={done}: {done / elapsed:8.1f} env steps/s, "
        f"{slates / elapsed:10.0f} slates/s ({np.mean(slates / max(done, 1)):.0f} slates/step)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[500, 5000])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--platforms", type=int, default=2)
    parser.add_argument("--creators", type=int, default=4, help="creator agents")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for users in args.users:
        bench(users, args.items, args.platforms, args.creators, args.steps, args.seed)


if __name__ == "__main__":
    main()

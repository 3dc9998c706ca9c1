"""Benchmarks: user-decisions per second of the world's tick, against a per-user Python loop.

    make bench                       # 1k, 10k and 100k users
    python benchmarks/run.py --sizes 1000 10000 100000 1000000    # the README's scale table

Each size runs in a fresh subprocess so that its peak memory (max RSS) is its own. The world is
the filter_bubble scenario with the popularity policy, slate size 10, every user active every
tick, 10k items; one "decision" is one user answering one slate. The baseline is the same
utility model written as a plain Python loop over users (how per-agent simulators do it),
timed in the same process on a sample of users, so the ratio is robust to a noisy machine.
With more than one size, the exponent b of a least-squares fit tick_s ~ users^b (log-log) is
printed: 1 is linear growth.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_world(n_users: int, n_items: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import policies
    from agents.deciders import UtilityDecider
    from scenarios import load
    from simenv.world import World

    scenario = load(
        "filter_bubble",
        [
            f"population.size={n_users}",
            f"catalog.n_items={n_items}",
            "catalog.n_creators=200",
            "population.activity_scale=100",  # every present user opens the app every tick
            "session.max_steps=1",
            "log_interactions=false",
        ],
    )
    decider = UtilityDecider(scenario.decider.utility)
    return World(scenario, policies.make("popularity"), seed=seed, decider=decider)


def time_ticks(world, ticks: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    world.step()  # warm-up tick (first-touch allocations)
    decisions = 0
    start = time.perf_counter()
    for _ in range(ticks):
        before = world.items.exposure_total.sum()
        world.step()
        decisions += int(world.items.exposure_total.sum() - before) // world.spec.k
    return time.perf_counter() - start, decisions


def loop_baseline(world, n_users: int) -> float:  # type: ignore[no-untyped-def]
    """Decisions per second of a per-user loop over the same utility model."""
    p = world.decider.params
    feats = world.items.features
    unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    pop = world.items.popularity_signal(world.n_users)
    rng = np.random.default_rng(1)
    slate = np.argsort(-pop)[: world.spec.k]
    start = time.perf_counter()
    for u in range(n_users):
        taste = world.users.taste[u]
        profile = world.users.recent_profile[u]
        norm = np.linalg.norm(profile)
        best, best_u = -1, p.no_choice + p.fatigue * world.users.emotion.fatigue[u]
        best_u += p.noise * rng.gumbel()
        for pos, item in enumerate(slate):
            match = float(unit[item] @ taste)
            sim = float(unit[item] @ profile / norm) if norm > 0 else 0.0
            util = (
                p.taste * match
                + p.quality * (world.items.quality[item] - 0.5)
                + p.popularity * world.users.persona.conformity[u] * pop[item]
                + p.novelty * world.users.emotion.curiosity[u] * (1 - sim)
                - p.boredom * world.users.emotion.boredom[u] * sim
                - p.position * np.log1p(pos)
                + p.noise * rng.gumbel()
            )
            if util > best_u:
                best, best_u = item, util
        if best >= 0:
            world.users.recent_profile[u] += feats[best]
            world.users.emotion.satisfaction[u] = 0.7 * world.users.emotion.satisfaction[u] + 0.3
    return n_users / (time.perf_counter() - start)


def one(n_users: int, n_items: int, ticks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    world = build_world(n_users, n_items)
    build_s = time.perf_counter() - t0
    seconds, decisions = time_ticks(world, ticks)
    vec_rate = decisions / seconds
    loop_rate = loop_baseline(world, min(n_users, 2000))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "users": n_users,
        "items": n_items,
        "build_s": build_s,
        "tick_s": seconds / ticks,
        "decisions_per_s": vec_rate,
        "loop_decisions_per_s": loop_rate,
        "ratio": vec_rate / loop_rate,
        "max_rss_mib": rss_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.items, args.ticks)))
        return
    print("UtilityDecider world tick, popularity policy, slate 10, one core (OMP threads = 1)")
    header = f"{'users':>8} {'tick s':>8} {'decisions/s':>12} {'loop/s':>9} {'ratio':>7} {'MiB':>7}"
    print(header)
    ticks: list[float] = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--items", str(args.items),
               "--ticks", str(args.ticks)]  # fmt: skip
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**_env(), **env}
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['users']:>8} {r['tick_s']:>8.3f} {r['decisions_per_s']:>12,.0f} "
            f"{r['loop_decisions_per_s']:>9,.0f} {r['ratio']:>6.0f}x {r['max_rss_mib']:>7.0f}"
        )
        ticks.append(r["tick_s"])
    if len(ticks) > 1:
        slope = np.polyfit(np.log(args.sizes), np.log(ticks), 1)[0]
        print(f"tick time grows as users^{slope:.2f} (least squares on log-log)")


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


if __name__ == "__main__":
    main()

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

Two tick times per size, from the same world: ``--ticks`` ticks with every metric computed at
every tick (the default scenario, ``metrics_every: 1``), then ``--metrics-every`` N (default
10) consecutive ticks with the heavy metrics computed every N ticks: N ticks hold exactly one
tick that computes them, so their mean is the cost per tick of a long run at that setting.
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


def build_world(  # type: ignore[no-untyped-def]
    n_users: int, n_items: int, seed: int = 0, metrics_every: int = 1
):
    """The benchmark world. Its scenario runs 1,000,000 ticks, so no timed tick is the last
    one (where ``metrics_every`` computes every metric)."""
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
            "ticks=1000000",
            f"metrics_every={metrics_every}",
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


def sparse_metrics(world, every: int) -> None:  # type: ignore[no-untyped-def]
    """From now on ``world`` computes its heavy metrics every ``every`` ticks."""
    world.scenario = world.scenario.model_copy(update={"metrics_every": every})


def one(n_users: int, n_items: int, ticks: int, every: int) -> dict[str, float]:
    t0 = time.perf_counter()
    world = build_world(n_users, n_items)
    build_s = time.perf_counter() - t0
    seconds, decisions = time_ticks(world, ticks)
    vec_rate = decisions / seconds
    sparse_metrics(world, every)
    sparse_s, sparse_decisions = time_ticks(world, every)  # exactly one tick computes them
    loop_rate = loop_baseline(world, min(n_users, 2000))
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "users": n_users,
        "items": n_items,
        "build_s": build_s,
        "tick_s": seconds / ticks,
        "decisions_per_s": vec_rate,
        "metrics_every": every,
        "sparse_tick_s": sparse_s / every,
        "sparse_decisions_per_s": sparse_decisions / sparse_s,
        "loop_decisions_per_s": loop_rate,
        "ratio": vec_rate / loop_rate,
        "max_rss_mib": rss_mib,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--ticks", type=int, default=5, help="timed ticks, every metric")
    parser.add_argument(
        "--metrics-every",
        type=int,
        default=10,
        help="metrics_every of the second timing (that many ticks are timed)",
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ticks < 1 or args.metrics_every < 1:
        parser.error("--ticks and --metrics-every must be at least 1")
    if args.one:
        print(json.dumps(one(args.one, args.items, args.ticks, args.metrics_every)))
        return
    every = args.metrics_every
    print("UtilityDecider world tick, popularity policy, slate 10, one core (OMP threads = 1)")
    print(f"'all metrics': every metric at every tick (the default, metrics_every 1); "
          f"'every {every}': metrics_every {every}, mean over {every} ticks")  # fmt: skip
    header = (
        f"{'users':>8} {'tick s':>8} {'decisions/s':>12} {f'every {every}: s':>14} "
        f"{'decisions/s':>12} {'loop/s':>9} {'ratio':>7} {'MiB':>7}"
    )
    print(f"{'':>8} {'all metrics':>21}")
    print(header)
    ticks: list[float] = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--items", str(args.items),
               "--ticks", str(args.ticks), "--metrics-every", str(every)]  # fmt: skip
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = subprocess.run(
            cmd, check=True, capture_output=True, text=True, env={**_env(), **env}
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"{r['users']:>8} {r['tick_s']:>8.3f} {r['decisions_per_s']:>12,.0f} "
            f"{r['sparse_tick_s']:>14.3f} {r['sparse_decisions_per_s']:>12,.0f} "
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

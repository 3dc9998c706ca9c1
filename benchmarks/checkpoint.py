"""Benchmarks: what a checkpoint costs (seconds to write and to load, bytes on disk) against the
ticks it saves, at 10k and 100k users.

    python benchmarks/checkpoint.py                      # 10k and 100k users, mf policy
    python benchmarks/checkpoint.py --sizes 10000 --policy ucb

Each size runs in a fresh subprocess. The world is filter_bubble with 10k items, every user
active every tick (as in benchmarks/run.py) and the interaction log on, run ``--ticks`` ticks
before the checkpoint (the log and the memories grow with the ticks run: a later checkpoint is
larger). The checkpoint is written with `simenv.studies.checkpoint.save_checkpoint` into a
temporary folder (atomic write with fsync, as a run does) and loaded back; ``share/50`` is the
write time over the time of the 50 ticks between two checkpoints at the default
``checkpoint_every``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(n_users: int, n_items: int, ticks: int, policy: str) -> dict[str, float | int | str]:
    import policies
    from scenarios import load
    from simenv.studies.checkpoint import load_checkpoint, save_checkpoint
    from simenv.world import World

    scenario = load(
        "filter_bubble",
        [
            f"population.size={n_users}",
            f"catalog.n_items={n_items}",
            "catalog.n_creators=200",
            "population.activity_scale=100",  # every present user opens the app every tick
            "session.max_steps=1",
            f"ticks={ticks + 1}",
        ],
    )
    world = World(scenario, policies.make(policy), seed=0)
    start = time.perf_counter()
    world.run(ticks)
    tick_s = (time.perf_counter() - start) / ticks
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pkl"
        start = time.perf_counter()
        size = save_checkpoint(path, world, "bench", policy)
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        load_checkpoint(path, "bench", {})
        load_s = time.perf_counter() - start
    return {
        "users": n_users,
        "policy": policy,
        "ticks": ticks,
        "tick_s": tick_s,
        "save_s": save_s,
        "load_s": load_s,
        "mib": size / 2**20,
        "share_50": save_s / (50 * tick_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10000, 100000])
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--ticks", type=int, default=5, help="ticks run before the checkpoint")
    parser.add_argument("--policy", default="mf")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.items, args.ticks, args.policy)))
        return
    print(f"checkpoint of a filter_bubble world after {args.ticks} ticks, {args.policy} policy")
    print(f"{'users':>8} {'tick s':>8} {'write s':>8} {'load s':>8} {'MiB':>8} {'share/50':>9}")
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--items", str(args.items),
               "--ticks", str(args.ticks), "--policy", args.policy]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"{r['users']:>8} {r['tick_s']:>8.3f} {r['save_s']:>8.3f} {r['load_s']:>8.3f} "
            f"{r['mib']:>8.1f} {r['share_50']:>8.1%}"
        )


if __name__ == "__main__":
    main()

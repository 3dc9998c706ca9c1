"""Sweep throughput: runs per minute of `recloop sweep` with 1 and 2 local workers and on a
local Ray runtime, and Ray's overhead over the process pool for short runs.

    python benchmarks/sweep.py                     # 3 repeats of each executor
    python benchmarks/sweep.py --repeats 1 --ticks 5

The sweep is filter_bubble with ``--grid policy=popularity,random,mf --grid
population.drift=0,0.05`` over ``--seeds`` seeds (small worlds: ``--users`` users, ``--items``
items, ``--ticks`` ticks, one plot), each repeat into a fresh folder, each executor in a fresh
``python -m simenv.cli`` process (what a user runs: interpreter start, imports, the executor's
start-up, the runs, combining and plotting the settings). A run is one (setting, policy, seed)
job. Ray's overhead is its median wall time minus the 2-worker pool's, per run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

EXECUTORS = {
    "1 worker (in process)": ["--workers", "1"],
    "2 workers (process pool)": ["--workers", "2"],
    "Ray, local runtime, 2 CPUs": ["--ray-address", "local", "--workers", "2"],
}


def sweep_args(args: argparse.Namespace) -> list[str]:
    sets = [
        f"ticks={args.ticks}",
        f"population.size={args.users}",
        f"catalog.n_items={args.items}",
        "plots=[ctr]",
    ]
    return [
        "sweep", "filter_bubble", "--seeds", str(args.seeds),
        "--grid", "policy=popularity,random,mf", "--grid", "population.drift=0,0.05",
        *[a for s in sets for a in ("--set", s)], "--no-progress",
    ]  # fmt: skip


def time_sweep(argv: list[str], out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "simenv.cli", *argv, "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sweep failed:\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--items", type=int, default=1000)
    args = parser.parse_args()
    runs = 6 * args.seeds
    base = sweep_args(args)
    print(
        f"{runs} runs: 6 settings x {args.seeds} seeds, {args.users} users, {args.items} "
        f"items, {args.ticks} ticks; {args.repeats} repeat(s); wall time of the whole command"
    )
    medians: dict[str, float] = {}
    print("\n| executor | runs/min (min / median / max) | seconds (min / median / max) |")
    print("| --- | ---: | ---: |")
    for name, extra in EXECUTORS.items():
        times = []
        for _ in range(args.repeats):
            folder = Path(tempfile.mkdtemp(prefix="recloop-bench-sweep-"))
            try:
                times.append(time_sweep([*base, *extra], folder / "s"))
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        lo, mid, hi = min(times), statistics.median(times), max(times)
        medians[name] = mid
        rate = f"{60 * runs / hi:.0f} / {60 * runs / mid:.0f} / {60 * runs / lo:.0f}"
        print(f"| {name} | {rate} | {lo:.1f} / {mid:.1f} / {hi:.1f} |", flush=True)
    pool, ray = medians["2 workers (process pool)"], medians["Ray, local runtime, 2 CPUs"]
    print(f"\nRay over the 2-worker pool: {ray - pool:+.1f} s per sweep (median), "
          f"{(ray - pool) / runs:+.2f} s per run, {ray / pool:.2f}x the wall time")  # fmt: skip


if __name__ == "__main__":
    main()

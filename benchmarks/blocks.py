"""The world tick of two checkouts in lockstep, 10-tick block by 10-tick block.

    python benchmarks/blocks.py --before ../wt-base                # this checkout is "after"
    python benchmarks/blocks.py --before ../wt-base --metrics-every 1 --pairs 2

Each pair builds benchmarks/run.py's world (`build_world`: filter_bubble, popularity policy,
slate 10, ``--items`` items, every present user active) at ``--users`` users in one process per
checkout (each imports its own checkout's code), runs the warm-up tick 0 in both, then times
the same blocks of ``--block`` ticks (ticks 1-10, 11-20, ...) in the two processes in turn, so
that a noisy neighbour slows both alike (the first checkout to run alternates from pair to
pair). Per block it prints the decisions, the seconds (wall and the process's CPU time) of
each checkout and the ratio before/after; at the end the median ratio per block. The
benchmark world loses users over its ticks (they leave the platform), so the blocks do not
cost the same: compare a block with the same block.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def worker(users: int, items: int, metrics_every: int) -> None:
    """Inside one checkout (its directory first on ``sys.path``): build the world, run tick 0,
    then for each line ``n`` on stdin run ``n`` ticks and print their decisions and seconds."""
    from benchmarks.run import build_world

    world = build_world(users, items, metrics_every=metrics_every)
    world.step()
    print("ready", flush=True)
    for line in sys.stdin:
        before = int(world.items.exposure_total.sum())
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(int(line)):
            world.step()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        decisions = (int(world.items.exposure_total.sum()) - before) // world.spec.k
        print(json.dumps({"decisions": decisions, "wall": wall, "cpu": cpu}), flush=True)


def start(tree: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    """A worker process importing ``tree``'s code, once its world is built."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--users", str(args.users),
           "--items", str(args.items), "--metrics-every", str(args.metrics_every)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"recloop: error: the world of {tree} did not start")
    return proc


def run_block(proc: subprocess.Popen[str], ticks: int) -> dict[str, float]:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{ticks}\n")
    proc.stdin.flush()
    return dict(json.loads(proc.stdout.readline()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", type=Path, help="the checkout to compare with (required)")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--users", type=int, default=100000)
    parser.add_argument("--items", type=int, default=10000)
    parser.add_argument("--metrics-every", type=int, default=10, help="the scenario's field")
    parser.add_argument("--block", type=int, default=10, help="ticks per timed block")
    parser.add_argument("--blocks", type=int, default=4, help="blocks per pair of worlds")
    parser.add_argument("--pairs", type=int, default=3, help="pairs of worlds, one after another")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.users, args.items, args.metrics_every)
        return
    if args.before is None or not (args.before / "benchmarks" / "run.py").exists():
        parser.error("--before must name a recloop checkout (with benchmarks/run.py)")
    if min(args.block, args.blocks, args.pairs, args.metrics_every) < 1:
        parser.error("--block, --blocks, --pairs and --metrics-every must be at least 1")
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    ratios: dict[str, list[float]] = {}
    print(f"{'pair':<5}{'ticks':<10}{'decisions':>10}{'before s (cpu)':>18}{'after s (cpu)':>18}"
          f"{'before/after (cpu)':>22}{'after decisions/s':>20}")  # fmt: skip
    for pair in range(args.pairs):
        names = list(trees) if pair % 2 == 0 else list(trees)[::-1]
        procs = {name: start(trees[name], args) for name in names}
        for b in range(args.blocks):
            ticks = f"{b * args.block + 1}-{(b + 1) * args.block}"
            res = {name: run_block(procs[name], args.block) for name in names}
            old, new = res["before"], res["after"]
            wall, cpu = old["wall"] / new["wall"], old["cpu"] / new["cpu"]
            ratios.setdefault(ticks, []).append(wall)
            print(f"{pair:<5}{ticks:<10}{int(new['decisions']):>10,}"
                  f"{old['wall']:>9.2f} ({old['cpu']:.2f}){new['wall']:>9.2f} ({new['cpu']:.2f})"
                  f"{wall:>13.2f} ({cpu:.2f}){new['decisions'] / new['wall']:>20,.0f}",
                  flush=True)  # fmt: skip
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait()
    medians = ", ".join(f"ticks {t} {statistics.median(r):.2f}x" for t, r in ratios.items())
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}; median before/after (wall) by "
          f"block: {medians}")  # fmt: skip


if __name__ == "__main__":
    main()

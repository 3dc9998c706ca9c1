"""recloop's speed against Google RecSim 0.2.4, measured in one run, one after the other.

    make bench-peers                                   # sets the RecSim venv up once, then this
    python benchmarks/peers.py --recsim-python .peers/recsim/bin/python --repeats 3

Each repeat times, one after the other on one core (OMP/BLAS threads = 1):

* RecSim: ``../shared/peers/recsim_speed.py`` (RecSim's own random agent on
  ``interest_evolution``, 10 candidates, slate 2) run by the peer venv's Python, env steps/s;
* recloop: the world tick at ``--users`` users (benchmarks/run.py's world: filter_bubble,
  popularity policy, slate 10, 10k items, every user active) in user-decisions/s, twice: with
  every metric at every tick (the default scenario) and with ``metrics_every`` =
  ``--metrics-every`` (10), timed in whole runs of that many ticks (each holds exactly one tick
  that computes the heavy metrics), and the
  environments of benchmarks/envs.py (filter_bubble, 2,000 users, 1,000 items, random actions):
  ``recloop/Session-v0`` and ``recloop/Exploration-v0`` steps/s and ``BatchedSessionVecEnv``
  with N sessions in session-steps/s.

Every recloop figure of a repeat is divided by RecSim's figure of the same repeat (the runs are
interleaved, so a noisy neighbour slows both); the table gives min/median/max over the repeats
of the figures and of those ratios. Worlds are built before the first repeat and not timed.
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
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PEERS = ROOT.parent / "shared" / "peers"
RECSIM_ENV = "interest_evolution"


def recsim_rate(python: str, script: Path, steps: int) -> float:
    """RecSim env steps/s of one run of the peer's own benchmark script."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recsim.json"
        cmd = [python, str(script), "--steps", str(steps), "--repeats", "1",
               "--env", RECSIM_ENV, "--json", str(out)]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        result = json.loads(out.read_text())
    return float(result["envs"][RECSIM_ENV]["steps_per_s"]["median"])


def timed_rate(step: Callable[[], int], seconds: float) -> float:
    """Units per second of calling ``step`` (which returns the units it did) for ``seconds``."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += step()
    return done / (time.perf_counter() - start)


def world_stepper(users: int, items: int, metrics_every: int = 1) -> Callable[[], int]:
    """``metrics_every`` world ticks per call (one of them computes the heavy metrics);
    returns the user decisions they made."""
    from benchmarks.run import build_world

    world = build_world(users, items, metrics_every=metrics_every)
    world.step()  # warm-up tick (first-touch allocations): tick 0, which computes them all
    k = world.spec.k

    def step() -> int:
        before = int(world.items.exposure_total.sum())
        for _ in range(metrics_every):
            world.step()
        return (int(world.items.exposure_total.sum()) - before) // k

    return step


#: Untimed steps of a single env before its repeats: they cross episode ends and compile the
#: one-user kernels (a fresh checkout compiles them on first use).
WARM_UP_STEPS = 50


def single_stepper(mode: str) -> Callable[[], int]:
    """One step of a single `recloop/Session-v0` or `recloop/Exploration-v0` per call."""
    import gymnasium

    import simenv  # noqa: F401  (registers the envs)
    from benchmarks.envs import OVERRIDES, random_actions

    env_id = "recloop/Session-v0" if mode == "session" else "recloop/Exploration-v0"
    env = gymnasium.make(env_id, overrides=OVERRIDES)
    env.reset(seed=0)
    actions = random_actions(env.action_space, 1, 4096, np.random.default_rng(0))[:, 0]
    count = [0]

    def step() -> int:
        _, _, terminated, truncated, _ = env.step(actions[count[0] % len(actions)])
        count[0] += 1
        if terminated or truncated:
            env.reset()
        return 1

    for _ in range(WARM_UP_STEPS):  # untimed: the first steps compile the one-user kernels
        step()
    return step


def batched_stepper(n: int) -> Callable[[], int]:
    """One step of a `BatchedSessionVecEnv` of ``n`` sessions per call; returns ``n``."""
    from benchmarks.envs import OVERRIDES, random_actions
    from simenv.envs.vector import BatchedSessionVecEnv

    venv = BatchedSessionVecEnv("filter_bubble", n, OVERRIDES, mode="session", seed=0)
    venv.reset()
    actions = random_actions(venv.action_space, n, 64, np.random.default_rng(0))
    count = [0]

    def step() -> int:
        venv.step(actions[count[0] % len(actions)])
        count[0] += 1
        return n

    step()  # untimed: first-call compilation and allocations
    return step


def spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


def table(rows: list[tuple[str, str, list[float], list[float]]], recsim: list[float]) -> str:
    """The printed table: figure and ratio to RecSim as min / median / max."""
    lo, mid, hi = spread(recsim)
    lines = [
        f"{'what':<44}{'unit':<20}{'min':>10}{'median':>10}{'max':>10}"
        f"{'vs RecSim (min/median/max)':>30}",
        f"{'RecSim 0.2.4 ' + RECSIM_ENV:<44}{'steps/s':<20}{lo:>10,.0f}{mid:>10,.0f}{hi:>10,.0f}"
        f"{'1':>30}",
    ]
    for what, unit, values, ratios in rows:
        lo, mid, hi = spread(values)
        r = "{:.2f} / {:.2f} / {:.2f}".format(*spread(ratios))
        lines.append(f"{what:<44}{unit:<20}{lo:>10,.0f}{mid:>10,.0f}{hi:>10,.0f}{r:>30}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--recsim-python",
        default=str(ROOT / ".peers" / "recsim" / "bin" / "python"),
        help="Python of the RecSim venv made by setup_recsim.sh",
    )
    parser.add_argument("--recsim-script", type=Path, default=PEERS / "recsim_speed.py")
    parser.add_argument("--recsim-steps", type=int, default=20000, help="RecSim steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (>= 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timing of each recloop row")
    parser.add_argument("--users", type=int, default=100000, help="world-tick users")
    parser.add_argument(
        "--metrics-every",
        type=int,
        default=10,
        help="metrics_every of the second world-tick row (timed in runs of that many ticks)",
    )
    parser.add_argument("--items", type=int, default=10000, help="world-tick items")
    parser.add_argument("--n", type=int, default=1024, help="sessions of the batched env")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.metrics_every < 2:
        parser.error("--metrics-every must be at least 2 (the first row is every tick)")
    if not Path(args.recsim_python).exists():
        parser.error(f"no RecSim venv at {args.recsim_python}: run `make bench-peers`")

    print("building the recloop worlds (not timed) ...", flush=True)
    steppers: list[tuple[str, str, Callable[[], int]]] = [
        (f"recloop world tick, {args.users:,} users", "user-decisions/s",
         world_stepper(args.users, args.items)),
        (f"  the same, metrics_every {args.metrics_every}", "user-decisions/s",
         world_stepper(args.users, args.items, args.metrics_every)),
        ("recloop/Session-v0", "steps/s", single_stepper("session")),
        ("recloop/Exploration-v0", "steps/s", single_stepper("exploration")),
        (f"BatchedSessionVecEnv N={args.n}", "session-steps/s", batched_stepper(args.n)),
    ]  # fmt: skip
    recsim: list[float] = []
    figures: dict[str, list[float]] = {what: [] for what, _, _ in steppers}
    for r in range(args.repeats):
        recsim.append(recsim_rate(args.recsim_python, args.recsim_script, args.recsim_steps))
        line = [f"repeat {r + 1}/{args.repeats}: RecSim {recsim[-1]:,.0f} steps/s"]
        for what, unit, stepper in steppers:
            figures[what].append(timed_rate(stepper, args.seconds))
            line.append(f"{what} {figures[what][-1]:,.0f} {unit}")
        print("; ".join(line), flush=True)
    rows: list[tuple[str, str, list[float], list[float]]] = [
        (what, unit, figures[what], [f / p for f, p in zip(figures[what], recsim, strict=True)])
        for what, unit, _ in steppers
    ]
    print(f"\none core, load average at the end {os.getloadavg()[0]:.1f}; "
          f"{args.repeats} interleaved repeats; ratios per repeat")  # fmt: skip
    print(table(rows, recsim))


if __name__ == "__main__":
    main()

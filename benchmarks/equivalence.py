"""Statistical equivalence of the global rankings' tie-break: hashed keys against the old
full random permutation of the catalog.

    python benchmarks/equivalence.py                    # 10 seeds, the cases below
    python benchmarks/equivalence.py --seeds 20 --case cold_start:popularity

The global rankings (`SlatePolicy.rank_global`: popularity, epsilon-greedy's greedy part, UCB,
LinUCB) break ties with SplitMix64 keys of only the items at or above the cut (`TieKeys` with
``hashed=True``), where they drew a random permutation of the whole catalog per request: the
same kind of random order, drawn differently, so every run with them changed. This script runs
each case (a built-in scenario under one policy; ``env`` is ``recloop/Session-v0`` with random
slates) over ``--seeds`` seeds with the old tie-break (reachable only here: the policy's
`TieKeys` built without ``hashed``, which reproduces the old code's runs exactly) and the new
one, and prints per metric the mean over seeds of each run's mean over ticks with its 95%
t-interval, old and new. Exit status 1 if any pair of intervals does not overlap.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: (scenario, policy) cases: the scenarios whose policies rank globally; ``env``: Session-v0.
CASES = (
    "popularity_bias:popularity",
    "popularity_bias:ucb",
    "cold_start:popularity",
    "cold_start:epsilon_greedy",
    "boredom:popularity",
    "env:popularity",
)
METRICS = ("ctr", "homogenization")
ENV_STEPS = 2000


@contextmanager
def old_tie_break() -> Iterator[None]:
    """The global rankings' tie keys as before: a random permutation of all available items
    drawn per request (`TieKeys` without ``hashed``)."""
    from policies.selection import TieKeys
    from policies.slate_policy import SlatePolicy

    new = SlatePolicy._ties

    def ties(self: SlatePolicy, m: int, n_rows: int, hashed: bool = False) -> TieKeys:
        return TieKeys(m, n_rows, self.tie_break, self.rng)

    SlatePolicy._ties = ties  # type: ignore[method-assign]
    try:
        yield
    finally:
        SlatePolicy._ties = new  # type: ignore[method-assign]


def run_world(scenario: str, policy: str, seed: int, overrides: list[str]) -> dict[str, float]:
    """Each metric's mean over the ticks of one run."""
    from scenarios import load
    from simenv.studies import make_world

    world = make_world(load(scenario, overrides), policy, seed=seed)
    world.run()
    frame = world.metrics_frame()
    return {m: float(frame[m].mean()) for m in METRICS if m in frame}


def run_env(policy: str, seed: int, overrides: list[str]) -> dict[str, float]:
    """Clicks per step of ``ENV_STEPS`` random slates in recloop/Session-v0 (retriever
    ``policy``), and the world's CTR over its ticks."""
    import gymnasium

    import simenv  # noqa: F401  (registers the envs)

    env = gymnasium.make("recloop/Session-v0", overrides=overrides or None, retriever=policy)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    clicks = 0
    for _ in range(ENV_STEPS):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        clicks += bool(info["clicked"])
        if terminated or truncated:
            env.reset()
    frame = env.unwrapped.world.metrics_frame()
    return {"clicks/step": clicks / ENV_STEPS, "ctr": float(frame["ctr"].mean())}


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval over seeds."""
    from simenv.studies.runner import interval as t_interval

    got = t_interval(np.asarray(values))
    return float(got["mean"] or 0), float(got["low"] or 0), float(got["high"] or 0)  # type: ignore[arg-type]


def compare(case: str, seeds: int, overrides: list[str]) -> list[tuple[str, tuple, tuple]]:
    """(metric, old interval, new interval) of one case."""
    scenario, policy = case.split(":")
    run: Callable[[int], dict[str, float]]
    if scenario == "env":
        run = lambda seed: run_env(policy, seed, overrides)  # noqa: E731
    else:
        run = lambda seed: run_world(scenario, policy, seed, overrides)  # noqa: E731
    with old_tie_break():
        old = [run(seed) for seed in range(seeds)]
    new = [run(seed) for seed in range(seeds)]
    return [
        (m, interval([r[m] for r in old]), interval([r[m] for r in new]))
        for m in old[0]
        if np.isfinite([r[m] for r in old + new]).all()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per case and tie-break")
    parser.add_argument(
        "--case",
        action="append",
        help="SCENARIO:POLICY (repeatable; 'env:POLICY' = Session-v0 with that retriever); "
        f"default: {', '.join(CASES)}",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="scenario override"
    )
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (an interval needs two values)")
    head = f"{'case':<28}{'metric':<16}{'old: mean [95% CI]':>30}{'new: mean [95% CI]':>30}"
    head += "  overlap"
    print(head)
    print("-" * len(head))
    ok = True
    for case in args.case or CASES:
        for metric, (om, ol, oh), (nm, nl, nh) in compare(case, args.seeds, args.set):
            overlap = ol <= nh and nl <= oh
            ok &= overlap
            old_text, new_text = f"{om:.4f} [{ol:.4f}, {oh:.4f}]", f"{nm:.4f} [{nl:.4f}, {nh:.4f}]"
            verdict = "yes" if overlap else "NO"
            print(f"{case:<28}{metric:<16}{old_text:>30}{new_text:>30}  {verdict}")
            sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

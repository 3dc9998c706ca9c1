"""Does a learned exploration controller beat every fixed exploration level on `boredom`?

    python examples/boredom_exploration.py --out runs/boredom-ppo   # ~6 min on 2 cores

1. Train PPO on ``recloop/Exploration-v0`` (scenario ``boredom``, base recommender
   ``content``) from training seed 0, with N concurrent sessions on one world that is renewed
   (seeds 1, 2, ...) whenever it reaches the scenario's tick count, so training sees worlds of
   the ages the evaluation runs have. Reward: the env's defaults with ``continue`` 0.5.
2. Evaluate, in the full scenario (every user served every tick), the trained controller and
   the same base recommender at every fixed exploration share of the env's menu, on evaluation
   seeds disjoint from the training seed.
3. Print mean and 95% interval over seeds of session length, return rate and click-through
   (per-step engagement), and whether the controller beats the best fixed level on session
   length or returns without losing more than 15% click-through.

The script is the command behind the README's figure; `--steps 2000 --ticks 5` runs it end to
end in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from scenarios import load
from scenarios.schema import PolicyConfig
from simenv.envs.core import EXPLORE_LEVELS
from simenv.studies.runner import interval, run_scenario
from simenv.studies.train import TrainConfig, train

BASE = "content"
OUTCOMES = ("session_length", "return_rate", "ctr", "churn_rate")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600_000)
    p.add_argument("--n-envs", type=int, default=16)
    p.add_argument("--eval-seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104])
    p.add_argument("--ticks", type=int, default=40)
    p.add_argument("--out", type=Path, default=Path("runs/boredom-ppo"))
    p.add_argument(
        "--reward",
        type=json.loads,
        default={"continue": 0.5},
        help="env reward weights (JSON) over the env defaults",
    )
    args = p.parse_args()

    model = args.out / "model" / "model.zip"
    if not model.exists():
        train(
            TrainConfig(
                algo="ppo",
                env_id="recloop/Exploration-v0",
                steps=args.steps,
                out=model.parent,
                seed=0,
                n_envs=args.n_envs,
                env_kwargs={
                    "scenario": "boredom",
                    "retriever": BASE,
                    "renew_after_ticks": args.ticks,
                    "reward": args.reward,
                },
                algo_kwargs={"n_steps": 256, "batch_size": 512, "ent_coef": 0.01},
                eval_freq=max(args.steps // 4, 1),  # environment steps: four evaluations
            ),
            progress=True,
        )
    fixed = [
        PolicyConfig(name="explore", label=f"fixed {s:g}", params={"share": s, "base": BASE})
        for s in EXPLORE_LEVELS
    ]
    learned = PolicyConfig(name="sb3", label="ppo controller", params={"path": str(model)})
    scenario = load("boredom", [f"ticks={args.ticks}"]).model_copy(
        update={"seeds": args.eval_seeds, "policies": [learned, *fixed], "log_interactions": False}
    )
    metrics = run_scenario(scenario, args.out / "eval", progress=True).metrics
    table = summarize(metrics)
    print(table.to_string())
    verdict = judge(metrics)
    print(json.dumps(verdict, indent=2))
    (args.out / "result.json").write_text(
        json.dumps({"table": table.reset_index().to_dict("records"), **verdict}, indent=2)
    )


def per_seed(metrics: pd.DataFrame) -> pd.DataFrame:
    """Time-averaged outcomes per (policy, seed)."""
    return metrics.groupby(["policy", "seed"], sort=False)[list(OUTCOMES)].mean()


def summarize(metrics: pd.DataFrame) -> pd.DataFrame:
    rows = {}
    for policy, frame in per_seed(metrics).groupby(level="policy", sort=False):
        cells = {}
        for col in OUTCOMES:
            ci = interval(frame[col].to_numpy())
            cells[col] = f"{ci['mean']:.4f} [{ci['low']:.4f}, {ci['high']:.4f}]"
        rows[policy] = cells
    return pd.DataFrame(rows).T


def judge(metrics: pd.DataFrame) -> dict[str, object]:
    seeds = per_seed(metrics)
    means = seeds.groupby(level="policy", sort=False).mean()
    fixed = means[means.index.str.startswith("fixed")]
    ppo = means.loc["ppo controller"]
    out: dict[str, object] = {}
    for col in ("session_length", "return_rate"):
        best = fixed[col].idxmax()
        diff = (
            seeds.xs("ppo controller", level="policy")[col].to_numpy()
            - seeds.xs(best, level="policy")[col].to_numpy()
        )
        out[col] = {
            "best_fixed": best,
            "ppo": float(ppo[col]),
            "best_fixed_value": float(fixed.loc[best, col]),
            "paired_difference": interval(diff),
        }
    best_ctr = float(fixed["ctr"].max())
    out["ctr_loss_vs_best_fixed"] = float(1 - ppo["ctr"] / best_ctr) if best_ctr > 0 else None
    wins = [
        c
        for c in ("session_length", "return_rate")
        if (out[c]["paired_difference"]["low"] or -np.inf) > 0  # type: ignore[index]
    ]
    out["beats_best_fixed_on"] = wins
    out["engagement_within_15pct"] = bool((out["ctr_loss_vs_best_fixed"] or 0) <= 0.15)
    return out


if __name__ == "__main__":
    main()

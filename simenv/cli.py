"""The `recloop` command line.

    recloop run SCENARIO [--seed N] [--out DIR] [--set dotted.key=value ...]
    recloop list [scenarios|policies|metrics]
    recloop show SCENARIO [--set ...]

Bad input (unknown names, invalid fields, missing data) prints one line and exits with code 2;
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from scenarios.schema import PolicyConfig

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recloop",
        description=(
            "Simulate recommendation ecosystems: user agents with memory and emotion, item "
            "agents, a social graph and pluggable recommenders; study feedback loops and "
            "filter bubbles over many seeds."
        ),
        epilog="Examples:\n  recloop run filter_bubble --set ticks=20 --set population.size=200\n"
        "  recloop list policies\n  recloop show cold_start",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run a scenario and write a run folder",
        description="Run every policy of a scenario over its seeds; write config.yaml, "
        "metrics.parquet, interactions.parquet, summary.json and plots/ to the run folder. "
        "Running again with the same --out resumes: finished (policy, seed) jobs are kept.",
    )
    run.add_argument("scenario", help="built-in scenario name (see `recloop list`) or YAML path")
    run.add_argument(
        "--seed",
        type=int,
        action="append",
        dest="seeds",
        metavar="N",
        help="seed to run (repeat for several); default: the scenario's seeds",
    )
    run.add_argument("--out", type=Path, help="run folder (default: runs/<scenario>-<time>)")
    _add_set(run)
    run.add_argument(
        "--policy",
        action="append",
        dest="policies",
        metavar="NAME",
        help="run these registered policies instead of the scenario's (repeatable); "
        "sb3:PATH runs a model saved by `recloop train`",
    )
    run.add_argument(
        "--download",
        action="store_true",
        help="download MovieLens-100k from GroupLens if the scenario needs it and it is missing",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    lst = sub.add_parser("list", help="list scenarios, policies and metrics")
    lst.add_argument(
        "what",
        nargs="?",
        choices=["scenarios", "policies", "metrics"],
        help="only this kind (default: all)",
    )

    train = sub.add_parser(
        "train",
        help="train an RL agent (stable-baselines3) on a recloop environment",
        description="Train PPO, A2C or DQN on a registered environment; writes model.zip, "
        "train.json, checkpoints/, TensorBoard logs (tb/) and eval.csv to --out. Every check "
        "(algorithm, env id, action space) runs before training starts.",
    )
    train.add_argument("algo", help="ppo, a2c or dqn")
    train.add_argument(
        "--env", required=True, dest="env_id", help="registered env id, e.g. recloop/Exploration-v0"
    )
    train.add_argument("--scenario", help="scenario name or YAML path passed to the env")
    train.add_argument("--steps", type=int, default=100_000, help="training timesteps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, help="output folder (default: runs/train-<time>)")
    train.add_argument("--eval-freq", type=int, default=2000, help="steps between evaluations")
    train.add_argument(
        "--n-envs",
        type=int,
        default=1,
        help="concurrent sessions; recloop envs run them on one world, one decider call a step",
    )
    train.add_argument(
        "--env-kwargs",
        type=json.loads,
        default={},
        metavar="JSON",
        help='extra env arguments, e.g. \'{"retriever": "content", "max_steps": 8}\'',
    )
    _add_set(train)

    show = sub.add_parser("show", help="print a scenario as it resolves, defaults included")
    show.add_argument("scenario")
    _add_set(show)
    return parser


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override a scenario field, e.g. --set ticks=20 --set "
        "population.size=200 (repeatable; values are YAML)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(COMMANDS[args.command](args))
    except KeyboardInterrupt:
        print("recloop: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug for the traceback
        if args.debug or not _is_user_error(exc):
            raise
        print(f"recloop: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _is_user_error(exc: Exception) -> bool:
    from simenv.world import PolicyError

    return isinstance(exc, ValueError | FileNotFoundError | PolicyError)


def cmd_run(args: argparse.Namespace) -> int:
    from scenarios import load
    from simenv.runner import run_scenario

    overrides = list(args.overrides)
    scenario = load(args.scenario, overrides)
    updates: dict[str, object] = {}
    if args.seeds:
        updates["seeds"] = args.seeds
    if args.policies:
        updates["policies"] = [_policy_from_cli(spec) for spec in args.policies]
    if updates:
        from scenarios import validate

        scenario = validate({**scenario.model_dump(), **updates}, source=args.scenario)
    if args.download and "movielens" in (scenario.catalog.source, scenario.population.source):
        from simenv.data.movielens import load_movielens

        load_movielens(scenario.catalog.data_path, download=True)
    out = args.out or Path("runs") / f"{scenario.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_scenario(scenario, out, progress=not args.no_progress)
    _print_summary(result.summary)
    print(f"\nrun folder: {out}")
    print(f"plots:      {out / 'plots'} (overview.png)")
    if result.resumed_jobs:
        print(f"resumed:    {result.resumed_jobs} finished job(s) kept from an earlier run")
    return 0


def _policy_from_cli(spec: str) -> PolicyConfig:
    """``NAME`` or ``sb3:PATH`` (a model saved by `recloop train`)."""
    name, sep, path = spec.partition(":")
    if sep and name == "sb3":
        return PolicyConfig(
            name="sb3", label=f"sb3:{Path(path).parent.name}", params={"path": path}
        )
    return PolicyConfig(name=spec)


def _print_summary(summary: dict) -> None:
    rows = summary["policies"]
    shown = ["ctr", "mean_rating", "intra_list_diversity", "exposure_gini", "homogenization"]
    first = next(iter(rows.values()))
    shown = [m for m in shown if m in first]
    print(f"\n{'policy':<24}" + "".join(f"{m[:20]:>22}" for m in shown))
    for label, stats in rows.items():
        cells = []
        for m in shown:
            mean = stats[m]["mean"]["mean"]
            cells.append(f"{'n/a' if mean is None else f'{mean:.3f}':>22}")
        print(f"{label:<24}" + "".join(cells))
    print("(mean over ticks and seeds)")


def cmd_list(args: argparse.Namespace) -> int:
    import policies
    import scenarios
    from simenv import metrics

    what = args.what
    if what in (None, "scenarios"):
        print("scenarios:")
        for name in scenarios.available():
            desc = scenarios.load(name).description.strip().splitlines()
            print(f"  {name:<22} {desc[0] if desc else ''}")
    if what in (None, "policies"):
        print("policies:")
        for name in policies.available():
            doc = (policies.get_class(name).__doc__ or "").strip().splitlines()
            print(f"  {name:<22} {doc[0] if doc else ''}")
    if what in (None, "metrics"):
        print("metrics:")
        for name in metrics.available():
            m = metrics.get(name)
            arrow = {True: "↑", False: "↓", None: " "}[m.higher_is_better]
            print(f"  {name:<24}{arrow} {m.description.splitlines()[0]}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from simenv.train import TrainConfig, train

    env_kwargs: dict[str, object] = dict(args.env_kwargs)
    if args.scenario:
        env_kwargs["scenario"] = args.scenario
    if args.overrides:
        env_kwargs["overrides"] = list(args.overrides)
    out = args.out or Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}"
    config = TrainConfig(
        algo=args.algo,
        env_id=args.env_id,
        steps=args.steps,
        out=out,
        seed=args.seed,
        env_kwargs=env_kwargs,
        eval_freq=args.eval_freq,
        n_envs=args.n_envs,
    )
    model = train(config, progress=False)
    print(f"model:       {model}")
    print(f"evaluations: {out / 'eval.csv'}")
    print(f"tensorboard: tensorboard --logdir {out / 'tb'}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from scenarios import load

    scenario = load(args.scenario, list(args.overrides))
    print(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False), end="")
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "show": cmd_show, "train": cmd_train}


if __name__ == "__main__":
    sys.exit(main())

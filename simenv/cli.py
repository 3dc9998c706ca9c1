"""The `recloop` command line.

    recloop run SCENARIO [--seed N] [--out DIR] [--set dotted.key=value ...]
    recloop list [scenarios|policies|metrics]
    recloop show SCENARIO [--set ...]
    recloop calibrate SCENARIO [--states N] [--out DIR] [--backend ...] [--set ...]
    recloop interview RUN --user N [--policy P] [--seed S] "QUESTION"

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
        "  recloop run filter_bubble_llm                  # LLM personas, embedded model\n"
        '  recloop interview runs/x --user 12 "Why did you stop watching?"\n'
        "  recloop compare runs/a runs/b\n"
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
    _add_utility(run)
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
    llm = _add_llm_options(run, "user model (decider.kind / decider.llm.*)")
    llm.add_argument("--decider", choices=["utility", "llm"], help="user model")

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
    _add_utility(train)

    iv = sub.add_parser(
        "interview",
        help="ask users of a finished run a question; the answer uses their memory",
        description="Ask one or more users of a finished run one or more questions. Each prompt\n"
        "holds the user's persona, memories (the most relevant to the question), emotion and\n"
        "whether they left the app, as saved at the end of the job; all prompts are answered\n"
        "in one batched call. The LLM is the run's decider.llm for LLM runs, else the embedded\n"
        "SmolLM2-135M; --backend/--model/... override it. Decoding is greedy: same run,\n"
        "question and backend, same answer.",
        epilog='Example:\n  recloop interview runs/x --user 12 "Why did you stop watching?"\n'
        '  recloop interview runs/x --policy mf --seed 1 --user 3 --user 12 "What do you like?"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    iv.add_argument("run", type=Path, metavar="RUN", help="run folder written by `recloop run`")
    iv.add_argument("questions", nargs="+", metavar="QUESTION", help="question(s) to ask")
    iv.add_argument(
        "--user", type=int, action="append", dest="users", required=True, metavar="N",
        help="user id to interview (repeat for several)",
    )  # fmt: skip
    iv.add_argument("--policy", help="policy label of the job (default: the first job)")
    iv.add_argument("--seed", type=int, help="seed of the job (default: the policy's first)")
    iv.add_argument(
        "--max-tokens", type=int, default=80, metavar="T", help="answer length in tokens (80)"
    )
    iv.add_argument(
        "--memories", type=int, default=10, metavar="K",
        help="memories per prompt, the most relevant to the question (10; 0 = all)",
    )  # fmt: skip
    iv.add_argument("--show-prompt", action="store_true", help="print each prompt too")
    iv.add_argument(
        "--raw", action="store_true",
        help="print the model's text as generated (default: at most 3 distinct sentences)",
    )  # fmt: skip
    _add_llm_options(iv, "LLM (default: the run's decider.llm, else embedded SmolLM2)")

    cal = sub.add_parser(
        "calibrate",
        help="fit the fast utility decider to the scenario's LLM personas (distillation)",
        description="Distil the scenario's LLM personas (decider.llm) into the fast utility "
        "decider.\n\n"
        "1. run the scenario's world (fast decider, the scenario's first policy, a share of\n"
        "   random novel items in every slate) and sample about --states user states;\n"
        "2. ask the LLM for its choice probabilities over each slate and 'none' (one batched\n"
        "   score call per session step; answers cached in the output folder);\n"
        "3. fit the choice weights (taste, quality, popularity, novelty, boredom, social,\n"
        "   repeat, position, no_choice, fatigue) by maximum likelihood, with an L2 pull\n"
        "   toward the scenario's weights;\n"
        "4. report cross-entropy, KL, top-1 agreement and total variation on held-out users\n"
        "   for the fitted weights, the scenario's (default) weights and the uniform choice.\n\n"
        "Writes calibration.json, utility.yaml and llm_stats.json. Apply the fit with\n"
        "`recloop run SCENARIO --utility utility.yaml` or `recloop train ... --utility ...`.",
        epilog="Example:\n  recloop calibrate filter_bubble_llm --states 200 --out runs/calib\n"
        "  recloop run filter_bubble --utility runs/calib/utility.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cal.add_argument("scenario", help="built-in scenario name or YAML path")
    cal.add_argument("--states", type=int, default=200, help="user states to sample (200)")
    cal.add_argument("--ticks", type=int, help="ticks to simulate (default: the scenario's)")
    cal.add_argument("--seed", type=int, help="world seed (default: the scenario's first)")
    cal.add_argument("--out", type=Path, help="output folder (default: runs/calibrate-<time>)")
    cal.add_argument("--policy", help="policy filling the slates (default: the scenario's first)")
    cal.add_argument(
        "--explore", type=float, default=0.4, metavar="SHARE",
        help="share of each slate replaced by random novel items, for variety (0.4)",
    )  # fmt: skip
    cal.add_argument(
        "--holdout", type=float, default=0.25, metavar="SHARE",
        help="share of the users held out for evaluation (0.25)",
    )  # fmt: skip
    cal.add_argument(
        "--l2", type=_l2_strength, default=None, metavar="auto|X",
        help="L2 pull toward the scenario's weights (auto: chosen by cross-validation)",
    )  # fmt: skip
    cal.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(cal)
    _add_llm_options(cal, "LLM personas (decider.llm.*)")
    cal.set_defaults(decider="llm")

    cmp = sub.add_parser(
        "compare",
        help="plot finished runs against each other",
        description="Plot the metrics of finished runs on shared axes (a colour per policy, a "
        "line style per run) and write comparison.csv (per run, policy and metric: mean over "
        "ticks and last tick, over seeds). For example LLM personas at a small size against "
        "parametric personas at a large size, as `make demo` does.",
    )
    cmp.add_argument("runs", nargs="+", metavar="RUN", help="run folders (two or more)")
    cmp.add_argument("--label", action="append", dest="labels", help="a name per run, in order")
    cmp.add_argument("--out", help="output folder (default: runs/compare-<time>)")

    show = sub.add_parser("show", help="print a scenario as it resolves, defaults included")
    show.add_argument("scenario")
    _add_set(show)
    return parser


def _add_llm_options(p: argparse.ArgumentParser, title: str) -> argparse._ArgumentGroup:
    """--backend/--model/--base-url/--api-key-env in a group named ``title``; returns it."""
    group = p.add_argument_group(title)
    group.add_argument("--backend", choices=["transformers", "openai", "vllm", "fake"])
    group.add_argument("--model", help="LLM model name (default: the backend's embedded one)")
    group.add_argument(
        "--base-url", action="append", dest="base_urls", metavar="URL",
        help="OpenAI-compatible endpoint (repeat for several, used round-robin)",
    )  # fmt: skip
    group.add_argument(
        "--api-key-env", metavar="VAR",
        help="environment variable holding the API key (default OPENAI_API_KEY); the key is "
        "never written",
    )  # fmt: skip
    return group


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


def _add_utility(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--utility",
        type=Path,
        metavar="FILE",
        help="apply the decider.* fields of a utility.yaml written by `recloop calibrate` "
        "(before any --set)",
    )


def _l2_strength(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def _utility_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides from ``--utility FILE`` (none without it)."""
    if args.utility is None:
        return []
    from simenv.studies.calibrate import utility_overrides

    return utility_overrides(args.utility)


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
    from simenv.llm import LLMError
    from simenv.world import PolicyError

    return isinstance(exc, ValueError | FileNotFoundError | PolicyError | LLMError)


def cmd_run(args: argparse.Namespace) -> int:
    from scenarios import load
    from simenv.studies.runner import run_scenario

    overrides = _utility_overrides(args) + list(args.overrides)
    scenario = load(args.scenario, overrides)
    updates: dict[str, object] = {}
    if args.seeds:
        updates["seeds"] = args.seeds
    if args.policies:
        updates["policies"] = [_policy_from_cli(spec) for spec in args.policies]
    decider = _decider_from_cli(args, scenario.decider.model_dump())
    if decider is not None:
        updates["decider"] = decider
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


def _decider_from_cli(args: argparse.Namespace, decider: dict) -> dict | None:
    """``decider`` with the --decider/--backend/--model/--base-url/--api-key-env choices."""
    llm = {
        "backend": args.backend,
        "model": args.model,
        "base_url": args.base_urls[0] if args.base_urls else None,
        "base_urls": args.base_urls[1:] if args.base_urls else None,
        "api_key_env": args.api_key_env,
    }
    llm = {k: v for k, v in llm.items() if v is not None}
    if args.decider is None and not llm:
        return None
    out = {**decider, "llm": {**decider["llm"], **llm}}
    if args.decider is not None:
        out["kind"] = args.decider
    return out


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
    from simenv.studies.train import TrainConfig, train

    env_kwargs: dict[str, object] = dict(args.env_kwargs)
    if args.scenario:
        env_kwargs["scenario"] = args.scenario
    overrides = _utility_overrides(args) + list(args.overrides)
    if overrides:
        env_kwargs["overrides"] = overrides
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


def cmd_interview(args: argparse.Namespace) -> int:
    from simenv.studies import interview as iv

    scenario, state = iv.load_job(args.run, args.policy, args.seed)
    iv.check_users(state, args.users)
    config = iv.interview_config(
        scenario,
        backend=args.backend,
        model=args.model,
        base_urls=args.base_urls,
        api_key_env=args.api_key_env,
    )
    print(
        f"interviewing {state.policy} seed {state.seed} with the {config.backend} backend "
        f"({config.model or 'default model'})",
        file=sys.stderr,
    )
    answers = iv.interview(
        args.run,
        args.users,
        args.questions,
        state=state,
        config=config,
        max_tokens=args.max_tokens,
        memories=args.memories,
    )
    several = len(answers) > 1
    for a in answers:
        if args.show_prompt:
            print(f"--- prompt (user {a.user}) ---\n{a.prompt}\n--- answer ---")
        elif several:
            print(f"user {a.user}: {a.question}")
        print((a.raw if args.raw else a.answer) + ("\n" if several else ""))
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from scenarios import load, validate
    from simenv.studies import calibrate as cal

    scenario = load(args.scenario, list(args.overrides))
    decider = _decider_from_cli(args, scenario.decider.model_dump())
    scenario = validate({**scenario.model_dump(), "decider": decider}, source=args.scenario)
    config = cal.CalibrationConfig(
        states=args.states,
        ticks=args.ticks,
        seed=args.seed,
        policy=args.policy,
        explore=args.explore,
        holdout=args.holdout,
        l2=args.l2,
    )
    config.check()
    out = args.out or Path("runs") / f"calibrate-{time.strftime('%Y%m%d-%H%M%S')}"
    result = cal.run_calibration(scenario, out, config, progress=not args.no_progress)
    meta = result.meta
    print(f"\n{meta['scenario']} on {meta['backend']} ({meta['model']}), seed {result.seed}")
    print(cal.format_table(result))
    fitted = ", ".join(f"{n}={getattr(result.params, n):.3g}" for n in result.fit.identified)
    print(f"\nfitted: {fitted}")
    if result.dropped:
        print(f"dropped: {result.dropped} state(s) without a usable LLM answer")
    print(f"\nresults: {out / 'calibration.json'}")
    print(f"apply:   recloop run {args.scenario} --utility {out / 'utility.yaml'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from simenv.studies.compare import compare_runs

    out = Path(args.out) if args.out else Path("runs") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    files, table = compare_runs([Path(r) for r in args.runs], out, args.labels)
    wide = table.pivot_table(index=["metric", "policy"], columns="run", values="mean", sort=False)
    print("mean over ticks (and seeds):")
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"plots: {out / 'plots'}  table: {out / 'comparison.csv'}  ({len(files)} files)")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from scenarios import load

    scenario = load(args.scenario, list(args.overrides))
    print(yaml.safe_dump(scenario.model_dump(mode="json"), sort_keys=False), end="")
    return 0


COMMANDS = {"run": cmd_run, "list": cmd_list, "show": cmd_show, "train": cmd_train}
COMMANDS["interview"] = cmd_interview
COMMANDS["calibrate"] = cmd_calibrate
COMMANDS["compare"] = cmd_compare


if __name__ == "__main__":
    sys.exit(main())

"""The `recloop` command line.

    recloop run SCENARIO [--seed N] [--out DIR] [--set dotted.key=value ...]
                [--policy NAME[:key=value,...][@LABEL] ...]
    recloop list [scenarios|policies|metrics]
    recloop show SCENARIO [--set ...]
    recloop train ALGO --env ID [--steps N] [--out DIR] [--scenario S] [--set ...]
    recloop interview RUN --user N [--policy P] [--seed S] "QUESTION"
    recloop calibrate SCENARIO [--states N] [--out DIR] [--backend ...] [--set ...]
    recloop validate --dataset movielens-100k [--decider D] [--utility FILE] [--users N] ...
    recloop fit --dataset movielens-100k [--out fitted.yaml]
    recloop compare RUN RUN ... [--label NAME ...]
    recloop report PATH [--out FILE]
    recloop sweep SCENARIO [--seeds N | --seed S ...] [--grid FIELD=V1,V2 ...]
                  [--setting 'FIELD=V,...' ...] [--workers K] [--ray-address ADDR] [--out DIR]
    recloop resume DIR

Each subcommand is a `Command`: a function that adds its arguments to its subparser and one
that executes it; `COMMANDS` lists them, `build_parser` assembles them and `main` dispatches.
The options that a typed config describes (`TrainConfig`, `CalibrationConfig`,
`ValidateConfig`, `FitConfig`) are built from
its dataclass fields by `add_config_options` and read back by `config_from_args`, so the
config, the command line and ``--help`` cannot drift apart.

Bad input prints exactly one line, ``recloop: error: ...``, on stderr and exits with code 2,
having written nothing: a usage error (an unknown option, a value of the wrong type:
`ArgumentParser.error`) as much as an unknown name, an invalid field, missing data, an output
folder that cannot be written or a world too large for the memory (`_is_user_error`).
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import re
import sys
import textwrap
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from scenarios.schema import PolicyConfig

if TYPE_CHECKING:
    from simenv.studies.train import TrainConfig

EXIT_BAD_INPUT = 2
C = TypeVar("C")


class UsageError(ValueError):
    """The command line does not parse: an unknown option, a missing argument, a bad value."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with recloop's error format: one line (`UsageError`, printed by `main`) that
    points to the command's ``--help``, instead of the usage block. Subparsers are of this
    class too (argparse makes them of the parent's class)."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Command:
    """One subcommand: its texts in ``--help``, how it adds its arguments, how it runs."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    execute: Callable[[argparse.Namespace], int]
    description: str | None = None
    epilog: str | None = None
    formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The `recloop` parser with the arguments of ``commands`` (default: every command).

    Every command is listed either way; `main` adds only the arguments of the command it runs,
    so that `recloop show` does not import the training stack to describe `recloop train`.
    """
    from simenv import __version__

    parser = ArgumentParser(
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
        "  recloop sweep filter_bubble --seeds 10 --grid policy=popularity,mf --workers 2\n"
        "  recloop list policies\n  recloop show cold_start\n"
        "  recloop run boredom --policy explore:share=0.25@explore-25 --policy popularity\n\n"
        "Bad input prints one line `recloop: error: ...` and exits with code 2.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--version", action="version", version=f"recloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = set(COMMANDS if commands is None else commands)
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.description,
            epilog=command.epilog,
            formatter_class=command.formatter_class,
        )
        if name in wanted:
            command.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_named(argv))
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _bad_input(exc)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(COMMANDS[args.command].execute(args))
    except KeyboardInterrupt:
        print("recloop: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as exc:  # one line for the user; --debug for the traceback
        if args.debug or not _is_user_error(exc):
            raise
        return _bad_input(exc)


def _bad_input(exc: Exception) -> int:
    """Print ``exc`` as the one line ``recloop: error: ...``; the exit code of bad input."""
    text = _os_error_text(exc) if isinstance(exc, OSError) else str(exc)
    print(f"recloop: error: {' '.join(text.split())}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _command_named(argv: Sequence[str]) -> list[str]:
    """The command in ``argv``: its first word that is not an option (``--debug``, ``-h``)."""
    return [arg for arg in argv if not arg.startswith("-")][:1]


#: What the file system refuses because of where the user pointed us (not a bug of ours).
USER_OS_ERRORS = {
    errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
    errno.EEXIST, errno.EISDIR, errno.ENAMETOOLONG, errno.ENOENT,
}  # fmt: skip


def _is_user_error(exc: Exception) -> bool:
    """Bad input, printed as one line: invalid values and names (``ValueError``: scenario,
    policy, metric, output-folder, size errors...), missing files, a policy's unusable slates,
    a dead LLM, and what the file system refuses (`USER_OS_ERRORS`)."""
    from simenv.llm import LLMError
    from simenv.world import PolicyError

    if isinstance(exc, OSError) and exc.errno in USER_OS_ERRORS:
        return True
    return isinstance(exc, ValueError | FileNotFoundError | PolicyError | LLMError)


def _os_error_text(exc: OSError) -> str:
    if exc.strerror is None:
        return str(exc)
    where = "" if exc.filename is None else f": {exc.filename}"
    return f"{exc.strerror}{where}"


# --- options built from a typed config ------------------------------------------------------


def path_arg(text: str) -> Path:
    """A path on the command line; an empty one is an error (``Path("")`` would be ``.``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a path, got an empty string")
    return Path(text)


def json_object(text: str) -> dict[str, Any]:
    """A JSON object on the command line (``'{"max_steps": 8}'``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(
            f"not valid JSON ({exc.msg} at character {exc.pos}): {text!r}; expected an object "
            """such as '{"max_steps": 8}'"""
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"max_steps\": 8}}', got {text!r}"
        )
    return value


#: How a config field's type is read from the command line (``X | None`` reads as ``X``).
FIELD_PARSERS: dict[type, Callable[[str], Any]] = {
    int: int,
    float: float,
    str: str,
    Path: path_arg,
    dict: json_object,
}


def cli_fields(config: type) -> list[dataclasses.Field]:
    """The fields of the dataclass ``config`` that are command-line options (have a ``help``)."""
    return [f for f in dataclasses.fields(config) if "help" in f.metadata]


def add_config_options(
    p: argparse.ArgumentParser,
    config: type,
    parsers: Mapping[str, Callable[[str], Any]] | None = None,
) -> None:
    """One argument of ``p`` per field of ``config`` with a ``help`` in its metadata.

    Metadata keys: ``help``; ``metavar``; ``flag``, the option's name when it is not
    ``--field-name``; ``positional: True`` for an argument instead of an option;
    ``cli_default``, the command line's default when the field has none or another one.
    The value is parsed by its type (`FIELD_PARSERS`) or by ``parsers[field name]``; an option
    without a default is required; a default other than None or empty is shown in the help.
    """
    hints = typing.get_type_hints(config)
    for f in cli_fields(config):
        meta = f.metadata
        default = meta.get("cli_default", _field_default(f))
        kwargs: dict[str, Any] = {
            "help": _with_default(meta["help"], default),
            "type": (parsers or {}).get(f.name) or _field_parser(config, f.name, hints[f.name]),
        }
        if "metavar" in meta:
            kwargs["metavar"] = meta["metavar"]
        if meta.get("positional"):
            p.add_argument(f.name, **kwargs)
            continue
        if default is dataclasses.MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default
        flag = meta.get("flag", "--" + f.name.replace("_", "-"))
        p.add_argument(flag, dest=f.name, **kwargs)


def config_from_args(config: type[C], args: argparse.Namespace, **values: Any) -> C:
    """``config`` from the parsed options of its command-line fields; ``values`` replace some."""
    fields = {f.name: getattr(args, f.name) for f in cli_fields(config)}
    return config(**{**fields, **values})


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def _with_default(text: str, default: Any) -> str:
    if default is None or default is dataclasses.MISSING or default in ({}, [], ""):
        return text
    return f"{text} ({default})"


def _field_parser(config: type, name: str, hint: Any) -> Callable[[str], Any]:
    if isinstance(hint, types.UnionType):
        kept = [t for t in typing.get_args(hint) if t is not type(None)]
        hint = kept[0] if len(kept) == 1 else hint
    parser = FIELD_PARSERS.get(typing.get_origin(hint) or hint)
    if parser is None:
        raise TypeError(f"{config.__name__}.{name}: no command-line parser for {hint}")
    return parser


# --- options shared by several commands ------------------------------------------------------


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
        type=path_arg,
        metavar="FILE",
        help="apply the decider.* (and population.*) fields of a utility.yaml written by "
        "`recloop calibrate` or a fitted.yaml written by `recloop fit` (before any --set)",
    )


def _utility_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` overrides from ``--utility FILE`` (none without it)."""
    if args.utility is None:
        return []
    from simenv.studies.calibrate import utility_overrides

    return utility_overrides(args.utility)


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


def _timestamped(prefix: str) -> Path:
    """The default output folder ``runs/<prefix>-<time>``."""
    return Path("runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


# --- recloop run -----------------------------------------------------------------------------


def add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="built-in scenario name (see `recloop list`) or YAML path")
    p.add_argument(
        "--seed",
        type=int,
        action="append",
        dest="seeds",
        metavar="N",
        help="seed to run (repeat for several); default: the scenario's seeds",
    )
    p.add_argument("--out", type=path_arg, help="run folder (default: runs/<scenario>-<time>)")
    _add_set(p)
    _add_utility(p)
    p.add_argument(
        "--policy",
        action="append",
        dest="policies",
        metavar="NAME[:K=V,...][@LABEL]",
        help="run these registered policies instead of the scenario's (repeatable): a name, "
        "then parameters after ':' (key=value, comma-separated, values are YAML scalars) and a "
        "label after '@', e.g. --policy explore:share=0.25@explore-25 --policy mf:factors=8; "
        "sb3:PATH runs a saved stable-baselines3 model (from `recloop train` or plain SB3). "
        "The scenario's policies are replaced, so --set policies.* cannot be combined with it",
    )
    sb3 = p.add_argument_group(
        "sb3:PATH models",
        "the env a model was trained on, for models without the train.json of `recloop "
        "train` (given, these replace what train.json says); without either, the env is read "
        "from the model's action space with its default arguments",
    )
    sb3.add_argument(
        "--env", dest="sb3_env", metavar="ID",
        help="e.g. recloop/Session-v0, recloop/Exploration-v0",
    )  # fmt: skip
    sb3.add_argument(
        "--env-kwargs", dest="sb3_env_kwargs", type=json_object, metavar="JSON",
        help='the env\'s arguments, e.g. \'{"retriever": "content", "max_steps": 8}\'',
    )  # fmt: skip
    p.add_argument(
        "--download",
        action="store_true",
        help="download MovieLens-100k from GroupLens (or $RECLOOP_MOVIELENS_URL) if the scenario "
        "needs it and it is missing",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="N",
        help="write each job's world to its part folder every N ticks, so that a killed run "
        "resumes from its last checkpoint instead of tick 0, with the same results (0 = never; "
        "default: the scenario's checkpoint_every, 50). Running again with the same --out "
        "resumes; N may differ from the first run's",
    )
    llm = _add_llm_options(p, "user model (decider.kind / decider.llm.*)")
    llm.add_argument("--decider", choices=["utility", "llm"], help="user model")


def cmd_run(args: argparse.Namespace) -> int:
    from scenarios import load
    from simenv.studies.run_folder import check_output_folder
    from simenv.studies.runner import check_scenario, run_scenario

    overrides = _utility_overrides(args) + list(args.overrides)
    if args.policies:
        _check_no_policy_overrides(args.overrides)
    scenario = load(args.scenario, overrides)
    updates: dict[str, object] = {}
    if args.seeds:
        updates["seeds"] = args.seeds
    if args.policies:
        updates["policies"] = [policy_from_cli(spec) for spec in args.policies]
    if args.sb3_env or args.sb3_env_kwargs:
        updates["policies"] = _with_sb3_env(updates.get("policies", scenario.policies), args)
    if args.checkpoint_every is not None:
        updates["checkpoint_every"] = args.checkpoint_every
    decider = _decider_from_cli(args, scenario.decider.model_dump())
    if decider is not None:
        updates["decider"] = decider
    if updates:
        from scenarios import validate

        scenario = validate({**scenario.model_dump(), **updates}, source=args.scenario)
    out = args.out or _timestamped(scenario.name)
    if args.download and "movielens" in (scenario.catalog.source, scenario.population.source):
        check_output_folder(out)  # a run that would be refused downloads nothing
        check_scenario(scenario)
        from simenv.data.movielens import load_movielens

        load_movielens(scenario.catalog.data_path, download=True)
    result = run_scenario(scenario, out, progress=not args.no_progress)
    _print_summary(result.summary)
    print(f"\nrun folder: {out}")
    print(f"plots:      {_plots_line(result.plots)}")
    if result.resumed_jobs:
        print(f"resumed:    {result.resumed_jobs} finished job(s) kept from an earlier run")
    for job in result.from_checkpoints:
        print(f"resumed:    {job.line()}")
    if result.llm is not None:
        print(result.llm.line())
    return 0


POLICY_SYNTAX = "NAME[:key=value,...][@LABEL], e.g. explore:share=0.25@explore-25"
#: A number in exponent notation without a dot (``1e-2``), which YAML 1.1 leaves a string.
EXPONENT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def policy_from_cli(spec: str) -> PolicyConfig:
    """A policy of ``--policy NAME[:key=value,...][@LABEL]``.

    Values are YAML scalars (``0.25``, ``1e-2``, ``true``, ``mf``). ``sb3:PATH`` (a model
    saved by `recloop train`, labelled ``sb3:<its folder>``) is short for ``sb3:path=PATH``.
    The label is what follows the last ``@`` (for ``sb3``, unless that holds a ``/``: then it
    is the path's).
    """
    body, at, label = spec.rpartition("@")
    if not at or (body.startswith("sb3:") and "/" in label):
        body, label = spec, ""
    elif not label.strip():
        raise ValueError(f"--policy {spec!r}: empty label after '@' ({POLICY_SYNTAX})")
    name, sep, rest = body.partition(":")
    if not name.strip():
        raise ValueError(f"--policy {spec!r}: no policy name ({POLICY_SYNTAX})")
    if name == "sb3" and sep and "=" not in rest:
        params: dict[str, Any] = {"path": rest}
    else:
        params = _policy_params(spec, rest) if sep else {}
    if name == "sb3" and not label and "path" in params:
        label = f"sb3:{Path(str(params['path'])).parent.name}"
    return PolicyConfig(name=name, label=label or None, params=params)


def _policy_params(spec: str, text: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in text.split(","):
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise ValueError(
                f"--policy {spec!r}: expected key=value, got {pair!r} ({POLICY_SYNTAX})"
            )
        if key in params:
            raise ValueError(f"--policy {spec!r}: parameter '{key}' given twice")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"--policy {spec!r}: '{key}' is not a YAML value: {value!r}") from None
        if parsed is None:
            raise ValueError(f"--policy {spec!r}: '{key}' has no value")
        if isinstance(parsed, str) and EXPONENT.fullmatch(parsed.strip()):
            parsed = float(parsed)  # YAML 1.1 reads 1e-2 as a string
        if isinstance(parsed, dict | list):
            raise ValueError(
                f"--policy {spec!r}: '{key}' must be a single value (a number, true/false or a "
                "word); put structured parameters in a scenario file's policies"
            )
        params[key] = parsed
    return params


def _check_no_policy_overrides(overrides: Sequence[str]) -> None:
    """``--set policies...`` with ``--policy``: the list it would change is replaced."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] == "policies":
            raise ValueError(
                f"--set {item} does not apply: --policy replaces the scenario's policies; give "
                f"parameters and labels in --policy ({POLICY_SYNTAX})"
            )


def _plots_line(files: Sequence[Path]) -> str:
    """Where the run's figures are (only files that exist), or why there are none."""
    written = [f for f in files if f.is_file()]
    if not written:
        return "none (no metric named in the scenario's plots was recorded)"
    names = sorted((f.name for f in written), key=lambda n: (n != "overview.png", n))
    return f"{written[0].parent} ({', '.join(names)})"


def _with_sb3_env(configs: Any, args: argparse.Namespace) -> list[PolicyConfig]:
    """The ``sb3`` policies of ``configs`` with ``--env`` / ``--env-kwargs`` as parameters."""
    configs = list(configs)
    if not any(c.name == "sb3" for c in configs):
        raise ValueError("--env and --env-kwargs describe the env of --policy sb3:PATH models")
    given = {"env_id": args.sb3_env, "env_kwargs": args.sb3_env_kwargs}
    given = {k: v for k, v in given.items() if v is not None}
    return [
        c.model_copy(update={"params": {**c.params, **given}}) if c.name == "sb3" else c
        for c in configs
    ]


def _print_summary(summary: dict) -> None:
    """Per policy, a few metrics' mean over ticks: the mean over seeds and its 95% interval."""
    rows = summary["policies"]
    shown = ["ctr", "mean_rating", "intra_list_diversity", "exposure_gini", "homogenization"]
    first = next(iter(rows.values()))
    shown = [m for m in shown if m in first]
    print(f"\n{'policy':<24}" + "".join(f"{m[:20]:>22}" for m in shown))
    seeds = 0
    for label, stats in rows.items():
        cells = []
        for m in shown:
            cell = stats[m]["mean"]
            seeds = max(seeds, cell["n"])
            cells.append(f"{_with_interval(cell):>22}")
        print(f"{label:<24}" + "".join(cells))
    if seeds > 1:
        print(f"(mean over ticks: mean over {seeds} seeds ± half-width of its 95% t-interval)")
    else:
        print("(mean over ticks, one seed: no interval; run more seeds with --seed or seeds=[...])")


def _with_interval(cell: dict) -> str:
    """``0.546 ± 0.034``, the mean and the half-width of its (symmetric) 95% t-interval
    (``n/a`` when undefined; the mean alone for one value)."""
    if cell["mean"] is None:
        return "n/a"
    if cell["n"] < 2:
        return f"{cell['mean']:.3f}"
    return f"{cell['mean']:.3f} ± {(cell['high'] - cell['low']) / 2:.3f}"


RUN = Command(
    help="run a scenario and write a run folder",
    description="Run every policy of a scenario over its seeds; write config.yaml, "
    "metrics.parquet, interactions.parquet, summary.json and plots/ to the run folder. "
    "Running again with the same --out resumes: finished (policy, seed) jobs are kept. "
    "LLM runs end with the share of decisions that fell back to the utility model, and stop "
    "(exit 2, resumable) when it passes decider.llm.max_fallback_share.",
    add_arguments=add_run_args,
    execute=cmd_run,
)


# --- recloop sweep / recloop resume ---------------------------------------------------------


def positive_int(text: str) -> int:
    """An integer of at least 1 (``--workers``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_executor_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers", type=positive_int, default=1, metavar="K",
        help="jobs at once: 1 runs them in this process, more in K spawned processes (each "
        "keeps its LLM backend across its jobs); with --ray-address local, the CPUs of the "
        "local Ray runtime (default 1)",
    )  # fmt: skip
    p.add_argument(
        "--ray-address", metavar="ADDR",
        help="run each job as a Ray task: 'local' starts a Ray runtime on this machine, "
        "'auto' joins the cluster started here by `ray start`, HOST:PORT or ray://HOST:PORT "
        "joins that cluster (the run folders must be on a file system every node sees)",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_sweep_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="built-in scenario name (see `recloop list`) or YAML path")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds", type=positive_int, metavar="N", help="run seeds 0..N-1 of every setting"
    )
    seeds.add_argument(
        "--seed", type=int, action="append", dest="seed_list", metavar="S",
        help="run this seed (repeat for several); default: the scenario's seeds",
    )  # fmt: skip
    p.add_argument(
        "--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
        help="sweep FIELD over these values (repeatable: every combination is a setting). "
        "FIELD is a dotted scenario field as in --set, or 'policy' (the scenario's policies "
        "replaced by that one policy); values are YAML scalars",
    )  # fmt: skip
    p.add_argument(
        "--setting", action="append", default=[], dest="settings",
        metavar="'FIELD=V,FIELD=V'",
        help="one more setting, besides the grid's (repeatable): an explicit list of settings",
    )  # fmt: skip
    p.add_argument(
        "--out", type=path_arg, metavar="DIR",
        help="sweep folder (default: runs/<scenario>-sweep-<time>)",
    )  # fmt: skip
    _add_set(p)
    _add_executor_options(p)


def cmd_sweep(args: argparse.Namespace) -> int:
    from simenv.studies.sweep import parse_grid, parse_setting, plan_sweep, seeds_from

    plan = plan_sweep(
        args.scenario,
        common=args.overrides,
        grid=parse_grid(args.grid),
        settings=[parse_setting(text) for text in args.settings],
        seeds=seeds_from(args.seeds, args.seed_list),
    )
    out = args.out or _timestamped(f"{plan.settings[0].scenario.name}-sweep")
    return _sweep(plan, out, args)


def _sweep(plan: Any, out: Path, args: argparse.Namespace) -> int:
    from simenv.studies.sweep import run_sweep, table_lines

    jobs = len(plan.jobs(out))
    print(f"sweep: {len(plan.settings)} setting(s) x policies x {len(plan.seeds)} seed(s) = "
          f"{jobs} run(s) into {out}")  # fmt: skip
    result = run_sweep(
        plan, out, workers=args.workers, ray_address=args.ray_address,
        progress=not args.no_progress,
    )  # fmt: skip
    lines = table_lines(result)
    if lines:
        print()
        print("\n".join(lines))
    print(f"\nsweep folder: {out} (sweep.json; one run folder per setting in settings/)")
    if result.resumed:
        print(f"resumed:      {result.resumed} finished run(s) kept from an earlier sweep")
    if result.failures:
        print(f"\n{len(result.failures)} task(s) failed:", file=sys.stderr)
        for failure in result.failures:
            print(f"  {failure.name}: {failure.error}", file=sys.stderr)
        print(f"resume with: recloop resume {out}", file=sys.stderr)
        return 1
    return 0


SWEEP = Command(
    help="run a grid of scenario settings times seeds, in parallel",
    description=textwrap.fill(
        "Run every (setting, policy, seed) of a sweep as a job: in this process, in "
        "--workers processes or as Ray tasks (--ray-address). A setting is a combination of the "
        "--grid values, or one --setting. The sweep folder holds sweep.json (the settings) and one "
        "run folder per setting under settings/; results are the same bytes whatever the "
        "executor. Running the same command again, or `recloop resume DIR`, keeps finished jobs. "
        "Failed jobs are listed at the end (exit 1, resumable).",
        width=88,
    ),
    epilog="Examples:\n"
    "  recloop sweep filter_bubble --seeds 10 --grid policy=popularity,mf,ucb "
    "--grid population.drift=0,0.05 --workers 2\n"
    "  recloop sweep filter_bubble --seeds 100 --ray-address auto\n"
    "  recloop sweep filter_bubble --setting 'policy=mf,ticks=50' --setting policy=random "
    "--out runs/s --set ticks=20\n"
    "  recloop resume runs/s",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_sweep_args,
    execute=cmd_sweep,
)


def add_resume_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", type=path_arg, help="a sweep folder or a run folder")
    _add_executor_options(p)


def cmd_resume(args: argparse.Namespace) -> int:
    from simenv.studies.run_folder import RunFolder
    from simenv.studies.sweep import plan_from_record, read_record

    record = read_record(args.folder)
    if record is not None:
        return _sweep(plan_from_record(record), args.folder, args)
    folder = RunFolder(args.folder)
    if not folder.is_run():
        what = "does not exist" if not args.folder.exists() else "has no sweep.json or config.yaml"
        raise ValueError(f"{args.folder} {what}: not a sweep folder or a run folder")
    if args.ray_address is not None or args.workers != 1:
        raise ValueError("--workers and --ray-address apply to sweep folders; a run resumes alone")
    from simenv.studies.runner import run_scenario

    result = run_scenario(folder.scenario(), args.folder, progress=not args.no_progress)
    _print_summary(result.summary)
    print(f"\nrun folder: {args.folder}")
    print(f"resumed:    {result.resumed_jobs} finished job(s) kept from an earlier run")
    return 0


RESUME = Command(
    help="continue an interrupted sweep or run",
    description="Continue the sweep (its sweep.json) or the run (its config.yaml) in FOLDER "
    "after Ctrl-C, kill -9 or failed jobs: finished jobs are kept, the others run, and the "
    "results are the same bytes as an uninterrupted run's.",
    add_arguments=add_resume_args,
    execute=cmd_resume,
)


# --- recloop list ----------------------------------------------------------------------------


def add_list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "what",
        nargs="?",
        choices=["scenarios", "policies", "metrics"],
        help="only this kind (default: all)",
    )


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
            _print_policy(name)
        print("  policies with retrain_every / train_ticks learn from feedback; when:")
        for param, doc in policies.TRAINING_PARAMS.items():
            print(f"    {param}: {doc}")
    if what in (None, "metrics"):
        print("metrics (↑ higher is better, ↓ lower; * recorded only when a scenario asks: "
              "extra_metrics; ~ heavy: computed every metrics_every ticks and at the last "
              "tick, nan between):")  # fmt: skip
        for name in metrics.available():
            m = metrics.get(name)
            arrow = {True: "↑", False: "↓", None: " "}[m.higher_is_better]
            mark = (" " if m.by_default else "*") + ("~" if m.heavy else " ")
            print(_wrapped(f"  {name:<24}{arrow}{mark} ", m.description))
    return 0


def _wrapped(head: str, text: str, width: int = 100) -> str:
    """``head`` then the whole of ``text`` (no definition is cut), wrapped under itself."""
    import textwrap

    return textwrap.fill(
        " ".join(text.split()),
        width=width,
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_on_hyphens=False,
    )


def _print_policy(name: str) -> None:
    """A policy's first doc line (marked when it is an oracle) and its parameters."""
    import inspect

    import policies

    cls = policies.get_class(name)
    doc = (cls.__doc__ or "").strip().splitlines()
    mark = "[not deployable (oracle)] " if policies.needs_true_utilities(cls) else ""
    print(f"  {name:<22} {mark}{doc[0] if doc else ''}")
    params = [
        p if default is inspect.Parameter.empty else f"{p}={default!r}"
        for p, default in policies.parameters(name).items()
    ]
    if params:
        print(f"  {'':<22}   params: {', '.join(params)}")


LIST = Command(
    help="list scenarios, policies and metrics", add_arguments=add_list_args, execute=cmd_list
)


# --- recloop train ---------------------------------------------------------------------------


def add_train_args(p: argparse.ArgumentParser) -> None:
    from simenv.studies.train import TrainConfig

    add_config_options(p, TrainConfig)
    p.add_argument("--scenario", help="scenario name or YAML path passed to the env")
    _add_set(p)
    _add_utility(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of parsed `recloop train` arguments (--scenario, --set and --utility
    go into ``env_kwargs``)."""
    from simenv.studies.train import TrainConfig

    env_kwargs: dict[str, object] = dict(args.env_kwargs)
    if args.scenario:
        env_kwargs["scenario"] = args.scenario
    overrides = _utility_overrides(args) + list(args.overrides)
    if overrides:
        env_kwargs["overrides"] = overrides
    out = args.out or _timestamped("train")
    return config_from_args(TrainConfig, args, env_kwargs=env_kwargs, out=out)


def cmd_train(args: argparse.Namespace) -> int:
    from simenv.studies.train import train

    config = train_config(args)
    result = train(config, progress=not args.no_progress)
    print(f"trained:     {result.plan.describe(config.steps)}")
    print(f"model:       {result.model}  ({result.seconds:.1f} s)")
    if config.eval_freq:
        print(f"evaluations: {config.out / 'eval.csv'}")
    if config.checkpoint_freq:
        print(f"checkpoints: {config.out / 'checkpoints'}")
    print(f"tensorboard: tensorboard --logdir {config.out / 'tb'}")
    print(f"use it:      recloop run SCENARIO --policy sb3:{result.model}")
    return 0


TRAIN = Command(
    help="train an RL agent (stable-baselines3) on a recloop environment",
    description="Train PPO, A2C or DQN (stable-baselines3) on a registered environment; write\n"
    "model.zip, train.json, checkpoints/, TensorBoard logs (tb/: SB3's train/*, rollout/*,\n"
    "eval/* and recloop's eval_ecosystem/*) and eval.csv to --out. --steps and every\n"
    "frequency count environment steps, whatever --n-envs is. Every check (algorithm,\n"
    "--algo-kwargs, env id, action space) runs before training starts.",
    epilog="Example:\n  recloop train ppo --env recloop/Exploration-v0 --scenario boredom "
    "--steps 20000 --n-envs 16 \\\n      --algo-kwargs '{\"learning_rate\": 3e-4}' --out "
    "runs/x\n  recloop run boredom --policy sb3:runs/x/model.zip --policy popularity",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_train_args,
    execute=cmd_train,
)


# --- recloop interview -----------------------------------------------------------------------


def add_interview_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=path_arg, metavar="RUN", help="run folder written by `recloop run`")
    p.add_argument("questions", nargs="+", metavar="QUESTION", help="question(s) to ask")
    p.add_argument(
        "--user", type=int, action="append", dest="users", required=True, metavar="N",
        help="user id to interview (repeat for several)",
    )  # fmt: skip
    p.add_argument("--policy", help="policy label of the job (default: the first job)")
    p.add_argument("--seed", type=int, help="seed of the job (default: the policy's first)")
    p.add_argument(
        "--max-tokens", type=int, default=80, metavar="T", help="answer length in tokens (80)"
    )
    p.add_argument(
        "--memories", type=int, default=10, metavar="K",
        help="memories per prompt, the most relevant to the question (10; 0 = all)",
    )  # fmt: skip
    p.add_argument("--show-prompt", action="store_true", help="print each prompt too")
    p.add_argument(
        "--raw", action="store_true",
        help="print the model's text as generated (default: at most 3 distinct sentences)",
    )  # fmt: skip
    _add_llm_options(p, "LLM (default: the run's decider.llm, else embedded SmolLM2)")


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
    iv.check_request(
        args.questions, max_tokens=args.max_tokens, memories=args.memories, config=config
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


INTERVIEW = Command(
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
    add_arguments=add_interview_args,
    execute=cmd_interview,
)


# --- recloop calibrate -----------------------------------------------------------------------


def add_calibrate_args(p: argparse.ArgumentParser) -> None:
    from simenv.studies.calibrate import CalibrationConfig

    p.add_argument("scenario", help="built-in scenario name or YAML path")
    add_config_options(p, CalibrationConfig, parsers={"l2": _l2_strength})
    p.add_argument("--out", type=path_arg, help="output folder (default: runs/calibrate-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(p)
    _add_llm_options(p, "LLM personas (decider.llm.*)")
    p.set_defaults(decider="llm")


def _l2_strength(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a number, got {text!r}") from None


def cmd_calibrate(args: argparse.Namespace) -> int:
    from scenarios import load, validate
    from simenv.studies import calibrate as cal

    scenario = load(args.scenario, list(args.overrides))
    decider = _decider_from_cli(args, scenario.decider.model_dump())
    scenario = validate({**scenario.model_dump(), "decider": decider}, source=args.scenario)
    config = config_from_args(cal.CalibrationConfig, args)
    config.check()
    out = args.out or _timestamped("calibrate")
    result = cal.run_calibration(scenario, out, config, progress=not args.no_progress)
    meta = result.meta
    print(
        f"\n{meta['scenario']} on {meta['backend']} ({meta['model']}), seed {result.seed}, "
        f"LLM answers calibrated: {meta['llm_calibration'] or 'none'}"
    )
    print(cal.format_table(result))
    fitted = ", ".join(f"{n}={getattr(result.params, n):.3g}" for n in result.fit.identified)
    print(f"\nfitted: {fitted}")
    print(f"states: {result.sampling.summary()}")
    if result.dropped:
        print(f"dropped: {result.dropped} state(s) without a usable LLM answer")
    print(f"\nresults: {out / 'calibration.json'}")
    print(f"apply:   recloop run {args.scenario} --utility {out / 'utility.yaml'}")
    return 0


CALIBRATE = Command(
    help="fit the fast utility decider to the scenario's LLM personas (distillation)",
    description="Distil the scenario's LLM personas (decider.llm) into the fast utility "
    "decider.\n\n"
    "1. run the scenario's world (fast decider, the scenario's first policy, a share of\n"
    "   random novel items in every slate) and sample about --states user states;\n"
    "2. ask the LLM for its choice probabilities over each slate and 'none' (one batched\n"
    "   score call per session step; answers cached in the output folder), divided by\n"
    "   each persona's label prior when decider.llm.calibration is contextual (the\n"
    "   default; --set decider.llm.calibration=none for the raw answers);\n"
    "3. fit the choice weights (taste, quality, popularity, novelty, boredom, social,\n"
    "   repeat, position, no_choice, fatigue) by maximum likelihood, with an L2 pull\n"
    "   toward the scenario's weights;\n"
    "4. report cross-entropy, KL, top-1 agreement and total variation on held-out users\n"
    "   for the fitted weights, the scenario's (default) weights and the uniform choice.\n\n"
    "Writes calibration.json, utility.yaml, llm_stats.json and llm_calibration.json (the\n"
    "label priors). Apply the fit with\n"
    "`recloop run SCENARIO --utility utility.yaml` or `recloop train ... --utility ...`.",
    epilog="Example:\n  recloop calibrate filter_bubble_llm --states 200 --out runs/calib\n"
    "  recloop run filter_bubble --utility runs/calib/utility.yaml",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_calibrate_args,
    execute=cmd_calibrate,
)


# --- recloop validate ------------------------------------------------------------------------


def add_validate_args(p: argparse.ArgumentParser) -> None:
    from simenv.studies.validate import ValidateConfig

    add_config_options(p, ValidateConfig, parsers={"ratios": _ratios})
    p.add_argument("--out", type=Path, help="report folder (default: runs/validate-<time>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_set(p)
    _add_utility(p)
    llm = _add_llm_options(p, "user model (decider.kind / decider.llm.*)")
    llm.add_argument("--decider", choices=["utility", "llm"], help="user model")


def _ratios(text: str) -> tuple[int, ...]:
    from simenv.studies.validate import parse_ratios

    try:
        return parse_ratios(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_validate(args: argparse.Namespace) -> int:
    from scenarios import validate
    from simenv.studies import validate as val
    from simenv.studies.validate_report import REPORT_MD, summary_table

    config = config_from_args(val.ValidateConfig, args)
    config.check()
    scenario = val.validation_scenario(config, _utility_overrides(args) + list(args.overrides))
    decider = _decider_from_cli(args, scenario.decider.model_dump())
    if decider is not None:
        scenario = validate(
            {**scenario.model_dump(), "decider": decider}, source="recloop validate"
        )
    out = args.out or _timestamped("validate")
    report = val.run_validation(
        scenario, config, out, utility_file=args.utility, progress=not args.no_progress
    )
    print(summary_table(report))
    print(f"\nreport: {out / REPORT_MD} (validation.json, plots/)")
    return 0


VALIDATE = Command(
    help="measure how closely a user model reproduces real users (MovieLens-100k)",
    description="Validate the scenario's user model against MovieLens-100k with a per-user\n"
    "time split (the oldest --train-share of each user's ratings build the personas,\n"
    "item statistics and baselines; the rest is held out):\n\n"
    "1. taste: held-out items rated >= 4 vs never-rated items (1:1, 1:3, 1:9; uniform\n"
    "   and popularity-matched negatives), each shown alone; the persona watches by its\n"
    "   own choice rule; accuracy, precision, recall, F1 and ROC AUC per user, next to\n"
    "   popularity, item-mean and MF baselines;\n"
    "2. ratings: star distribution (total variation, Jensen-Shannon) and MAE/RMSE on\n"
    "   held-out ratings;\n"
    "3. behaviour: do activity, conformity and diversity move outcomes in a simulated\n"
    "   world as in the data (Spearman)?\n"
    "4. split hygiene: what the world was built from, with checks.\n\n"
    "Writes validation.md, validation.json and plots/ to --out. --utility applies a\n"
    "utility.yaml (recloop calibrate) or fitted.yaml (recloop fit).",
    epilog="Examples:\n"
    "  recloop validate --dataset movielens-100k --decider utility --out runs/val\n"
    "  recloop fit --dataset movielens-100k --out fitted.yaml\n"
    "  recloop validate --dataset movielens-100k --utility fitted.yaml --out runs/val-fit\n"
    "  recloop validate --dataset movielens-100k --decider llm --users 20 --max-per-user 3 \\\n"
    "      --ratios 1 --behaviour-ticks 0 --out runs/val-llm",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_validate_args,
    execute=cmd_validate,
)


# --- recloop fit -----------------------------------------------------------------------------


def add_fit_args(p: argparse.ArgumentParser) -> None:
    from simenv.studies.fit import FitConfig

    add_config_options(p, FitConfig)
    p.add_argument("--no-progress", action="store_true", help="no progress messages")
    _add_set(p)


def cmd_fit(args: argparse.Namespace) -> int:
    from simenv.studies.fit import FitConfig, run_fit

    config = config_from_args(FitConfig, args)
    config.check()
    result = run_fit(config, list(args.overrides), progress=not args.no_progress)
    weights = result.choice["weights"]
    shown = ", ".join(f"{n}={weights[n]:.3g}" for n in result.choice["identified"])
    rating = ", ".join(f"{n}={v:.3g}" for n, v in result.rating["params"].items())
    print(f"choice weights ({result.sizes['choice_pairs']} pairs): {shown}")
    print(f"rating model ({result.sizes['fit_ratings']} ratings): {rating}")
    for scheme, m in result.choice["fitted_part"].items():
        print(
            f"on the part it was fitted on, {scheme} negatives 1:1: accuracy "
            f"{m['accuracy']:.3f}, AUC {m['auc']:.3f}"
        )
    print(f"\nfitted: {config.out} (details: {config.out.with_suffix('.json')})")
    print(f"validate: recloop validate --dataset {config.dataset} --utility {config.out}")
    return 0


FIT = Command(
    help="fit parametric users to MovieLens-100k (latent tastes, choice and rating weights)",
    description="Fit the utility decider's personas to MovieLens-100k, reading only the\n"
    "training part of recloop validate's split. Within it, the oldest --inner-share of\n"
    "each user's ratings build the personas (genre tastes and latent factors by implicit-\n"
    "feedback MF); the choice weights (taste, quality, popularity, novelty, no_choice,\n"
    "latent) and the rating model (base, taste, quality, latent, noise) are then\n"
    "estimated by maximum likelihood on the rest. Writes the YAML of population.* and\n"
    "decider.* fields that --utility applies (recloop validate/run/train), and a JSON of\n"
    "the fit beside it.",
    epilog="Example:\n  recloop fit --dataset movielens-100k --out fitted.yaml\n"
    "  recloop validate --dataset movielens-100k --utility fitted.yaml\n"
    "  recloop run popularity_bias --utility fitted.yaml",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_fit_args,
    execute=cmd_fit,
)


# --- recloop compare -------------------------------------------------------------------------


def add_compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "runs", nargs="+", type=path_arg, metavar="RUN", help="run folders (two or more)"
    )
    p.add_argument(
        "--label", action="append", dest="labels", type=_label, help="a name per run, in order"
    )
    p.add_argument("--out", type=path_arg, help="output folder (default: runs/compare-<time>)")


def _label(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a name, got an empty string")
    return text


def cmd_compare(args: argparse.Namespace) -> int:
    from simenv.studies.compare import compare_runs

    out = args.out or _timestamped("compare")
    files, table = compare_runs(args.runs, out, args.labels)
    wide = table.pivot_table(index=["metric", "policy"], columns="run", values="mean", sort=False)
    print("mean over ticks (and seeds):")
    print(wide.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"plots: {out / 'plots'}  table: {out / 'comparison.csv'}  ({len(files)} files)")
    return 0


COMPARE = Command(
    help="plot finished runs against each other",
    description="Plot the metrics of finished runs on shared axes (a colour per policy, a "
    "line style per run) and write comparison.csv (per run, policy and metric: mean over "
    "ticks and last tick, over seeds). For example LLM personas at a small size against "
    "parametric personas at a large size, as `make demo` does.",
    add_arguments=add_compare_args,
    execute=cmd_compare,
)


# --- recloop report --------------------------------------------------------------------------


def add_report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", type=path_arg, metavar="PATH", help="a finished run folder or sweep folder"
    )
    p.add_argument(
        "--out", type=path_arg, metavar="FILE", help="the HTML file to write (PATH/report.html)"
    )


def cmd_report(args: argparse.Namespace) -> int:
    from simenv.studies.report import write_report

    report = write_report(args.path, args.out)
    print(
        f"report: {report.path} ({report.figures} figures over {report.settings} setting(s); "
        "one file, opens offline)"
    )
    return 0


REPORT = Command(
    help="write report.html of a finished run or sweep",
    description="Write one static HTML file (figures inline, no network) of a finished run "
    "folder or sweep folder: for every recorded metric, the mean over seeds per tick with a "
    "95% interval, a line per policy and a panel per setting; a summary table of each "
    "policy's mean over ticks and last-tick value with the paired differences between "
    "policies (per seed, on the seeds both ran) and their 95% intervals; the LLM cost "
    "(decisions, fallbacks, calls, tokens) where personas were LLMs; the configuration "
    "(config.yaml, sweep.json) and provenance (made_with.json). To plot your own figures, "
    "read the same data with simenv.studies.load(PATH).",
    epilog="Example:\n  recloop run filter_bubble --set ticks=20 --out runs/fb\n"
    "  recloop report runs/fb                 # runs/fb/report.html",
    formatter_class=argparse.RawDescriptionHelpFormatter,
    add_arguments=add_report_args,
    execute=cmd_report,
)


# --- recloop show ----------------------------------------------------------------------------


def add_show_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario")
    _add_set(p)


def cmd_show(args: argparse.Namespace) -> int:
    from scenarios import commented_yaml, load

    scenario = load(args.scenario, list(args.overrides))
    print(commented_yaml(scenario), end="")
    return 0


SHOW = Command(
    help="print a scenario as it resolves, defaults included, with each field's description",
    description="Print a scenario as it resolves (after --set), defaults included, as YAML "
    "with each field's description from the schema as a comment above it; the output is a "
    "scenario file: `recloop show X > my.yaml`, edit, `recloop run my.yaml`.",
    add_arguments=add_show_args,
    execute=cmd_show,
)


#: The subcommands, in the order `recloop --help` lists them.
COMMANDS: dict[str, Command] = {
    "run": RUN,
    "list": LIST,
    "train": TRAIN,
    "interview": INTERVIEW,
    "calibrate": CALIBRATE,
    "validate": VALIDATE,
    "fit": FIT,
    "compare": COMPARE,
    "report": REPORT,
    "show": SHOW,
    "sweep": SWEEP,
    "resume": RESUME,
}


if __name__ == "__main__":
    sys.exit(main())

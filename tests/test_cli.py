"""The command line end to end: the demo at a small size, resuming, and every bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from simenv.cli import COMMANDS, build_parser, cli_fields, config_from_args, main, train_config
from simenv.studies.calibrate import CalibrationConfig
from simenv.studies.train import TrainConfig

SMALL = ["--set", "ticks=4", "--set", "population.size=80", "--set", "catalog.n_items=120",
         "--set", "seeds=[0]", "--no-progress"]  # fmt: skip


def test_demo_scenario_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "filter_bubble", "--out", str(out), *SMALL]) == 0
    for name in ("config.yaml", "interactions.parquet", "metrics.parquet", "summary.json"):
        assert (out / name).is_file(), name
    metrics = pd.read_parquet(out / "metrics.parquet")
    labels = ["random", "popularity", "mf", "ucb", "mmr(mf)"]
    assert sorted(metrics["policy"].unique()) == sorted(labels)
    assert len(metrics) == len(labels) * 4  # one row per tick, policy and seed
    log = pd.read_parquet(out / "interactions.parquet")
    assert {"policy", "seed", "tick", "user", "item", "position", "clicked", "rating"} <= set(log)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["policies"]) == set(labels)
    plots = {p.name for p in (out / "plots").glob("*.png")}
    assert {"overview.png", "ctr.png", "homogenization.png", "exposure_gini.png"} <= plots
    assert "run folder" in capsys.readouterr().out


def test_run_resumes_finished_jobs(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "filter_bubble", "--out", str(out), "--policy", "random", "--policy",
            "popularity", *SMALL]  # fmt: skip
    assert main(args) == 0
    first = pd.read_parquet(out / "metrics.parquet")
    done = out / "parts" / "popularity-seed0" / "done"
    done.unlink()  # as if the run had been interrupted during the popularity job
    assert main(args) == 0
    assert "resumed:    1 finished job" in capsys.readouterr().out
    pd.testing.assert_frame_equal(first, pd.read_parquet(out / "metrics.parquet"))


def test_run_folder_of_another_configuration_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "filter_bubble", "--out", str(out), "--policy", "random", *SMALL]) == 0
    other = ["run", "filter_bubble", "--out", str(out), "--policy", "random", *SMALL,
             "--set", "ticks=5"]  # fmt: skip
    assert main(other) == 2
    assert "different configuration" in capsys.readouterr().err


def test_list_and_show(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for word in ("filter_bubble", "popularity_bias", "cold_start", "thompson", "exposure_gini"):
        assert word in text
    assert main(["show", "cold_start", "--set", "ticks=7"]) == 0
    assert "ticks: 7" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no_such_scenario"], "unknown scenario 'no_such_scenario'"),
        (["run", "filter_bubble", "--policy", "nope"], "unknown policy 'nope'"),
        (["run", "filter_bubble", "--set", "metrics=[ctr, nope]"], "unknown metric"),
        (["run", "filter_bubble", "--set", "ticks=many"], "field 'ticks'"),
        (["run", "filter_bubble", "--set", "population.size=-5"], "field 'population.size'"),
        (["run", "filter_bubble", "--set", "population.sise=5"], "unknown field"),
        (["run", "filter_bubble", "--set", "session.slate_size=5000"], "slate_size"),
        (["run", "filter_bubble", "--set", "policies.0.params={alpha: 1}"], "no parameter"),
        (["run", "filter_bubble", "--set", "oops"], "--set expects dotted.key=value"),
        (["run", "missing.yaml"], "scenario file not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys, tmp_path):
    code = main([*args, "--out", str(tmp_path / "x")] if args[0] == "run" else args)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and err.startswith("recloop: error:")


def test_missing_dataset_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RECLOOP_DATA", str(tmp_path / "nowhere"))
    code = main(["run", "popularity_bias", "--out", str(tmp_path / "x"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere" in err and "RECLOOP_DATA" in err


def test_malformed_yaml_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nticks: [1, 2\n")
    assert main(["run", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert f"{bad}: not valid YAML" in capsys.readouterr().err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ValueError, match="unknown scenario"):
        main(["--debug", "run", "no_such_scenario"])


def test_console_script_help():
    env = {**os.environ, "MPLBACKEND": "Agg"}
    exe = Path(sys.executable).with_name("recloop")
    out = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0
    assert "--set" in out.stdout and "resumes" in out.stdout


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_works(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"] if command is None else [command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: recloop {command or ''}".rstrip())
    assert build_parser().format_help()  # every command's arguments at once


# Per config field on the command line: arguments that set it and the value they give. A field
# added to the config with a `help` must be added here, one without must be added to HIDDEN.
TRAIN_ARGS = {
    "algo": (["a2c"], "a2c"),
    "env_id": (["--env", "recloop/Other-v0"], "recloop/Other-v0"),
    "steps": (["--steps", "7"], 7),
    "out": (["--out", "o"], Path("o")),
    "seed": (["--seed", "3"], 3),
    "env_kwargs": (["--env-kwargs", '{"max_steps": 8}'], {"max_steps": 8}),
    "n_envs": (["--n-envs", "4"], 4),
    "eval_freq": (["--eval-freq", "50"], 50),
    "algo_kwargs": (["--algo-kwargs", '{"learning_rate": 0.001}'], {"learning_rate": 0.001}),
    "eval_episodes": (["--eval-episodes", "3"], 3),
    "checkpoint_freq": (["--checkpoint-freq", "500"], 500),
}
CALIBRATE_ARGS = {
    "states": (["--states", "20"], 20),
    "ticks": (["--ticks", "3"], 3),
    "seed": (["--seed", "5"], 5),
    "policy": (["--policy", "mf"], "mf"),
    "explore": (["--explore", "0.1"], 0.1),
    "holdout": (["--holdout", "0.5"], 0.5),
    "l2": (["--l2", "0.01"], 0.01),
}
HIDDEN = {
    TrainConfig: set(),
    CalibrationConfig: set(),
}


def _parse(*argv: str):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize(
    ("config", "fields", "minimal", "to_config"),
    [
        (TrainConfig, TRAIN_ARGS, ["train", "ppo", "--env", "recloop/KnownAnswer-v0"],
         train_config),
        (CalibrationConfig, CALIBRATE_ARGS, ["calibrate", "filter_bubble"],
         lambda args: config_from_args(CalibrationConfig, args)),
    ],
)  # fmt: skip
def test_config_fields_and_options_cannot_drift(config, fields, minimal, to_config, capsys):
    names = {f.name for f in dataclasses.fields(config)}
    assert {f.name for f in cli_fields(config)} == set(fields) == names - HIDDEN[config]
    with pytest.raises(SystemExit):
        main([minimal[0], "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    defaults = to_config(_parse(*minimal))
    head = minimal if config is CalibrationConfig else minimal[:1]  # train: fields has algo
    everything = to_config(_parse(*head, *(arg for argv, _ in fields.values() for arg in argv)))
    for f in cli_fields(config):
        assert " ".join(f.metadata["help"].split()) in shown, f.name
        if f.default is not dataclasses.MISSING:
            assert getattr(defaults, f.name) == f.default, f.name
        if f.default_factory is not dataclasses.MISSING:
            assert getattr(defaults, f.name) == f.default_factory(), f.name
        assert getattr(everything, f.name) == fields[f.name][1], f.name


def test_train_defaults_of_the_command_line(capsys):
    config = train_config(_parse("train", "ppo", "--env", "recloop/KnownAnswer-v0"))
    assert (config.steps, config.seed, config.n_envs, config.eval_freq) == (100_000, 0, 1, 2000)
    assert (config.eval_episodes, config.checkpoint_freq) == (20, 10_000)
    assert config.env_kwargs == {} and config.algo_kwargs == {}
    assert config.out.parent == Path("runs") and config.out.name.startswith("train-")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for default in ("(100000)", "(2000)", "(20)", "(10000)", "(0)", "(1)"):
        assert default in shown, default


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--algo-kwargs", "{learning_rate: 1}"], "argument --algo-kwargs: not valid JSON"),
        (["--algo-kwargs", "[1, 2]"], "argument --algo-kwargs: expected a JSON object"),
        (["--env-kwargs", "3"], "argument --env-kwargs: expected a JSON object"),
    ],
)
def test_json_options_are_checked_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "ppo", "--env", "recloop/KnownAnswer-v0", *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_scenario_and_set_go_into_the_env_kwargs():
    args = _parse("train", "ppo", "--env", "recloop/Exploration-v0", "--scenario", "cold_start",
                  "--set", "ticks=3", "--env-kwargs", '{"max_steps": 8}')  # fmt: skip
    config = train_config(args)
    assert config.env_kwargs == {"max_steps": 8, "scenario": "cold_start", "overrides": ["ticks=3"]}


def test_a_command_imports_only_what_it_needs():
    code = (
        "import sys; from simenv.cli import main; main(['show', 'cold_start']); "
        "assert 'simenv.studies.train' not in sys.modules, 'show imported the training stack'"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr

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
import yaml

from simenv.cli import (
    COMMANDS,
    build_parser,
    cli_fields,
    config_from_args,
    main,
    policy_from_cli,
    train_config,
)
from simenv.studies.calibrate import CalibrationConfig
from simenv.studies.fit import FitConfig
from simenv.studies.train import TrainConfig
from simenv.studies.validate import ValidateConfig

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


def test_list_marks_the_oracle_and_documents_the_training_options(capsys):
    assert main(["list", "policies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    oracle = next(line for line in lines if line.split()[:1] == ["oracle"])
    assert "not deployable (oracle)" in oracle
    assert not any("not deployable" in line for line in lines if line is not oracle)
    mf = lines[lines.index(next(line for line in lines if line.split()[:1] == ["mf"])) + 1]
    assert "retrain_every=0" in mf and "train_ticks=None" in mf
    assert any(line.strip().startswith("retrain_every: 0 = learn") for line in lines)
    assert main(["list", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    niche = next(line for line in lines if line.split()[:1] == ["niche_ctr_gap"])
    ctr = next(line for line in lines if line.split()[:1] == ["ctr"])
    assert "*" in niche[:30] and "*" not in ctr[:30]


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
        (["run", "filter_bubble", "--set", "extra_metrics=[nope]"], "unknown metric 'nope'"),
        (["run", "filter_bubble", "--set", "policies.2.params={retrain_every: -2}"],
         "retrain_every must be an integer >= 0, got -2"),
        (["run", "filter_bubble", "--set", "policies.2.params={train_ticks: 1.5}"],
         "train_ticks must be an integer >= 0, got 1.5"),
        (["run", "filter_bubble_llm", "--policy", "oracle"],
         "policy 'oracle' needs the users' true utilities, which llm personas do not define"),
    ],
)  # fmt: skip
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
VALIDATE_ARGS = {
    "dataset": (["--dataset", "movielens-100k"], "movielens-100k"),
    "data": (["--data", "ml"], Path("ml")),
    "users": (["--users", "20"], 20),
    "max_per_user": (["--max-per-user", "3"], 3),
    "seed": (["--seed", "4"], 4),
    "train_share": (["--train-share", "0.7"], 0.7),
    "ratios": (["--ratios", "3,1"], (1, 3)),
    "behaviour_ticks": (["--behaviour-ticks", "0"], 0),
    "behaviour_policy": (["--behaviour-policy", "popularity"], "popularity"),
}
FIT_ARGS = {
    "dataset": (["--dataset", "movielens-100k"], "movielens-100k"),
    "data": (["--data", "ml"], Path("ml")),
    "out": (["--out", "f.yaml"], Path("f.yaml")),
    "train_share": (["--train-share", "0.7"], 0.7),
    "inner_share": (["--inner-share", "0.6"], 0.6),
    "seed": (["--seed", "2"], 2),
}
HIDDEN = {
    TrainConfig: set(),
    CalibrationConfig: set(),
    ValidateConfig: set(),
    FitConfig: set(),
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
        (ValidateConfig, VALIDATE_ARGS, ["validate"],
         lambda args: config_from_args(ValidateConfig, args)),
        (FitConfig, FIT_ARGS, ["fit"], lambda args: config_from_args(FitConfig, args)),
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
    assert main(["train", "ppo", "--env", "recloop/KnownAnswer-v0", *argv]) == 2
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


# --- --policy NAME[:key=value,...][@LABEL] ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "name", "label", "params"),
    [
        ("popularity", "popularity", None, {}),
        ("explore:share=0.25", "explore", None, {"share": 0.25}),
        ("explore:share=0.5@explore-50", "explore", "explore-50", {"share": 0.5}),
        ("explore@fixed", "explore", "fixed", {}),
        ("explore:share=0.1,base=mf", "explore", None, {"share": 0.1, "base": "mf"}),
        ("ucb:c=2,reward=rating@ucb rated", "ucb", "ucb rated", {"c": 2, "reward": "rating"}),
        ("epsilon_greedy:epsilon=1e-2", "epsilon_greedy", None, {"epsilon": 0.01}),
        ("thompson:decay=1", "thompson", None, {"decay": 1}),
        ("mf:factors=8, lr=0.05", "mf", None, {"factors": 8, "lr": 0.05}),
        ("sb3:runs/x/model.zip", "sb3", "sb3:x", {"path": "runs/x/model.zip"}),
        ("sb3:runs/a@b/model.zip", "sb3", "sb3:a@b", {"path": "runs/a@b/model.zip"}),
        ("sb3:runs/x/model.zip@ppo", "sb3", "ppo", {"path": "runs/x/model.zip"}),
        ("sb3:path=m/model.zip,deterministic=false", "sb3", "sb3:m",
         {"path": "m/model.zip", "deterministic": False}),
    ],
)  # fmt: skip
def test_policy_syntax(spec, name, label, params):
    cfg = policy_from_cli(spec)
    assert (cfg.name, cfg.label, cfg.params) == (name, label, params)


def test_policy_parameters_reach_the_run(tmp_path):
    """The README's fixed-exploration baseline: the share is in the run's configuration."""
    out = tmp_path / "run"
    args = ["run", "boredom", "--out", str(out), *SMALL, "--policy", "explore:share=0.25",
            "--policy", "explore:share=0.5@explore-50"]  # fmt: skip
    assert main(args) == 0
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert [(p["name"], p["label"], p["params"]) for p in config["policies"]] == [
        ("explore", None, {"share": 0.25}),
        ("explore", "explore-50", {"share": 0.5}),
    ]
    assert sorted(pd.read_parquet(out / "metrics.parquet")["policy"].unique()) == [
        "explore",
        "explore-50",
    ]


def test_set_policies_with_policy_is_refused(tmp_path, capsys):
    args = ["run", "boredom", "--out", str(tmp_path / "r"), "--policy", "explore",
            "--set", "policies.0.params={share: 0.25}"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--set policies.0.params={share: 0.25} does not apply" in err
    assert "explore:share=0.25" in err  # the way that works
    assert not (tmp_path / "r").exists()


def test_the_readme_set_example_names_a_real_parameter(capsys):
    """README: `--set policies.3.params={c: 0.5}` sets ucb's exploration bonus."""
    import policies
    from scenarios import load

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "--set policies.3.params={c: 0.5}" in readme
    scenario = load("filter_bubble", ["policies.3.params={c: 0.5}"])
    cfg = scenario.policies[3]
    assert cfg.name == "ucb" and policies.make(cfg.name, **cfg.params).c == 0.5
    assert "recloop run boredom --policy explore:share=0.25" in readme


def test_policy_help_explains_the_syntax(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "NAME[:K=V,...][@LABEL]" in text and "explore:share=0.25@explore-25" in text
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "--policy explore:share=0.25@explore-25" in capsys.readouterr().out


# --- the format of errors, --version, the plots line -----------------------------------------


def test_usage_errors_are_one_line_without_the_usage_block(capsys):
    assert main(["run", "filter_bubble", "--seed", "abc"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "recloop: error: argument --seed: invalid int value: 'abc' (see recloop run --help)\n"
    )


def test_version_is_the_package_version(capsys):
    import importlib.metadata
    import tomllib

    import simenv

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"recloop {simenv.__version__}\n"
    assert importlib.metadata.version("recloop") == simenv.__version__
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "simenv.__version__"}  # one source: simenv/__init__.py


def test_plots_line_names_only_the_files_written(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "filter_bubble", "--out", str(out), "--policy", "random", *SMALL]
    assert main([*args, "--set", "plots=[ctr, mean_rating]"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("plots:"))
    assert line == f"plots:      {out / 'plots'} (overview.png, ctr.png, mean_rating.png)"
    other = tmp_path / "other"
    none = ["run", "filter_bubble", "--out", str(other), "--policy", "random", *SMALL,
            "--set", "metrics=[ctr]", "--set", "plots=[mean_rating]"]  # fmt: skip
    assert main(none) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("plots:"))
    assert line.startswith("plots:      none (no metric named in the scenario's plots")
    assert not list((other / "plots").glob("*.png"))


def test_list_metrics_prints_whole_definitions(capsys):
    from simenv import metrics

    assert main(["list", "metrics"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in metrics.available():
        assert " ".join(metrics.get(name).description.split()) in out, name


def test_show_prints_field_descriptions_and_loads_back(capsys, tmp_path):
    from scenarios import load

    assert main(["show", "boredom", "--set", "population.drift=0.1"]) == 0
    text = capsys.readouterr().out
    assert "# share of the way taste moves toward each consumed item\n  drift: 0.1" in text
    assert "# simulated ticks (days)\nticks: 40" in text
    scenario = load("boredom", ["population.drift=0.1"])
    assert yaml.safe_load(text) == scenario.model_dump(mode="json")
    (tmp_path / "mine.yaml").write_text(text)
    assert load(tmp_path / "mine.yaml") == scenario


def test_run_summary_shows_intervals(tmp_path, capsys):
    argv = ["run", "filter_bubble", "--out", str(tmp_path / "r"), "--no-progress",
            "--policy", "random", "--set", "ticks=2", "--set", "population.size=30",
            "--set", "catalog.n_items=60", "--set", "seeds=[0, 1]"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    ctr = summary["policies"]["random"]["ctr"]["mean"]
    half = (ctr["high"] - ctr["low"]) / 2
    row = next(line for line in out.splitlines() if line.startswith("random"))
    assert f"{ctr['mean']:.3f} ± {half:.3f}" in row
    assert "mean over 2 seeds ± half-width of its 95% t-interval" in out

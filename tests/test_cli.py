"""The command line end to end: the demo at a small size, resuming, and every bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from simenv.cli import main

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

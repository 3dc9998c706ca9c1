"""`simenv.studies.load`: tidy frames of a run folder and of a sweep folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from sweep_folder import TINY, make_sweep

import simenv.studies
from scenarios import load as load_scenario
from simenv.studies.results import ResultsError, load
from simenv.studies.run_folder import RunFolder
from simenv.studies.runner import run_scenario

GRID = {"policy": ["random", "popularity"], "population.drift": [0.0, 0.2]}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("results") / "run"
    sc = load_scenario("filter_bubble", [*TINY, "seeds=[0, 1]"])
    run_scenario(sc, out, progress=False)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_sweep(tmp_path_factory.mktemp("results") / "sweep", GRID, seeds=[0, 1])


def test_tick_is_int64_in_both_files_of_a_run(run: Path) -> None:
    assert pd.read_parquet(run / "metrics.parquet")["tick"].dtype == "int64"
    assert pd.read_parquet(run / "interactions.parquet")["tick"].dtype == "int64"
    for part in (run / "parts").iterdir():
        assert pd.read_parquet(part / "metrics.parquet")["tick"].dtype == "int64"


def test_load_a_run_folder(run: Path) -> None:
    res = simenv.studies.load(run)
    assert res.kind == "run" and res.fields == [] and res.setting_columns == []
    pd.testing.assert_frame_equal(res.metrics, pd.read_parquet(run / "metrics.parquet"))
    assert res.metrics["tick"].dtype == "int64"
    assert len(res.configs) == 1 and res.configs.loc[0, "scenario"] == "filter_bubble"
    assert res.interactions is not None and res.interactions["tick"].dtype == "int64"
    assert len(res.interactions) == len(pd.read_parquet(run / "interactions.parquet"))
    # summary: one row per (policy, metric, statistic), the numbers of summary.json
    doc = json.loads((run / "summary.json").read_text())["policies"]
    row = res.summary.query("policy == 'mf' and metric == 'ctr' and statistic == 'final'")
    assert row[["mean", "low", "high", "n"]].iloc[0].tolist() == pytest.approx(
        [doc["mf"]["ctr"]["final"][k] for k in ("mean", "low", "high", "n")]
    )
    n_metrics = len(doc["mf"])
    assert len(res.summary) == len(doc) * n_metrics * 2


def test_interactions_are_optional(run: Path) -> None:
    assert load(run, interactions=False).interactions is None


def test_load_a_sweep_folder(sweep: Path) -> None:
    res = load(sweep)
    assert res.kind == "sweep" and res.fields == ["policy", "population.drift"]
    configs = res.configs
    assert list(configs.columns) == ["setting", "policy", "population.drift", "folder"]
    assert len(configs) == 4 and configs["setting"].tolist() == ["s000", "s001", "s002", "s003"]
    assert configs["policy"].tolist() == ["random", "random", "popularity", "popularity"]
    m = res.metrics
    assert list(m.columns[:5]) == ["setting", "population.drift", "policy", "seed", "tick"]
    assert m["tick"].dtype == "int64" and m[["setting", "population.drift"]].notna().all().all()
    parts = [pd.read_parquet(sweep / f / "metrics.parquet") for f in configs["folder"]]
    assert len(m) == sum(len(p) for p in parts)
    # every row carries its setting's fields; the policy column is the swept policy
    merged = m.merge(configs, on="setting", suffixes=("", "_cfg"))
    assert (merged["population.drift"] == merged["population.drift_cfg"]).all()
    assert (merged["policy"] == merged["policy_cfg"]).all()
    # the rows of one setting are its run folder's rows
    s002 = m[m["setting"] == "s002"].drop(columns=["setting", "population.drift"])
    pd.testing.assert_frame_equal(s002.reset_index(drop=True), parts[2])
    assert res.interactions is not None
    assert res.interactions[["setting", "population.drift"]].notna().all().all()
    assert set(res.summary["setting"]) == set(configs["setting"])
    assert res.summary.groupby("setting")["policy"].nunique().eq(1).all()


def test_a_grid_drift_changes_results(sweep: Path) -> None:
    m = load(sweep, interactions=False).metrics
    taste = m[m["tick"] == m["tick"].max()].groupby("population.drift")["taste_drift"].mean()
    assert taste[0.0] == 0 and taste[0.2] > 0


def test_old_float_ticks_are_read_as_int64(run: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(run, old)
    frame = pd.read_parquet(old / "metrics.parquet")
    frame.astype({"tick": "float64"}).to_parquet(old / "metrics.parquet")
    assert load(old, interactions=False).metrics["tick"].dtype == "int64"


def test_not_a_finished_run_or_sweep(run: Path, sweep: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ResultsError, match="does not exist"):
        load(tmp_path / "nope")
    with pytest.raises(ResultsError, match="is a file"):
        load(tmp_path / "afile")
    with pytest.raises(ResultsError, match="is not a run or sweep folder"):
        load(tmp_path)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run / "config.yaml", unfinished / "config.yaml")
    with pytest.raises(ResultsError, match="unfinished run"):
        load(unfinished)
    half = tmp_path / "half"
    shutil.copytree(sweep, half)
    (half / "settings" / "s001" / "metrics.parquet").unlink()
    with pytest.raises(ResultsError, match=r"unfinished sweep: 1 of 4 settings .*s001"):
        load(half)
    (half / "sweep.json").write_text('{"kind": "something else"}')
    with pytest.raises(ResultsError, match="not the index of a recloop sweep"):
        load(half)
    (half / "sweep.json").write_text("{")
    with pytest.raises(ResultsError, match="not valid JSON"):
        load(half)


def test_the_run_folder_is_read_through_run_folder(run: Path) -> None:
    res = load(run, interactions=False)
    assert res.folders == {"run": RunFolder(run)}

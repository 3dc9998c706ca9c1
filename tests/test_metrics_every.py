"""``metrics_every``: the heavy metrics are computed every N ticks and at the last tick (nan
between), every other metric at every tick with the same values; the plots, the summary, the
report and `simenv.studies.load` use the computed ticks; a run folder made before the field
existed resumes under its default."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import policies
from scenarios import load
from scenarios.schema import Scenario
from simenv import metrics
from simenv.studies import checkpoint as ck
from simenv.studies import plots, report, run_folder
from simenv.studies.results import load as load_results
from simenv.studies.runner import run_scenario
from simenv.world import World

SMALL = ["ticks=7", "population.size=120", "catalog.n_items=200"]
ONE = ["seeds=[0]", "policies=[{name: popularity}]", "plots=[]"]


def _frame(every: int) -> pd.DataFrame:
    sc = load("filter_bubble", [*SMALL, f"metrics_every={every}"])
    world = World(sc, policies.make("mf"), seed=3)
    world.run()
    return world.metrics_frame()


def test_due_ticks_are_every_nth_and_the_last() -> None:
    assert [t for t in range(8) if metrics.due(t, 3, 7)] == [0, 3, 6, 7]
    assert all(metrics.due(t, 1, 7) for t in range(8))
    assert load("filter_bubble").metrics_every == 1  # the default: every tick


def test_heavy_metrics_are_skipped_between_due_ticks_and_the_rest_is_unchanged() -> None:
    every, skipping = _frame(1), _frame(3)
    heavy = [m for m in metrics.heavy() if m in every.columns]
    assert set(heavy) >= {"intra_list_diversity", "calibration_kl", "homogenization"}
    assert list(skipping.columns) == list(every.columns)  # same columns, same order
    due = skipping["tick"].isin([0, 3, 6])
    assert skipping.loc[~due, heavy].isna().all().all()
    assert skipping.loc[due, heavy].notna().all().all()
    cheap = [c for c in every.columns if c not in heavy]
    pd.testing.assert_frame_equal(skipping[cheap], every[cheap])  # the world is the same
    # heavy values where computed: the same, but homogenization samples user pairs with the
    # metrics' own stream, which skipped ticks do not draw from
    same = [m for m in heavy if m != "homogenization"]
    pd.testing.assert_frame_equal(skipping.loc[due, same], every.loc[due, same])
    assert skipping.loc[0, "homogenization"] == every.loc[0, "homogenization"]


def test_the_field_description_names_every_heavy_metric() -> None:
    text = Scenario.model_fields["metrics_every"].description or ""
    named = {m for m in metrics.available() if re.search(rf"\b{m}\b", text)}
    assert named == set(metrics.heavy())


def test_list_marks_the_heavy_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    from simenv.cli import main

    assert main(["list", "metrics"]) == 0
    lines = capsys.readouterr().out.splitlines()
    marked = {line.split()[0] for line in lines if line.startswith("  ") and "~ " in line[24:30]}
    assert marked == set(metrics.heavy())


def test_plots_summary_report_and_load_use_the_computed_ticks(tmp_path: Path) -> None:
    sc = load("filter_bubble", [*SMALL, "metrics_every=3", "seeds=[0, 1]",
                                "policies=[{name: popularity}, {name: random}]",
                                "plots=[ctr, intra_list_diversity]"])  # fmt: skip
    run_scenario(sc, tmp_path / "run", progress=False)
    res = load_results(tmp_path / "run", interactions=False)
    frame = res.metrics
    assert frame["tick"].dtype == np.int64
    skipped = ~frame["tick"].isin([0, 3, 6])
    assert frame.loc[skipped, "intra_list_diversity"].isna().all()
    assert frame["ctr"].notna().all()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["policies"]
    for name in ("intra_list_diversity", "ctr"):
        for stat in ("mean", "final"):
            assert summary["popularity"][name][stat]["n"] == 2  # both seeds, finite
    # a line per policy through the computed ticks only, without holes
    fig = plots.metrics_figure(frame, ["intra_list_diversity", "ctr"])
    heavy_line, cheap_line = fig.axes[0].lines[0], fig.axes[1].lines[0]
    assert list(heavy_line.get_xdata()) == [0, 3, 6]
    assert np.isfinite(np.asarray(heavy_line.get_ydata(), dtype=float)).all()
    assert len(cheap_line.get_xdata()) == 7
    ax = report.metric_figure(res, "intra_list_diversity").axes[0]
    assert [list(line.get_xdata()) for line in ax.lines] == [[0, 3, 6], [0, 3, 6]]
    assert (tmp_path / "run" / "plots" / "intra_list_diversity.png").is_file()
    out = report.write_report(tmp_path / "run")
    assert out.path.is_file()


def _config_before_the_field(scenario: Scenario) -> str:
    """``config.yaml`` as recloop wrote it before ``metrics_every`` existed."""
    text = run_folder.config_text(scenario)
    assert "metrics_every: 1\n" in text
    return text.replace("metrics_every: 1\n", "")


def test_a_folder_made_before_the_field_resumes_under_its_default(tmp_path: Path) -> None:
    sc = load("filter_bubble", ["population.size=40", "catalog.n_items=80", "ticks=2", *ONE])
    run_scenario(sc, tmp_path / "run", progress=False)
    config = tmp_path / "run" / "config.yaml"
    config.write_text(_config_before_the_field(sc))
    again = run_scenario(sc, tmp_path / "run", progress=False)
    assert again.resumed_jobs == 1
    config.write_text(_config_before_the_field(sc))
    with pytest.raises(ValueError, match="different configuration"):
        run_scenario(sc.model_copy(update={"metrics_every": 2}), tmp_path / "run", progress=False)


def test_checkpoint_keys_made_before_the_field_still_match() -> None:
    sc, made_with = load("filter_bubble"), {"recloop": "1"}
    old = json.dumps(
        {
            "config": run_folder.result_config(_config_before_the_field(sc)),
            "made_with": made_with,
            "policy": "mf",
            "seed": 0,
        },
        sort_keys=True,
        default=str,
    )
    assert ck.checkpoint_key(sc, made_with, "mf", 0) == hashlib.sha256(old.encode()).hexdigest()
    other = sc.model_copy(update={"metrics_every": 5})
    assert ck.checkpoint_key(other, made_with, "mf", 0) != ck.checkpoint_key(sc, made_with, "mf", 0)

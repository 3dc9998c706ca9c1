"""The notebooks' tables (`simenv.studies.tables`) and `plots.metrics_figure`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from scenarios import load
from simenv.cli import main
from simenv.studies.plots import metrics_figure
from simenv.studies.runner import summarize
from simenv.studies.tables import (
    label_bias,
    label_priors,
    llm_jobs,
    paired_differences,
    per_seed_means,
    summary_table,
)


def _metrics() -> pd.DataFrame:
    """Three policies, three seeds, four ticks: b = a + 1 on every seed and tick; c differs
    from a by a seed-dependent amount and ran seeds 0 and 1 only."""
    rows = []
    for seed in range(3):
        for tick in range(4):
            a = 0.1 * seed + 0.01 * tick
            rows.append({"policy": "a", "seed": seed, "tick": tick, "ctr": a, "gini": 2 * a})
            rows.append({"policy": "b", "seed": seed, "tick": tick, "ctr": a + 1, "gini": 2 * a})
            if seed < 2:
                c = a + 0.5 * seed
                rows.append({"policy": "c", "seed": seed, "tick": tick, "ctr": c, "gini": 0.0})
    return pd.DataFrame(rows)


def test_summary_table_reads_the_run_summary() -> None:
    metrics = _metrics()
    summary = summarize(metrics, load("filter_bubble"))
    table = summary_table(summary, ["ctr"])
    assert list(table.columns) == ["policy", "metric", "mean", "low", "high", "n"]
    assert list(table["policy"]) == ["a", "b", "c"] and set(table["metric"]) == {"ctr"}
    row = table.set_index("policy").loc["b"]
    seeds = per_seed_means(metrics[metrics["policy"] == "b"], ["ctr"])["ctr"]
    assert row["mean"] == pytest.approx(seeds.mean()) and row["n"] == 3
    assert row["low"] < row["mean"] < row["high"]
    final = summary_table(summary, ["ctr"], over="final").set_index("policy")
    assert final.loc["a", "mean"] == pytest.approx(np.mean([0.03, 0.13, 0.23]))
    assert len(summary_table(summary)) == 3 * 2  # every metric by default
    with pytest.raises(KeyError, match="nope"):
        summary_table(summary, ["nope"])
    with pytest.raises(ValueError, match="over"):
        summary_table(summary, over="median")


def test_paired_differences_pair_seeds() -> None:
    metrics = _metrics()
    diff = paired_differences(metrics, "b", ["ctr", "gini"]).set_index(["against", "metric"])
    # b - a is exactly 1 on every seed: the interval has no width
    assert diff.loc[("a", "ctr"), ["mean", "low", "high", "n"]].tolist() == pytest.approx(
        [1.0, 1.0, 1.0, 3]
    )
    assert diff.loc[("a", "gini"), "mean"] == pytest.approx(0.0)
    # against c: only the seeds both ran (0 and 1), differences 1 and 0.5
    c = diff.loc[("c", "ctr")]
    assert c["n"] == 2 and c["mean"] == pytest.approx(0.75) and c["low"] < 0.75 < c["high"]
    only = paired_differences(metrics, "c", ["ctr"], against=["a"])
    assert list(only["against"]) == ["a"] and only["mean"].iloc[0] == pytest.approx(0.25)
    with pytest.raises(KeyError, match="zz"):
        paired_differences(metrics, "zz", ["ctr"])
    with pytest.raises(KeyError, match="nope"):
        paired_differences(metrics, "a", ["nope"])


def test_label_bias_from_priors() -> None:
    priors = pd.DataFrame(
        {
            "kind": ["choice"] * 3 + ["rating"] * 2,
            "label": ["A", "B", "none", "1", "2"],
            "mean_prior": [0.6, 0.3, 0.1, 0.5, 0.5],
        }
    )
    bias = label_bias(priors).set_index("kind")
    assert bias.loc["choice", "favourite"] == "A"
    assert bias.loc["choice", "favourite_prior"] == pytest.approx(0.6)
    assert bias.loc["choice", "total_variation"] == pytest.approx(0.5 * (0.6 - 1 / 3) * 2)
    assert bias.loc["rating", "total_variation"] == pytest.approx(0.0)


def test_metrics_figure() -> None:
    fig = metrics_figure(_metrics(), ["ctr", "gini", "ctr"], title="t")
    assert isinstance(fig, Figure)
    assert sum(ax.axison for ax in fig.axes) == 3 and len(fig.axes) == 4
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["a", "b", "c"]
    assert fig._repr_png_().startswith(b"\x89PNG")  # Jupyter shows it without pyplot
    with pytest.raises(ValueError, match="nope"):
        metrics_figure(_metrics(), ["nope"])


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tables") / "run"
    sets = ["ticks=2", "population.size=6", "population.activity_scale=5", "catalog.n_items=30",
            "decider.llm.embeddings=topics", "seeds=[0, 1]"]  # fmt: skip
    args = ["run", "filter_bubble_llm", "--backend", "fake", "--out", str(out), "--no-progress",
            "--policy", "popularity", "--policy", "mf"]  # fmt: skip
    assert main(args + [x for kv in sets for x in ("--set", kv)]) == 0
    return out


def test_llm_jobs_match_the_parts_and_the_summary(llm_run: Path) -> None:
    jobs = llm_jobs(llm_run)
    assert list(zip(jobs["policy"], jobs["seed"], strict=True)) == [
        ("popularity", 0), ("popularity", 1), ("mf", 0), ("mf", 1)
    ]  # fmt: skip
    totals = json.loads((llm_run / "summary.json").read_text())["llm"]
    assert jobs["decisions"].sum() == totals["decisions"] > 0
    assert jobs["fallbacks"].sum() == totals["fallbacks"]
    part = json.loads((llm_run / "parts" / "mf-seed1" / "llm_stats.json").read_text())
    row = jobs.iloc[3]
    assert row["calls"] == part["layers"][-1]["stats"]["calls"] > 0
    assert row["cache_hits"] == part["layers"][0]["stats"]["cache_hits"]
    assert row["prompts"] == part["layers"][-1]["stats"]["prompts"]


def test_label_priors_of_each_job(llm_run: Path) -> None:
    priors = label_priors(llm_run)
    assert set(priors["kind"]) >= {"choice"}
    for _, frame in priors.groupby(["policy", "seed", "kind"]):
        assert frame["mean_prior"].sum() == pytest.approx(1.0)
        assert (frame["uniform"] == 1 / len(frame)).all()
        assert (frame["min_prior"] <= frame["mean_prior"]).all()
        assert (frame["mean_prior"] <= frame["max_prior"]).all()
    path = llm_run / "parts" / "popularity-seed0" / "llm_calibration.json"
    record = json.loads(path.read_text())
    choice = next(q for q in record["questions"] if q["kind"] == "choice")
    mine = priors[(priors["policy"] == "popularity") & (priors["seed"] == 0)]
    assert mine[mine["kind"] == "choice"]["label"].tolist() == choice["labels"]


def test_tables_of_a_parametric_run_are_empty(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["run", "filter_bubble", "--out", str(out), "--no-progress", "--policy", "random",
            "--set", "ticks=2", "--set", "population.size=30", "--seed", "0"]  # fmt: skip
    assert main(args) == 0
    assert llm_jobs(out).empty and label_priors(out).empty
    assert list(llm_jobs(out).columns)[:4] == ["policy", "seed", "decisions", "fallbacks"]
